#!/usr/bin/env python3
"""Measures a VQScore model and an enhancer on the two real-speech test sets.

    python -m speechbrain_sqe.dataio.real_testsets --shared ../shared/data --output data/real_test
    python recipes/RealSpeech/measure_models.py --testsets data/real_test --output results/real_speech/shipped

By default the models shipped in the package. For each set (``speakers``, ``cross_source``):

- quality prediction, on the noisy mixtures against the **dry** clean reference (reverberation
  counts as a degradation): Spearman of VQScore with PESQ (wide band), STOI, DNSMOS OVRL and
  Distill-MOS; the same agreement of DNSMOS OVRL and Distill-MOS with PESQ in the same run; the
  share of pairs where VQScore rates the clean file above its noisy version;
- enhancement (any enhancer folder, loaded with ``load_model``; ``--mix``: the model's own default
  unless given, where it has that option), against the clean reference of ``--reference``: by
  default (``reverb``) the **reverberant** clean speech (the speech as it is in the mixture: the VQ
  enhancer does not dereverberate); ``dry`` the dry clean speech; ``auto`` the dry one for an
  enhancer that dereverberates (``Enhancer.DEREVERBERATES``: BSSE, trained to output the dry
  speech), else the reverberant one. PESQ, STOI, DNSMOS OVRL and Distill-MOS of the input and the
  output, averaged over all pairs (-5..20 dB) and per SNR, and the output level (least-squares gain
  of the output against the reference). The summary names the reference column.

Writes ``<output>/<set>_quality.csv``, ``<set>_enhancement.csv``, ``summary.json`` and
``summary.md``; prints the markdown.

The reference metrics of the quality part (PESQ, STOI, DNSMOS OVRL, Distill-MOS of each noisy
file against the dry clean) do not depend on the model: they are computed once and kept in
``<reference-cache>/<set>_quality_reference.csv`` (default ``results/real_speech/reference_cache``),
a row reused only for the same files unchanged since (path, size and modification time, see
:func:`speechbrain_sqe.analysis.quality_report.load_reference_metrics`). Scoring another VQScore
model on both sets then costs seconds:

    python recipes/RealSpeech/measure_models.py --vqscore results/vqscore/1234/hub --enhancer '' \
        --output results/real_speech/my_vqscore
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from speechbrain_sqe.analysis.quality_report import load_reference_metrics
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.inference.batch_enhancement import enhance_files
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.metrics.correlation import correlation
from speechbrain_sqe.metrics.registry import METRICS
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

SETS = ("speakers", "cross_source")
#: The ``--reference`` kinds: the manifest column of each.
REFERENCES = {"reverb": "clean_reverb_wav", "dry": "clean_wav"}
QUALITY_METRICS = ["pesq_wb", "stoi", "dnsmos_ovrl", "distillmos"]
ENHANCE_METRICS = ["pesq_wb", "stoi", "dnsmos_ovrl"]


def _evaluate(ids, refs, degs, metrics, jobs):
    pairs = [Pair(uid, ref, deg) for uid, ref, deg in zip(ids, refs, degs)]
    rows, failures = evaluate_pairs(pairs, metrics, jobs=jobs)
    if failures:
        raise SystemExit(f"metric failures: {failures[:3]}")
    return {row["file"]: row for row in rows}


def _mean(values):
    values = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(np.mean(values)) if values else float("nan")


def read_test_set(testsets, name, limit=None):
    """The manifest path and (the first ``limit``) rows of one real-speech test set.

    Raises ``SystemExit`` with the command that makes the sets when the CSV is absent.

    Example
    -------
    >>> read_test_set("/nonexistent", "speakers")
    Traceback (most recent call last):
    SystemExit: /nonexistent/speakers.csv: not found; run python -m speechbrain_sqe.dataio.real_testsets first
    """
    manifest = os.path.join(testsets, f"{name}.csv")
    if not os.path.isfile(manifest):
        raise SystemExit(f"{manifest}: not found; run python -m speechbrain_sqe.dataio.real_testsets first")
    return manifest, read_manifest(manifest)[:limit]


def ls_gain(output, reference):
    """Least-squares gain of ``output`` against ``reference`` (1 keeps the level; no delay assumed)."""
    n = min(len(output), len(reference))
    output, reference = output[:n].astype(np.float64), reference[:n].astype(np.float64)
    return float(np.dot(output, reference) / max(np.dot(reference, reference), 1e-20))


def quality_reference(rows, jobs, cache=None):
    """The quality metrics of each noisy file against its dry clean reference, ``{ID: {metric: value}}``.

    With ``cache`` (a CSV path), computed once and reused (see ``load_reference_metrics``): the
    pairs are keyed by their files' real paths (a worktree's ``data`` link or a re-written
    manifest does not invalidate them), sizes and modification times. The pairs it was computed
    for are written beside it (``<cache>_pairs.csv``).
    """
    if cache is None:
        return _evaluate([row["ID"] for row in rows], [row["clean_wav"] for row in rows],
                         [row["noisy_wav"] for row in rows], QUALITY_METRICS, jobs)
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    manifest = cache[: -len(".csv")] + "_pairs.csv"
    _write_csv(manifest, [{"ID": row["ID"], "clean_wav": os.path.realpath(row["clean_wav"]),
                           "noisy_wav": os.path.realpath(row["noisy_wav"])} for row in rows])
    values = load_reference_metrics(manifest, cache, QUALITY_METRICS, jobs=jobs)
    missing = [name for name in QUALITY_METRICS if name not in next(iter(values.values()))]
    if missing:
        raise SystemExit(f"reference metrics not available here: {missing} (install the eval extra)")
    return values


def measure_quality(rows, scorer, jobs, cache=None):
    clean = [row["clean_wav"] for row in rows]
    noisy = [row["noisy_wav"] for row in rows]
    scores, failures = score_files(scorer, clean + noisy)
    if failures:
        raise SystemExit(f"could not score: {failures[:3]}")
    vq = {item["path"]: item["vqscore"] for item in scores}
    metrics = quality_reference(rows, jobs, cache)
    table = []
    for row in rows:
        entry = {"ID": row["ID"], "snr": row["snr"], "reverb": row["reverb"], "noise_type": row["noise_type"],
                 "vqscore_clean": vq[row["clean_wav"]], "vqscore_noisy": vq[row["noisy_wav"]]}
        entry.update({name: metrics[row["ID"]][name] for name in QUALITY_METRICS})
        table.append(entry)
    column = {key: [entry[key] for entry in table] for key in table[0]}
    summary = {"pairs": len(table),
               "clean_above_noisy": float(np.mean([e["vqscore_clean"] > e["vqscore_noisy"] for e in table]))}
    for target in ("pesq_wb", "stoi", "dnsmos_ovrl", "distillmos"):
        summary[f"vqscore_spearman_{target}"] = correlation(column["vqscore_noisy"], column[target])["spearman"]
    for peer in ("dnsmos_ovrl", "distillmos"):
        summary[f"{peer}_spearman_pesq_wb"] = correlation(column[peer], column["pesq_wb"])["spearman"]
        summary[f"{peer}_spearman_stoi"] = correlation(column[peer], column["stoi"])["spearman"]
    return summary, table


def enhancement_reference(choice, enhancer):
    """The manifest column of the enhancement's clean reference (``--reference``).

    Arguments
    ---------
    choice : str
        ``reverb``, ``dry`` or ``auto`` (dry for an enhancer that dereverberates).
    enhancer : speechbrain_sqe.inference.enhancement.Enhancer
        The loaded enhancer.

    Returns
    -------
    str
        ``clean_reverb_wav`` or ``clean_wav``.

    Example
    -------
    >>> class Removes: DEREVERBERATES = True
    >>> enhancement_reference("auto", Removes()), enhancement_reference("reverb", Removes())
    ('clean_wav', 'clean_reverb_wav')
    """
    if choice == "auto":
        choice = "dry" if enhancer.DEREVERBERATES else "reverb"
    return REFERENCES[choice]


def measure_enhancement(rows, enhancer, mix, out_dir, jobs, noisy_scores=None, metrics=ENHANCE_METRICS,
                        reference_column="clean_reverb_wav"):
    ids = [row["ID"] for row in rows]
    noisy = [row["noisy_wav"] for row in rows]
    reference = [row[reference_column] for row in rows]
    outputs = [os.path.join(out_dir, row["ID"] + ".wav") for row in rows]
    start = time.time()
    _, failures = enhance_files(enhancer, noisy, outputs, **({} if mix is None else {"mix": mix}))
    if failures:
        raise SystemExit(f"could not enhance: {failures[:3]}")
    seconds = time.time() - start
    # The no-reference scores of the input do not depend on the reference: reuse the quality run's
    # (all of them against the dry reference: the quality run scores the input against clean_wav).
    reused = [name for name in metrics if noisy_scores and name in noisy_scores[ids[0]]
              and (not METRICS[name].needs_reference or reference_column == "clean_wav")]
    before = _evaluate(ids, reference, noisy, [m for m in metrics if m not in reused], jobs)
    for uid in ids:
        before[uid].update({name: noisy_scores[uid][name] for name in reused})
    after = _evaluate(ids, reference, outputs, metrics, jobs)
    table = []
    for row, output in zip(rows, outputs):
        entry = {"ID": row["ID"], "snr": row["snr"], "reverb": row["reverb"], "noise_type": row["noise_type"]}
        for name in metrics:
            entry[f"noisy_{name}"] = before[row["ID"]][name]
            entry[f"enhanced_{name}"] = after[row["ID"]][name]
        entry["gain"] = ls_gain(load_audio(output, 16000).numpy(), load_audio(row[reference_column], 16000).numpy())
        table.append(entry)
    summary = {"pairs": len(table), "mix": mix, "reference": reference_column, "enhance_seconds": round(seconds, 1),
               "gain_median": float(np.median([e["gain"] for e in table]))}
    for name in metrics:
        summary[f"noisy_{name}"] = _mean(e[f"noisy_{name}"] for e in table)
        summary[f"enhanced_{name}"] = _mean(e[f"enhanced_{name}"] for e in table)
    summary["by_snr"] = {
        snr: {f"{side}_{name}": _mean(e[f"{side}_{name}"] for e in table if e["snr"] == snr)
              for side in ("noisy", "enhanced") for name in metrics}
        for snr in sorted({e["snr"] for e in table}, key=float)
    }
    return summary, table


def _write_csv(path, table):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def _f(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _g(summary, key):
    return _f(summary.get(key, float("nan")))


def format_markdown(results):
    lines = [("| test set | pairs | clean > noisy | VQScore~PESQ | VQScore~STOI | VQScore~DNSMOS | VQScore~Distill-MOS "
              "| DNSMOS~PESQ | Distill-MOS~PESQ |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        q = result.get("quality")
        if q:
            lines.append(f"| {name} | {q['pairs']} | {100 * q['clean_above_noisy']:.1f}% | "
                         f"{_f(q['vqscore_spearman_pesq_wb'])} | {_f(q['vqscore_spearman_stoi'])} | "
                         f"{_f(q['vqscore_spearman_dnsmos_ovrl'])} | {_f(q['vqscore_spearman_distillmos'])} | "
                         f"{_f(q['dnsmos_ovrl_spearman_pesq_wb'])} | {_f(q['distillmos_spearman_pesq_wb'])} |")
    if not any(result.get("enhancement") for result in results.values()):
        return "\n".join(lines) + "\n"
    lines += ["", "| test set | system | PESQ | STOI | DNSMOS OVRL | Distill-MOS | level (LS gain, median) |",
              "|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        e = result.get("enhancement")
        if e:
            if e.get("reference", "clean_reverb_wav") != "clean_reverb_wav":
                name = f"{name} (reference {e['reference']})"
            for side, label in (("noisy", "noisy input"),
                                ("enhanced", "enhanced" if e["mix"] is None else f"enhanced (mix {e['mix']:g})")):
                cells = " | ".join(_g(e, f"{side}_{m}") for m in ("pesq_wb", "stoi", "dnsmos_ovrl", "distillmos"))
                level = _f(e["gain_median"]) if side == "enhanced" else ""
                lines.append(f"| {name} | {label} | {cells} | {level} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testsets", default="data/real_test", help="folder of speakers.csv and cross_source.csv")
    parser.add_argument("--output", required=True, help="report folder")
    parser.add_argument("--vqscore", default=VQScore.DEFAULT_SOURCE, help="VQScore hub folder ('' to skip)")
    parser.add_argument("--enhancer", default=VQEnhancer.DEFAULT_SOURCE,
                        help="enhancer hub folder, any enhancer (VQ, BSSE...) ('' to skip)")
    parser.add_argument("--mix", type=float, default=None, help="VQ enhancer mix (default: the model's own)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--jobs", type=int, default=2, help="metric worker processes")
    parser.add_argument("--enhance-metrics", nargs="+", default=ENHANCE_METRICS, help="metrics of the enhancer")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each set (a quick check)")
    parser.add_argument("--reference", default="reverb", choices=("reverb", "dry", "auto"),
                        help="clean reference of the enhancement: reverb = clean_reverb_wav, dry = clean_wav, "
                             "auto = dry for an enhancer that dereverberates, else reverb (default: %(default)s)")
    parser.add_argument("--reference-cache", default="results/real_speech/reference_cache",
                        help="folder of the cached quality reference metrics ('' to compute them anew)")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    scorer = VQScore.from_hparams(source=args.vqscore, savedir=os.path.join(args.output, "vqscore_model")) \
        if args.vqscore else None
    enhancer = load_model(args.enhancer, task="enhancement", savedir=os.path.join(args.output, "enhancer_model")) \
        if args.enhancer else None
    mix = None  # only enhancers with a mix option (the VQ enhancer) take one
    if enhancer is not None and "mix" in enhancer.OPTIONS:
        mix = enhancer.hparams.mix if args.mix is None else args.mix
    results = {}
    for name in args.sets:
        manifest, rows = read_test_set(args.testsets, name, args.limit)
        results[name] = {"manifest": os.path.abspath(manifest)}
        quality = None
        if scorer is not None:
            cache = None  # a --limit run keeps a cache of its own: never a partial shared one
            if args.reference_cache:
                part = "" if args.limit is None else f"_first{args.limit}"
                cache = os.path.join(args.reference_cache, f"{name}_quality_reference{part}.csv")
            results[name]["quality"], table = measure_quality(rows, scorer, args.jobs, cache)
            _write_csv(os.path.join(args.output, f"{name}_quality.csv"), table)
            quality = {entry["ID"]: entry for entry in table}
        if enhancer is not None:
            results[name]["enhancement"], table = measure_enhancement(
                rows, enhancer, mix, os.path.join(args.output, "enhanced", name), args.jobs, quality,
                args.enhance_metrics, enhancement_reference(args.reference, enhancer))
            _write_csv(os.path.join(args.output, f"{name}_enhancement.csv"), table)
    results["command"] = " ".join(["python", *sys.argv])
    results["vqscore"] = args.vqscore
    with open(os.path.join(args.output, "summary.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    markdown = format_markdown({k: v for k, v in results.items() if k in SETS})
    with open(os.path.join(args.output, "summary.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return results


if __name__ == "__main__":
    main()
