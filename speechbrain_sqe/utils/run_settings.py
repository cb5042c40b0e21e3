"""A resumed run trains with the settings its command line says, or not at all.

An output folder that already holds checkpoints is resumed by SpeechBrain's Checkpointer, whatever
the YAML and its overrides say now: ``--lr=0.0005`` after a run at 1e-4 silently continues at 1e-4
(the recovered optimizer state holds the old learning rate), other changes mix with the old state. Before
anything is written, :func:`check_resume` compares the settings of this command (the YAML with its
overrides, references resolved) with the ``hyperparams.yaml`` that ``sb.create_experiment_directory``
saved for the checkpointed run, and refuses with the differing keys named, unless the user asks for
a new output folder (``new_run``) or accepts the change (``accept_changes``).

Allowed without asking: a larger ``number_of_epochs`` (more epochs of the same run), another
``output_folder`` (a run folder that was copied or moved) and another ``max_train_minutes`` (the
time budget of this process's training).
"""

import io
import logging
import os

import yaml
from hyperpyyaml import resolve_references
from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError

logger = logging.getLogger(__name__)

#: The keys that may change on resume; the comparison uses the checkpointed run's values for them.
EPOCHS_KEY = "number_of_epochs"
FOLDER_KEY = "output_folder"
BUDGET_KEY = "max_train_minutes"


class RunSettingsChanged(ValueError):
    """A checkpointed run would be resumed with other settings than it was trained with."""


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads a resolved HyperPyYAML file without building anything: a tagged node becomes
    ``{"!tag": value}``, so two files compare by what they say."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {"!" + suffix: value}


_TagTolerantLoader.add_multi_constructor("!", _tagged)


def read_settings(text):
    """The top-level settings of a resolved HyperPyYAML text (tags kept as ``{"!tag": value}``).

    Arguments
    ---------
    text : str
        YAML text with references resolved.

    Returns
    -------
    dict
        Key -> value.

    Example
    -------
    >>> read_settings("lr: 0.001\\nopt: !name:torch.optim.Adam\\n  lr: 0.001\\n")
    {'lr': 0.001, 'opt': {'!name:torch.optim.Adam': {'lr': 0.001}}}
    """
    return yaml.load(text, Loader=_TagTolerantLoader) or {}


def resolved_settings(hparams_file, overrides=None):
    """The settings of ``hparams_file`` with ``overrides`` (references resolved, nothing built)."""
    with open(hparams_file, encoding="utf-8") as stream:
        return read_settings(resolve_references(stream, overrides or {}).getvalue())


def overrides_dict(overrides):
    """Command-line overrides (SpeechBrain gives a YAML string) as a dict.

    Plain values load as plain Python values; an override holding a HyperPyYAML tag (e.g.
    ``--clean_augment='!new:...'``, already checked against the recipe policy by then) is kept
    as ruamel's round-trip nodes, whose tags ``load_hyperpyyaml`` reads as it reads the string.

    Example
    -------
    >>> overrides_dict("lr: 0.0005")
    {'lr': 0.0005}
    >>> tagged = overrides_dict("augment: !new:collections.OrderedDict\\n  a: 1")
    >>> tagged["augment"].tag.value, dict(tagged["augment"])
    ('!new:collections.OrderedDict', {'a': 1})
    """
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    try:
        return dict(YAML(typ="safe", pure=True).load(io.StringIO(overrides)) or {})
    except ConstructorError:  # a tag: keep it for HyperPyYAML
        return dict(YAML(typ="rt").load(io.StringIO(overrides)) or {})


def _is_plain(value):
    if isinstance(value, dict):
        return all(not str(key).startswith("!") and _is_plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    return True


def _show(value, limit=80):
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip() if not isinstance(
        value, (int, float, str, type(None))) else str(value)
    text = text.replace("\n", " ").removesuffix(" ...")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def differences(old, new):
    """The settings that differ between the checkpointed run and this one.

    Arguments
    ---------
    old, new : dict
        :func:`read_settings` of the two runs.

    Returns
    -------
    list of str
        ``"key: old in the checkpointed run, new now"`` for each plain setting that differs, then one
        entry naming the differing settings derived from them (objects built from the YAML); keys
        starting with ``__`` (seeding calls) are left out.

    Example
    -------
    >>> differences({"lr": 0.0001, "seed": 1}, {"lr": 0.0005, "seed": 1})
    ['lr: 0.0001 in the checkpointed run, 0.0005 now']
    """
    missing = object()
    plain, derived = [], []
    for key in sorted(set(old) | set(new), key=str):
        if str(key).startswith("__"):
            continue
        before, after = old.get(key, missing), new.get(key, missing)
        if before == after:
            continue
        if before is missing:
            plain.append(f"{key}: absent in the checkpointed run, {_show(after)} now")
        elif after is missing:
            plain.append(f"{key}: {_show(before)} in the checkpointed run, absent now")
        elif _is_plain(before) and _is_plain(after):
            plain.append(f"{key}: {_show(before)} in the checkpointed run, {_show(after)} now")
        else:
            derived.append(str(key))
    if derived:
        plain.append(("built from them: " if plain else "") + ", ".join(derived)
                     + (" differ" if plain else " differ (the YAML changed)"))
    return plain


def has_checkpoints(save_folder):
    """Whether ``save_folder`` holds a SpeechBrain checkpoint (a ``CKPT+...`` folder)."""
    return os.path.isdir(save_folder) and any(name.startswith("CKPT+") for name in os.listdir(save_folder))


def new_run_folder(folder):
    """The first ``<folder>_run<n>`` (n >= 2) that holds no run yet.

    Example
    -------
    >>> import tempfile
    >>> new_run_folder(os.path.join(tempfile.mkdtemp(), "out")).endswith("out_run2")
    True
    """
    number = 2
    while os.path.exists(os.path.join(f"{folder}_run{number}", "hyperparams.yaml")):
        number += 1
    return f"{folder}_run{number}"


def check_resume(hparams_file, overrides, new_run=False, accept_changes=False):
    """Compares this command's settings with the checkpointed run in its output folder.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict
        The command-line overrides.
    new_run : bool
        When the output folder holds a checkpointed run, train in a new folder
        (:func:`new_run_folder`) instead.
    accept_changes : bool
        Resume with the changed settings (logged as a warning).

    Returns
    -------
    dict
        The overrides to load the recipe with (``output_folder`` changed by ``new_run``).

    Raises
    ------
    RunSettingsChanged
        The folder holds a checkpointed run with other settings, and neither option was given.
    """
    overrides = overrides_dict(overrides)
    new = resolved_settings(hparams_file, overrides)
    folder = new.get(FOLDER_KEY)
    saved = os.path.join(str(folder), "hyperparams.yaml")
    if folder is None or not os.path.exists(saved) or not has_checkpoints(str(new.get("save_folder", ""))):
        return overrides
    if new_run:
        moved = new_run_folder(str(folder))
        logger.warning("%s holds a checkpointed run; --new_run: this run writes to %s", folder, moved)
        return {**overrides, FOLDER_KEY: moved}
    with open(saved, encoding="utf-8") as stream:
        old = read_settings(stream.read())
    # Compare with the checkpointed run's folder and epoch count: moving a run folder and asking for
    # more epochs or another time budget are not changes of the run.
    same = {key: old[key] for key in (FOLDER_KEY, EPOCHS_KEY) if key in old}
    now = resolved_settings(hparams_file, {**overrides, **same})
    changed = differences({k: v for k, v in old.items() if k != BUDGET_KEY},
                          {k: v for k, v in now.items() if k != BUDGET_KEY})
    if EPOCHS_KEY in old and isinstance(new.get(EPOCHS_KEY), int) and new[EPOCHS_KEY] < old[EPOCHS_KEY]:
        changed.insert(0, f"{EPOCHS_KEY}: {old[EPOCHS_KEY]} in the checkpointed run, {new[EPOCHS_KEY]} now "
                          "(fewer epochs; more are allowed)")
    if not changed:
        return overrides
    if accept_changes:
        logger.warning("%s: resuming with changed settings (--resume_with_changes): %s", saved, "; ".join(changed))
        return overrides
    raise RunSettingsChanged(
        f"{saved}: this output folder holds a checkpointed run with other settings: {'; '.join(changed)}. "
        f"Rerun with --new_run to train from scratch in {new_run_folder(str(folder))}, or with "
        "--resume_with_changes to resume this run with the new settings"
    )
