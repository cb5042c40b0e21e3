"""Preparation of public corpora the user already has (none can be downloaded here).

Each function reads the corpus in its original layout and writes the same manifests as the
embedded corpus (columns in :mod:`~speechbrain_sqe.dataio.folders`), returning the same dict keys
(None where a corpus has no such part). Following SpeechBrain's recipes, ``data_folder`` is the
corpus as downloaded and ``save_folder`` receives the manifests and any 16 kHz copies
(default ``<data_folder>/sqe_16k``). Files already 16 kHz mono are listed in place.

- :func:`prepare_voicebank`: VoiceBank-DEMAND (Valentini), 48 kHz, resampled copies.
- :func:`prepare_dns`: DNS Challenge (clean/noise folders and the synthetic test set).
- :func:`prepare_librispeech`: LibriSpeech clean speech with transcripts.
"""

import logging
import os
import re

from speechbrain_sqe.dataio.folders import (
    SNRS,
    FolderPlanner,
    _fingerprint,
    list_audio_files,
    manifest_paths,
    noise_sources,
    rir_sources,
    run_plan,
    split_items,
)

logger = logging.getLogger(__name__)


def _save_folder(data_folder, save_folder):
    return os.path.abspath(save_folder or os.path.join(data_folder, "sqe_16k"))


def _find_dir(root, name, depth=2):
    """``root/name``, or the first ``name`` folder up to ``depth`` levels below ``root``."""
    for current, dirs, _ in os.walk(root):
        if os.path.relpath(current, root).count(os.sep) >= depth:
            dirs[:] = []
            continue
        dirs.sort()
        if name in dirs:
            return os.path.join(current, name)
    return None


def _wavs_by_stem(folder):
    return {os.path.splitext(os.path.basename(p))[0]: p for p in list_audio_files(folder)} if folder else {}


# ----------------------------------------------------------------------------------------------
# VoiceBank-DEMAND


def _voicebank_logs(root):
    """``utterance -> (noise type, snr)`` from ``logfiles/*.txt`` when present (lines: id noise snr)."""
    info = {}
    folder = _find_dir(root, "logfiles")
    for path in sorted(list_audio_files(folder, (".txt",))) if folder else []:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                tokens = line.split()
                if len(tokens) < 3:
                    continue
                try:
                    snr = float(tokens[-1])
                except ValueError:
                    continue
                info[os.path.splitext(tokens[0])[0]] = (" ".join(tokens[1:-1]), snr)
    return info


def _voicebank_texts(root, names):
    texts = {}
    for name in names:
        folder = _find_dir(root, name)
        for path in list_audio_files(folder, (".txt",)) if folder else []:
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts[os.path.splitext(os.path.basename(path))[0]] = " ".join(handle.read().split()).replace("$", "")
    return texts


def prepare_voicebank(data_folder, save_folder=None, valid_speakers=("p226", "p287"), num_workers=2, skip_prep=False):
    """Prepares VoiceBank-DEMAND (28-speaker version) as 16 kHz copies and manifests.

    Expects ``clean_trainset_28spk_wav/``, ``noisy_trainset_28spk_wav/``, ``clean_testset_wav/`` and
    ``noisy_testset_wav/`` (files such as ``p226_001.wav``) in ``data_folder`` (or one or two
    levels below). ``logfiles/`` (noise type and SNR per utterance) and ``trainset_28spk_txt/`` /
    ``testset_txt/`` (transcripts) are read when present.

    Manifests: ``train_clean`` (clean training speech minus ``valid_speakers``), ``valid`` (the
    held-out speakers' training pairs), ``test`` (the test pairs), ``unpaired_noisy`` (the noisy
    training speech of the training speakers: the same utterances as ``train_clean``, for methods
    that never look at the clean side). No noise or RIR lists.

    Arguments
    ---------
    data_folder : str
        The VoiceBank-DEMAND folder.
    save_folder : str, optional
        Output folder (default ``<data_folder>/sqe_16k``).
    valid_speakers : sequence of str
        Training speakers held out for validation.
    num_workers : int
        Worker processes for resampling.
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Manifest paths (``noise_*``, ``rirs_*`` are None).

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> for sub in ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav", "clean_testset_wav", "noisy_testset_wav"):
    ...     for name in (["p226_001", "p250_001"] if "train" in sub else ["p232_001"]):
    ...         save_audio(os.path.join(root, sub, name + ".wav"), np.ones(480) * 0.1, 48000)
    >>> paths = prepare_voicebank(root, num_workers=1)
    >>> [line.split(",")[0] for line in open(paths["valid"])], paths["noise_train"]
    (['ID', 'p226_001'], None)
    """
    save = _save_folder(data_folder, save_folder)
    names = ("train_clean", "valid", "test", "unpaired_noisy")
    if skip_prep:
        return manifest_paths(save, names)
    folders = {
        name: _find_dir(data_folder, name)
        for name in ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav", "clean_testset_wav", "noisy_testset_wav")
    }
    missing = [name for name, path in folders.items() if path is None]
    if missing:
        raise FileNotFoundError(f"{data_folder}: VoiceBank-DEMAND folders not found: {', '.join(missing)}")
    files = {name: _wavs_by_stem(path) for name, path in folders.items()}
    logs = _voicebank_logs(data_folder)
    texts = _voicebank_texts(data_folder, ("trainset_28spk_txt", "testset_txt"))
    held = set(valid_speakers)
    cfg = {"corpus": "voicebank", "valid_speakers": sorted(held),
           "files": _fingerprint(sorted(p for f in files.values() for p in f.values()))}

    def row(stem, **extra):
        noise_type, snr = logs.get(stem, ("", float("nan")))
        return dict(extra, ID=stem, snr=snr, noise_type=noise_type, t60=0.0, reverb=False,
                    voice=stem.split("_")[0], text=texts.get(stem, ""))

    jobs = []

    def add(split, kind, outputs, **fields):
        jobs.append(dict(fields, kind=kind, split=split, index=len(jobs), seed=0, outputs=outputs))

    clean_train, noisy_train = files["clean_trainset_28spk_wav"], files["noisy_trainset_28spk_wav"]
    for stem in sorted(clean_train):
        if stem.split("_")[0] in held:
            continue
        out = os.path.join(save, "train_clean", stem + ".wav")
        add("train_clean", "copy", [out], file=clean_train[stem],
            row={"ID": stem, "wav": out, "voice": stem.split("_")[0], "text": texts.get(stem, "")})
    for stem in sorted(noisy_train):
        if stem.split("_")[0] in held:
            continue
        out = os.path.join(save, "unpaired_noisy", stem + ".wav")
        add("unpaired_noisy", "copy", [out], file=noisy_train[stem], row=row(stem, noisy_wav=out))
    pairs = [("valid", stem, clean_train, noisy_train) for stem in sorted(clean_train) if stem.split("_")[0] in held]
    clean_test, noisy_test = files["clean_testset_wav"], files["noisy_testset_wav"]
    pairs += [("test", stem, clean_test, noisy_test) for stem in sorted(clean_test)]
    unmatched = 0
    for split, stem, clean, noisy in pairs:
        if stem not in noisy:
            unmatched += 1
            continue
        outs = [os.path.join(save, split, "clean", stem + ".wav"), os.path.join(save, split, "noisy", stem + ".wav")]
        add(split, "copy_pair", outs, file=clean[stem], noisy_file=noisy[stem],
            row=row(stem, clean_wav=outs[0], noisy_wav=outs[1]))
    if unmatched:
        logger.warning("VoiceBank: %d clean files without a noisy twin were skipped", unmatched)
    return run_plan(save, jobs, cfg, num_workers, "voicebank_prep.json", "voicebank")


# ----------------------------------------------------------------------------------------------
# DNS Challenge

_FILEID = re.compile(r"fileid_(\d+)")
_SNR = re.compile(r"_snr(-?\d+(?:\.\d+)?)")


def dns_test_pairs(synthetic_folder):
    """Pairs of the DNS synthetic test set, matched by the trailing ``fileid_N`` of the file names.

    DNS Challenge 1 names clean files ``clean/clean_fileid_0.wav`` and noisy ones
    ``noisy/<clean>_<noise>_snr<k>_tl-<level>_fileid_0.wav``, in ``no_reverb/`` and ``with_reverb/``.

    Arguments
    ---------
    synthetic_folder : str
        ``datasets/test_set/synthetic``.

    Returns
    -------
    list of dict
        ``name`` (``no_reverb_fileid_0``), ``clean``, ``noisy``, ``snr`` (float or nan), ``reverb``.

    Example
    -------
    >>> dns_test_pairs("/nonexistent")
    []
    """
    pairs = []
    for sub, reverb in (("no_reverb", False), ("with_reverb", True)):
        clean = {m.group(1): p for p in list_audio_files(os.path.join(synthetic_folder, sub, "clean"))
                 if (m := _FILEID.search(os.path.basename(p)))}
        for noisy in list_audio_files(os.path.join(synthetic_folder, sub, "noisy")):
            match = _FILEID.search(os.path.basename(noisy))
            if match is None or match.group(1) not in clean:
                continue
            snr = _SNR.search(os.path.basename(noisy))
            pairs.append({"name": f"{sub}_fileid_{match.group(1)}", "clean": clean[match.group(1)], "noisy": noisy,
                          "snr": float(snr.group(1)) if snr else float("nan"), "reverb": reverb})
    return sorted(pairs, key=lambda p: (p["reverb"], int(p["name"].rsplit("_", 1)[1])))


def prepare_dns(
    data_folder,
    save_folder=None,
    seed=1234,
    max_clean_files=None,
    max_noise_files=None,
    max_rir_files=None,
    valid_fraction=0.05,
    valid_pairs=48,
    test_pairs=96,
    snrs=SNRS,
    reverb=True,
    num_workers=2,
    skip_prep=False,
):
    """Prepares the DNS Challenge data: clean and noise folders, RIRs, and the synthetic test set.

    Expects ``datasets/clean`` (or ``clean_fullband``) and ``datasets/noise`` (or
    ``noise_fullband``) under ``data_folder`` (``data_folder`` may also be ``datasets`` itself);
    ``datasets/impulse_responses`` is used when present (else synthetic RIRs). Clean files are
    split into train and a held-out part mixed into ``valid`` pairs (SNR grid, with/without
    reverb); noise and RIR files are split between train/valid/test. ``test`` is the official
    synthetic test set (``test_set/synthetic/{no_reverb,with_reverb}``, copies named
    ``<sub>_fileid_<N>.wav`` in ``test/clean`` and ``test/noisy``; for ``with_reverb`` the clean
    reference is the one DNS provides and ``t60`` is unknown, left empty); without it, test pairs
    are mixed from held-out clean files like ``valid``.

    Arguments
    ---------
    data_folder : str
        The DNS-Challenge folder.
    save_folder : str, optional
        Output folder (default ``<data_folder>/sqe_16k``).
    seed : int
        Seed of subsets, splits and mixtures.
    max_clean_files, max_noise_files, max_rir_files : int, optional
        Random subsets of the (very large) folders.
    valid_fraction : float
        Share of clean files held out for the mixed pairs.
    valid_pairs, test_pairs : int
        Mixed pairs (``test_pairs`` only without the official test set).
    snrs : sequence of float
        SNR grid in dB.
    reverb : bool
        Include reverberant mixed pairs.
    num_workers : int
        Worker processes.
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Manifest paths (``unpaired_noisy`` is None).

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for k in range(6):
    ...     save_audio(os.path.join(root, "datasets", "clean", f"book_{k}.wav"), rng.standard_normal(1600) * 0.1)
    ...     save_audio(os.path.join(root, "datasets", "noise", f"noise_{k}.wav"), rng.standard_normal(1600) * 0.1)
    >>> paths = prepare_dns(root, valid_pairs=2, test_pairs=2, num_workers=1)
    >>> sum(1 for _ in open(paths["valid"])) - 1, paths["unpaired_noisy"]
    (2, None)
    """
    save = _save_folder(data_folder, save_folder)
    if skip_prep:
        return manifest_paths(save, [k for k in manifest_paths(save) if k != "unpaired_noisy"])
    root = data_folder if os.path.basename(os.path.normpath(data_folder)) == "datasets" else os.path.join(data_folder, "datasets")
    clean_dir = next((os.path.join(root, d) for d in ("clean", "clean_fullband") if os.path.isdir(os.path.join(root, d))), None)
    noise_dir = next((os.path.join(root, d) for d in ("noise", "noise_fullband") if os.path.isdir(os.path.join(root, d))), None)
    if clean_dir is None or noise_dir is None:
        raise FileNotFoundError(f"{root}: DNS folders clean/ (or clean_fullband/) and noise/ (or noise_fullband/) needed")

    def subset(files, count, salt):
        return files if count is None or len(files) <= count else sorted(split_items(files, seed + salt, [])[0][:count])

    clean_files = subset(list_audio_files(clean_dir), max_clean_files, 1)
    noise_files = subset(list_audio_files(noise_dir), max_noise_files, 2)
    rir_files = subset(list_audio_files(os.path.join(root, "impulse_responses")), max_rir_files, 3)
    official = dns_test_pairs(os.path.join(root, "test_set", "synthetic"))
    fractions = [valid_fraction] + ([] if official else [valid_fraction])
    parts = split_items(clean_files, seed, fractions)
    train, valid, test = parts[0], parts[1], (parts[2] if not official else [])
    cfg = {"corpus": "dns", "seed": seed, "valid_fraction": valid_fraction, "valid_pairs": valid_pairs,
           "test_pairs": test_pairs, "snrs": [float(s) for s in snrs], "reverb": bool(reverb),
           "t60_range": [0.2, 1.2], "noise_seconds": 10.0, "synthetic_rirs": 10,
           "files": _fingerprint(clean_files + noise_files + rir_files + [p["noisy"] for p in official])}
    planner = FolderPlanner(save, cfg, noise_sources(noise_files, seed), rir_sources(rir_files, seed) if rir_files else None)
    planner.fallback_talkers = sorted(train)
    jobs = planner.clean_rows(sorted(train), clean_dir)
    jobs += planner.mix_jobs("valid", valid, clean_dir, valid_pairs, valid)
    jobs += planner.mix_jobs("test", test, clean_dir, test_pairs, test)
    for index, pair in enumerate(official):
        outs = [os.path.join(save, "test", sub, pair["name"] + ".wav") for sub in ("clean", "noisy")]
        row = {"ID": pair["name"], "clean_wav": outs[0], "noisy_wav": outs[1], "snr": pair["snr"], "noise_type": "",
               "t60": float("nan") if pair["reverb"] else 0.0, "reverb": pair["reverb"], "voice": "", "text": ""}
        jobs.append({"kind": "copy_pair", "split": "test", "index": index, "seed": seed, "file": pair["clean"],
                     "noisy_file": pair["noisy"], "outputs": outs, "row": row})
    for split in ("train", "valid", "test"):
        jobs += planner.noise_jobs(split, [])
        jobs += planner.rir_jobs(split)
    return run_plan(save, jobs, cfg, num_workers, "dns_prep.json", "dns")


# ----------------------------------------------------------------------------------------------
# LibriSpeech


def librispeech_rows(subset_folder):
    """Rows (``ID, wav, voice, text``) of one LibriSpeech subset, from its ``*.trans.txt`` files.

    Arguments
    ---------
    subset_folder : str
        e.g. ``.../LibriSpeech/train-clean-100`` (``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac``).

    Returns
    -------
    list of dict
        One row per transcribed utterance whose audio exists, sorted by ID.

    Example
    -------
    >>> librispeech_rows("/nonexistent")
    []
    """
    rows = []
    for current, dirs, files in os.walk(subset_folder):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".trans.txt")):
            with open(os.path.join(current, name), encoding="utf-8") as handle:
                for line in handle:
                    parts = line.strip().split(" ", 1)
                    audio = os.path.join(current, parts[0] + ".flac")
                    if parts[0] and os.path.isfile(audio):
                        text = parts[1].replace("$", "") if len(parts) > 1 else ""
                        rows.append({"ID": parts[0], "wav": os.path.abspath(audio), "voice": parts[0].split("-")[0],
                                     "text": text})
    return sorted(rows, key=lambda r: r["ID"])


def prepare_librispeech(
    data_folder, save_folder=None, subsets=("train-clean-100",), valid_subsets=(), num_workers=2, skip_prep=False
):
    """Prepares LibriSpeech clean speech (flac, 16 kHz, listed in place) with transcripts.

    ``data_folder`` holds ``LibriSpeech/<subset>/`` (or is the ``LibriSpeech`` folder). The
    ``subsets`` go to ``train_clean.csv``; ``valid_subsets`` (e.g. ``dev-clean``) to
    ``valid_clean.csv`` (same columns, clean only). No pairs, noise or RIRs: combine with the
    embedded corpus or :func:`~speechbrain_sqe.dataio.folders.prepare_from_folders` for those.

    Arguments
    ---------
    data_folder : str
        The folder holding ``LibriSpeech/``.
    save_folder : str, optional
        Output folder for the manifests (default ``<data_folder>/sqe_16k``).
    subsets : sequence of str
        Subsets for training (``train-clean-100``, ``train-clean-360``, ``dev-clean``...).
    valid_subsets : sequence of str
        Subsets for the clean validation list.
    num_workers : int
        Worker processes (only used when files must be re-checked).
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        ``train_clean`` and ``valid_clean`` (None without ``valid_subsets``); the other standard
        keys are None.

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> chapter = os.path.join(root, "LibriSpeech", "dev-clean", "84", "121123")
    >>> save_audio(os.path.join(chapter, "84-121123-0000.flac"), np.ones(1600) * 0.1)
    >>> _ = open(os.path.join(chapter, "84-121123.trans.txt"), "w").write("84-121123-0000 GO DO YOU HEAR\\n")
    >>> paths = prepare_librispeech(root, subsets=["dev-clean"], num_workers=1)
    >>> open(paths["train_clean"]).read().splitlines()[1].endswith(",84,GO DO YOU HEAR")
    True
    """
    save = _save_folder(data_folder, save_folder)
    paths = manifest_paths(save, [])
    paths["valid_clean"] = os.path.join(save, "valid_clean.csv") if valid_subsets else None
    if skip_prep:
        paths["train_clean"] = os.path.join(save, "train_clean.csv")
        return paths
    root = data_folder if os.path.basename(os.path.normpath(data_folder)) == "LibriSpeech" else os.path.join(data_folder, "LibriSpeech")
    jobs = []
    for split, names in (("train_clean", subsets), ("valid_clean", valid_subsets)):
        for subset_name in names:
            folder = os.path.join(root, subset_name)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{folder}: LibriSpeech subset not found")
            for row in librispeech_rows(folder):
                jobs.append({"kind": "reference", "split": split, "index": len(jobs), "file": row["wav"],
                             "outputs": [row["wav"]], "row": row})
    cfg = {"corpus": "librispeech", "subsets": list(subsets), "valid_subsets": list(valid_subsets),
           "files": len(jobs)}
    written = run_plan(save, jobs, cfg, num_workers, "librispeech_prep.json", "librispeech")
    paths.update({k: v for k, v in written.items() if v is not None})
    return paths
