"""How far the fast (bfloat16 + float32 re-rank) nearest-code search moves VQScore.

    python benchmarks/check_fast_search.py FILES_OR_FOLDERS... [--model FOLDER]

Scores every file with the exact float32 search and with the fast search; prints the largest
and mean absolute difference and the fraction of files with identical scores (to 1e-6).
"""

import argparse

import numpy as np

from speechbrain_sqe.dataio.files import expand_audio_inputs
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.quality import VQScore


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--model", default=VQScore.DEFAULT_SOURCE)
    args = parser.parse_args()
    files = expand_audio_inputs(args.inputs)
    scores = {}
    for fast in (False, True):
        scorer = VQScore.from_hparams(source=args.model, savedir="/tmp/sqe_check_model", fast_search=fast)
        results, _ = score_files(scorer, files, progress=False, num_workers=0)
        scores[fast] = np.array([r["vqscore"] for r in results])
    diff = np.abs(scores[True] - scores[False])
    print(f"files: {len(files)}; max |diff| {diff.max():.2e}; mean |diff| {diff.mean():.2e}; "
          f"identical (<1e-6): {100 * np.mean(diff < 1e-6):.1f}%")


if __name__ == "__main__":
    main()
