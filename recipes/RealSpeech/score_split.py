#!/usr/bin/env python3
"""VQScore models on a recipe's VALIDATION pairs: Spearman with PESQ overall, dry and reverberant, per corpus.

    python recipes/RealSpeech/score_split.py \\
        --manifest data/manifest/manifest-manifest-0ad0ff58ea/valid.csv \\
        --cache results/vqreal/valid_reference/valid_pesq.csv \\
        shipped= a_real=results/vqreal/a_real/hub

Evidence for the ablation's "why" questions gathered on validation data only (never on a test
set): how each model ranks the noisy validation files against their PESQ (overall, on the dry
and on the reverberant half, with a bootstrap interval that shows how much a 48-pair set can
tell apart), how it rates the clean validation files per source corpus (``voice`` prefix), and
the share of pairs where the clean file scores above its noisy version. ``label=`` (empty
folder) is the model shipped in the package. PESQ is computed once and cached (``--cache``).
"""

import argparse
import json
import os

import numpy as np

from speechbrain_sqe.analysis.quality_report import load_reference_metrics
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.metrics.correlation import correlation


def bootstrap_spearman(x, y, rounds=1000, seed=0):
    """The 5th and 95th percentiles of the Spearman correlation over bootstrap resamples of the pairs.

    Example
    -------
    >>> lo, hi = bootstrap_spearman(list(range(30)), list(range(30)), rounds=50)
    >>> round(lo, 3), round(hi, 3)
    (1.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    values = []
    for _ in range(rounds):
        index = rng.integers(0, len(x), len(x))
        values.append(correlation(x[index], y[index])["spearman"])
    return float(np.nanpercentile(values, 5)), float(np.nanpercentile(values, 95))


def _corpus(voice):
    return voice.split("_")[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="a VALIDATION pairs manifest")
    parser.add_argument("--cache", required=True, help="CSV where PESQ of its noisy files is kept")
    parser.add_argument("--output", default=None, help="JSON of the results")
    parser.add_argument("models", nargs="+", help="label=hub folder (empty: the shipped model)")
    args = parser.parse_args(argv)
    if "test" in os.path.basename(args.manifest):
        raise SystemExit("validation data only: test sets are for measurement")
    rows = read_manifest(args.manifest)
    os.makedirs(os.path.dirname(os.path.abspath(args.cache)), exist_ok=True)
    pesq = load_reference_metrics(args.manifest, args.cache, ["pesq_wb"], jobs=1)
    results = {}
    for item in args.models:
        label, folder = item.split("=", 1)
        scorer = VQScore.from_hparams(source=folder or VQScore.DEFAULT_SOURCE,
                                      savedir=os.path.join(os.path.dirname(os.path.abspath(args.cache)), "models", label))
        scores, failures = score_files(scorer, [r["clean_wav"] for r in rows] + [r["noisy_wav"] for r in rows])
        if failures:
            raise SystemExit(f"could not score: {failures[:3]}")
        vq = {s["path"]: s["vqscore"] for s in scores}
        result = {"clean_above_noisy": float(np.mean([vq[r["clean_wav"]] > vq[r["noisy_wav"]] for r in rows]))}
        for part, keep in (("all", lambda r: True), ("dry", lambda r: r["reverb"] == "False"),
                           ("reverberant", lambda r: r["reverb"] == "True")):
            chosen = [r for r in rows if keep(r)]
            x, y = [vq[r["noisy_wav"]] for r in chosen], [pesq[r["ID"]]["pesq_wb"] for r in chosen]
            result[part] = {"pairs": len(chosen), "spearman_pesq": correlation(x, y)["spearman"],
                            "interval_90": bootstrap_spearman(x, y)}
        result["clean_score_by_corpus"] = {
            corpus: float(np.mean([vq[r["clean_wav"]] for r in rows if _corpus(r["voice"]) == corpus]))
            for corpus in sorted({_corpus(r["voice"]) for r in rows})}
        results[label] = result
    text = json.dumps(results, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
    return results


if __name__ == "__main__":
    main()
