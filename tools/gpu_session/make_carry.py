"""Builds the data a lent GPU machine trains on: what fits beside the repository in one device call.

    python tools/gpu_session/make_carry.py [--shared ../shared/data] [--out .gpu] [--train-mib 24]
        [--max-seconds 5] [--valid 24] [--test 4]

The device tool sends the repository and at most 64 MiB in all (README of the library's ``device``
entry): the real training speech (141 min, 140 MiB of FLAC) does not fit. This writes ``<out>/speech``
(a ``manifest.csv`` and its files) with a speaker-balanced subset of the training split: one file of
every training speaker (shortest first), then a second of each, ... until ``--train-mib``; training
files are cut to their middle ``--max-seconds`` (the recipes train on 1-1.3 s crops, so more
speakers fit), ``--valid`` validation and ``--test`` test utterances (speaker splits kept), and
``<out>/real`` (a ``splits.csv`` and its files) with every training noise and room plus one test noise
and one test room, the smallest (the recipes' test split needs one of each). Paths are relative, so the recipes
read it anywhere: ``--source_folder=<out>/speech/manifest.csv --noise_folder=<out>/real/splits.csv
--rir_folder=<out>/real/splits.csv``. The folder must be ignored by git (``.git/info/exclude``), and
named in the device call's ``carry``; ``tools/gpu_session/README.md`` has the whole session.
"""

import argparse
import csv
import os
import random
import shutil
from collections import defaultdict

import soundfile


def _speaker_balanced(rows, size_of, budget, seed):
    """Training rows, one per speaker per round (each speaker's shortest first), within ``budget``."""
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[row["speaker"]].append(row)
    rng = random.Random(seed)
    for files in by_speaker.values():
        rng.shuffle(files)  # ties in size broken by the seed, then shortest first
        files.sort(key=size_of)
    chosen, used, depth = [], 0.0, 0
    while True:
        added = False
        for speaker in sorted(by_speaker):
            files = by_speaker[speaker]
            if depth < len(files) and used + size_of(files[depth]) <= budget:
                chosen.append(files[depth])
                used += size_of(files[depth])
                added = True
        depth += 1
        if not added:
            return chosen, used


def build(shared, out, train_mib=24.0, max_seconds=5.0, valid=24, test=4, seed=1234):
    """Writes ``out`` (see the module doc); returns a one-line summary."""
    speech_root, real_root = os.path.join(shared, "speech"), os.path.join(shared, "real")
    with open(os.path.join(speech_root, "manifest.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0].keys())

    def size_of(row):  # bytes once cut to max_seconds (FLAC size scales with duration)
        full = os.path.getsize(os.path.join(speech_root, row["path"]))
        return full * min(1.0, max_seconds / float(row["duration_s"]))

    train, used = _speaker_balanced([r for r in rows if r["split"] == "train"], size_of,
                                    train_mib * 2**20, seed)
    rng = random.Random(seed)
    picked = {}
    for split, count in (("valid", valid), ("test", test)):
        members = [r for r in rows if r["split"] == split]
        rng.shuffle(members)
        picked[split] = members[:count]
    shutil.rmtree(out, ignore_errors=True)
    with open(_make(os.path.join(out, "speech", "manifest.csv")), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in train + picked["valid"] + picked["test"]:
            source, target = os.path.join(speech_root, row["path"]), _make(os.path.join(out, "speech", row["path"]))
            if row["split"] == "train" and float(row["duration_s"]) > max_seconds:
                wav, rate = soundfile.read(source, dtype="int16")
                keep = int(max_seconds * rate)
                start = (len(wav) - keep) // 2
                soundfile.write(target, wav[start:start + keep], rate, format="FLAC", subtype="PCM_16")
                row = dict(row, duration_s=f"{keep / rate:.3f}")
            else:
                shutil.copyfile(source, target)
            writer.writerow(row)
    with open(os.path.join(real_root, "splits.csv"), newline="", encoding="utf-8") as handle:
        sources = list(csv.DictReader(handle))
    kept = [row for row in sources if row["split"] == "train"]
    for kind in sorted({row.get("kind", "") for row in sources}):  # the smallest test file of each kind
        tests = [row for row in sources if row["split"] == "test" and row.get("kind", "") == kind]
        kept += sorted(tests, key=lambda row: os.path.getsize(os.path.join(real_root, row["path"])))[:1]
    with open(_make(os.path.join(out, "real", "splits.csv")), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(sources[0].keys()))
        writer.writeheader()
        for row in kept:
            shutil.copyfile(os.path.join(real_root, row["path"]), _make(os.path.join(out, "real", row["path"])))
            writer.writerow(row)
    minutes = sum(min(max_seconds, float(r["duration_s"])) for r in train) / 60
    return (f"{out}: training speech {len(train)} files of {len({r['speaker'] for r in train})} speakers, "
            f"{minutes:.1f} min, {used / 2**20:.1f} MiB; valid {len(picked['valid'])}, test {len(picked['test'])}; "
            f"noises and rooms {len(kept)}")


def _make(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--out", default=".gpu")
    parser.add_argument("--train-mib", type=float, default=24.0)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--valid", type=int, default=24)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    print(build(args.shared, args.out, args.train_mib, args.max_seconds, args.valid, args.test, args.seed))


if __name__ == "__main__":
    main()
