#!/usr/bin/env python3
"""Correlations of a ``<set>_quality.csv`` written by ``measure_models.py``, overall and per dry/reverberant half.

    python recipes/RealSpeech/summarize_quality.py results/real_speech/shipped/speakers/speakers_quality.csv

Prints JSON: the share of pairs where VQScore rates the clean file above its noisy version, the
Spearman correlations of VQScore with PESQ, STOI, DNSMOS OVRL and Distill-MOS, those of DNSMOS OVRL
and Distill-MOS with PESQ and STOI, and the PESQ correlations of the three predictors on the dry
and the reverberant pairs separately.
"""

import csv
import json
import sys

import numpy as np

from speechbrain_sqe.metrics.correlation import correlation


def summarize(rows):
    """The summary of quality rows (dicts with ``vqscore_clean``, ``vqscore_noisy``, the metrics, ``reverb``)."""
    def column(items, key):
        return [float(item[key]) for item in items]

    summary = {"pairs": len(rows), "clean_above_noisy": float(np.mean(
        [float(r["vqscore_clean"]) > float(r["vqscore_noisy"]) for r in rows]))}
    for target in ("pesq_wb", "stoi", "dnsmos_ovrl", "distillmos"):
        summary[f"vqscore_spearman_{target}"] = correlation(column(rows, "vqscore_noisy"), column(rows, target))["spearman"]
    for peer in ("dnsmos_ovrl", "distillmos"):
        for target in ("pesq_wb", "stoi"):
            summary[f"{peer}_spearman_{target}"] = correlation(column(rows, peer), column(rows, target))["spearman"]
    for label, flag in (("dry", "False"), ("reverberant", "True")):
        part = [r for r in rows if str(r["reverb"]) == flag]
        summary[label] = {"pairs": len(part)} | {
            f"{name}_spearman_pesq_wb": correlation(column(part, key), column(part, "pesq_wb"))["spearman"]
            for name, key in (("vqscore", "vqscore_noisy"), ("dnsmos_ovrl", "dnsmos_ovrl"), ("distillmos", "distillmos"))
        }
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    with open(argv[0], newline="") as handle:
        summary = summarize(list(csv.DictReader(handle)))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
