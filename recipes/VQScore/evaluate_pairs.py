#!/usr/bin/env python3
"""Evaluates a trained VQScore model on any noisy/clean pairs manifest.

    python recipes/VQScore/evaluate_pairs.py --model results/vqscore/1234/hub \
        --manifest data/real_mix/test.csv --output results/vqscore_real

The manifest is a pairs CSV (``ID, clean_wav, noisy_wav`` and optional ``snr``, ``noise_type``,
``reverb``), as written by the embedded corpus, the folders preparation (e.g. on
``../shared/data/real``) or the real-corpus preparations. Writes the same report as the recipe's
test stage: per-file CSV, correlations overall and per condition, scatter plot.
"""

import argparse
import os

from speechbrain_sqe.analysis.quality_report import (
    format_summary_markdown,
    load_reference_metrics,
    rows_by_id,
    write_quality_report,
)
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.quality import VQScore


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=VQScore.DEFAULT_SOURCE, help="hub folder or id")
    parser.add_argument("--manifest", required=True, help="pairs CSV")
    parser.add_argument("--output", required=True, help="report folder")
    parser.add_argument("--metrics", nargs="+", default=["pesq_wb", "stoi"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    rows = rows_by_id(args.manifest)
    scorer = VQScore.from_hparams(source=args.model, savedir=os.path.join(args.output, "model"))
    noisy = [row["noisy_wav"] for row in rows.values()]
    clean = [row["clean_wav"] for row in rows.values()]
    noisy_scores, failures = score_files(scorer, noisy)
    clean_scores, clean_failures = score_files(scorer, clean)
    if failures or clean_failures:
        raise SystemExit(f"could not score: {failures + clean_failures}")
    by_path = {r["path"]: r["vqscore"] for r in noisy_scores + clean_scores}
    scores = {
        uid: {"vqscore_noisy": by_path[row["noisy_wav"]], "vqscore_clean": by_path[row["clean_wav"]]}
        for uid, row in rows.items()
    }
    reference = load_reference_metrics(
        args.manifest, os.path.join(args.output, "reference_metrics.csv"), args.metrics, args.jobs
    )
    summary = write_quality_report(scores, reference, args.manifest, args.output)
    print(format_summary_markdown(summary))
    return summary


if __name__ == "__main__":
    main()
