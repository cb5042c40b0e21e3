"""The two real-speech test sets every report and benchmark names: real speakers x test noises x test rooms.

``python -m speechbrain_sqe.dataio.real_testsets --shared ../shared/data --output data/real_test``
writes, from the shared real recordings (never copied into the repository):

- ``speakers``: the **test speakers** of ``speech/manifest.csv`` (speechocean762 adults and
  LibriSpeech readers that no training split contains);
- ``cross_source``: speech from sources that **no training corpus contains**: ``real/clean``
  (CMU ARCTIC, SpeechBrain's samples: other speakers, rooms and microphones) and the clean side of
  ``real/pairs`` (VoiceBank, the PESQ and pystoi samples) where usable (readable, at least 1 s);

each mixed with the **test noises and test rooms** of ``real/splits.csv`` only, at -5..20 dB, half
dry and half reverberant, in a balanced design (SNR x reverberation x noise; the room drawn among
the test rooms). Each set is a SpeechBrain CSV (``<output>/<set>.csv``) with two references:

- ``clean_wav``: the **dry** speech. Quality prediction uses it (reverberation is a degradation);
- ``clean_reverb_wav``: the speech as it is in the mixture (reverberant for reverberant rows, the
  dry speech for dry rows), the reference for methods that do not dereverberate (the VQ
  enhancer): PESQ/STOI of an enhancer then measure the noise it removed, not the room it kept.

Everything is drawn from ``--seed`` (each mixture from its own seed: the result does not depend on
the number of workers); re-running skips the files that exist (a changed configuration
regenerates them); a progress bar shows the mixing.
"""

import argparse
import glob
import os
import sys

import numpy as np

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.folders import SNRS, FolderPlanner, _pair_noise, _pair_rir
from speechbrain_sqe.dataio.jobs import (
    execute_plan,
    job_rng,
    normalize_config,
    read_stamp,
    save_atomic,
    write_stamp,
)
from speechbrain_sqe.dataio.levels import TARGET_LEVEL_DB, normalize_level
from speechbrain_sqe.dataio.manifest import audio_duration, write_manifest
from speechbrain_sqe.dataio.manifest_corpus import (
    read_source_list,
    read_speech_manifest,
)
from speechbrain_sqe.dataio.mixing import PEAK_LIMIT, make_pair
from speechbrain_sqe.dataio.rooms import reverberate

SAMPLE_RATE = 16000
TESTSETS = ("speakers", "cross_source")
COLUMNS = ("ID", "duration", "clean_wav", "clean_reverb_wav", "noisy_wav", "snr", "noise_type", "t60", "reverb",
           "voice", "source", "text")
#: The clean side of the shared real pairs: file -> speaker label.
PAIR_CLEAN = {
    "pairs/voicebank_p232_005/clean_p232_005.wav": "voicebank_p232",
    "pairs/pesq_reference/speech.wav": "pesq_reference",
    "pairs/pystoi_sample/clean.wav": "pystoi_sample",
}
MIN_SECONDS = 1.0


def cross_source_speaker(path):
    """A speaker label for a file of ``real/clean`` (CMU ARCTIC voice, SpeechBrain sample speaker).

    Arguments
    ---------
    path : str
        A file name.

    Returns
    -------
    str
        The label.

    Example
    -------
    >>> cross_source_speaker("clean/cmu_arctic_us_aew_a0001.wav"), cross_source_speaker("spk2_snt5.wav")
    ('cmu_aew', 'sb_spk2')
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.startswith("cmu_arctic_us_"):
        return "cmu_" + stem.split("_")[3]
    if stem.startswith("cmu_arctic"):
        return "cmu_other"
    if stem.startswith("spk"):
        return "sb_" + stem.split("_")[0]
    return stem  # sb_example*: one sample each, speakers unknown


def real_test_sources(shared):
    """The clean files of each test set and the test noises and rooms.

    Arguments
    ---------
    shared : str
        The ``shared/data`` folder (with ``speech/`` and ``real/``).

    Returns
    -------
    sources : dict
        ``set -> list of (path, speaker, source)``.
    noises, rooms : list of str
        The test noises and rooms of ``real/splits.csv``.
    """
    real = os.path.join(shared, "real")
    by_split = read_speech_manifest(os.path.join(shared, "speech", "manifest.csv"))
    corpus_of = {}
    import csv

    with open(os.path.join(shared, "speech", "manifest.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            corpus_of[os.path.abspath(os.path.join(shared, "speech", row["path"]))] = row.get("corpus", "speech")
    speakers = [(path, speaker, corpus_of.get(path, "speech")) for path, speaker in by_split["test"]]
    cross = [(os.path.abspath(path), cross_source_speaker(path), "real/clean")
             for path in sorted(glob.glob(os.path.join(real, "clean", "*.wav")))]
    for rel, speaker in PAIR_CLEAN.items():
        path = os.path.join(real, rel)
        duration = audio_duration(path) if os.path.isfile(path) else None
        if duration is not None and duration >= MIN_SECONDS:
            cross.append((os.path.abspath(path), speaker, "real/pairs"))
    splits = os.path.join(real, "splits.csv")
    return ({"speakers": speakers, "cross_source": cross}, read_source_list(splits, "noise")["test"],
            read_source_list(splits, "rir")["test"])


def run_testset_job(job):
    """Mixes one test pair and writes the dry reference, the reverberant reference and the mixture.

    Arguments
    ---------
    job : dict
        A ``pair`` job of :class:`~speechbrain_sqe.dataio.folders.FolderPlanner` with three outputs
        (dry clean, reverberant clean, noisy).

    Returns
    -------
    float
        Seconds.
    """
    rng = job_rng(job["seed"], job["split"], job["index"])
    clean = normalize_level(load_audio(job["file"], SAMPLE_RATE, warn=False).numpy(), TARGET_LEVEL_DB)
    noise = _pair_noise(job["noise"], len(clean), rng)
    rir = _pair_rir(job["rir"], rng)
    dry, noisy = make_pair(clean, noise, job["snr"], rir)
    # make_pair scales both outputs by one gain against clipping; the reverberant reference gets it too.
    gain = float(np.sqrt(np.mean(dry.astype(np.float64) ** 2) / max(np.mean(clean**2), 1e-20)))
    wet = dry if rir is None else np.clip(reverberate(clean, rir) * gain, -PEAK_LIMIT, PEAK_LIMIT)
    save_atomic(job["outputs"][1], wet, SAMPLE_RATE)
    save_atomic(job["outputs"][2], noisy, SAMPLE_RATE)
    return save_atomic(job["outputs"][0], dry, SAMPLE_RATE)


def prepare_real_testsets(shared, output, pairs=96, seed=1234, snrs=SNRS, num_workers=2, sets=TESTSETS):
    """Prepares the real-speech test sets (see the module doc) and returns their manifests.

    Arguments
    ---------
    shared : str
        The ``shared/data`` folder.
    output : str
        Output folder (``<set>.csv`` and ``<set>/{clean,clean_reverb,noisy}/``).
    pairs : int
        Mixtures per set (a multiple of 48 covers SNR x dry/reverberant x the 4 test noises evenly).
    seed : int
        Seed of everything drawn.
    snrs : sequence of float
        SNR grid in dB.
    num_workers : int
        Worker processes.
    sets : sequence of str
        Which sets.

    Returns
    -------
    dict
        ``set -> manifest path``.
    """
    unknown = [name for name in sets if name not in TESTSETS]
    if unknown:
        raise ValueError(f"unknown test set(s) {unknown}; choose among {', '.join(TESTSETS)}")
    for need in ("speech/manifest.csv", "real/splits.csv"):
        if not os.path.isfile(os.path.join(shared, need)):
            raise FileNotFoundError(f"{os.path.join(shared, need)}: not found (is --shared the shared/data folder?)")
    folder = os.path.abspath(output)
    sources, noises, rooms = real_test_sources(shared)
    cfg = {"seed": seed, "pairs": pairs, "snrs": [float(s) for s in snrs], "reverb": True,
           "t60_range": [0.2, 1.2], "shared": os.path.abspath(shared), "noises": noises, "rooms": rooms}
    noise = {"test": [{"file": f, "start": 0.0, "end": 1.0, "name": os.path.splitext(os.path.basename(f))[0]}
                      for f in noises]}
    paths = {}
    for name in sets:
        stamp_path = os.path.join(folder, f"{name}_prep.json")
        set_cfg = normalize_config(dict(cfg, set=name, files=[p for p, _, _ in sources[name]]))
        stamp = read_stamp(stamp_path)
        planner = FolderPlanner(folder, dict(set_cfg, seed=seed), noise, {"test": rooms})
        files = [path for path, _, _ in sources[name]]
        jobs = planner.mix_jobs(name, files, os.path.dirname(files[0]), pairs, files, eval_split="test")
        info = {path: (speaker, source) for path, speaker, source in sources[name]}
        for job in jobs:
            clean, noisy = job["outputs"]
            wet = os.path.join(folder, name, "clean_reverb", os.path.basename(clean))
            job["outputs"] = [clean, wet, noisy]
            speaker, source = info[job["file"]]
            job["row"].update(clean_reverb_wav=wet, voice=speaker, source=source)
        write_stamp(stamp_path, set_cfg, complete=False)
        force = stamp is None or stamp.get("config") != set_cfg
        rows, ran = execute_plan(run_testset_job, jobs, num_workers, force, desc=f"real test set {name}")
        paths[name] = write_manifest(os.path.join(folder, f"{name}.csv"), rows, COLUMNS)
        write_stamp(stamp_path, set_cfg, complete=True, counts={"pairs": len(rows), "generated": ran})
    return paths


def main(argv=None):
    """Command line: ``python -m speechbrain_sqe.dataio.real_testsets --shared DIR --output DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="the shared/data folder (speech/ and real/)")
    parser.add_argument("--output", default="data/real_test", help="output folder")
    parser.add_argument("--pairs", type=int, default=96, help="mixtures per set")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=list(TESTSETS), choices=TESTSETS)
    args = parser.parse_args(argv)
    try:
        paths = prepare_real_testsets(args.shared, args.output, args.pairs, args.seed,
                                      num_workers=args.num_workers, sets=args.sets)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
