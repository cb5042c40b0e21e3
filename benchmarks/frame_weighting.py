#!/usr/bin/env python3
"""VQScore's agreement with PESQ when frames without speech are left out of its average.

The VQScore paper averages the frame scores over every frame and leaves open how frames should be
weighted. This compares ``frame_weighting="all"`` (the paper) with ``"speech"`` (only the frames
:mod:`speechbrain_sqe.dataio.activity` marks as speech) on pairs manifests, with the same model::

    python benchmarks/frame_weighting.py --manifest data/embedded/test.csv data/real_mix/test.csv \
        --output results/frame_weighting

Per manifest: Spearman and Pearson correlation of the noisy files' VQScore with PESQ (wide band,
noisy against clean, cached by :func:`~speechbrain_sqe.analysis.quality_report.load_reference_metrics`),
how often the clean file scores above its noisy one, and the share of frames marked as speech.
Writes ``frame_weighting.json`` and prints a markdown table.
"""

import argparse
import json
import os

import torch
from scipy.stats import pearsonr, spearmanr

from speechbrain_sqe.analysis.quality_report import load_reference_metrics, rows_by_id
from speechbrain_sqe.dataio.activity import has_speech, speech_frames
from speechbrain_sqe.inference.quality import VQScore


def _scores(scorer, paths, weighting):
    out = {}
    for path in paths:
        wav = scorer.load_file(path)
        out[path] = float(scorer.score_batch(wav, frame_weighting=weighting)[0])
    return out


def evaluate(scorer, manifest, cache):
    """Correlations with PESQ for both weightings on one pairs manifest."""
    rows = rows_by_id(manifest)
    reference = load_reference_metrics(manifest, cache, ["pesq_wb"], jobs=1)
    paths = sorted({row[key] for row in rows.values() for key in ("noisy_wav", "clean_wav")})
    speech_share = [float(speech_frames(scorer.load_file(row["noisy_wav"]))[0].float().mean())
                    for row in rows.values()]
    result = {"pairs": len(rows), "speech_frames_noisy": sum(speech_share) / len(speech_share),
              "no_speech_files": [path for path in paths if not has_speech(scorer.load_file(path))]}
    scores = {weighting: _scores(scorer, paths, weighting) for weighting in ("all", "speech")}
    # Both weightings on the same files: those where "speech" finds speech frames in both files.
    common = [uid for uid in rows if all(scores["speech"][rows[uid][k]] == scores["speech"][rows[uid][k]]
                                         for k in ("noisy_wav", "clean_wav"))]
    for weighting, ids in (("all", common), ("speech", common), ("all_files", list(rows))):
        scores_of = scores[weighting.removesuffix("_files")]
        noisy = [scores_of[rows[uid]["noisy_wav"]] for uid in ids]
        pesq = [reference[uid]["pesq_wb"] for uid in ids]
        above = [scores_of[rows[uid]["clean_wav"]] > scores_of[rows[uid]["noisy_wav"]] for uid in ids]
        result[weighting] = {
            "scored": len(ids),
            "spearman_pesq": float(spearmanr(noisy, pesq).statistic),
            "pearson_pesq": float(pearsonr(noisy, pesq).statistic),
            "clean_above_noisy": sum(above) / len(above),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", nargs="+", required=True, help="pairs CSVs (ID, clean_wav, noisy_wav)")
    parser.add_argument("--model", default=VQScore.DEFAULT_SOURCE, help="hub folder (default: shipped)")
    parser.add_argument("--output", default="results/frame_weighting")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.output, exist_ok=True)
    scorer = VQScore.from_hparams(source=args.model)
    results = {}
    for manifest in args.manifest:
        name = os.path.basename(os.path.dirname(os.path.abspath(manifest))) + "/" + os.path.basename(manifest)
        cache = os.path.join(args.output, name.replace("/", "_") + ".pesq.csv")
        results[name] = evaluate(scorer, manifest, cache)
    with open(os.path.join(args.output, "frame_weighting.json"), "w", encoding="utf-8") as stream:
        json.dump(results, stream, indent=2)
    print("| test set | pairs (both with speech frames) | speech frames (noisy) | Spearman PESQ all / "
          "speech | Pearson PESQ all / speech | clean > noisy all / speech | Spearman PESQ all, every pair | "
          "files read as no speech |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        a, s = r["all"], r["speech"]
        print(f"| {name} | {r['pairs']} ({s['scored']}) | {100 * r['speech_frames_noisy']:.1f}% | "
              f"{a['spearman_pesq']:.3f} / {s['spearman_pesq']:.3f} | {a['pearson_pesq']:.3f} / "
              f"{s['pearson_pesq']:.3f} | {100 * a['clean_above_noisy']:.1f}% / {100 * s['clean_above_noisy']:.1f}% | "
              f"{r['all_files']['spearman_pesq']:.3f} | {len(r['no_speech_files'])} |")
    return results


if __name__ == "__main__":
    main()
