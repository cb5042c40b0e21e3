#!/usr/bin/env python3
"""How the speech-activity measure behaves on a *valid* split (where its thresholds were chosen)::

    python -m speechbrain_sqe.dataio.embedded --data_folder data/embedded48 --train_minutes 1 \
        --unpaired_minutes 0.5 --valid_pairs 48 --test_pairs 8 --num_workers 1
    python benchmarks/speech_activity_valid.py --data_folder data/embedded48

Prints, for the noise-only clips (no speech: should read as none) and the noisy and clean files of
the valid pairs (speech: should read as speech), how many are read as holding speech, and the files
read wrongly with their voiced duration.
"""

import argparse
import csv
import os

from speechbrain_sqe.dataio.activity import has_speech, speech_frames
from speechbrain_sqe.dataio.audio import load_audio


def _read(manifest):
    with open(manifest, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _voiced_seconds(wav):
    return float(speech_frames(wav, 16000)[1].sum()) * 256 / 16000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_folder", default="data/embedded48")
    args = parser.parse_args(argv)
    groups = {"noise only (valid)": [(r["ID"], r["wav"], False) for r in _read(os.path.join(args.data_folder, "noise_valid.csv"))]}
    pairs = _read(os.path.join(args.data_folder, "valid.csv"))
    groups["noisy (valid)"] = [(f"{r['ID']} {r['snr']} dB {r['noise_type']}", r["noisy_wav"], True) for r in pairs]
    groups["clean (valid)"] = [(r["ID"], r["clean_wav"], True) for r in pairs]
    for group, items in groups.items():
        wrong = []
        for name, path, expected in items:
            wav = load_audio(path, 16000, warn=False)
            if has_speech(wav, 16000) != expected:
                wrong.append(f"{name} ({_voiced_seconds(wav):.3f} s voiced)")
        print(f"{group}: {len(items) - len(wrong)} of {len(items)} right; wrong: {', '.join(wrong) or 'none'}")


if __name__ == "__main__":
    main()
