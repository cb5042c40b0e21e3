"""Automatic capture of a module's constructor arguments (``module.init_args``).

A hub folder rebuilds a model from a HyperPyYAML ``!new:`` entry, so an export needs the arguments
the model was built with. Rather than each lobe keeping a hand-written copy (which drifts when an
argument is added), :func:`record_init_args` wraps a class's ``__init__``: after construction,
``module.init_args`` holds every constructor argument bound to its value, defaults applied, in
signature order, made YAML-safe (tuples become lists, recursively; ``**kwargs`` are merged in).

This is a speechbrain-sqe mechanism, not SpeechBrain's: SpeechBrain keeps no record of constructor
arguments (its hub folders are hand-written YAML).

Authors: speechbrain-sqe contributors
"""

import functools
import inspect

__all__ = ["record_init_args", "yaml_safe"]


def yaml_safe(value):
    """``value`` with tuples turned into lists (recursively, also inside lists and dicts).

    Arguments
    ---------
    value : object
        A constructor argument.

    Returns
    -------
    object
        The same value, with every tuple a list (``yaml.safe_dump`` refuses tuples).

    Example
    -------
    >>> yaml_safe({"channels": (128, 64), "pairs": [(1, 2)]})
    {'channels': [128, 64], 'pairs': [[1, 2]]}
    """
    if isinstance(value, (tuple, list)):
        return [yaml_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_safe(v) for k, v in value.items()}
    return value


def record_init_args(cls):
    """Class decorator: instances get ``init_args``, their bound constructor arguments.

    The arguments are bound with :func:`inspect.signature` (defaults applied), ``self`` left out,
    ``**kwargs`` merged into the mapping, tuples made lists. They are recorded after ``__init__``
    returns, so for a decorated subclass whose ``__init__`` calls a decorated parent's, the
    subclass's own arguments win. ``cls(**module.init_args)`` rebuilds the module.

    Arguments
    ---------
    cls : type
        A class (typically a :class:`torch.nn.Module`) with an ``__init__`` of its own.

    Returns
    -------
    type
        ``cls``, its ``__init__`` wrapped (signature kept for :func:`inspect.signature`).

    Example
    -------
    >>> import torch
    >>> @record_init_args
    ... class Tiny(torch.nn.Module):
    ...     def __init__(self, sizes=(4, 2), act="relu"):
    ...         super().__init__()
    ...         self.layers = torch.nn.ModuleList(torch.nn.Linear(4, s) for s in sizes)
    >>> Tiny(act="gelu").init_args
    {'sizes': [4, 2], 'act': 'gelu'}
    >>> Tiny(**Tiny(sizes=(3,)).init_args).init_args
    {'sizes': [3], 'act': 'relu'}
    """
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        captured = {}
        for name, value in list(bound.arguments.items())[1:]:  # without self
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                captured.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(f"{cls.__name__}: *{name} cannot be recorded as keyword arguments")
            else:
                captured[name] = value
        self.init_args = yaml_safe(captured)

    cls.__init__ = __init__
    return cls
