"""Preparing the project's manifests from folders of the user's own clean speech, noise and RIRs.

``prepare_from_folders`` turns

- ``clean_folder``: clean speech files (any rate/channels, wav/flac/ogg, searched recursively),
- ``noise_folder`` (optional): noise recordings,
- ``rir_folder`` (optional): room impulse responses,

into the same manifests as the embedded corpus (:mod:`~speechbrain_sqe.dataio.embedded`):

- clean files are shuffled (seeded) and split into train / valid / test; ``train_clean.csv``
  lists the training part (16 kHz mono files are referenced in place, others resampled copies in
  ``train_clean/``);
- valid/test pairs are mixed here from the held-out clean files (normalised to -26 dBFS active
  level) at the SNR grid, with and without reverberation, in a balanced design;
- noise: with 6 or more noise files the files are split between train/valid/test; with fewer,
  every file is cut in time (first 60 % train, next 20 % valid, last 20 % test), so noise
  instances never cross splits. Without a noise folder the synthetic families of
  :mod:`~speechbrain_sqe.dataio.noise` are used (babble from other held-out clean files);
- RIRs: split like noise files with 3 or more (measured RIRs cannot be cut in time: with fewer,
  all splits share them, with a warning); without a RIR folder, synthetic RIRs
  (:mod:`~speechbrain_sqe.dataio.rooms`). Measured RIRs are aligned on their direct-path peak.

All audio is read with :func:`~speechbrain_sqe.dataio.audio.load_audio` (resampled to 16 kHz,
downmixed). The clean reference of a reverberant pair is the dry speech.
"""

import hashlib
import logging
import os
import re
import time

import numpy as np

from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio
from speechbrain_sqe.dataio.files import AUDIO_EXTENSIONS, find_audio_files
from speechbrain_sqe.dataio.jobs import (
    balanced_design,
    execute_plan,
    job_rng,
    normalize_config,
    read_stamp,
    remove_stale,
    save_atomic,
    write_stamp,
)
from speechbrain_sqe.dataio.levels import TARGET_LEVEL_DB, normalize_level
from speechbrain_sqe.dataio.manifest import (
    audio_duration,
    write_audio_list,
    write_manifest,
)
from speechbrain_sqe.dataio.mixing import fit_length, make_pair
from speechbrain_sqe.dataio.noise import NOISE_FAMILIES, make_noise
from speechbrain_sqe.dataio.rooms import align_rir, estimate_t60, synthetic_rir

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SNRS = (-5, 0, 5, 10, 15, 20)
STAMP_NAME = "folders_prep.json"
PAIR_COLUMNS = ("ID", "duration", "clean_wav", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text")
TRAIN_COLUMNS = ("ID", "duration", "wav", "voice", "text")
UNPAIRED_COLUMNS = ("ID", "duration", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text")
SPLITS = ("train", "valid", "test")


def manifest_paths(data_folder, names=None):
    """Manifest paths of a prepared folder (the keys every preparation function returns).

    Arguments
    ---------
    data_folder : str
        The output folder.
    names : iterable of str, optional
        Manifests that exist; the other keys map to None.

    Returns
    -------
    dict
        ``train_clean, valid, test, unpaired_noisy, noise_{train,valid,test}, rirs_{train,valid,test}``
        mapped to absolute csv paths (or None).

    Example
    -------
    >>> manifest_paths("/d", ["test"])["test"], manifest_paths("/d", ["test"])["valid"]
    ('/d/test.csv', None)
    """
    keys = ["train_clean", "valid", "test", "unpaired_noisy"]
    keys += [f"{kind}_{split}" for kind in ("noise", "rirs") for split in SPLITS]
    names = set(keys if names is None else names)
    folder = os.path.abspath(data_folder)
    return {key: os.path.join(folder, f"{key}.csv") if key in names else None for key in keys}


def list_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Absolute paths of the audio files under ``folder`` (:func:`~speechbrain_sqe.dataio.files.find_audio_files`).

    Arguments
    ---------
    folder : str
        Folder to search.
    extensions : tuple of str
        Extensions accepted (case-insensitive).

    Returns
    -------
    list of str
        Absolute paths, sorted by relative path.

    Example
    -------
    >>> list_audio_files("/nonexistent")
    []
    """
    return [os.path.abspath(path) for path in find_audio_files(folder, extensions).values()]


def safe_name(path, root):
    """A flat file name (no extension) from ``path`` relative to ``root``: ``a/b c.wav`` -> ``a_b_c``.

    Arguments
    ---------
    path : str
        A file under ``root``.
    root : str
        The folder the name is relative to.

    Returns
    -------
    str
        Letters, digits, ``-`` and ``_`` only.

    Example
    -------
    >>> safe_name("/x/spk 1/a.b.wav", "/x")
    'spk_1_a.b'
    """
    rel = os.path.splitext(os.path.relpath(path, root))[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace(os.sep, "_")).strip("_")


def sibling_text(path):
    """The transcript in a ``.txt`` or ``.lab`` file beside ``path`` (same stem), or "".

    Arguments
    ---------
    path : str
        An audio file.

    Returns
    -------
    str
        One line of text (``$`` removed, SpeechBrain reads it as a variable).

    Example
    -------
    >>> sibling_text("/nonexistent.wav")
    ''
    """
    stem = os.path.splitext(path)[0]
    for ext in (".txt", ".lab"):
        if os.path.isfile(stem + ext):
            with open(stem + ext, encoding="utf-8", errors="replace") as handle:
                return " ".join(handle.read().split()).replace("$", "")
    return ""


def is_16k_mono(path):
    """True for a 16 kHz mono wav/flac that can be referenced in place (no copy needed).

    Arguments
    ---------
    path : str
        An audio file.

    Returns
    -------
    bool
        Whether the file is already in the project's format.

    Example
    -------
    >>> is_16k_mono("/nonexistent.wav")
    False
    """
    import soundfile

    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError, ValueError, TypeError):  # soundfile's errors for bad files
        return False
    return info.samplerate == SAMPLE_RATE and info.channels == 1 and info.format in ("WAV", "FLAC")


def split_items(items, seed, fractions, minimum=1):
    """Shuffles ``items`` with ``seed`` and cuts them into consecutive parts by ``fractions``.

    Every part gets at least ``minimum`` items when there are enough; the first part takes the rest.

    Arguments
    ---------
    items : list
        Things to split (kept in a seeded random order).
    seed : int
        Shuffle seed.
    fractions : sequence of float
        Share of each part after the first (the first part gets the remainder).
    minimum : int
        Smallest size of the later parts.

    Returns
    -------
    list of list
        ``len(fractions) + 1`` parts.

    Example
    -------
    >>> [len(p) for p in split_items(list(range(20)), 0, [0.1, 0.2])]
    [14, 2, 4]
    """
    order = [items[i] for i in np.random.default_rng(seed).permutation(len(items))]
    sizes = [max(minimum, round(f * len(items))) if len(items) > len(fractions) else 0 for f in fractions]
    parts, end = [], len(order)
    for size in reversed(sizes):
        parts.insert(0, order[end - size : end])
        end -= size
    return [order[:end]] + parts


def _fingerprint(files):
    digest = hashlib.sha1()
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Job execution (shared with real_corpora): every job writes files and returns a duration.


def _load_segment(spec):
    wav = load_audio(spec["file"], SAMPLE_RATE, warn=False).numpy()
    start, end = spec.get("start", 0.0), spec.get("end", 1.0)
    return wav[int(start * len(wav)) : max(int(start * len(wav)) + 1, int(end * len(wav)))]


def _pair_noise(spec, length, rng):
    if "file" in spec:
        return fit_length(_load_segment(spec), length, rng)
    talkers = [normalize_level(load_audio(p, SAMPLE_RATE, warn=False).numpy()) for p in spec.get("talkers", [])]
    return make_noise(spec["family"], length, rng, SAMPLE_RATE, talkers)


def _pair_rir(spec, rng):
    if spec is None:
        return None
    if "file" in spec:
        return align_rir(load_audio(spec["file"], SAMPLE_RATE, warn=False).numpy())
    return synthetic_rir(spec["t60"], rng, SAMPLE_RATE)


def run_file_job(job):
    """Executes one job of a folder-based preparation and returns the duration of its first output.

    Job kinds: ``reference`` (a source file used in place; only checked, never written),
    ``copy`` (resampled/downmixed copy, optionally a time segment ``start``/``end`` in
    fractions, optionally ``align`` for RIRs), ``copy_pair`` (copies of ``file`` and
    ``noisy_file``), ``pair`` / ``noisy`` (mix a clean file with noise at
    ``snr``, optional ``rir``), ``noise_synth`` and ``rir_synth`` (synthetic noise / RIR).

    Arguments
    ---------
    job : dict
        ``kind``, ``outputs`` and the kind's fields.

    Returns
    -------
    float
        Seconds.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "in.wav"), np.random.default_rng(0).standard_normal(4800) * 0.1, 48000)
    >>> job = {"kind": "copy", "file": os.path.join(folder, "in.wav"), "outputs": [os.path.join(folder, "out.wav")]}
    >>> run_file_job(job)
    0.1
    """
    kind, outputs = job["kind"], job["outputs"]
    rng = job_rng(job.get("seed", 0), job.get("split", "plan"), job.get("index", 0))
    if kind == "reference":  # a source file listed in place: never written, only checked
        duration = audio_duration(job["file"])
        if duration is None:
            raise AudioLoadError(f"{job['file']}: missing or unreadable")
        return duration
    if kind == "copy":
        wav = _load_segment(job)
        if job.get("align"):
            wav = align_rir(wav)
        return save_atomic(outputs[0], wav, SAMPLE_RATE)
    if kind == "copy_pair":  # a corpus's own pair: resampled copies of both files
        save_atomic(outputs[1], load_audio(job["noisy_file"], SAMPLE_RATE, warn=False).numpy(), SAMPLE_RATE)
        return save_atomic(outputs[0], load_audio(job["file"], SAMPLE_RATE, warn=False).numpy(), SAMPLE_RATE)
    if kind in ("pair", "noisy"):
        clean = normalize_level(load_audio(job["file"], SAMPLE_RATE, warn=False).numpy(), TARGET_LEVEL_DB)
        noise = _pair_noise(job["noise"], len(clean), rng)
        clean, noisy = make_pair(clean, noise, job["snr"], _pair_rir(job["rir"], rng))
        if kind == "noisy":
            return save_atomic(outputs[0], noisy, SAMPLE_RATE)
        save_atomic(outputs[1], noisy, SAMPLE_RATE)
        return save_atomic(outputs[0], clean, SAMPLE_RATE)
    if kind == "noise_synth":
        noise = _pair_noise(job["noise"], int(job["seconds"] * SAMPLE_RATE), rng) * 10 ** (-30 / 20)
        return save_atomic(outputs[0], noise * min(1.0, 0.99 / (np.max(np.abs(noise)) + 1e-12)), SAMPLE_RATE)
    if kind == "rir_synth":
        return save_atomic(outputs[0], synthetic_rir(job["t60"], rng, SAMPLE_RATE), SAMPLE_RATE)
    raise ValueError(f"unknown job kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# Planning.


def noise_sources(noise_files, seed, min_files_to_split=6):
    """Noise sources of each split: whole files when there are enough, else time segments of every file.

    Arguments
    ---------
    noise_files : list of str
        Noise recordings.
    seed : int
        Split seed.
    min_files_to_split : int
        With at least this many files, files (not time segments) are split between splits.

    Returns
    -------
    dict
        ``split -> list of {"file", "start", "end", "name"}`` (start/end as fractions of the file).

    Example
    -------
    >>> src = noise_sources(["/n/a.wav"], 0)
    >>> [(s[0]["start"], s[0]["end"]) for s in src.values()]
    [(0.0, 0.6), (0.6, 0.8), (0.8, 1.0)]
    """
    if len(noise_files) >= min_files_to_split:
        parts = split_items(list(noise_files), seed, [0.2, 0.2])
        return {
            split: [{"file": f, "start": 0.0, "end": 1.0, "name": os.path.splitext(os.path.basename(f))[0]} for f in part]
            for split, part in zip(SPLITS, parts)
        }
    bounds = {"train": (0.0, 0.6), "valid": (0.6, 0.8), "test": (0.8, 1.0)}
    return {
        split: [{"file": f, "start": lo, "end": hi, "name": os.path.splitext(os.path.basename(f))[0]} for f in noise_files]
        for split, (lo, hi) in bounds.items()
    }


def rir_sources(rir_files, seed):
    """RIR files of each split (all splits share them when there are fewer than 3, with a warning).

    Arguments
    ---------
    rir_files : list of str
        Impulse responses.
    seed : int
        Split seed.

    Returns
    -------
    dict
        ``split -> list of paths``.

    Example
    -------
    >>> {k: len(v) for k, v in rir_sources(["/r/%d.wav" % i for i in range(10)], 0).items()}
    {'train': 6, 'valid': 2, 'test': 2}
    """
    if len(rir_files) >= 3:
        return dict(zip(SPLITS, split_items(list(rir_files), seed, [0.2, 0.2])))
    if rir_files:
        logger.warning("only %d RIR files: train, valid and test share them", len(rir_files))
    return {split: list(rir_files) for split in SPLITS}


class FolderPlanner:
    """Plans the jobs of a folder-based preparation (used by :func:`prepare_from_folders` and DNS).

    Arguments
    ---------
    data_folder : str
        Output folder.
    cfg : dict
        ``seed, snrs, t60_range, reverb, noise_seconds, synthetic_rirs``.
    noise : dict or None
        ``split -> noise sources`` (see :func:`noise_sources`); None for synthetic noise.
    rirs : dict or None
        ``split -> RIR files``; None (or empty lists) for synthetic RIRs.

    Example
    -------
    >>> planner = FolderPlanner("/out", {"seed": 0, "snrs": [0], "t60_range": [0.3, 0.6], "reverb": True,
    ...     "noise_seconds": 2.0, "synthetic_rirs": 2}, None, None)
    >>> [job["kind"] for job in planner.rir_jobs("train")]
    ['rir_synth', 'rir_synth']
    """

    def __init__(self, data_folder, cfg, noise=None, rirs=None):
        self.folder, self.cfg = os.path.abspath(data_folder), cfg
        self.noise, self.rirs = noise, rirs
        self.rng = job_rng(cfg["seed"], "plan", 0)
        self._t60 = {}
        #: Extra babble talkers when a split holds fewer than 4 clean files (set by the caller).
        self.fallback_talkers = []

    def _job(self, split, index, **fields):
        return dict(fields, seed=self.cfg["seed"], split=split, index=index)

    def clean_rows(self, files, root, split="train_clean", out_sub="train_clean"):
        """Jobs listing clean files: ``reference`` for 16 kHz mono files, else a resampled ``copy``.

        Arguments
        ---------
        files : list of str
            Clean speech files.
        root : str
            Their root folder (IDs are paths relative to it; the first sub-folder is the voice).
        split : str
            Manifest name.
        out_sub : str
            Sub-folder of the copies.

        Returns
        -------
        list of dict
            Jobs with ``row`` = ``ID, wav, voice, text``.
        """
        jobs = []
        for index, path in enumerate(files):
            uid = safe_name(path, root)
            row = {"ID": uid, "voice": _speaker(path, root), "text": sibling_text(path)}
            if is_16k_mono(path):
                jobs.append(self._job(split, index, kind="reference", file=path, outputs=[path], row=dict(row, wav=path)))
            else:
                out = os.path.join(self.folder, out_sub, uid + ".wav")
                jobs.append(self._job(split, index, kind="copy", file=path, outputs=[out], row=dict(row, wav=out)))
        return jobs

    def _noise_levels(self, split):
        if self.noise is None:
            return list(NOISE_FAMILIES)
        return list(range(len(self.noise[split])))

    def _synthetic_noise_spec(self, family, talker_pool, target):
        spec = {"family": family}
        if family == "babble":
            pool = [p for p in talker_pool if p != target]
            if len(pool) < 3:
                pool += [p for p in self.fallback_talkers if p != target and p not in pool][: 6 - len(pool)]
            count = min(len(pool), int(self.rng.integers(3, 7)))
            spec["talkers"] = [pool[i] for i in self.rng.choice(len(pool), size=count, replace=False)]
        return spec, family

    def _noise_spec(self, split, level, talker_pool, target):
        if self.noise is None:
            return self._synthetic_noise_spec(level, talker_pool, target)
        source = self.noise[split][level]
        return {"file": source["file"], "start": source["start"], "end": source["end"]}, source["name"]

    def _rir_spec(self, split):
        files = (self.rirs or {}).get(split) or []
        if not files:
            low, high = self.cfg["t60_range"]
            t60 = round(float(self.rng.uniform(low, high)), 3)
            return {"t60": t60}, t60
        path = files[int(self.rng.integers(len(files)))]
        if path not in self._t60:  # measured T60 of the aligned RIR, for the t60 column
            rir = align_rir(load_audio(path, SAMPLE_RATE, warn=False).numpy())
            self._t60[path] = round(estimate_t60(rir, SAMPLE_RATE), 3)
        return {"file": path}, self._t60[path]

    def mix_jobs(self, split, files, root, count, talker_pool, kind="pair", eval_split=None):
        """``count`` pairs (or noisy-only mixtures) from ``files`` in a balanced design.

        The design balances SNR x reverberation x noise source (file or family); files are
        reused in a seeded order when ``count`` exceeds their number.

        Arguments
        ---------
        split : str
            Manifest name and output sub-folder (``valid``, ``test``, ``unpaired_noisy``).
        files : list of str
            Clean speech to mix.
        root : str
            Root folder of ``files`` (for the voice column).
        count : int
            Number of mixtures.
        talker_pool : list of str
            Clean files usable as babble talkers (synthetic noise only).
        kind : str
            ``pair`` (clean + noisy outputs) or ``noisy`` (noisy only).
        eval_split : str, optional
            Which split's noise and RIRs to use (default ``split``).

        Returns
        -------
        list of dict
            The jobs.
        """
        eval_split = eval_split or split
        if not files or count <= 0:
            return []
        factors = {"snr": list(self.cfg["snrs"]), "reverb": [False, True] if self.cfg["reverb"] else [False],
                   "noise": self._noise_levels(eval_split)}
        order = [files[i] for i in self.rng.permutation(len(files))]
        jobs = []
        for index, cond in enumerate(balanced_design(count, factors, self.rng)):
            path = order[index % len(order)]
            noise, noise_type = self._noise_spec(eval_split, cond["noise"], talker_pool or files, path)
            rir, t60 = self._rir_spec(eval_split) if cond["reverb"] else (None, 0.0)
            uid = f"{split}_{index:04d}"
            row = {"ID": uid, "snr": float(cond["snr"]), "noise_type": noise_type, "t60": t60,
                   "reverb": cond["reverb"], "voice": _speaker(path, root), "text": sibling_text(path)}
            if kind == "pair":
                clean = os.path.join(self.folder, split, "clean", uid + ".wav")
                noisy = os.path.join(self.folder, split, "noisy", uid + ".wav")
                row.update(clean_wav=clean, noisy_wav=noisy)
                outputs = [clean, noisy]
            else:
                noisy = os.path.join(self.folder, split, uid + ".wav")
                row.update(noisy_wav=noisy)
                outputs = [noisy]
            jobs.append(self._job(split, index, kind=kind, file=path, noise=noise, snr=float(cond["snr"]),
                                  rir=rir, outputs=outputs, row=row))
        return jobs

    def noise_jobs(self, split, talker_pool, per_family=2, added_per_family=0):
        """The ``noise/<split>`` pool: the split's noise sources (in place or copied), or synthetic families.

        Arguments
        ---------
        split : str
            ``train``, ``valid`` or ``test``.
        talker_pool : list of str
            Clean files for synthetic babble.
        per_family : int
            Synthetic files per family (without noise sources).
        added_per_family : int
            Synthetic files per family added to the noise sources (with noise sources).

        Returns
        -------
        list of dict
            The jobs.
        """
        jobs, name = [], f"noise_{split}"
        if self.noise is not None:
            for index, source in enumerate(self.noise[split]):
                uid = f"{name}_{index:03d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', source['name'])}"
                whole = source["start"] == 0.0 and source["end"] == 1.0
                if whole and is_16k_mono(source["file"]):  # usable in place (large noise corpora)
                    job = self._job(name, index, kind="reference", file=source["file"], outputs=[source["file"]],
                                    row={"ID": uid, "wav": source["file"]})
                else:
                    out = os.path.join(self.folder, "noise", split, uid + ".wav")
                    job = self._job(name, index, kind="copy", file=source["file"], start=source["start"],
                                    end=source["end"], outputs=[out], row={"ID": uid, "wav": out})
                jobs.append(job)
            if not added_per_family:
                return jobs
            per_family = added_per_family
        for family in NOISE_FAMILIES:
            for k in range(per_family):
                uid = f"{name}_{family}_{k:03d}"
                out = os.path.join(self.folder, "noise", split, uid + ".wav")
                spec, _ = self._synthetic_noise_spec(family, talker_pool, None)
                jobs.append(self._job(name, len(jobs), kind="noise_synth", noise=spec, seconds=self.cfg["noise_seconds"],
                                      outputs=[out], row={"ID": uid, "wav": out}))
        return jobs

    def rir_jobs(self, split):
        """The ``rirs/<split>`` pool: aligned copies of the split's RIRs, or synthetic ones.

        Arguments
        ---------
        split : str
            ``train``, ``valid`` or ``test``.

        Returns
        -------
        list of dict
            The jobs.
        """
        jobs, name = [], f"rirs_{split}"
        files = (self.rirs or {}).get(split) or []
        for index, path in enumerate(files):
            uid = f"{name}_{index:03d}_{safe_name(path, os.path.dirname(path))}"
            out = os.path.join(self.folder, "rirs", split, uid + ".wav")
            jobs.append(self._job(name, index, kind="copy", file=path, align=True, outputs=[out],
                                  row={"ID": uid, "wav": out}))
        if not files:
            low, high = self.cfg["t60_range"]
            count = self.cfg["synthetic_rirs"]
            for index in range(count):
                t60 = round(float(low + (high - low) * (index + self.rng.uniform()) / count), 3)
                uid = f"{name}_{index:03d}"
                out = os.path.join(self.folder, "rirs", split, uid + ".wav")
                jobs.append(self._job(name, index, kind="rir_synth", t60=t60, outputs=[out], row={"ID": uid, "wav": out}))
        return jobs


def _speaker(path, root):
    """The first folder level under ``root`` (speaker folders), or "" for files at the top."""
    rel = os.path.relpath(path, root).split(os.sep)
    return rel[0] if len(rel) > 1 else ""


def output_folders(data_folder):
    """Folders whose ``*.wav`` files a folder-based preparation owns (stale ones are removed).

    Arguments
    ---------
    data_folder : str
        The output folder.

    Returns
    -------
    list of str
        Absolute folder paths.

    Example
    -------
    >>> output_folders("/d")[0]
    '/d/train_clean'
    """
    subs = ["train_clean", "valid/clean", "valid/noisy", "test/clean", "test/noisy", "unpaired_noisy"]
    subs += [f"{kind}/{split}" for kind in ("noise", "rirs") for split in SPLITS]
    return [os.path.join(os.path.abspath(data_folder), sub) for sub in subs]


def _source_files(jobs):
    """Every input file a plan reads (protected from stale-file removal)."""
    found = set()
    for job in jobs:
        found.update(p for p in (job.get("file"), job.get("noisy_file")) if p)
        for spec in (job.get("noise"), job.get("rir")):
            if spec:
                found.update(p for p in [spec.get("file"), *spec.get("talkers", [])] if p)
    return {os.path.abspath(p) for p in found}


def run_plan(data_folder, jobs, cfg, num_workers, stamp_name, desc):
    """Executes a plan idempotently and writes the manifests of the splits it holds.

    Arguments
    ---------
    data_folder : str
        Output folder.
    jobs : list of dict
        Jobs; their ``split`` names the manifest (``train_clean``, ``valid``, ``test``,
        ``unpaired_noisy``, ``noise_<split>``, ``rirs_<split>``).
    cfg : dict
        Configuration recorded in the stamp (a change regenerates everything).
    num_workers : int
        Worker processes.
    stamp_name : str
        Stamp file name in ``data_folder``.
    desc : str
        Progress-bar label.

    Returns
    -------
    dict
        Manifest paths (None for splits without items).

    Example
    -------
    >>> import tempfile
    >>> run_plan(tempfile.mkdtemp(), [], {"a": 1}, 1, "s.json", "x")["train_clean"] is None
    True
    """
    folder = os.path.abspath(data_folder)
    cfg = normalize_config(cfg)
    stamp_path = os.path.join(folder, stamp_name)
    stamp = read_stamp(stamp_path)
    force = stamp is None or stamp.get("config") != cfg
    sources = _source_files(jobs)
    written = {p for job in jobs if job["kind"] != "reference" for p in job["outputs"]}
    if sources & written:
        raise ValueError(f"{folder}: the output would overwrite source files such as {min(sources & written)}; "
                         "choose a data_folder outside the source folders")
    if stamp is not None:  # clean up only a folder this preparation wrote before, never a source file
        remove_stale(output_folders(folder), {p for job in jobs for p in job["outputs"]} | sources)
    write_stamp(stamp_path, cfg, complete=False)
    start = time.time()
    rows, _ = execute_plan(run_file_job, jobs, num_workers, force, desc=desc)
    by_split = {}
    for job, row in zip(jobs, rows):
        by_split.setdefault(job["split"], []).append(row)
    paths = manifest_paths(folder, by_split)
    paths.update({name: os.path.join(folder, f"{name}.csv") for name in by_split if name not in paths})
    columns = {"train_clean": TRAIN_COLUMNS, "valid_clean": TRAIN_COLUMNS, "valid": PAIR_COLUMNS,
               "test": PAIR_COLUMNS, "unpaired_noisy": UNPAIRED_COLUMNS}
    for name, items in by_split.items():
        if name in columns:
            write_manifest(paths[name], items, columns[name])
        else:
            write_audio_list(paths[name], items)
    counts = {k: len(v) for k, v in sorted(by_split.items())}
    write_stamp(stamp_path, cfg, complete=True, counts=counts, seconds=round(time.time() - start, 2))
    return paths


def prepare_from_folders(
    data_folder,
    clean_folder,
    noise_folder=None,
    rir_folder=None,
    seed=1234,
    valid_fraction=0.1,
    test_fraction=0.2,
    unpaired_fraction=0.0,
    valid_pairs=48,
    test_pairs=96,
    snrs=SNRS,
    reverb=True,
    t60_range=(0.2, 1.2),
    noise_per_family=2,
    noise_seconds=10.0,
    synthetic_rirs=10,
    num_workers=2,
    skip_prep=False,
    noise_split="auto",
):
    """Prepares manifests from folders of clean speech, noise and RIRs (see the module doc).

    Arguments
    ---------
    data_folder : str
        Output folder (manifests, copies, mixtures).
    clean_folder : str
        Clean speech (at least 3 files), searched recursively.
    noise_folder : str, optional
        Noise recordings; None uses the synthetic noise families.
    rir_folder : str, optional
        Impulse responses; None uses synthetic RIRs.
    seed : int
        Seed of the splits and the mixtures.
    valid_fraction, test_fraction : float
        Shares of the clean files held out for valid / test pairs (at least one file each).
    unpaired_fraction : float
        Share of the training clean files turned into noisy speech without reference
        (``unpaired_noisy.csv``); 0 makes none.
    valid_pairs, test_pairs : int
        Number of pairs; held-out files are reused under different conditions when fewer.
    snrs : sequence of float
        SNR grid in dB.
    reverb : bool
        Include reverberant pairs (half of them).
    t60_range : (float, float)
        T60 range of synthetic RIRs.
    noise_per_family : int
        Synthetic noise files per family and split when there is no noise folder.
    noise_seconds : float
        Length of synthetic noise files.
    synthetic_rirs : int
        Synthetic RIRs per split when there is no RIR folder.
    num_workers : int
        Worker processes.
    skip_prep : bool
        Return the manifest paths without doing anything.
    noise_split : str
        ``auto``: with 6 or more noise files, whole files go to one split each; with fewer, each
        file is cut in time (60/20/20 %). ``time``: always cut in time, so that every split
        hears every noise (best for measuring on a few recordings).

    Returns
    -------
    dict
        Manifest paths: ``train_clean, valid, test, unpaired_noisy, noise_*, rirs_*`` (None when
        not produced).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> clean = tempfile.mkdtemp()
    >>> for k in range(4):
    ...     save_audio(os.path.join(clean, f"s{k}.wav"), np.sin(np.arange(8000) / (3 + k)) * 0.1, 8000)
    >>> paths = prepare_from_folders(tempfile.mkdtemp(), clean, valid_pairs=2, test_pairs=2,
    ...     noise_per_family=0, synthetic_rirs=1, num_workers=1)
    >>> sum(1 for _ in open(paths["test"])) - 1
    2
    """
    folder = os.path.abspath(data_folder)
    if skip_prep:
        return manifest_paths(folder)
    if not os.path.isdir(clean_folder):  # a typo must not read as "0 clean audio files found"
        raise ValueError(f"{clean_folder}: clean folder does not exist")
    clean_files = list_audio_files(clean_folder)
    if len(clean_files) < 3:
        raise ValueError(f"{clean_folder}: {len(clean_files)} clean audio files found; at least 3 are needed")
    noise_files = list_audio_files(noise_folder) if noise_folder else []
    rir_files = list_audio_files(rir_folder) if rir_folder else []
    if noise_folder and not noise_files:
        raise ValueError(f"{noise_folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    cfg = {
        "seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
        "unpaired_fraction": unpaired_fraction, "valid_pairs": valid_pairs, "test_pairs": test_pairs,
        "snrs": [float(s) for s in snrs], "reverb": bool(reverb), "t60_range": [float(t) for t in t60_range],
        "noise_per_family": noise_per_family, "noise_seconds": noise_seconds, "synthetic_rirs": synthetic_rirs,
        "clean": _fingerprint(clean_files), "noise": _fingerprint(noise_files), "rirs": _fingerprint(rir_files),
        "noise_split": noise_split,
    }
    train, valid, test = split_items(clean_files, seed, [valid_fraction, test_fraction])
    unpaired = []
    if unpaired_fraction > 0 and len(train) > 1:
        count = max(1, round(unpaired_fraction * len(train)))
        train, unpaired = train[:-count], train[-count:]
    if noise_split not in ("auto", "time"):
        raise ValueError(f"noise_split must be 'auto' or 'time', not {noise_split!r}")
    # "time": every noise file is cut into train/valid/test segments, so each split hears them all.
    min_files = float("inf") if noise_split == "time" else 6
    noise = noise_sources(noise_files, seed, min_files) if noise_files else None
    planner = FolderPlanner(folder, cfg, noise, rir_sources(rir_files, seed) if rir_files else None)
    planner.fallback_talkers = sorted(train)
    jobs = planner.clean_rows(sorted(train), clean_folder)
    jobs += planner.mix_jobs("valid", valid, clean_folder, valid_pairs, valid)
    jobs += planner.mix_jobs("test", test, clean_folder, test_pairs, test)
    jobs += planner.mix_jobs("unpaired_noisy", unpaired, clean_folder, len(unpaired), train, "noisy", "train")
    pools = {"train": train, "valid": valid, "test": test}
    for split in SPLITS:
        if noise is not None or noise_per_family > 0:
            jobs += planner.noise_jobs(split, pools[split], noise_per_family)
        jobs += planner.rir_jobs(split)
    return run_plan(folder, jobs, cfg, num_workers, STAMP_NAME, "folders")
