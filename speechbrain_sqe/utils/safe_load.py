"""Safe loading of hyperparameter files and checkpoints.

A HyperPyYAML file can construct any Python object (``!new:os.system``...), so a hyperparams file
fetched from a hub is code. Before such a file is loaded it is checked against a *policy*, an
allowlist of the dotted names its tags may construct; anything else is refused unless the caller
passes ``trust_hparams=True`` (``train.py --trust_hparams``, ``sqe ... --trust-hparams``).

Two policies:

- ``HUB_POLICY`` (``SafePretrained.from_hparams``, the default): what a hub folder needs. The
  package's model constructors (``speechbrain_sqe.lobes``: modules and pure functions, no I/O by
  design), SpeechBrain's ``Pretrainer``, SpeechBrain model constructors (``speechbrain.lobes``,
  ``speechbrain.nnet``, ``speechbrain.processing.features``, less the lobes that download or unpickle
  files: BEATs, fairseq, DAC, MSTacotron2...), ``torch.nn``, window functions, dtypes and simple
  tensor constructors. No ``!include:``.
- ``RECIPE_POLICY`` (``train.py``): the hub policy plus what ``hparams/*.yaml`` use: the Brains
  (``speechbrain_sqe.brains``), the data preparation and augmentation entries they name,
  ``torch.optim``, SpeechBrain's Checkpointer, EpochCounter, train logger, schedulers, augmentation,
  ``seed_everything``; ``!include:`` of files that pass the same policy.

Both refuse ``torch.save``/``load``, ``torch.hub``, extension loaders (``torch.utils.cpp_extension``,
``torch.ops``, ``torch.classes``, ``torch.jit``, ``torch.package``), ``os``, ``subprocess``,
``builtins``..., simply because they are not on the list. An allowlist alone is not enough, because
of how HyperPyYAML resolves and loads a file, so the check also:

- resolves each allowed name the way HyperPyYAML does (``pydoc.locate``) and refuses names that go
  through a module alias (``speechbrain_sqe.lobes.vqvae.torch.save``), reach an attribute of an
  attribute (``Pretrainer.collect_files``, ``NoamScheduler.save``), start with ``_``, name a module,
  or land on a function or class defined outside the policy (a re-export);
- checks ``!applyref:`` like ``!apply:`` (HyperPyYAML calls it while resolving references);
- checks the text HyperPyYAML finally constructs (references, overrides and includes resolved),
  parsed with the same loader: ``!ref <a.b>`` becomes ``!apply:getattr`` (refused), and a string
  interpolated into ``(...)`` becomes a ``!tuple``, which HyperPyYAML parses with PyYAML's unsafe
  ``yaml.Loader`` (``!!python/object/apply:...`` inside a tuple would run), so the tags inside
  tuple-like strings are checked too; only plain YAML tags may appear there.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which refuses pickled code.
SpeechBrain has no such check (its ``from_hparams`` loads whatever the file says), hence this module.
"""

import dataclasses
import inspect
import io
import os
import pickle
import pydoc

import ruamel.yaml
import torch
import yaml
from hyperpyyaml import resolve_references


@dataclasses.dataclass(frozen=True)
class HparamsPolicy:
    """The dotted names a hyperparams file may construct (``!new:``, ``!name:``, ``!apply:``,
    ``!applyref:``).

    Arguments
    ---------
    name : str
        Shown in error messages.
    names : frozenset of str
        Exact names allowed.
    prefixes : tuple of str
        Packages or modules whose names are allowed (``"torch.nn"`` allows ``torch.nn.Linear``).
    denied : tuple of str
        Names or packages refused even under an allowed prefix.
    includes : bool
        Whether ``!include:`` is allowed (the included file is checked with the same policy).

    Example
    -------
    >>> policy = HparamsPolicy("demo", frozenset({"torch.hann_window"}), ("torch.nn",), ("torch.nn.parallel",))
    >>> [policy.allows(n) for n in ("torch.nn.Linear", "torch.hann_window", "torch.nn.parallel.DataParallel")]
    [True, True, False]
    """

    name: str
    names: frozenset = frozenset()
    prefixes: tuple = ()
    denied: tuple = ()
    includes: bool = False

    def allows(self, dotted):
        """Whether ``dotted`` is on the list (by its text; see ``find_untrusted_tags`` for the rest).

        Arguments
        ---------
        dotted : str
            A dotted name such as ``torch.nn.Linear``.

        Returns
        -------
        bool
        """
        if any(dotted == d or dotted.startswith(d + ".") for d in self.denied):
            return False
        return dotted in self.names or any(dotted.startswith(p + ".") for p in self.prefixes)


_TORCH_NAMES = frozenset(
    [f"torch.{w}_window" for w in ("hann", "hamming", "blackman", "bartlett", "kaiser")]
    + [f"torch.{t}" for t in ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
                               "int8", "int16", "int32", "int64", "uint8", "bool")]
    + [f"torch.{f}" for f in ("tensor", "zeros", "ones", "full", "arange", "linspace", "eye")]
)

#: What a hub folder may construct (``SafePretrained.from_hparams``).
HUB_POLICY = HparamsPolicy(
    name="hub",
    names=_TORCH_NAMES | {"speechbrain.utils.parameter_transfer.Pretrainer"},
    prefixes=("speechbrain_sqe.lobes", "speechbrain.lobes", "speechbrain.nnet",
              "speechbrain.processing.features", "torch.nn"),
    # Lobes that download, unpickle or torch.load files named by their arguments.
    denied=tuple(f"speechbrain.lobes.models.{m}" for m in (
        "beats", "fairseq_wav2vec", "discrete", "MSTacotron2", "huggingface_transformers",
        "huggingface_wav2vec", "g2p")),
)

#: What a training recipe may construct (``train.py``): the hub policy plus what ``hparams/*.yaml`` use.
RECIPE_POLICY = dataclasses.replace(
    HUB_POLICY,
    name="recipe",
    names=HUB_POLICY.names | {
        "speechbrain_sqe.dataio.prepare.prepare_corpus",
        "speechbrain_sqe.dataio.sqa_labels.prepare_sqa_labels",
        "speechbrain_sqe.dataio.realism.CleanRealism",
        "speechbrain_sqe.dataio.noise_variation.NoiseVariation",
        "speechbrain.utils.checkpoints.Checkpointer",
        "speechbrain.utils.epoch_loop.EpochCounter",
        "speechbrain.utils.epoch_loop.EpochCounterWithStopper",
        "speechbrain.utils.train_logger.FileTrainLogger",
        "speechbrain.utils.seed_everything",
        "speechbrain.utils.seed.seed_everything",
        "speechbrain.augment.augmenter.Augmenter",
    },
    prefixes=HUB_POLICY.prefixes + (
        "speechbrain_sqe.brains", "torch.optim", "speechbrain.augment.time_domain",
        "speechbrain.augment.freq_domain"),
    includes=True,
)

_OBJECT_TAGS = ("!new:", "!name:", "!apply:", "!applyref:")
# Tags that construct nothing foreign (``!tuple`` contents are checked separately).
_PLAIN_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
_YAML_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "binary",
                                      "timestamp", "set", "omap", "pairs", "merge", "value"))
_TRUST_HINT = ("A hyperparams file is code; if you trust its source, pass trust_hparams=True "
               "(train.py: --trust_hparams; sqe: --trust-hparams).")


class UnsafeHyperparamsError(ValueError):
    """A hyperparams file names code its policy does not allow."""


class _NamedText(io.StringIO):
    """Text with a ``name``: HyperPyYAML resolves ``!include:`` beside ``stream.name``."""


def _shown(tag):
    """A tag as it is usually written (``!!python/...`` rather than ``tag:yaml.org,2002:python/...``)."""
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _tag(node):
    tag = node.tag
    return tag if isinstance(tag, str) or tag is None else getattr(tag, "value", str(tag))


def _compose(text, loader):
    """The node graph of ``text`` as ``loader`` parses it (nothing is constructed)."""
    try:
        if loader == "rt":  # stage 1 of HyperPyYAML: ruamel's round-trip parser
            return ruamel.yaml.YAML().compose(text)
        if loader == "hyperpyyaml":  # stage 2: yaml.load(stream, Loader=ruamel.yaml.Loader)
            return ruamel.yaml.Loader(text).get_single_node()
        return yaml.compose(text, Loader=yaml.SafeLoader)  # a !tuple: yaml.load(Loader=yaml.Loader)
    except (yaml.YAMLError, ruamel.yaml.YAMLError) as error:
        if loader == "tuple":
            return None  # HyperPyYAML's own parse fails the same way: nothing is built
        raise UnsafeHyperparamsError(f"not a valid YAML file: {error}") from error


def _name_is_allowed(target, policy):
    """Whether ``!new:<target>`` (and the other object tags) is allowed, resolving the name the way
    HyperPyYAML does (``pydoc.locate``) but only after its text passed the policy."""
    parts = target.split(".")
    if not all(part.isidentifier() and not part.startswith("_") for part in parts):
        return False
    if not policy.allows(target):
        return False
    last_module = 0
    try:
        for index in range(1, len(parts) + 1):
            prefix = ".".join(parts[:index])
            obj = pydoc.locate(prefix)
            if obj is None:
                return False
            if inspect.ismodule(obj):
                if obj.__name__ != prefix:  # e.g. speechbrain_sqe.lobes.vqvae.torch
                    return False
                last_module = index
    except (pydoc.ErrorDuringImport, ImportError):  # the loader would fail too
        return False
    # A module-level object only: no module, no Class.method (Pretrainer.collect_files...).
    if inspect.ismodule(obj) or last_module != len(parts) - 1:
        return False
    if inspect.isclass(obj) or inspect.isfunction(obj):  # a re-export must be allowed where defined
        canonical = f"{obj.__module__}.{obj.__qualname__}"
        return canonical == target or policy.allows(canonical)
    module = getattr(obj, "__module__", None)  # C functions, dtypes, callable instances
    return not isinstance(module, str) or module.split(".")[0] == parts[0]


def _tuple_tags(value):
    """Tags inside a tuple-like string: HyperPyYAML builds ``!tuple``s with PyYAML's unsafe loader."""
    root = _compose("[" + value[1:-1] + "]", "tuple")
    return [f"{_shown(tag)} (inside a tuple)" for tag in _walk_tags(root) if tag not in _YAML_TAGS]


def _walk(root):
    """Every node of a composed graph once (aliases can make it cyclic)."""
    seen, stack = set(), [root] if root is not None else []
    while stack:
        node = stack.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node.value, list):
            for item in node.value:
                stack.extend(item if isinstance(item, tuple) else [item])


def _walk_tags(root):
    return [_tag(node) or "" for node in _walk(root)]


def _scan(root, policy, include_dir, seen_files):
    """The refused tags of a composed graph (``include_dir``: where ``!include:`` is resolved)."""
    refused = []
    for node in _walk(root):
        tag = _tag(node) or ""
        if tag.startswith(_OBJECT_TAGS):
            if not _name_is_allowed(tag.split(":", 1)[1], policy):
                refused.append(tag)
        elif tag.startswith("!include:"):
            refused.extend(_scan_include(tag, policy, include_dir, seen_files))
        elif tag not in _PLAIN_TAGS and tag not in _YAML_TAGS:
            refused.append(_shown(tag))  # !module:, !!python/..., unknown tags
        if isinstance(node.value, str) and (tag == "!tuple" or node.value.startswith("(")):
            refused.extend(_tuple_tags(node.value))
    return refused


def _scan_include(tag, policy, include_dir, seen_files):
    """Checks an ``!include:`` with the including file's policy, resolved as HyperPyYAML does."""
    if not policy.includes:
        return [tag]
    filename = tag[len("!include:"):]
    path = os.path.join(include_dir, filename) if include_dir is not None else filename
    if not os.path.isfile(path):
        return [f"{tag} (not found)"]
    real = os.path.realpath(path)
    if real in seen_files:
        return []
    seen_files.add(real)
    with open(path, encoding="utf-8") as stream:
        root = _compose(stream.read(), "rt")
    return [f"{bad} (in {filename})" for bad in _scan(root, policy, os.path.dirname(real), seen_files)]


def _fill_placeholders(tree):
    """Replaces ``!PLACEHOLDER`` values by a string, so a file can be checked before they are given."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in list(items):
        tag = getattr(value, "tag", None)
        if getattr(tag, "value", tag) == "!PLACEHOLDER":
            tree[key] = "PLACEHOLDER"
        else:
            _fill_placeholders(value)


def _resolved_text(text, path, overrides):
    """The text HyperPyYAML finally constructs: references, overrides and includes resolved."""
    def resolve(source):
        stream = _NamedText(source)
        if path is not None:
            stream.name = path
        return resolve_references(stream, overrides).getvalue()

    try:
        try:
            return resolve(text)
        except ValueError as error:
            if "PLACEHOLDER" not in str(error):
                raise
        # Not every placeholder is given (a recipe checked alone): the load would stop there, but
        # the rest is still checked.
        rt = ruamel.yaml.YAML()
        tree = rt.load(text)
        _fill_placeholders(tree)
        buffer = io.StringIO()
        rt.dump(tree, buffer)
        return resolve(buffer.getvalue())
    except Exception as error:
        raise UnsafeHyperparamsError(f"cannot be checked: {type(error).__name__}: {error}") from error


def _refusals(text, policy, path=None, overrides=None):
    """``[(where, tag)]`` for a HyperPyYAML text (``path``: its file, for ``!include:``)."""
    include_dir = os.path.dirname(os.path.realpath(path)) if path is not None else None
    seen = {os.path.realpath(path)} if path is not None else set()
    found = [(path, tag) for tag in _scan(_compose(text, "rt"), policy, include_dir, seen)]
    if isinstance(overrides, str) and overrides.strip():
        found += [("command-line overrides", tag)
                  for tag in _scan(_compose(overrides, "rt"), policy, include_dir, seen)]
    if found:  # refuse before resolving: resolving calls !applyref: and reads !include: files
        return found
    final = _compose(_resolved_text(text, path, overrides), "hyperpyyaml")
    return [(path, tag) for tag in _scan(final, policy, None, seen)]


def find_untrusted_tags(yaml_text, policy=HUB_POLICY, overrides=None):
    """Lists the tags of a HyperPyYAML text that ``policy`` does not allow.

    The text is checked as written and as HyperPyYAML finally constructs it (references and
    overrides resolved; ``!include:`` paths are relative to the working directory, as HyperPyYAML
    does for a string).

    Arguments
    ---------
    yaml_text : str
        The content of a hyperparams file.
    policy : HparamsPolicy
        ``HUB_POLICY`` (hub folders) or ``RECIPE_POLICY`` (training recipes).
    overrides : str or dict, optional
        Overrides applied on top (a YAML string is checked as well).

    Returns
    -------
    list of str
        The refused tags, in order of appearance (empty when the text is safe).

    Example
    -------
    >>> find_untrusted_tags("model: !new:torch.nn.Linear [2, 3]")
    []
    >>> find_untrusted_tags("x: !apply:os.system ['echo hi']")
    ['!apply:os.system']
    >>> find_untrusted_tags("x: !apply:torch.save [1, /tmp/x]")
    ['!apply:torch.save']
    >>> find_untrusted_tags("x: !apply:speechbrain_sqe.lobes.vqvae.torch.save [1, /tmp/x]")
    ['!apply:speechbrain_sqe.lobes.vqvae.torch.save']
    >>> find_untrusted_tags("x: (!!python/object/apply:os.getcwd [],)")
    ['!!python/object/apply:os.getcwd (inside a tuple)']
    >>> find_untrusted_tags("opt: !name:torch.optim.Adam")
    ['!name:torch.optim.Adam']
    >>> find_untrusted_tags("opt: !name:torch.optim.Adam", RECIPE_POLICY)
    []
    """
    return [tag for _, tag in _refusals(yaml_text, policy, overrides=overrides)]


def check_hyperparams_file(path, trust_hparams=False, policy=HUB_POLICY, overrides=None):
    """Refuses a hyperparams file that would construct objects ``policy`` does not allow.

    Files named by ``!include:`` are checked with the same policy (the hub policy refuses them).

    Arguments
    ---------
    path : str
        The hyperparams file.
    trust_hparams : bool
        Skip the check (the caller vouches for the file).
    policy : HparamsPolicy
        ``HUB_POLICY`` (default; hub folders) or ``RECIPE_POLICY`` (training recipes).
    overrides : str or dict, optional
        The overrides the file will be loaded with (``train.py``'s command-line overrides).

    Raises
    ------
    UnsafeHyperparamsError
        Naming the file, the refused tags and the way to trust it.

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
    try:
        found = _refusals(text, policy, path, overrides)
    except UnsafeHyperparamsError as error:
        raise UnsafeHyperparamsError(f"{path}: refusing to load: {error}. {_TRUST_HINT}") from error
    if found:
        places = {}
        for where, tag in found:
            places.setdefault(where, []).append(tag)
        listed = "; ".join(f"{', '.join(dict.fromkeys(tags))}" + ("" if where == path else f" (in {where})")
                           for where, tags in places.items())
        hint = (" (`!ref <a.b>` attribute references become !apply:getattr)"
                if any(tag.startswith("!apply:getattr") for _, tag in found) else "")
        raise UnsafeHyperparamsError(
            f"{path}: refusing to load: it would construct objects that the {policy.name} policy "
            f"does not allow: {listed}{hint}. {_TRUST_HINT}"
        )


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, corrupted, pickled code, wrong model);
    the message is one line naming the file."""


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
    FileNotFoundError
        If the file is missing.
    CheckpointError
        If the file is empty, truncated or corrupted, or holds more than tensors and plain
        containers (one line naming the file).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> sorted(load_state_dict_safely(path))
    ['bias', 'weight']
    >>> with open(path, "r+b") as stream:
    ...     _ = stream.truncate(100)
    >>> load_state_dict_safely(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_sqe.utils.safe_load.CheckpointError: ...model.ckpt: truncated or corrupted checkpoint (100 bytes; ...
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        text = str(error)
        if isinstance(error, pickle.UnpicklingError) and "GLOBAL " in text:  # pickled code, not damage
            first = next(line.strip() for line in text.splitlines() if "GLOBAL " in line)
            first = first[first.find("GLOBAL "):].split(" was not")[0].split(" whose")[0]
            raise CheckpointError(
                f"{path}: not loadable with weights_only=True ({first}). The file holds pickled "
                "objects beyond tensors; only load it if you trust its source."
            ) from error
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if "WeightsUnpickler error:" in text:  # the unpickler's own reason, not torch's advice
            first = next(line.strip() for line in text.split("WeightsUnpickler error:")[1].splitlines()
                         + ["unreadable"] if line.strip())
        first = first.split(". ")[0][:120]
        raise CheckpointError(
            f"{path}: truncated or corrupted checkpoint ({size} bytes; torch.load: {first}); "
            "restore or re-download it, or re-export the model"
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

    Raises
    ------
    CheckpointError
        When the file is damaged, or holds the weights of another model (one line naming it).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> safe_torch_recovery(torch.nn.Linear(2, 3), path)
    >>> safe_torch_recovery(torch.nn.Linear(4, 3), path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_sqe.utils.safe_load.CheckpointError: ...model.ckpt: does not fit Linear (size mismatch for weight: ...
    """
    del end_of_epoch
    state = load_state_dict_safely(path)
    try:
        obj.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        detail = lines[0] if lines else str(error).splitlines()[0]
        raise CheckpointError(f"{path}: does not fit {type(obj).__name__} ({detail[:200]})") from error
