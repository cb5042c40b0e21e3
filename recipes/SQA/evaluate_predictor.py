#!/usr/bin/env python3
"""Learned quality predictors against the true metrics, beside VQScore, DNSMOS and Distill-MOS.

    python recipes/SQA/evaluate_predictor.py \\
        --table speakers=results/bsse_modes/peers/peers_speakers_dry.csv \\
        --table cross_source=results/bsse_modes/peers/peers_cross_source_dry.csv \\
        --predictor sqa=results/sqa/real/hub --output results/sqa/real/agreement

Each ``--table NAME=CSV`` is a per-file table of one test set as ``benchmarks/bench_enhance_peers.py``
writes it (``system, ID, path`` and the true metric columns ``pesq_wb, stoi, estoi, si_sdr,
dnsmos_ovrl, distillmos``, computed against the reference), or a split of a label set (its ``wav``
column is the path): every system (the noisy input and each enhancer's outputs) is a group of files. This script scores every file with each ``--predictor
NAME=HUB`` (a hub folder of ``hparams/sqa.yaml``; columns ``<NAME>_<metric>``) and with VQScore
(``--vqscore``, the shipped model by default; ``''`` to skip), resumably (``<output>/<set>_scores.csv``
keeps the rows already scored), and reports, per true metric and predictor, the utterance-level
and system-level LCC / SRCC / MSE and, per system, the mean predicted minus the mean true value (an
enhancer trained against a predictor stands out there: it games it)
(:mod:`speechbrain_sqe.analysis.predictor_report`).

DNSMOS OVRL and Distill-MOS are the table's own columns (the bench run computed them on the same
output files); they appear twice: as targets of the learned predictor's pseudo-label heads, and as
single-score predictors of the reference metrics beside VQScore. Outputs: ``summary.json``,
``report.md`` and one scatter plot per set (``<set>_agreement.png``).
"""

import argparse
import csv
import json
import logging
import math
import os
import sys

import torch
from tqdm import tqdm

from speechbrain_sqe.analysis.predictor_report import (
    agreement_rows,
    format_agreement_markdown,
    format_bias_markdown,
    plot_agreement,
    system_bias_rows,
)
from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio
from speechbrain_sqe.dataio.resumable_csv import ResumableCSV
from speechbrain_sqe.dataio.sqa_labels import resolve_label_path
from speechbrain_sqe.metrics.registry import finite_values

logger = logging.getLogger(__name__)
TARGETS = ("pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "distillmos")
PEER_COLUMNS = {"DNSMOS OVRL": "dnsmos_ovrl", "Distill-MOS": "distillmos"}


def _named(value):
    name, sep, source = value.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, source


def read_table(path):
    """The rows of a per-file table (``system``, ``ID``, ``path`` needed), keyed ``system/ID``.

    A split of a label set (``hparams/sqa.yaml``'s ``train/valid/test.csv``) is read as well: its
    ``wav`` column, resolved against the CSV's folder as every label-set reader does, is the path.
    """
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        columns = set(reader.fieldnames or ())
        from_label_set = "path" not in columns and "wav" in columns
        missing = {"system", "ID", "path"} - columns - ({"path"} if from_label_set else set())
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    for row in rows:
        if from_label_set:
            row["path"] = resolve_label_path(row["wav"], os.path.dirname(os.path.abspath(path)))
        row["key"] = f"{row['system']}/{row['ID']}"
    return rows


def load_scorers(predictors, vqscore):
    """``[(column prefix or name, interface)]``: the learned predictors, then VQScore."""
    from speechbrain_sqe.inference.hub import load_model

    scorers = [(name, load_model(source, task="quality")) for name, source in predictors]
    if vqscore:
        from speechbrain_sqe.inference.quality import VQScore

        source = VQScore.DEFAULT_SOURCE if vqscore == "shipped" else vqscore
        scorers.append(("vqscore", VQScore.from_hparams(source=source)))
    return scorers


def score_columns(scorers):
    """The score CSV's columns after ``key``."""
    columns = []
    for name, model in scorers:
        names = model.metric_names
        columns += [name] if len(names) == 1 and name == "vqscore" else [f"{name}_{m}" for m in names]
    return columns


def score_rows(rows, scorers, path, progress=True):
    """Scores every row's file with every scorer; resumable through ``path``; returns ``{key: row}``."""
    columns = ["key", *score_columns(scorers)]
    table = ResumableCSV(path, columns, key="key", resume=True)
    todo = [row for row in rows if row["key"] not in table.done]
    for row in tqdm(todo, desc=os.path.basename(path), disable=not progress):
        out = {"key": row["key"]}
        try:
            wav = load_audio(row["path"], warn=False)
        except AudioLoadError as error:
            logger.warning("%s: %s (left blank)", row["key"], error)
            table.append(out)
            continue
        for name, model in scorers:
            values = model.score_metrics_batch(wav.unsqueeze(0), torch.ones(1))[0].tolist()
            names = model.metric_names
            if name == "vqscore":
                out["vqscore"] = values[0]
            else:
                out.update({f"{name}_{m}": v for m, v in zip(names, values)})
        table.append(out)
    table.finalize([row["key"] for row in rows])
    return {entry["key"]: entry for entry in table.previous_rows()}


def predictor_list(rows, predictor_names, metrics_by_name, has_vqscore, targets):
    """``(target, display name, column, same units)`` for :func:`agreement_rows`."""
    items = []
    for target in targets:
        for name in predictor_names:
            if target in metrics_by_name[name]:
                items.append((target, name, f"{name}_{target}", True))
        if has_vqscore:
            items.append((target, "VQScore", "vqscore", False))
        for label, column in PEER_COLUMNS.items():
            if column != target and _has_values(rows, column):
                items.append((target, label, column, False))
    return items


def _without_nan(value):
    """``value`` with NaN floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _has_values(rows, column):
    return any(finite_values([row.get(column)]).size for row in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=_named, action="append", required=True, help="SET=per-file CSV")
    parser.add_argument("--predictor", type=_named, action="append", default=[], help="NAME=hub folder")
    parser.add_argument("--vqscore", default="shipped", help="VQScore hub folder ('shipped': the package's; '' to skip)")
    parser.add_argument("--systems", nargs="*", help="only these systems of the tables")
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    os.makedirs(args.output, exist_ok=True)

    scorers = load_scorers(args.predictor, args.vqscore)
    metrics_by_name = {name: tuple(model.metric_names) for name, model in scorers}
    names = [name for name, _ in args.predictor]
    summary, report = {}, ["# Learned quality predictors against the true metrics", "",
                           "Cells: LCC / SRCC (/ MSE where the predictor gives the metric in its own units).",
                           f"Command: `python {' '.join(sys.argv)}`" if argv is None else "", ""]
    for set_name, path in args.table:
        rows = read_table(path)
        if args.systems:
            rows = [row for row in rows if row["system"] in args.systems]
        scores = score_rows(rows, scorers, os.path.join(args.output, f"{set_name}_scores.csv"),
                            progress=not args.no_progress)
        for row in rows:
            row.update({k: v for k, v in scores.get(row["key"], {}).items() if k != "key"})
        targets = [t for t in TARGETS if _has_values(rows, t)]
        items = predictor_list(rows, names, metrics_by_name, bool(args.vqscore), targets)
        table = agreement_rows(rows, items)
        systems = sorted({row["system"] for row in rows})
        bias = system_bias_rows(rows, items)
        summary[set_name] = {"files": len(rows), "systems": systems, "agreement": table, "system_bias": bias}
        report += [f"## {set_name}: {len(rows)} files, {len(systems)} systems ({', '.join(systems)})", ""]
        order = names + (["VQScore"] if args.vqscore else []) + list(PEER_COLUMNS)
        for level in ("utterance", "system"):
            report += [format_agreement_markdown(table, level, targets, order), ""]
        if bias:  # a system over-rated far more than the others was likely trained against the predictor
            report += ["Mean predicted minus mean true value, per system (the learned predictors' own units):", "",
                       format_bias_markdown(bias, targets, names), ""]
        panels = [(t, f"{names[0]}_{t}", f"{names[0]} predicted {t}") for t in ("pesq_wb", "stoi", "si_sdr")
                  if names and t in targets and t in metrics_by_name[names[0]]]
        if panels:
            plot_agreement(rows, panels, os.path.join(args.output, f"{set_name}_agreement.png"),
                           title=f"{set_name}: predicted vs true (dots: files; diamonds: system means)")
    with open(os.path.join(args.output, "summary.json"), "w") as stream:
        json.dump(_without_nan(summary), stream, indent=1)
    with open(os.path.join(args.output, "report.md"), "w") as stream:
        stream.write("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
