"""The ``manifest`` corpus: a CSV of the user's clean speech (path, speaker, split) plus noise and room lists.

A user with a clean corpus of their own describes it in one CSV::

    path,speaker,split
    alice/001.flac,alice,train
    bob/007.wav,bob,test

(``path`` relative to the CSV's folder or absolute; other columns are ignored; without a ``split``
column the speakers are split here, seeded). Noise and room impulse responses come as lists with
their own splits (``path,split``, with an optional ``kind`` column naming ``noise`` or ``rir`` rows,
so one file such as ``../shared/data/real/splits.csv`` can serve both)::

    python train.py hparams/vqscore.yaml --corpus=manifest --source_folder=speech/manifest.csv \\
        --noise_folder=real/splits.csv --rir_folder=real/splits.csv --data_folder=data/manifest

It is prepared into the same SpeechBrain manifests as every other corpus (the keys of
:func:`~speechbrain_sqe.dataio.folders.manifest_paths`), with the mixing code of
:mod:`~speechbrain_sqe.dataio.folders`:

- splits are by speaker: a speaker listed in two splits is a bad row;
- ``train_clean``: the training speakers' files (16 kHz mono files in place, others resampled);
- ``valid`` pairs: validation speakers mixed with **training** noises and rooms (a ``valid`` split
  in a list is used when present): the checkpoint is chosen without hearing any test condition;
- ``test`` pairs: test speakers, test noises and test rooms only;
- without a noise (room) list, synthetic noise families (rooms) are used; with one,
  ``synthetic_train_noise`` > 0 adds that many synthetic files per family
  (:data:`~speechbrain_sqe.dataio.noise.NOISE_FAMILIES`, babble from training speakers) to the
  TRAINING noise only: a short list of real noises (8 files in ``../shared/data/real``) is too
  narrow a training set for noises never heard (README, BSSE); valid and test keep their own.

Bad rows (a missing file, an unknown split, an empty speaker, a speaker in two splits) are all
reported in one error naming the CSV and its line numbers, or skipped with a warning
(``skip_bad_rows=True``). The output goes into a sub-folder of ``data_folder`` named after the
configuration (manifest, lists, seed, sizes, SNRs...), so two configurations never overwrite
each other; re-running one skips what exists.
"""

import csv
import hashlib
import json
import logging
import os

from speechbrain_sqe.dataio.files import AUDIO_EXTENSIONS
from speechbrain_sqe.dataio.folders import (
    SNRS,
    SPLITS,
    FolderPlanner,
    manifest_paths,
    run_plan,
    split_items,
)

logger = logging.getLogger(__name__)

STAMP_NAME = "manifest_prep.json"
#: Kind values of a source list's optional ``kind`` column.
KINDS = {"noise": ("noise",), "rir": ("rir", "rirs", "room")}


class ManifestError(ValueError):
    """A manifest or source list that cannot be used; the message names the file and its bad rows."""


def _read_rows(csv_path, required):
    if not os.path.isfile(csv_path):
        raise ManifestError(f"{csv_path}: file not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ManifestError(f"{csv_path}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'})")
        # Line numbers as an editor shows them (the header is line 1).
        return [(index + 2, {k.strip(): (v or "").strip() for k, v in row.items() if k}) for index, row in enumerate(reader)]


def _resolve(path, csv_path):
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(csv_path)), path))


def _check_file(path):
    if not os.path.isfile(path):
        return "file not found"
    if not path.lower().endswith(AUDIO_EXTENSIONS):
        return f"not an audio file ({', '.join(AUDIO_EXTENSIONS)})"
    return None


def _report(csv_path, problems, skip_bad_rows, what):
    if not problems:
        return
    listed = "; ".join(f"line {line}: {problem}" for line, problem in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    message = f"{csv_path}: {len(problems)} bad {what} row(s): {listed}{more}"
    if not skip_bad_rows:
        raise ManifestError(message)
    logger.warning("%s; skipped", message)


def read_speech_manifest(csv_path, seed=1234, valid_fraction=0.1, test_fraction=0.1, skip_bad_rows=False):
    """Reads a clean-speech manifest (``path, speaker[, split]``) and checks every row.

    Arguments
    ---------
    csv_path : str
        The CSV; ``path`` is absolute or relative to its folder.
    seed : int
        Seed of the speaker split when there is no ``split`` column.
    valid_fraction, test_fraction : float
        Shares of the speakers held out when there is no ``split`` column.
    skip_bad_rows : bool
        Skip bad rows with a warning instead of raising.

    Returns
    -------
    dict
        ``split -> list of (absolute path, speaker)``, sorted by path.

    Raises
    ------
    ManifestError
        Naming the file and the bad rows (missing file, unknown split, empty speaker, a speaker in two
        splits), or a split without any file.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "m.csv"), "w") as f:
    ...     _ = f.write("path,speaker,split\\nnone.wav,a,train\\n")
    >>> read_speech_manifest(os.path.join(folder, "m.csv"))
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.manifest_corpus.ManifestError: ...m.csv: 1 bad speech row(s): line 2: file not found (none.wav)
    """
    rows = _read_rows(csv_path, ("path", "speaker"))
    has_split = bool(rows) and "split" in rows[0][1]
    problems, entries, split_of = [], [], {}
    for line, row in rows:
        if not row.get("path"):
            problems.append((line, "empty path"))
            continue
        path = _resolve(row["path"], csv_path)
        problem = _check_file(path)
        if problem:
            problems.append((line, f"{problem} ({row['path']})"))
            continue
        if not row.get("speaker"):
            problems.append((line, f"empty speaker ({row['path']})"))
            continue
        split = row.get("split", "") if has_split else ""
        if has_split and split not in SPLITS:
            problems.append((line, f"split {split!r} is not one of {', '.join(SPLITS)} ({row['path']})"))
            continue
        if has_split:
            first = split_of.setdefault(row["speaker"], (split, line))
            if first[0] != split:
                problem = f"speaker {row['speaker']!r} is in {split} here and in {first[0]} on line {first[1]}"
                problems.append((line, problem + " (splits are by speaker)"))
                continue
        entries.append((path, row["speaker"], split))
    _report(csv_path, problems, skip_bad_rows, "speech")
    if not has_split:  # split the speakers here, seeded
        speakers = sorted({speaker for _, speaker, _ in entries})
        if len(speakers) < 3:
            raise ManifestError(f"{csv_path}: {len(speakers)} speaker(s); at least 3 are needed to split by speaker")
        parts = split_items(speakers, seed, [valid_fraction, test_fraction])
        split_of = {speaker: split for split, part in zip(SPLITS, parts) for speaker in part}
        entries = [(path, speaker, split_of[speaker]) for path, speaker, _ in entries]
    by_split = {split: sorted((p, s) for p, s, sp in entries if sp == split) for split in SPLITS}
    empty = [split for split in SPLITS if not by_split[split]]
    if empty:
        raise ManifestError(f"{csv_path}: no usable file in split(s) {', '.join(empty)}")
    return by_split


def read_source_list(csv_path, kind, skip_bad_rows=False):
    """Reads a noise or RIR list (``path, split[, kind]``); a list without ``valid`` lends it ``train``.

    Arguments
    ---------
    csv_path : str
        The CSV; ``path`` is absolute or relative to its folder.
    kind : str
        ``noise`` or ``rir``: with a ``kind`` column, only those rows are read.
    skip_bad_rows : bool
        Skip bad rows with a warning instead of raising.

    Returns
    -------
    dict
        ``split -> sorted list of absolute paths`` (``valid`` = ``train`` when the list has none).

    Raises
    ------
    ManifestError
        Naming the file and the bad rows, or when ``train`` or ``test`` is empty.

    Example
    -------
    >>> read_source_list("/nonexistent/list.csv", "noise")
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.manifest_corpus.ManifestError: /nonexistent/list.csv: file not found
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    rows = _read_rows(csv_path, ("path", "split"))
    problems, by_split = [], {split: [] for split in SPLITS}
    for line, row in rows:
        if "kind" in row and row["kind"].lower() not in KINDS[kind]:
            continue
        path = _resolve(row.get("path", ""), csv_path)
        problem = "empty path" if not row.get("path") else _check_file(path)
        if problem:
            problems.append((line, f"{problem} ({row.get('path', '')})"))
        elif row["split"] not in SPLITS:
            problems.append((line, f"split {row['split']!r} is not one of {', '.join(SPLITS)} ({row['path']})"))
        else:
            by_split[row["split"]].append(path)
    _report(csv_path, problems, skip_bad_rows, kind)
    empty = [split for split in ("train", "test") if not by_split[split]]
    if empty:
        raise ManifestError(f"{csv_path}: no {kind} file in split(s) {', '.join(empty)}")
    if not by_split["valid"]:  # validation conditions come from training noises and rooms
        by_split["valid"] = list(by_split["train"])
    return {split: sorted(paths) for split, paths in by_split.items()}


def config_folder_name(manifest, config):
    """The sub-folder of one configuration: the manifest's name and a hash of the configuration.

    Arguments
    ---------
    manifest : str
        The speech manifest.
    config : dict
        Everything that changes the prepared data (paths and options).

    Returns
    -------
    str
        ``manifest-<csv stem>-<10 hex digits>``.

    Example
    -------
    >>> a = config_folder_name("/d/speech.csv", {"seed": 1})
    >>> a.startswith("manifest-speech-"), a == config_folder_name("/d/speech.csv", {"seed": 2})
    (True, False)
    """
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(manifest))[0]
    return f"manifest-{stem}-{digest}"


def prepare_from_manifest(
    data_folder,
    manifest,
    noise_list=None,
    rir_list=None,
    seed=1234,
    valid_pairs=48,
    test_pairs=96,
    snrs=SNRS,
    reverb=True,
    t60_range=(0.2, 1.2),
    noise_per_family=2,
    noise_seconds=10.0,
    synthetic_rirs=10,
    valid_fraction=0.1,
    test_fraction=0.1,
    skip_bad_rows=False,
    num_workers=2,
    skip_prep=False,
    synthetic_train_noise=0,
):
    """Prepares the manifests of a ``manifest`` corpus (see the module doc).

    Arguments
    ---------
    data_folder : str
        Parent of the configuration's output folder.
    manifest : str
        The clean-speech CSV (``path, speaker[, split]``).
    noise_list, rir_list : str, optional
        Noise / RIR lists (``path, split[, kind]``); None for synthetic noise / rooms.
    seed : int
        Seed of the mixtures (and of the speaker split without a ``split`` column).
    valid_pairs, test_pairs : int
        Number of noisy/clean pairs; files are reused under other conditions when fewer.
    snrs : sequence of float
        SNR grid in dB.
    reverb : bool
        Make half of the pairs reverberant (reference: the dry speech, as every corpus here).
    t60_range : (float, float)
        T60 range of synthetic rooms (without a RIR list).
    noise_per_family, noise_seconds, synthetic_rirs
        Synthetic noise and rooms (without lists), as in
        :func:`~speechbrain_sqe.dataio.folders.prepare_from_folders`.
    valid_fraction, test_fraction : float
        Speaker shares held out when the manifest has no ``split`` column.
    skip_bad_rows : bool
        Skip bad rows with a warning instead of raising.
    num_workers : int
        Worker processes.
    skip_prep : bool
        Only return the manifest paths.
    synthetic_train_noise : int
        With a noise list: synthetic files per noise family added to the training noise
        (``noise_seconds`` each; babble from the training speakers). 0: the list's noise only.

    Returns
    -------
    dict
        Manifest paths: ``train_clean, valid, test, noise_*, rirs_*`` (``unpaired_noisy`` None).

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> lines = ["path,speaker,split"]
    >>> for k, split in enumerate(["train", "train", "valid", "test"]):
    ...     save_audio(os.path.join(root, f"s{k}.wav"), np.sin(np.arange(8000) / (3 + k)) * 0.1, 16000)
    ...     lines.append(f"s{k}.wav,spk{k},{split}")
    >>> _ = open(os.path.join(root, "m.csv"), "w").write("\\n".join(lines) + "\\n")
    >>> paths = prepare_from_manifest(tempfile.mkdtemp(), os.path.join(root, "m.csv"), valid_pairs=2,
    ...     test_pairs=2, noise_per_family=0, synthetic_rirs=1, num_workers=1)
    >>> sum(1 for _ in open(paths["test"])) - 1, sum(1 for _ in open(paths["train_clean"])) - 1
    (2, 2)
    """
    manifest = os.path.abspath(manifest)
    lists = {"noise": noise_list and os.path.abspath(noise_list), "rir": rir_list and os.path.abspath(rir_list)}
    cfg = {
        "manifest": manifest, "noise_list": lists["noise"], "rir_list": lists["rir"], "seed": seed,
        "valid_pairs": valid_pairs, "test_pairs": test_pairs, "snrs": [float(s) for s in snrs],
        "reverb": bool(reverb), "t60_range": [float(t) for t in t60_range], "noise_per_family": noise_per_family,
        "noise_seconds": noise_seconds, "synthetic_rirs": synthetic_rirs, "valid_fraction": valid_fraction,
        "test_fraction": test_fraction, "skip_bad_rows": bool(skip_bad_rows),
    }
    if synthetic_train_noise:  # only when set: folders prepared without the option keep their names
        cfg["synthetic_train_noise"] = int(synthetic_train_noise)
    folder = os.path.join(os.path.abspath(data_folder), config_folder_name(manifest, cfg))
    if skip_prep:
        return manifest_paths(folder, ["train_clean", "valid", "test"] + [f"{k}_{s}" for k in ("noise", "rirs")
                                                                          for s in SPLITS])
    speech = read_speech_manifest(manifest, seed, valid_fraction, test_fraction, skip_bad_rows)
    noise_files = read_source_list(lists["noise"], "noise", skip_bad_rows) if lists["noise"] else None
    rir_files = read_source_list(lists["rir"], "rir", skip_bad_rows) if lists["rir"] else None
    noise = None
    if noise_files:
        noise = {split: [{"file": f, "start": 0.0, "end": 1.0, "name": os.path.splitext(os.path.basename(f))[0]}
                         for f in files] for split, files in noise_files.items()}
    planner = FolderPlanner(folder, cfg, noise, rir_files)
    files = {split: [path for path, _ in speech[split]] for split in SPLITS}
    planner.fallback_talkers = files["train"]
    root = os.path.dirname(manifest)
    jobs = planner.clean_rows(files["train"], root)
    jobs += planner.mix_jobs("valid", files["valid"], root, valid_pairs, files["valid"])
    jobs += planner.mix_jobs("test", files["test"], root, test_pairs, files["test"])
    for split in SPLITS:
        if noise is not None or noise_per_family > 0:
            jobs += planner.noise_jobs(split, files[split], noise_per_family,
                                       added_per_family=synthetic_train_noise if split == "train" else 0)
        jobs += planner.rir_jobs(split)
    speaker_of = {path: speaker for split in SPLITS for path, speaker in speech[split]}
    for job in jobs:  # the manifest's speakers, not the folder layout, name the voices
        if job.get("file") in speaker_of and "voice" in job.get("row", {}):
            job["row"]["voice"] = speaker_of[job["file"]]
    paths = run_plan(folder, jobs, cfg, num_workers, STAMP_NAME, "manifest")
    logger.info("manifest corpus prepared in %s", folder)
    return paths
