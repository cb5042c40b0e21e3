"""The one hub spec: what a trained model's folder holds, written and read the same way for every method.

A hub folder is what ``<Interface>.from_hparams(source=folder)`` loads and what ``sqe score|enhance|
analyze-ssl --model folder`` accepts; it can be uploaded to a model hub as it is:

- ``hyperparams.yaml``: the task interface that loads it (``interface: speechbrain_sqe.inference.
  quality.VQScore``), plain settings (``sample_rate``, ``min_seconds``...), the front end and every
  module as a ``!new:`` entry written from the module's own constructor arguments (captured when it
  was built, see :func:`constructor_arguments`), and SpeechBrain's ``Pretrainer`` for the weights;
- ``<name>.ckpt`` per module (state dicts, loaded with ``weights_only=True``);
- ``README.md``, the model card (:func:`build_model_card`), and the files it shows (plots).

A method describes its folder with a :class:`HubSpec` (its Brain's ``hub_spec()``); nothing here
knows about any particular method.
"""

import dataclasses
import datetime
import importlib
import inspect
import os
import shutil

import torch
import yaml

from speechbrain_sqe.utils.safe_load import CheckpointError

__all__ = [
    "HubSpec",
    "InterfaceError",
    "build_model_card",
    "constructor_arguments",
    "read_interface_name",
    "resolve_interface",
    "write_hub_folder",
]

#: The package whose interfaces a hub folder may name (an interface path is code to import).
INTERFACE_PACKAGE = "speechbrain_sqe.inference."


class InterfaceError(ValueError):
    """A hub folder names no usable interface, or one of another task than asked for."""


def class_path(obj):
    """The dotted import path of an object's class (``speechbrain_sqe.lobes.vqvae.VQVAEQualityModel``).

    Arguments
    ---------
    obj : object or type
        An instance or a class.

    Returns
    -------
    str
        ``module.QualName``.

    Example
    -------
    >>> class_path(torch.nn.Linear(2, 3))
    'torch.nn.modules.linear.Linear'
    """
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def constructor_arguments(module):
    """The arguments a module was built with, as a YAML-safe dict.

    Lobes record them when they are constructed (``init_args``); older lobes kept a ``config`` dict.

    Arguments
    ---------
    module : torch.nn.Module
        A module built by the project's lobes.

    Returns
    -------
    dict
        Argument name -> value (lists instead of tuples).

    Raises
    ------
    TypeError
        When the module records no constructor arguments (it cannot be rebuilt from a YAML file).

    Example
    -------
    >>> from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
    >>> constructor_arguments(VQVAEQualityModel(codebook_size=16))["codebook_size"]
    16
    """
    args = getattr(module, "init_args", None)
    if args is None:
        args = getattr(module, "config", None)
    if args is None:
        args = _arguments_from_attributes(module)
    return yaml.safe_load(yaml.safe_dump(_plain(dict(args)), sort_keys=False))


def _arguments_from_attributes(module):
    """Constructor arguments read back from same-named attributes (small modules without
    ``init_args``, such as front ends that store each setting)."""
    args = {}
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            raise TypeError(
                f"{class_path(module)} records no constructor arguments (init_args) and has no "
                f"attribute {name!r}, so a hub folder cannot rebuild it"
            )
        args[name] = getattr(module, name)
    return args


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclasses.dataclass
class HubSpec:
    """What a hub folder holds: the interface, settings, front end and modules of a trained model.

    Arguments
    ---------
    interface : type or str
        The task interface class (or its dotted path) that loads the folder, e.g.
        :class:`speechbrain_sqe.inference.quality.VQScore`.
    modules : dict
        ``{name: torch.nn.Module}`` with weights: each is written as a ``!new:`` entry from its
        constructor arguments and saved as ``<name>.ckpt``.
    settings : dict
        Plain values the interface reads (``sample_rate``, ``min_seconds``, ``mix``...).
    frontend : torch.nn.Module, optional
        The front end used in training (a module without weights), written as ``frontend``.
    overrides : dict
        ``{name: {argument: value}}`` changes to a module's constructor arguments for inference
        (e.g. ``{"vqvae": {"sync_distributed": False}}``).
    files : list of str
        Files copied beside the model (the plots the card shows).
    title : str
        The hyperparams file's header comment.
    comments : dict
        ``{setting: comment}`` written above each setting.
    """

    interface: object
    modules: dict
    settings: dict = dataclasses.field(default_factory=dict)
    frontend: object = None
    overrides: dict = dataclasses.field(default_factory=dict)
    files: list = dataclasses.field(default_factory=list)
    title: str = ""
    comments: dict = dataclasses.field(default_factory=dict)

    @property
    def interface_path(self):
        """The interface's dotted path."""
        return self.interface if isinstance(self.interface, str) else class_path(self.interface)

    def hyperparams_text(self):
        """The ``hyperparams.yaml`` text of this spec.

        Returns
        -------
        str
            HyperPyYAML text (loads with the hub safety policy).

        Example
        -------
        >>> spec = HubSpec("speechbrain_sqe.inference.encoders.TERA", {"net": _Demo(3)}, {"sample_rate": 16000})
        >>> print(spec.hyperparams_text().split("modules:")[0].strip().splitlines()[-4:])
        ['sample_rate: 16000', '', 'net: !new:speechbrain_sqe.inference.hub._Demo', '    size: 3']
        """
        module_name, class_name = self.interface_path.rsplit(".", 1)
        lines = [f"# {line}" if line else "#" for line in (self.title or class_name).splitlines()]
        lines += [
            "# Load it with:",
            f"#   from {module_name} import {class_name}",
            f'#   model = {class_name}.from_hparams(source="<this folder or a hub id>")',
            "",
            "# The task interface that loads this folder (read by `sqe score|enhance|analyze-ssl --model`).",
            f"interface: {self.interface_path}",
            "",
        ]
        for key, value in self.settings.items():
            if key in self.comments:
                lines += [f"# {line}" for line in self.comments[key].splitlines()]
            lines += _yaml_lines({key: value})
        lines.append("")
        if self.frontend is not None:
            lines.append("# The front end the model was trained with (used unchanged at inference).")
            lines += _new_entry("frontend", self.frontend, {})
            lines.append("")
        for name, module in self.modules.items():
            lines += _new_entry(name, module, self.overrides.get(name, {})) + [""]
        lines.append("modules:")
        lines += [f"    {name}: !ref <{name}>" for name in self.modules]
        lines += ["", "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer", "    loadables:"]
        lines += [f"        {name}: !ref <{name}>   # read from {name}.ckpt beside this file" for name in self.modules]
        return "\n".join(lines) + "\n"


class _Demo(torch.nn.Module):
    """A tiny module recording its constructor argument (for the doctests)."""

    def __init__(self, size=2):
        super().__init__()
        self.init_args = {"size": size}
        self.linear = torch.nn.Linear(size, size)


def _new_entry(name, module, overrides):
    args = constructor_arguments(module)
    args.update(overrides)
    lines = [f"{name}: !new:{class_path(module)}"]
    for key, value in args.items():
        lines += [f"    {line}" for line in _yaml_lines({key: value})]
    return lines


def _yaml_lines(mapping):
    """``key: value`` YAML lines of a mapping, each value in flow style (``channels: [128, 64]``)."""
    lines = []
    for key, value in mapping.items():
        text = yaml.safe_dump(_plain(value), default_flow_style=True, width=1000)
        lines.append(f"{key}: {text.removesuffix(chr(10)).removesuffix('...').strip()}")
    return lines


def write_hub_folder(spec, output_folder, card):
    """Writes a hub folder: ``hyperparams.yaml``, ``<name>.ckpt`` per module, ``README.md``, files.

    Each file is written under a temporary name and renamed, so an interrupted export never leaves a
    half-written file under its final name.

    Arguments
    ---------
    spec : HubSpec
        What the folder holds.
    output_folder : str
        The folder to write (created).
    card : str
        The model card (:func:`build_model_card`).

    Returns
    -------
    str
        ``output_folder``.

    Example
    -------
    >>> import tempfile
    >>> spec = HubSpec("speechbrain_sqe.inference.encoders.TERA", {"net": _Demo()}, {"sample_rate": 16000})
    >>> folder = write_hub_folder(spec, tempfile.mkdtemp(), "# card")
    >>> sorted(os.listdir(folder))
    ['README.md', 'hyperparams.yaml', 'net.ckpt']
    """
    os.makedirs(output_folder, exist_ok=True)
    _write_text(os.path.join(output_folder, "hyperparams.yaml"), spec.hyperparams_text())
    for name, module in spec.modules.items():
        state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
        path = os.path.join(output_folder, f"{name}.ckpt")
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)
    _write_text(os.path.join(output_folder, "README.md"), card)
    for path in spec.files:
        shutil.copy(path, output_folder)
    return output_folder


def _write_text(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(path + ".tmp", path)


def build_model_card(title, summary, interface, usage, data, command, training=None, results="",
                     data_license="", sections=None):
    """A model card with the sections every shipped model has.

    Arguments
    ---------
    title : str
        The model's name.
    summary : str
        What it does, in a few lines.
    interface : str or type
        The interface class (or dotted path) that loads it.
    usage : str
        One or more Python lines using ``model`` (e.g. ``model.score_file("speech.wav")``).
    data : str
        What it was trained on.
    command : str
        The command that trained it.
    training : dict, optional
        Training facts (epochs, seed, time, hardware...).
    results : str
        Markdown of the measured results (tables, plot links).
    data_license : str
        The license / origin of the training data.
    sections : dict, optional
        More ``{heading: markdown}`` sections, after the results.

    Returns
    -------
    str
        Markdown text.

    Example
    -------
    >>> card = build_model_card("VQScore", "Quality.", "speechbrain_sqe.inference.quality.VQScore",
    ...                         'model.score_file("a.wav")', "clean speech", "python train.py x.yaml",
    ...                         {"seed": 1}, "| a |\\n|---|")
    >>> "from speechbrain_sqe.inference.quality import VQScore" in card, "- seed: 1" in card
    (True, True)
    """
    path = interface if isinstance(interface, str) else class_path(interface)
    module_name, class_name = path.rsplit(".", 1)
    lines = [
        f"# {title} (speechbrain-sqe)", "", summary.strip(), "", "## Use", "", "```python",
        f"from {module_name} import {class_name}",
        f'model = {class_name}.from_hparams(source="<this folder>")',
        *usage.strip().splitlines(), "```", "", "## Training data", "", f"- {data}",
    ]
    if data_license:
        lines.append(f"- License / origin: {data_license}")
    lines += ["", "## Training", "", f"- Command: `{command}`"]
    lines += [f"- {key}: {value}" for key, value in (training or {}).items()]
    lines += [f"- Exported: {datetime.date.today().isoformat()}", ""]
    if results:
        lines += ["## Measured results", "", results.strip(), ""]
    for heading, text in (sections or {}).items():
        lines += [f"## {heading}", "", text.strip(), ""]
    return "\n".join(lines)


def read_interface_name(hparams_path):
    """The ``interface:`` entry of a hyperparams file, read without constructing anything.

    Arguments
    ---------
    hparams_path : str
        A hub folder's ``hyperparams.yaml``.

    Returns
    -------
    str or None
        The dotted interface path, or None for folders written before interfaces were named.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hyperparams.yaml")
    >>> _ = open(path, "w").write("interface: speechbrain_sqe.inference.quality.VQScore\\nx: !new:os.system []")
    >>> read_interface_name(path)
    'speechbrain_sqe.inference.quality.VQScore'
    """
    with open(hparams_path, encoding="utf-8") as stream:
        root = yaml.compose(stream, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if key.value == "interface" and isinstance(value, yaml.ScalarNode):
            return value.value
    return None


def resolve_interface(path, task=None, source=None):
    """Imports a task interface named by a hub folder, refusing anything but the package's interfaces.

    Arguments
    ---------
    path : str
        Dotted path of the interface class.
    task : str, optional
        The task the caller needs (``"quality"``, ``"enhancement"``, ``"ssl_encoder"``).
    source : str, optional
        The folder or hub id (for the error messages).

    Returns
    -------
    type
        The interface class.

    Raises
    ------
    InterfaceError
        For a path outside ``speechbrain_sqe.inference``, a class that is not an interface, or one of
        another task.

    Example
    -------
    >>> resolve_interface("speechbrain_sqe.inference.quality.VQScore", "quality").__name__
    'VQScore'
    >>> resolve_interface("speechbrain_sqe.inference.quality.VQScore", "enhancer")
    Traceback (most recent call last):
    ...
    ValueError: unknown task 'enhancer'; one of enhancement, quality, ssl_encoder
    >>> resolve_interface("os.system")
    Traceback (most recent call last):
    ...
    speechbrain_sqe.inference.hub.InterfaceError: ...
    """
    from speechbrain_sqe.inference.safe_pretrained import SafePretrained

    where = f"{source}: " if source else ""
    if task is not None and task not in TASK_DESCRIPTIONS:  # a caller's typo, not the folder's fault
        raise ValueError(f"unknown task {task!r}; one of {', '.join(sorted(TASK_DESCRIPTIONS))}")
    module_name, _, class_name = str(path).rpartition(".")
    if not str(path).startswith(INTERFACE_PACKAGE) or not module_name:
        raise InterfaceError(f"{where}interface {path!r} is not one of the package's interfaces "
                             f"({INTERFACE_PACKAGE}*)")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise InterfaceError(f"{where}interface {path!r} does not exist in this version ({error})") from None
    if not (isinstance(cls, type) and issubclass(cls, SafePretrained)):
        raise InterfaceError(f"{where}{path!r} is not a task interface")
    if task is not None and cls.TASK != task:
        raise InterfaceError(
            f"{where}this folder holds a {cls.TASK_DESCRIPTION} ({cls.__name__}); "
            f"this command needs a {TASK_DESCRIPTIONS.get(task, task)}"
        )
    return cls


#: Human words for each task (error messages).
TASK_DESCRIPTIONS = {
    "quality": "quality predictor (sqe score)",
    "enhancement": "speech enhancer (sqe enhance)",
    "ssl_encoder": "self-supervised speech encoder (sqe analyze-ssl)",
}


#: The model shipped in the package for each task (what every command uses without ``--model``).
#: Enhancement: BSSE since 2026-12-07 (the VQ enhancer before; the rule that moved it is in the
#: README, "Which shipped enhancer for real recordings?").
PRETRAINED_FOLDER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained")
DEFAULT_SOURCES = {
    "quality": os.path.join(PRETRAINED_FOLDER, "vqscore"),
    "enhancement": os.path.join(PRETRAINED_FOLDER, "bsse"),
    "ssl_encoder": os.path.join(PRETRAINED_FOLDER, "tera"),
}


def shipped_models():
    """The names of the models shipped inside the package (``bsse``, ``vqscore``...).

    Returns
    -------
    list of str
        Sorted names of the folders of :data:`PRETRAINED_FOLDER` that hold a ``hyperparams.yaml``.

    Example
    -------
    >>> {"vqscore", "vq_enhancer", "tera"} <= set(shipped_models())
    True
    """
    if not os.path.isdir(PRETRAINED_FOLDER):
        return []
    return sorted(name for name in os.listdir(PRETRAINED_FOLDER)
                  if os.path.isfile(os.path.join(PRETRAINED_FOLDER, name, "hyperparams.yaml")))


def resolve_shipped_name(source):
    """A shipped model's bare name (``"bsse"``) as its folder inside the package; any other source
    unchanged. A file or folder of that name in the working directory wins, so a user's own folder
    is never shadowed; hub ids (``owner/name``) contain a slash and never match.

    Arguments
    ---------
    source : str
        What the user gave (``--model``, ``source=``).

    Returns
    -------
    str
        The folder to load, or ``source`` itself.

    Example
    -------
    >>> resolve_shipped_name("vqscore") == DEFAULT_SOURCES["quality"]
    True
    >>> resolve_shipped_name("owner/model")
    'owner/model'
    """
    if "/" in source or os.sep in source or os.path.exists(source):
        return source
    folder = os.path.join(PRETRAINED_FOLDER, source)
    return folder if os.path.isfile(os.path.join(folder, "hyperparams.yaml")) else source


#: The interface of folders that name none (written before interfaces were named), by task.
LEGACY_INTERFACES = {
    "quality": "speechbrain_sqe.inference.quality.VQScore",
    "enhancement": "speechbrain_sqe.inference.enhancement.VQEnhancer",
    "ssl_encoder": "speechbrain_sqe.inference.encoders.TERA",
}


def load_model(source=None, task=None, hparams_file="hyperparams.yaml", savedir=None, **kwargs):
    """Loads any hub folder with the interface it names, checking that it serves ``task``.

    Arguments
    ---------
    source : str, optional
        A local folder, a model hub id, or the name of a model shipped in the package
        (:func:`shipped_models`: ``"bsse"``, ``"sqa"``...); None: the model shipped for ``task``.
    task : str, optional
        ``"quality"``, ``"enhancement"`` or ``"ssl_encoder"``; None accepts any task.
    hparams_file : str
        The hyperparams file name inside ``source``.
    savedir : str, optional
        Where a hub model is fetched to.
    **kwargs : dict
        Passed to the interface's ``from_hparams`` (``trust_hparams``, ``run_opts``...).

    Returns
    -------
    speechbrain_sqe.inference.safe_pretrained.SafePretrained
        The loaded interface.

    Raises
    ------
    InterfaceError
        When the folder is missing, names no usable interface, holds a model of another task, lacks
        a file its hyperparams name, or holds a truncated or corrupted checkpoint (one line naming
        the file).

    Example
    -------
    >>> load_model(task="quality").__class__.__name__
    'VQScore'
    >>> load_model("bsse", task="enhancement").__class__.__name__
    'BSSEEnhancer'
    >>> load_model(DEFAULT_SOURCES["quality"], task="enhancement")
    Traceback (most recent call last):
    ...
    speechbrain_sqe.inference.hub.InterfaceError: ...: this folder holds a quality predictor (sqe score) (VQScore); this command needs a speech enhancer (sqe enhance)
    """
    if source is None:
        if task not in DEFAULT_SOURCES:
            raise InterfaceError("give a model folder or hub id (no task, so no shipped default)")
        source = DEFAULT_SOURCES[task]
    source = resolve_shipped_name(os.fspath(source))
    if os.path.isdir(source):
        hparams_path = os.path.join(source, hparams_file)
        if not os.path.isfile(hparams_path):
            raise InterfaceError(f"{source}: not a model folder (no {hparams_file} in it)")
    elif os.path.exists(source) or source.startswith((".", "/")) or source.count("/") != 1:
        raise InterfaceError(f"{source}: no such model folder (nor a hub id of the form owner/name, "
                             f"nor a shipped model: {', '.join(shipped_models())})")
    else:  # a hub id: fetch the hyperparams file first to learn its interface
        from speechbrain.utils.fetching import fetch

        hparams_path = str(fetch(filename=hparams_file, source=source, savedir=savedir))
    name = read_interface_name(hparams_path)
    if name is None:
        if task not in LEGACY_INTERFACES:
            raise InterfaceError(f"{source}: its hyperparams name no interface; load it with its class")
        name = LEGACY_INTERFACES[task]
    cls = resolve_interface(name, task, source)
    try:
        return cls.from_hparams(source=source, hparams_file=hparams_file, savedir=savedir, **kwargs)
    except CheckpointError as error:  # truncated, corrupted or another model's weights
        raise InterfaceError(str(error)) from error
    except FileNotFoundError as error:  # a file the hyperparams name is not in the folder
        missing = error.filename or str(error)
        raise InterfaceError(f"{source}: the model folder is missing {missing} "
                             f"(named by its {hparams_file}); restore the folder or re-export it") from error
