"""Safe loading of hyperparameter files and checkpoints.

A HyperPyYAML file can construct any Python object (``!new:os.system``...), so a hyperparams file
fetched from a hub is code. Before such a file is loaded, every object tag is checked against the
modules it may name (``speechbrain``, ``speechbrain_sqe`` and ``torch`` by default); anything else is
refused unless the caller passes ``trust_hparams=True``. Checkpoints are read with
``torch.load(..., weights_only=True)``, which refuses pickled code.

SpeechBrain has no such check (its ``from_hparams`` loads whatever the file says), hence this module.
"""

import io
import os

import torch
import yaml

#: Top-level modules a hyperparams file may name in ``!new:``, ``!name:`` and ``!apply:`` tags.
TRUSTED_MODULES = ("speechbrain", "speechbrain_sqe", "torch")
_OBJECT_TAGS = ("!new:", "!name:", "!apply:")
# HyperPyYAML tags that build no foreign object.
_PLAIN_TAGS = ("!ref", "!copy", "!tuple", "!PLACEHOLDER", "!include:", "!applyref:")


class UnsafeHyperparamsError(ValueError):
    """A hyperparams file names code outside the trusted modules."""


class _TagCollector(yaml.SafeLoader):
    """A loader used only to compose the node graph; tags are read, nothing is constructed."""


def find_untrusted_tags(yaml_text, trusted_modules=TRUSTED_MODULES):
    """Lists the object tags of a HyperPyYAML text that point outside ``trusted_modules``.

    Arguments
    ---------
    yaml_text : str
        The content of a hyperparams file.
    trusted_modules : tuple of str
        Top-level module names that may be constructed.

    Returns
    -------
    list of str
        The offending tags, in order of appearance (empty when the file is safe).

    Example
    -------
    >>> find_untrusted_tags("model: !new:torch.nn.Linear [2, 3]")
    []
    >>> find_untrusted_tags("x: !apply:os.system ['echo hi']")
    ['!apply:os.system']
    """
    try:
        root = yaml.compose(io.StringIO(yaml_text), Loader=_TagCollector)
    except yaml.YAMLError as error:
        raise UnsafeHyperparamsError(f"not a valid YAML file: {error}") from error
    found = []
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop(0)
        tag = node.tag or ""
        if tag.startswith(_OBJECT_TAGS):
            target = tag.split(":", 1)[1]
            if target.split(".")[0] not in trusted_modules:
                found.append(tag)
        elif tag.startswith("!") and not tag.startswith(_PLAIN_TAGS) or tag.startswith("tag:yaml.org,2002:python/"):
            found.append(tag)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend([key, value])
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return found


def check_hyperparams_file(path, trust_hparams=False, trusted_modules=TRUSTED_MODULES):
    """Refuses a hyperparams file that would construct untrusted objects.

    Files named by ``!include:`` are checked too.

    Arguments
    ---------
    path : str
        The hyperparams file.
    trust_hparams : bool
        Skip the check (the caller vouches for the file).
    trusted_modules : tuple of str
        Top-level module names that may be constructed.

    Raises
    ------
    UnsafeHyperparamsError
        Naming the file, the offending tags and the way to trust it.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "hyperparams.yaml")
    >>> _ = open(path, "w").write("run: !apply:subprocess.call [['ls']]")
    >>> check_hyperparams_file(path)
    Traceback (most recent call last):
    ...
    speechbrain_sqe.utils.safe_load.UnsafeHyperparamsError: ...
    >>> check_hyperparams_file(path, trust_hparams=True)
    """
    if trust_hparams:
        return
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    bad = find_untrusted_tags(text, trusted_modules)
    if bad:
        raise UnsafeHyperparamsError(
            f"{path}: refusing to load: it would construct objects outside the trusted modules "
            f"{', '.join(trusted_modules)}: {', '.join(sorted(set(bad)))}. A hyperparams file is "
            "code; if you trust its source, pass trust_hparams=True (train.py: --trust_hparams; sqe: "
            "--trust-hparams)."
        )
    folder = os.path.dirname(os.path.abspath(path))
    for line in text.splitlines():
        if "!include:" in line:
            included = line.split("!include:", 1)[1].strip().split()[0].strip("'\"")
            included = included if os.path.isabs(included) else os.path.join(folder, included)
            if os.path.exists(included):
                check_hyperparams_file(included, False, trusted_modules)


def load_state_dict_safely(path, map_location="cpu"):
    """Loads a checkpoint with ``weights_only=True`` (no pickled code is run).

    Arguments
    ---------
    path : str
        The checkpoint file.
    map_location : str
        Device for the tensors.

    Returns
    -------
    dict
        The loaded state dict.

    Raises
    ------
    ValueError
        If the file holds more than tensors and plain containers.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> sorted(load_state_dict_safely(path))
    ['bias', 'weight']
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        if isinstance(error, (FileNotFoundError, IsADirectoryError)):
            raise
        raise ValueError(
            f"{path}: not loadable with weights_only=True ({str(error).splitlines()[0]}). "
            "The file holds pickled objects beyond tensors; only load it if you trust its source."
        ) from error


def safe_torch_recovery(obj, path, end_of_epoch=False):
    """SpeechBrain load hook that reads a module's state dict with ``weights_only=True``.

    Arguments
    ---------
    obj : torch.nn.Module
        The module to load into.
    path : str
        The checkpoint file.
    end_of_epoch : bool
        Unused (the SpeechBrain hook signature).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> safe_torch_recovery(torch.nn.Linear(2, 3), path)
    """
    del end_of_epoch
    obj.load_state_dict(load_state_dict_safely(path), strict=True)
