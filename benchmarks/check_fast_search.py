"""How far the faster VQScore arithmetic moves the scores: the bfloat16 nearest-code search
(``--fast-search``), bfloat16 convolutions (``--precision bfloat16``) and/or float32 convolutions by
overlap-save (``--convolution overlap_save``), against the float32 scores of the same files with
oneDNN's direct convolutions.

    python benchmarks/check_fast_search.py FILES_OR_FOLDERS_OR_MANIFESTS... [--model FOLDER]
        [--fast-search] [--precision bfloat16] [--convolution overlap_save]

A ``.csv`` input is a manifest: its ``*_wav`` columns are scored (e.g. the real test sets of
``python -m speechbrain_sqe.dataio.real_testsets``). Prints the largest and mean absolute
difference, the fraction of files with identical scores (to 1e-6), the Spearman correlation of
the two score lists and their standard deviation (the scale a difference should be read on).
"""

import argparse
import csv

import numpy as np
from scipy.stats import spearmanr

from speechbrain_sqe.dataio.files import expand_audio_inputs
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.quality import VQScore


def gather_files(inputs):
    """Audio files of folders/files, and of every ``*_wav`` column of ``.csv`` manifests."""
    files, plain = [], []
    for item in inputs:
        if item.endswith(".csv"):
            with open(item, newline="", encoding="utf-8") as stream:
                for row in csv.DictReader(stream):
                    files += [value for key, value in row.items() if key.endswith("_wav") and value]
        else:
            plain.append(item)
    return files + (expand_audio_inputs(plain) if plain else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--model", default=VQScore.DEFAULT_SOURCE)
    parser.add_argument("--fast-search", action="store_true", help="bfloat16 nearest-code search")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="arithmetic of the convolutions of the compared scorer")
    parser.add_argument("--convolution", default="direct", choices=("direct", "overlap_save"),
                        help="algorithm of the float32 convolutions of the compared scorer")
    args = parser.parse_args()
    if not args.fast_search and args.precision == "float32" and args.convolution == "direct":
        parser.error("nothing to compare: give --fast-search, --precision bfloat16 and/or --convolution overlap_save")
    files = gather_files(args.inputs)
    scores = []
    for options in ({"fast_search": False, "precision": "float32", "convolution": "direct"},
                    {"fast_search": args.fast_search, "precision": args.precision, "convolution": args.convolution}):
        scorer = VQScore.from_hparams(source=args.model, savedir="/tmp/sqe_check_model", **options)
        results, failures = score_files(scorer, files, progress=False, num_workers=0)
        assert not failures, failures
        scores.append(np.array([r["vqscore"] for r in results]))
    exact, other = scores
    diff = np.abs(other - exact)
    print(f"files: {len(files)}; max |diff| {diff.max():.2e}; mean |diff| {diff.mean():.2e}; "
          f"identical (<1e-6): {100 * np.mean(diff < 1e-6):.1f}%; Spearman {spearmanr(exact, other)[0]:.6f}; "
          f"score std {exact.std():.4f}")


if __name__ == "__main__":
    main()
