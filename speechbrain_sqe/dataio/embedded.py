"""The embedded corpus: a multi-speaker English speech corpus generated on the machine, from a seed.

Speech is spoken by Debian's ``flite`` and ``espeak-ng`` (:mod:`~speechbrain_sqe.dataio.tts`) from
sentences of the project's own grammar (:mod:`~speechbrain_sqe.dataio.text`), resampled to 16 kHz,
trimmed to natural pauses, normalised to -26 dBFS active level and given a very low noise floor
(:mod:`~speechbrain_sqe.dataio.levels`; TTS pauses are exact zeros, which real recordings never are).
Noise is synthesised (:mod:`~speechbrain_sqe.dataio.noise`: white, pink, brown, babble, hum, alarm,
clicks, modulated) and reverberation uses exponential-decay synthetic RIRs with T60 in 0.2-1.2 s
(:mod:`~speechbrain_sqe.dataio.rooms`).

One folder holds one configuration: a folder stamped with other settings (another seed, size,
SNR grid...) is refused with :class:`CorpusConflictError` rather than regenerated in place, so two
recipes that differ only in ``train_minutes`` never rewrite each other's audio (the recipes put the
minutes and the seed in the folder name: ``data/embedded/train60min_seed1234``).

Layout under ``data_folder``::

    train_clean/              clean speech of the training voices     -> train_clean.csv
    valid/{clean,noisy}/      pairs, held-out voices (same file name)  -> valid.csv
    test/{clean,noisy}/       pairs, held-out voices (same file name)  -> test.csv
    unpaired_noisy/           noisy speech of training voices          -> unpaired_noisy.csv
    noise/{train,valid,test}/ noise instances, disjoint seeds          -> noise_{split}.csv
    rirs/{train,valid,test}/  synthetic RIRs                           -> rirs_{split}.csv
    embedded_corpus.json      stamp: configuration, counts, timing

Pairs follow a balanced design over SNR x reverberation x noise family. For a reverberant pair
the clean reference is the *dry* speech (see :mod:`~speechbrain_sqe.dataio.mixing` for the SNR
convention). Everything is a pure function of ``seed`` and the sizes, whatever ``num_workers``.

Command line::

    python -m speechbrain_sqe.dataio.embedded --data_folder data/embedded [--train_minutes 60]
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import time

import numpy as np

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
from speechbrain_sqe.dataio.levels import (
    TARGET_LEVEL_DB,
    add_noise_floor,
    normalize_level,
    trim_pauses,
)
from speechbrain_sqe.dataio.manifest import write_audio_list, write_manifest
from speechbrain_sqe.dataio.mixing import make_pair
from speechbrain_sqe.dataio.noise import NOISE_FAMILIES, make_noise
from speechbrain_sqe.dataio.rooms import synthetic_rir
from speechbrain_sqe.dataio.text import SentenceGenerator
from speechbrain_sqe.dataio.tts import (
    ALL_VOICES,
    HELDOUT_VOICES,
    TRAIN_VOICES,
    check_tts_tools,
    synthesize,
)

logger = logging.getLogger(__name__)

#: Bump when the signal processing changes (changes of the plan itself are caught by its digest).
CORPUS_VERSION = 1
SAMPLE_RATE = 16000
SNRS = (-5, 0, 5, 10, 15, 20)
STAMP_NAME = "embedded_corpus.json"
#: Seconds per word at speed 1 after trimming (measured on the voices), plus edges; for planning.
SECONDS_PER_WORD = {"flite": 0.295, "espeak": 0.29}
PAIR_COLUMNS = ("ID", "duration", "clean_wav", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text")
MANIFEST_COLUMNS = {
    "train_clean": ("ID", "duration", "wav", "voice", "text"),
    "valid": PAIR_COLUMNS,
    "test": PAIR_COLUMNS,
    "unpaired_noisy": ("ID", "duration", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text"),
}
EVAL_SPLITS = ("train", "valid", "test")


class CorpusConflictError(ValueError):
    """A folder already holds an embedded corpus of other settings (never overwritten silently)."""


def _config_changes(old, new):
    """``key: old -> new`` for the settings that differ (the plan digest aside)."""
    keys = sorted((set(old) | set(new)) - {"plan"})
    return [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]


def manifest_paths(data_folder):
    """The manifests a prepared corpus folder holds (same keys for every preparation function).

    Arguments
    ---------
    data_folder : str
        The corpus folder.

    Returns
    -------
    dict
        ``name -> absolute csv path`` for ``train_clean, valid, test, unpaired_noisy,
        noise_{train,valid,test}, rirs_{train,valid,test}``.

    Example
    -------
    >>> sorted(manifest_paths("/data"))[:3]
    ['noise_test', 'noise_train', 'noise_valid']
    """
    folder = os.path.abspath(data_folder)
    names = list(MANIFEST_COLUMNS) + [f"{kind}_{s}" for kind in ("noise", "rirs") for s in EVAL_SPLITS]
    return {name: os.path.join(folder, f"{name}.csv") for name in names}


def _output_folders(folder):
    subs = ["train_clean", "valid/clean", "valid/noisy", "test/clean", "test/noisy", "unpaired_noisy"]
    subs += [f"{kind}/{s}" for kind in ("noise", "rirs") for s in EVAL_SPLITS]
    return [os.path.join(folder, sub) for sub in subs]


# ----------------------------------------------------------------------------------------------
# Planning (main process): every random choice that fixes *what* is generated.


class _Planner:
    """Draws voices, sentences, prosody and conditions for all splits from one seed."""

    def __init__(self, folder, cfg):
        self.folder, self.cfg = folder, cfg
        self.rng = job_rng(cfg["seed"], "plan", 0)
        self.sentences = SentenceGenerator(cfg["seed"])

    def voice(self, voices, exclude=None):
        pool = [v for v in voices if v != exclude]
        weights = np.array([v.weight for v in pool])
        return pool[self.rng.choice(len(pool), p=weights / weights.sum())]

    def prosody(self):
        return float(self.rng.uniform(0.85, 1.15)), float(self.rng.uniform(-2.0, 2.0))

    def utterance(self, voices):
        voice = self.voice(voices)
        speed, semitones = self.prosody()
        text = self.sentences.draw()
        seconds = SECONDS_PER_WORD[voice.engine] * len(text.split()) / speed + 0.3
        return {"voice": voice, "text": text, "speed": speed, "semitones": semitones}, seconds

    def talkers(self, voices, exclude, sentences_each):
        """Babble talkers: distinct voices (not the target's) each with new sentences."""
        pool = [v for v in voices if v != exclude]
        count = min(len(pool), int(self.rng.integers(3, 7)))
        out = []
        for i in self.rng.choice(len(pool), size=count, replace=False):
            speed, semitones = self.prosody()
            out.append({"voice": pool[i], "texts": self.sentences.draw(sentences_each), "speed": speed,
                        "semitones": semitones})
        return out

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def speech_jobs(self):
        jobs, total, target = [], 0.0, 60.0 * self.cfg["train_minutes"]
        while total < target:
            utt, seconds = self.utterance(TRAIN_VOICES)
            uid = f"train_{len(jobs):05d}"
            wav = self.path("train_clean", uid + ".wav")
            row = {"ID": uid, "wav": wav, "voice": utt["voice"].id, "text": utt["text"]}
            jobs.append(dict(utt, kind="speech", split="train_clean", index=len(jobs), outputs=[wav], row=row))
            total += seconds
        return jobs

    def conditions(self, count):
        factors = {"snr": list(self.cfg["snrs"]), "reverb": [False, True], "noise_type": list(NOISE_FAMILIES)}
        design = balanced_design(count, factors, self.rng)
        for cond in design:
            low, high = self.cfg["t60_range"]
            cond["t60"] = round(float(self.rng.uniform(low, high)), 3) if cond["reverb"] else 0.0
        return design

    def pair_jobs(self, split, count):
        jobs = []
        for index, cond in enumerate(self.conditions(count)):
            utt, _ = self.utterance(HELDOUT_VOICES)
            uid = f"{split}_{index:04d}"
            clean, noisy = self.path(split, "clean", uid + ".wav"), self.path(split, "noisy", uid + ".wav")
            talkers = self.talkers(ALL_VOICES, utt["voice"], 2) if cond["noise_type"] == "babble" else []
            row = dict(cond, ID=uid, clean_wav=clean, noisy_wav=noisy, voice=utt["voice"].id, text=utt["text"])
            jobs.append(
                dict(utt, **cond, kind="pair", split=split, index=index, talkers=talkers, outputs=[clean, noisy], row=row)
            )
        return jobs

    def unpaired_jobs(self):
        jobs, total, target = [], 0.0, 60.0 * self.cfg["unpaired_minutes"]
        while total < target:
            # conditions drawn in balanced blocks of one full design cycle
            for cond in self.conditions(len(self.cfg["snrs"]) * 2 * len(NOISE_FAMILIES)):
                if total >= target:
                    break
                utt, seconds = self.utterance(TRAIN_VOICES)
                uid = f"unpaired_{len(jobs):05d}"
                noisy = self.path("unpaired_noisy", uid + ".wav")
                talkers = self.talkers(TRAIN_VOICES, utt["voice"], 2) if cond["noise_type"] == "babble" else []
                row = dict(cond, ID=uid, noisy_wav=noisy, voice=utt["voice"].id, text=utt["text"])
                jobs.append(
                    dict(utt, **cond, kind="noisy", split="unpaired_noisy", index=len(jobs), talkers=talkers,
                         outputs=[noisy], row=row)
                )
                total += seconds
        return jobs

    def noise_jobs(self, split, per_family):
        jobs = []
        voices = TRAIN_VOICES if split == "train" else ALL_VOICES
        for family in NOISE_FAMILIES:
            for k in range(per_family):
                uid = f"noise_{split}_{family}_{k:03d}"
                wav = self.path("noise", split, uid + ".wav")
                talkers = self.talkers(voices, None, 3) if family == "babble" else []
                jobs.append(
                    {"kind": "noise", "split": f"noise_{split}", "index": len(jobs), "noise_type": family,
                     "seconds": self.cfg["noise_seconds"], "talkers": talkers, "outputs": [wav],
                     "row": {"ID": uid, "wav": wav, "noise_type": family}}
                )
        return jobs

    def rir_jobs(self, split, count):
        low, high = self.cfg["t60_range"]
        # stratified T60s so that even a few RIRs cover the range
        t60s = low + (high - low) * (np.arange(count) + self.rng.uniform(0, 1, size=count)) / max(count, 1)
        jobs = []
        for index, t60 in enumerate(t60s):
            uid = f"rir_{split}_{index:03d}"
            wav = self.path("rirs", split, uid + ".wav")
            jobs.append(
                {"kind": "rir", "split": f"rirs_{split}", "index": index, "t60": round(float(t60), 3),
                 "outputs": [wav], "row": {"ID": uid, "wav": wav, "t60": round(float(t60), 3)}}
            )
        return jobs


def plan_embedded_corpus(data_folder, cfg):
    """Plans every file of the corpus (no audio is made): a list of job dicts.

    Arguments
    ---------
    data_folder : str
        Output folder.
    cfg : dict
        The configuration (see :func:`prepare_embedded_corpus` for the keys).

    Returns
    -------
    list of dict
        Jobs with ``kind``, ``split``, ``outputs`` and ``row`` plus what the job needs.

    Example
    -------
    >>> cfg = default_config(train_minutes=0.2, valid_pairs=2, test_pairs=3, unpaired_minutes=0.1)
    >>> jobs = plan_embedded_corpus("/tmp/x", cfg)
    >>> sorted({job["split"] for job in jobs})[:4]
    ['noise_test', 'noise_train', 'noise_valid', 'rirs_test']
    >>> [job["row"]["ID"] for job in jobs if job["split"] == "test"]
    ['test_0000', 'test_0001', 'test_0002']
    """
    folder = os.path.abspath(data_folder)
    planner = _Planner(folder, cfg)
    per_family = {"train": cfg["noise_train_per_family"], "valid": cfg["noise_eval_per_family"],
                  "test": cfg["noise_eval_per_family"]}
    rirs = {"train": cfg["rirs_train"], "valid": cfg["rirs_eval"], "test": cfg["rirs_eval"]}
    # Order matters for determinism only through the planner's stream; keep it fixed.
    jobs = planner.speech_jobs()
    jobs += planner.pair_jobs("valid", cfg["valid_pairs"])
    jobs += planner.pair_jobs("test", cfg["test_pairs"])
    jobs += planner.unpaired_jobs()
    for split in EVAL_SPLITS:
        jobs += planner.noise_jobs(split, per_family[split])
    for split in EVAL_SPLITS:
        jobs += planner.rir_jobs(split, rirs[split])
    for job in jobs:
        job["seed"] = cfg["seed"]
        job["noise_floor_db"] = cfg["noise_floor_db"]
    return jobs


def plan_digest(jobs):
    """A short digest of a plan (texts, voices, conditions, paths), recorded in the stamp.

    Arguments
    ---------
    jobs : list of dict
        A plan from :func:`plan_embedded_corpus`.

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> cfg = default_config(train_minutes=0.1, valid_pairs=1, test_pairs=1, unpaired_minutes=0.0)
    >>> plan_digest(plan_embedded_corpus("/a", cfg)) == plan_digest(plan_embedded_corpus("/a", cfg))
    True
    """
    text = json.dumps(jobs, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Execution (worker processes): each job is a pure function of its dict.


def speak(voice, text, rng, speed=1.0, semitones=0.0, noise_floor_db=None):
    """Synthesises one utterance the way the corpus does: TTS, pause trimming, level, noise floor.

    Arguments
    ---------
    voice : speechbrain_sqe.dataio.tts.Voice
        The speaker.
    text : str
        The sentence.
    rng : numpy.random.Generator
        Draws the kept pause lengths and the noise floor.
    speed : float
        Speaking-rate factor.
    semitones : float
        Pitch shift.
    noise_floor_db : float or tuple or None
        Floor below the speech level (see :func:`~speechbrain_sqe.dataio.levels.add_noise_floor`).

    Returns
    -------
    numpy.ndarray
        16 kHz float32 speech at -26 dBFS active level.

    Example
    -------
    >>> from speechbrain_sqe.dataio.tts import Voice
    >>> wav = speak(Voice("espeak", "en-us"), "Good morning.", np.random.default_rng(0), noise_floor_db=-65)
    >>> bool((wav != 0).all()), len(wav) < 2 * 16000
    (True, True)
    """
    wav = synthesize(voice, text, speed, semitones, SAMPLE_RATE)
    wav = trim_pauses(wav, rng, SAMPLE_RATE)
    wav = normalize_level(wav, TARGET_LEVEL_DB, SAMPLE_RATE)
    return add_noise_floor(wav, rng, noise_floor_db, SAMPLE_RATE)


def _talker_speech(talkers, rng):
    out = []
    for talker in talkers:
        parts = [speak(talker["voice"], text, rng, talker["speed"], talker["semitones"]) for text in talker["texts"]]
        out.append(np.concatenate(parts))
    return out


def _noise_for(job, length, rng):
    talkers = _talker_speech(job["talkers"], rng) if job["noise_type"] == "babble" else None
    return make_noise(job["noise_type"], length, rng, SAMPLE_RATE, talkers)


def _mixture(job, rng):
    clean = speak(job["voice"], job["text"], rng, job["speed"], job["semitones"], job["noise_floor_db"])
    noise = _noise_for(job, len(clean), rng)
    rir = synthetic_rir(job["t60"], rng, SAMPLE_RATE) if job["reverb"] else None
    return make_pair(clean, noise, job["snr"], rir)


def run_embedded_job(job):
    """Generates the files of one planned job and returns the duration of its first output.

    Arguments
    ---------
    job : dict
        A job from :func:`plan_embedded_corpus`.

    Returns
    -------
    float
        Seconds.

    Example
    -------
    >>> import tempfile
    >>> cfg = default_config(train_minutes=0.05, valid_pairs=0, test_pairs=0, unpaired_minutes=0.0)
    >>> job = plan_embedded_corpus(tempfile.mkdtemp(), cfg)[0]
    >>> run_embedded_job(job) > 0.5
    True
    """
    rng = job_rng(job["seed"], job["split"], job["index"])
    kind, outputs = job["kind"], job["outputs"]
    if kind == "speech":
        wav = speak(job["voice"], job["text"], rng, job["speed"], job["semitones"], job["noise_floor_db"])
        return save_atomic(outputs[0], wav, SAMPLE_RATE)
    if kind == "pair":
        clean, noisy = _mixture(job, rng)
        save_atomic(outputs[1], noisy, SAMPLE_RATE)
        return save_atomic(outputs[0], clean, SAMPLE_RATE)
    if kind == "noisy":
        return save_atomic(outputs[0], _mixture(job, rng)[1], SAMPLE_RATE)
    if kind == "noise":
        noise = _noise_for(job, int(job["seconds"] * SAMPLE_RATE), rng)
        # noise files at a plausible level (-30 dBFS RMS) with headroom for impulsive families
        noise = noise * 10 ** (-30 / 20)
        noise = noise * min(1.0, 0.99 / (np.max(np.abs(noise)) + 1e-12))
        return save_atomic(outputs[0], noise, SAMPLE_RATE)
    if kind == "rir":
        return save_atomic(outputs[0], synthetic_rir(job["t60"], rng, SAMPLE_RATE), SAMPLE_RATE)
    raise ValueError(f"unknown job kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# Public entry point.


def default_config(**overrides):
    """The generation configuration (everything that changes the audio), with overrides.

    Arguments
    ---------
    **overrides
        Any of the keys below.

    Returns
    -------
    dict
        ``seed, train_minutes, valid_pairs, test_pairs, unpaired_minutes, snrs, noise_floor_db,
        t60_range, noise_train_per_family, noise_eval_per_family, noise_seconds, rirs_train,
        rirs_eval, version``.

    Example
    -------
    >>> default_config(seed=7)["seed"], default_config()["test_pairs"]
    (7, 96)
    """
    cfg = {
        "seed": 1234,
        "train_minutes": 30.0,
        "valid_pairs": 48,
        "test_pairs": 96,
        "unpaired_minutes": 5.0,
        "snrs": list(SNRS),
        "noise_floor_db": [-70.0, -60.0],
        "t60_range": [0.2, 1.2],
        "noise_train_per_family": 6,
        "noise_eval_per_family": 2,
        "noise_seconds": 10.0,
        "rirs_train": 40,
        "rirs_eval": 10,
        "version": CORPUS_VERSION,
    }
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise TypeError(f"unknown corpus options: {sorted(unknown)}")
    cfg.update(overrides)
    return normalize_config(cfg)


def prepare_embedded_corpus(
    data_folder,
    seed=1234,
    train_minutes=30.0,
    valid_pairs=48,
    test_pairs=96,
    unpaired_minutes=5.0,
    num_workers=2,
    snrs=SNRS,
    noise_floor_db=(-70.0, -60.0),
    t60_range=(0.2, 1.2),
    noise_train_per_family=6,
    noise_eval_per_family=2,
    noise_seconds=10.0,
    rirs_train=40,
    rirs_eval=10,
    skip_prep=False,
    overwrite=False,
):
    """Generates (or verifies and completes) the embedded corpus and writes its manifests.

    Usable as a SpeechBrain recipe data-preparation function (all arguments are plain keywords).
    A second call with the same arguments regenerates only missing or unreadable files (checked
    from the file headers) and rewrites the manifests. A folder stamped with other arguments is
    refused (:class:`CorpusConflictError`, naming the settings that differ) unless ``overwrite``:
    then the corpus is regenerated and the files of the older plan removed.

    Arguments
    ---------
    data_folder : str
        Output folder (created).
    seed : int
        Everything is drawn from this seed (identical seed and sizes give identical audio).
    train_minutes : float
        Approximate minutes of clean training speech.
    valid_pairs : int
        Number of validation pairs (held-out voices).
    test_pairs : int
        Number of test pairs (held-out voices); 96 covers SNR x reverb x noise family once.
    unpaired_minutes : float
        Approximate minutes of noisy speech without clean reference (training voices).
    num_workers : int
        Worker processes (0/1: in this process). Does not change the output.
    snrs : sequence of float
        SNR grid in dB for pairs and unpaired noisy speech.
    noise_floor_db : float or (float, float) or None
        Noise floor added to clean speech, in dB relative to the speech level, fixed or drawn
        from a range per utterance; None disables it (then pauses are exact zeros).
    t60_range : (float, float)
        Range of reverberation times in seconds.
    noise_train_per_family, noise_eval_per_family : int
        Noise files per family in ``noise/train`` and in each of ``noise/valid``, ``noise/test``.
    noise_seconds : float
        Length of each noise file.
    rirs_train, rirs_eval : int
        Synthetic RIRs in ``rirs/train`` and in each of ``rirs/valid``, ``rirs/test``.
    skip_prep : bool
        Return the manifest paths without doing anything.
    overwrite : bool
        Regenerate a folder that holds a corpus of other settings (default: refuse).

    Returns
    -------
    dict
        Manifest paths: ``train_clean, valid, test, unpaired_noisy, noise_train, noise_valid,
        noise_test, rirs_train, rirs_valid, rirs_test``.

    Raises
    ------
    CorpusConflictError
        When ``data_folder`` holds a corpus of other settings and ``overwrite`` is False.
    speechbrain_sqe.dataio.tts.MissingToolError
        When flite or espeak-ng is not installed (the message says ``apt-get install flite espeak-ng``).

    Example
    -------
    >>> import tempfile
    >>> paths = prepare_embedded_corpus(tempfile.mkdtemp(), train_minutes=0.05, valid_pairs=1,
    ...     test_pairs=1, unpaired_minutes=0.0, noise_train_per_family=0, noise_eval_per_family=0,
    ...     rirs_train=1, rirs_eval=0, num_workers=1)
    >>> open(paths["test"]).readline().strip()
    'ID,duration,clean_wav,noisy_wav,snr,noise_type,t60,reverb,voice,text'
    """
    paths = manifest_paths(data_folder)
    if skip_prep:
        return paths
    folder = os.path.abspath(data_folder)
    floor = None if noise_floor_db is None or noise_floor_db is False else noise_floor_db
    cfg = default_config(
        seed=seed, train_minutes=float(train_minutes), valid_pairs=int(valid_pairs), test_pairs=int(test_pairs),
        unpaired_minutes=float(unpaired_minutes), snrs=[float(s) for s in snrs], noise_floor_db=floor,
        t60_range=[float(t) for t in t60_range], noise_train_per_family=int(noise_train_per_family),
        noise_eval_per_family=int(noise_eval_per_family), noise_seconds=float(noise_seconds),
        rirs_train=int(rirs_train), rirs_eval=int(rirs_eval),
    )
    start = time.time()
    stamp_path = os.path.join(folder, STAMP_NAME)
    stamp = read_stamp(stamp_path)
    jobs = plan_embedded_corpus(folder, cfg)
    # the plan's digest catches any change of what is generated, even with the same arguments
    cfg["plan"] = plan_digest(jobs)
    force = stamp is None or stamp.get("config") != cfg
    changes = _config_changes(stamp.get("config") or {}, cfg) if stamp else []
    if changes and not overwrite:
        raise CorpusConflictError(
            f"{folder}: holds an embedded corpus of other settings ({'; '.join(changes)}); "
            "use another data_folder, or pass overwrite=True (recipes: --corpus_options={overwrite: true})"
        )
    # files of an older plan: removed only where this function wrote before (a stamp exists)
    removed = remove_stale(_output_folders(folder), {p for job in jobs for p in job["outputs"]}) if stamp else 0
    if removed:
        logger.info("removed %d files of an older corpus plan", removed)
    if force or not stamp.get("complete"):
        check_tts_tools()  # fail early, before spawning workers
    write_stamp(stamp_path, cfg, complete=False)
    rows, generated = execute_plan(run_embedded_job, jobs, num_workers, force, desc="embedded corpus")
    if generated and not force:
        logger.info("regenerated %d missing or unreadable files", generated)
    counts = _write_manifests(paths, jobs, rows)
    seconds = round(time.time() - start, 2)
    if not generated and stamp and stamp.get("seconds"):
        seconds = stamp["seconds"]  # a pure verification keeps the generation time on record
    write_stamp(stamp_path, cfg, complete=True, counts=counts, seconds=seconds)
    return paths


def _write_manifests(paths, jobs, rows):
    by_split = {}
    for job, row in zip(jobs, rows):
        by_split.setdefault(job["split"], []).append(row)
    for name, columns in MANIFEST_COLUMNS.items():
        write_manifest(paths[name], by_split.get(name, []), columns)
    for kind in ("noise", "rirs"):
        for split in EVAL_SPLITS:
            write_audio_list(paths[f"{kind}_{split}"], by_split.get(f"{kind}_{split}", []))
    return {name: len(items) for name, items in sorted(by_split.items())}


def _floor_arg(values):
    if values in (["none"], ["None"], ["off"]):
        return None
    numbers = [float(v) for v in values]
    return numbers[0] if len(numbers) == 1 else numbers


def main(argv=None):
    """Command line: ``python -m speechbrain_sqe.dataio.embedded --data_folder DIR [options]``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The manifest paths.

    Example
    -------
    >>> import tempfile
    >>> paths = main(["--data_folder", tempfile.mkdtemp(), "--skip_prep"])
    >>> "train_clean" in paths
    True
    """
    parser = argparse.ArgumentParser(description="Generate the embedded speech corpus (flite + espeak-ng).")
    parser.add_argument("--data_folder", required=True, help="output folder, e.g. data/embedded")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train_minutes", type=float, default=30.0)
    parser.add_argument("--valid_pairs", type=int, default=48)
    parser.add_argument("--test_pairs", type=int, default=96)
    parser.add_argument("--unpaired_minutes", type=float, default=5.0)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--snrs", type=float, nargs="+", default=list(SNRS))
    parser.add_argument("--noise_floor_db", nargs="+", default=["-70", "-60"], help="LOW HIGH, one value, or none")
    parser.add_argument("--skip_prep", action="store_true")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate a folder that holds a corpus of other settings (default: refuse)")
    args = parser.parse_args(argv)
    start = time.time()
    paths = prepare_embedded_corpus(
        args.data_folder, seed=args.seed, train_minutes=args.train_minutes, valid_pairs=args.valid_pairs,
        test_pairs=args.test_pairs, unpaired_minutes=args.unpaired_minutes, num_workers=args.num_workers,
        snrs=args.snrs, noise_floor_db=_floor_arg(args.noise_floor_db), skip_prep=args.skip_prep,
        overwrite=args.overwrite,
    )
    if not args.skip_prep:
        for name, path in paths.items():
            print(f"{name:>15}: {path}")
        print(f"done in {time.time() - start:.1f} s")
    return paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    try:
        main(sys.argv[1:])
    except CorpusConflictError as error:  # a user error: one line, no traceback
        sys.exit(f"embedded corpus: {error}")
