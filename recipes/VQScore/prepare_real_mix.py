#!/usr/bin/env python3
"""Builds noisy/clean test pairs from real recordings (e.g. ``../shared/data/real``).

    python recipes/VQScore/prepare_real_mix.py --real ../shared/data/real --output data/real_mix

Real clean speech (``clean/``) mixed with real noise (``noise/``) at the SNR grid -5..20 dB, half
of the pairs reverberated with the real impulse responses (``rirs/``). Every noise recording is
cut in time between the splits, so the test pairs hear all of them. The pairs measure whether a
model trained on synthetic voices transfers to human speech (``evaluate_pairs.py``).
"""

import argparse
import os

from speechbrain_sqe.dataio.folders import prepare_from_folders


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True, help="folder with clean/, noise/ and rirs/")
    parser.add_argument("--output", default="data/real_mix")
    parser.add_argument("--test_pairs", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.real):
        parser.error(f"{args.real}: folder does not exist (the real recordings, see README)")
    manifests = prepare_from_folders(
        args.output, os.path.join(args.real, "clean"),
        noise_folder=os.path.join(args.real, "noise"), rir_folder=os.path.join(args.real, "rirs"),
        seed=args.seed, valid_fraction=0.1, test_fraction=0.85, valid_pairs=6,
        test_pairs=args.test_pairs, num_workers=1, noise_split="time",
    )
    print(manifests["test"])


if __name__ == "__main__":
    main()
