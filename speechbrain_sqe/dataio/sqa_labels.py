"""Label manifests of the learned quality predictor (``hparams/sqa.yaml``): reading them, and a small
label set made from the embedded corpus.

A label manifest is a SpeechBrain CSV per split (``train.csv``, ``valid.csv``, ``test.csv`` in one
``label_folder``) with the columns :data:`LABEL_COLUMNS`::

    ID, duration, wav, system, condition, speaker, pesq_wb, stoi, estoi, si_sdr, dnsmos_ovrl, distillmos

``wav`` is the scored (degraded or processed) file, ``system`` what made it (``clean``, ``noisy``, an
enhancer's name), ``condition`` the degradation, ``speaker`` the talker; an empty metric cell is a
missing label (NaN in training: the loss leaves it out). :func:`read_label_manifest` checks a file
and names the file, row and column of anything wrong. The preparations here also write a last
column ``clean_wav``, the clean reference of the row's labels (what
``recipes/SQA/add_enhancer_outputs.py`` needs); it is optional: a file without it is read, and
resumed without it (:func:`label_columns`).

Paths: a file inside the label folder (the audio made for it) is written relative to that folder,
any other (the source corpora's clean files) absolute (:func:`label_path_cell`); readers resolve a
relative cell against the CSV's folder (:func:`resolve_label_path`). A label set can so be moved or
copied whole; label sets written before this (absolute paths everywhere) read as they did.

:func:`prepare_embedded_sqa_labels` is the stand-in label set until the full label-set recipe (many
degradations and enhancement systems) exists: for each clean utterance of the embedded corpus (the
training voices for ``train``, the held-out voices of the valid/test pairs for ``valid``/``test``)
it lists the clean file itself, the corpus's own noisy mixture (valid/test), and
``degraded_per_file`` new mixtures with a noise of the split's noise list at SNRs taken in turn from
``snrs``; each is labelled against its clean reference by the project's metric runner
(:func:`~speechbrain_sqe.metrics.runner.evaluate_pairs`). Metrics that cannot run here (DNSMOS or
Distill-MOS without the ``eval`` extra) are left empty, with a warning. It is resumable: rows already
in a split's CSV are kept, not recomputed (a kill loses at most the chunk being labelled); a folder
made with other settings is refused.
"""

import csv
import hashlib
import json
import logging
import math
import os

import numpy as np

from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.embedded import prepare_embedded_corpus
from speechbrain_sqe.dataio.mixing import make_pair
from speechbrain_sqe.dataio.resumable_csv import ResumableCSV, write_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_COLUMNS",
    "LABEL_COLUMNS_WITH_REFERENCE",
    "LABEL_METRICS",
    "REFERENCE_COLUMN",
    "LabelManifestError",
    "label_columns",
    "label_items",
    "label_manifests",
    "label_path_cell",
    "prepare_embedded_sqa_labels",
    "prepare_sqa_labels",
    "read_label_manifest",
    "resolve_label_path",
]

#: Columns of a label manifest, in order.
LABEL_COLUMNS = ("ID", "duration", "wav", "system", "condition", "speaker",
                 "pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "distillmos")
#: The metric columns (labels) of a label manifest.
LABEL_METRICS = LABEL_COLUMNS[6:]
#: The optional last column: the clean reference the labels were computed against (what
#: ``recipes/SQA/add_enhancer_outputs.py`` enhances against); a file without it is still read.
REFERENCE_COLUMN = "clean_wav"
#: The columns written by the preparations here (:data:`LABEL_COLUMNS` + ``clean_wav``).
LABEL_COLUMNS_WITH_REFERENCE = LABEL_COLUMNS + (REFERENCE_COLUMN,)
SPLITS = ("train", "valid", "test")
STAMP = "sqa_labels.json"
_CHUNK = 32


class LabelManifestError(ValueError):
    """A label manifest that cannot be used (missing, a column missing, a cell not a number)."""


def label_manifests(label_folder):
    """The label manifest of each split: ``{"train": <folder>/train.csv, "valid": ..., "test": ...}``.

    Arguments
    ---------
    label_folder : str
        The folder holding the CSVs.

    Returns
    -------
    dict
        Paths by split.

    Example
    -------
    >>> label_manifests("labels")["valid"]
    'labels/valid.csv'
    """
    return {split: os.path.join(label_folder, f"{split}.csv") for split in SPLITS}


def label_path_cell(path, label_folder):
    """How a label CSV stores a file path: relative to the label folder for a file inside it (the
    folder can then be moved or copied), absolute for any other (source corpora stay where they are).

    Arguments
    ---------
    path : str
        The file.
    label_folder : str
        The folder of the label CSVs.

    Returns
    -------
    str
        The cell.

    Example
    -------
    >>> label_path_cell("/data/labels/train/audio/a.wav", "/data/labels")
    'train/audio/a.wav'
    >>> label_path_cell("/corpus/clean/a.wav", "/data/labels")
    '/corpus/clean/a.wav'
    """
    absolute, folder = os.path.abspath(path), os.path.abspath(label_folder)
    if os.path.commonpath([absolute, folder]) == folder:
        return os.path.relpath(absolute, folder)
    return absolute


def resolve_label_path(cell, label_folder):
    """The file a label CSV's path cell names (the inverse of :func:`label_path_cell`): a relative
    cell is relative to the label folder; an absolute or empty one is returned as it is.

    Arguments
    ---------
    cell : str
        The cell.
    label_folder : str
        The folder of the CSV it was read from.

    Returns
    -------
    str
        The path.

    Example
    -------
    >>> resolve_label_path("train/audio/a.wav", "/data/labels")
    '/data/labels/train/audio/a.wav'
    >>> resolve_label_path("/corpus/clean/a.wav", "/data/labels"), resolve_label_path("", "/data/labels")
    ('/corpus/clean/a.wav', '')
    """
    if not cell or os.path.isabs(cell):
        return cell
    return os.path.normpath(os.path.join(os.path.abspath(label_folder), cell))


def read_label_manifest(path, metrics=LABEL_METRICS):
    """Reads and checks a label manifest; returns its rows with the labels as floats (NaN: missing).

    Arguments
    ---------
    path : str
        The CSV.
    metrics : sequence of str
        The label columns it must have.

    Returns
    -------
    list of dict
        Rows with ``ID``, ``duration`` (float), ``wav`` (resolved: :func:`resolve_label_path`) and each
        metric as a float (NaN where empty).

    Raises
    ------
    LabelManifestError
        Naming the file and the column (and row) at fault.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> _ = open(path, "w").write("ID,duration,wav,stoi\\na,1.5,a.wav,0.9\\nb,2.0,b.wav,\\n")
    >>> [(row["ID"], row["stoi"]) for row in read_label_manifest(path, ["stoi"])]
    [('a', 0.9), ('b', nan)]
    >>> read_label_manifest(path, ["stoi", "pesq_wb"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.sqa_labels.LabelManifestError: .../valid.csv: no column 'pesq_wb' (columns: ID, duration, wav, stoi)...
    """
    if not os.path.isfile(path):
        raise LabelManifestError(f"{path}: label manifest not found (give label_folder= a folder with "
                                 f"{', '.join(f'{s}.csv' for s in SPLITS)})")
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        for column in ("ID", "duration", "wav", *metrics):
            if column not in columns:
                raise LabelManifestError(
                    f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'}); a label manifest "
                    f"has {', '.join(LABEL_COLUMNS)}")
        rows, seen = [], set()
        for row in reader:
            line = reader.line_num
            if row["ID"] in seen:
                raise LabelManifestError(f"{path}: row {line}: ID {row['ID']!r} repeated (column 'ID')")
            seen.add(row["ID"])
            parsed = {"ID": row["ID"], "wav": resolve_label_path(row["wav"], os.path.dirname(path))}
            for column in ("duration", *metrics):
                text = (row.get(column) or "").strip()
                if column != "duration" and text == "":
                    parsed[column] = math.nan
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise LabelManifestError(
                        f"{path}: row {line}: column {column!r} holds {text!r}, not a number"
                        + ("" if column == "duration" else " (leave the cell empty for a missing label)")) from None
                if not math.isfinite(value):
                    raise LabelManifestError(f"{path}: row {line}: column {column!r} holds {text!r}, not a finite "
                                             "number (leave the cell empty for a missing label)")
                parsed[column] = value
            if not row["wav"]:
                raise LabelManifestError(f"{path}: row {line}: column 'wav' is empty")
            rows.append(parsed)
    if not rows:
        raise LabelManifestError(f"{path}: no rows")
    return rows


def _noise_family(noise_id):
    """``noise_train_white_003`` -> ``white`` (the embedded corpus's noise names)."""
    parts = noise_id.split("_")
    return parts[2] if len(parts) >= 4 else noise_id


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _plan(manifests, split, snrs, degraded_per_file, max_files, seed):
    """The items of one split: ``(row, source)`` where source says how to make the audio."""
    sources = _read_csv(manifests["train_clean" if split == "train" else split])
    if max_files is not None:
        sources = sources[: int(max_files)]
    noises = _read_csv(manifests[f"noise_{split}"])
    items = []
    for index, source in enumerate(sources):
        clean = source["wav"] if split == "train" else source["clean_wav"]
        speaker = source.get("voice", "")
        base = {"duration": float(source["duration"]), "speaker": speaker}
        items.append(({**base, "ID": f"{source['ID']}_clean", "wav": clean, "system": "clean",
                       "condition": "clean"}, clean, None))
        if split != "train":
            condition = f"corpus_{source.get('noise_type', 'noise')}_snr{float(source.get('snr', 'nan')):g}"
            if source.get("reverb") == "True":
                condition += "_reverb"
            items.append(({**base, "ID": f"{source['ID']}_corpus", "wav": source["noisy_wav"], "system": "noisy",
                           "condition": condition}, clean, None))
        for k in range(int(degraded_per_file)):
            snr = float(snrs[(index * int(degraded_per_file) + k) % len(snrs)])
            digest = hashlib.sha256(f"{seed}:{split}:{source['ID']}:{k}".encode()).digest()
            noise = noises[int.from_bytes(digest[:4], "little") % len(noises)]
            family = _noise_family(noise["ID"])
            uid = f"{source['ID']}_{family}_snr{snr:g}_{k}"
            items.append(({**base, "ID": uid, "system": "noisy", "condition": f"{family}_snr{snr:g}"},
                          clean, (noise["wav"], snr, int.from_bytes(digest[4:8], "little"))))
    return items


def _make_audio(path, clean_path, recipe):
    """Writes the mixture of a planned item (clean + a noise at an SNR, from a random offset)."""
    noise_path, snr, noise_seed = recipe
    clean = load_audio(clean_path, 16000, warn=False).numpy()
    noise = load_audio(noise_path, 16000, warn=False).numpy()
    rng = np.random.default_rng(noise_seed)
    _, noisy = make_pair(clean, _offset(noise, rng), snr)  # scale-invariant metrics: the clean file stays the reference
    save_audio(path, noisy, 16000)


def _offset(noise, rng):
    """The noise from a random start, wrapped around (another stretch of it for each item)."""
    start = int(rng.integers(0, max(1, noise.shape[0])))
    return np.concatenate([noise[start:], noise[:start]])


def prepare_embedded_sqa_labels(label_folder, corpus_folder, seed=1234, train_minutes=30.0, valid_pairs=48,
                                test_pairs=96, corpus_options=None, snrs=(-5, 0, 5, 10, 20),
                                degraded_per_file=2, max_train_files=200, label_metrics=LABEL_METRICS,
                                metric_jobs=2, num_workers=2, skip_prep=False):
    """Makes (or completes) the label set of the embedded corpus; returns its manifests by split.

    Usable as a recipe's ``prepare_data`` (plain keyword arguments, ``skip_prep``).

    Arguments
    ---------
    label_folder : str
        Where ``{train,valid,test}.csv``, the made mixtures (``<split>/audio/``) and the stamp go.
    corpus_folder : str
        The embedded corpus's folder (made if needed, with the arguments below).
    seed : int
        The corpus's seed, and the seed of the noise picks.
    train_minutes, valid_pairs, test_pairs, corpus_options
        The embedded corpus's settings (``corpus_options``: more keywords of
        :func:`~speechbrain_sqe.dataio.embedded.prepare_embedded_corpus`).
    snrs : sequence of float
        SNRs (dB) of the new mixtures, taken in turn.
    degraded_per_file : int
        New mixtures per clean utterance.
    max_train_files : int, optional
        At most this many training utterances (None: all); valid and test use every pair.
    label_metrics : sequence of str
        Metrics computed (among :data:`LABEL_METRICS`; the others' cells stay empty).
    metric_jobs : int
        Metric worker processes.
    num_workers : int
        Processes generating the corpus.
    skip_prep : bool
        Only return the manifest paths.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.
    """
    from speechbrain_sqe.metrics.registry import split_available

    manifests = label_manifests(label_folder)
    if skip_prep:
        return manifests
    unknown = [name for name in label_metrics if name not in LABEL_METRICS]
    if unknown:
        raise ValueError(f"label_metrics {unknown} are not label columns ({', '.join(LABEL_METRICS)})")
    corpus = prepare_embedded_corpus(corpus_folder, seed=seed, train_minutes=train_minutes,
                                     valid_pairs=valid_pairs, test_pairs=test_pairs, num_workers=num_workers,
                                     **dict(corpus_options or {}))
    config = {"corpus_folder": os.path.abspath(corpus_folder), "seed": seed, "snrs": [float(s) for s in snrs],
              "degraded_per_file": int(degraded_per_file), "max_train_files": max_train_files,
              "label_metrics": list(label_metrics)}
    _check_stamp(label_folder, config)
    metrics, reasons = split_available(list(label_metrics))
    for name, why in reasons.items():
        logger.warning("SQA labels: %s left empty: %s", name, why)
    for split in SPLITS:
        items = _plan(corpus, split, snrs, degraded_per_file, max_train_files if split == "train" else None, seed)
        label_items(label_folder, split, items, metrics, metric_jobs, _make_audio)
    return manifests


def label_columns(path):
    """The columns a label CSV is written with: :data:`LABEL_COLUMNS` plus ``clean_wav``, or without
    ``clean_wav`` when resuming a file made before that column existed.

    Arguments
    ---------
    path : str
        The CSV (it may not exist yet).

    Returns
    -------
    tuple of str
        The columns.

    Example
    -------
    >>> label_columns("/nonexistent.csv")[-1]
    'clean_wav'
    """
    if os.path.isfile(path):
        with open(path, newline="", encoding="utf-8") as stream:
            header = next(csv.reader(stream), None)
        if header is not None and tuple(header) == LABEL_COLUMNS:
            return LABEL_COLUMNS
    return LABEL_COLUMNS_WITH_REFERENCE


def label_items(label_folder, split, items, metrics, metric_jobs, make_audio, progress=False):
    """Labels the planned items of a split into ``<label_folder>/<split>.csv``, resumably.

    Rows already in the CSV are kept, not recomputed; the others are made (``make_audio(path, clean,
    recipe)`` writes ``<label_folder>/<split>/audio/<ID>.wav`` for an item with a recipe, unless the
    file exists: audio is written atomically) and scored against their clean reference by
    :func:`~speechbrain_sqe.metrics.runner.evaluate_pairs`, a chunk at a time (a kill loses at most
    one chunk). The CSV is rewritten at the end in plan order.

    Arguments
    ---------
    label_folder : str
        The label set's folder.
    split : str
        ``train``, ``valid`` or ``test``.
    items : list of (dict, str, object)
        ``(row, clean reference path, recipe or None)``; a row without recipe scores its own ``wav``.
    metrics : list of str
        The metrics computed (the other label cells stay empty).
    metric_jobs : int
        Metric worker processes.
    make_audio : callable
        ``make_audio(path, clean, recipe)``.
    progress : bool
        Show a tqdm bar over the chunks.

    Returns
    -------
    str
        The CSV's path.
    """
    from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

    path = label_manifests(label_folder)[split]
    table = ResumableCSV(path, list(label_columns(path)), key="ID", resume=True)
    pending = [item for item in items if item[0]["ID"] not in table.done]
    if pending:
        logger.info("SQA labels, %s: %d of %d items to label (%s)", split, len(pending), len(items),
                    ", ".join(metrics))
    starts = range(0, len(pending), _CHUNK)
    if progress and pending:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"SQA labels ({split}, chunks of {_CHUNK})")
    for start in starts:
        chunk = pending[start : start + _CHUNK]
        for row, clean, recipe in chunk:
            if recipe is not None:
                row["wav"] = os.path.abspath(os.path.join(label_folder, split, "audio", f"{row['ID']}.wav"))
                if not os.path.isfile(row["wav"]):
                    make_audio(row["wav"], clean, recipe)
        pairs = [Pair(row["ID"], clean, row["wav"]) for row, clean, _ in chunk]
        scored, failures = evaluate_pairs(pairs, metrics, 16000, jobs=metric_jobs, progress=False) \
            if metrics else ([], [])
        by_id = {result["file"]: result for result in scored}
        for failure in failures:
            logger.warning("SQA labels: %s: %s (%s)", failure.file, failure.reason, failure.message)
        for row, clean, _ in chunk:
            labels = by_id.get(row["ID"], {})
            table.append({**row, "wav": label_path_cell(row["wav"], label_folder),
                          "clean_wav": label_path_cell(clean, label_folder), **{name: labels.get(name) for name in metrics}})
    table.finalize([item[0]["ID"] for item in items])
    return path


def _check_stamp(label_folder, config):
    path = os.path.join(label_folder, STAMP)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as stream:
            old = json.load(stream)
        differ = sorted(key for key in set(old) | set(config) if old.get(key) != config.get(key))
        if differ:
            raise ValueError(f"{label_folder}: label set made with other settings ({', '.join(differ)}); "
                             "give another label_folder or remove it")
        return
    write_atomic(path, json.dumps(config, indent=2) + "\n")


#: Where a label set comes from: made here from the embedded corpus or from real speech (a speech
#: manifest and noise / room lists: :mod:`~speechbrain_sqe.dataio.real_sqa_labels`), or a folder of
#: CSVs already made.
LABEL_SOURCES = ("embedded", "manifest", "folder")


def prepare_sqa_labels(label_folder, label_source="embedded", metrics=(), skip_prep=False, **options):
    """The recipe's ``prepare_data``: the label manifests of ``label_folder``.

    Arguments
    ---------
    label_folder : str
        The folder of ``train.csv``, ``valid.csv``, ``test.csv``.
    label_source : str
        ``embedded``: make (or complete) them from the embedded corpus
        (:func:`prepare_embedded_sqa_labels`, with ``options``); ``manifest``: from real speech
        (:func:`~speechbrain_sqe.dataio.real_sqa_labels.prepare_real_sqa_labels`: ``source_folder``
        the speech manifest, ``noise_folder`` / ``rir_folder`` the lists); ``folder``: use the CSVs
        already there (another recipe's labels), only checked.
    metrics : sequence of str
        The label columns the model needs (checked in every CSV).
    skip_prep : bool
        Only return the manifest paths.
    **options : dict
        Keywords of the chosen preparation; those it does not take are left out (one recipe passes
        the options of every source; ignored for ``folder``).

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.

    Example
    -------
    >>> prepare_sqa_labels("labels", "mturk")
    Traceback (most recent call last):
    ...
    ValueError: unknown label_source 'mturk'; one of embedded, manifest, folder
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"unknown label_source {label_source!r}; one of {', '.join(LABEL_SOURCES)}")
    if skip_prep:
        return label_manifests(label_folder)
    if label_source in ("embedded", "manifest"):
        import inspect

        if label_source == "embedded":
            prepare = prepare_embedded_sqa_labels
        else:
            from speechbrain_sqe.dataio.real_sqa_labels import (
                prepare_real_sqa_labels as prepare,
            )
        accepted = inspect.signature(prepare).parameters
        manifests = prepare(label_folder, **{k: v for k, v in options.items() if k in accepted})
    else:
        manifests = label_manifests(label_folder)
    for path in manifests.values():
        read_label_manifest(path, list(metrics))  # a bad file stops here, naming the file and column
    return manifests
