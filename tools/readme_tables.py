#!/usr/bin/env python3
"""Regenerates the documentation's result tables from the runs' report files and checks them against the text.

    python tools/readme_tables.py              # check: every table whose report exists (seconds)
    python tools/readme_tables.py --print      # also print each regenerated table row
    python tools/readme_tables.py --commands   # the command behind each table, in run order
    python tools/readme_tables.py --run        # run the commands of absent reports, then check

Each table of :data:`TABLES` names the page it is on (the README or a results page under
``docs/results/``), the rows it fills (the first table after an anchor text in that page, its rows
by their first cell), the report file a run writes and the command that writes it
from a fresh clone. A cell that differs from the report is printed with both values and the exit
status is 1; a table whose report is absent is listed with its command (status 0, or 1 with
``--strict``). The real-speech rows need ``../shared/data/real`` (see ``recipes/VQScore``).
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VQSCORE_CORPUS = "data/embedded/train60min_seed1234"
ENHANCE_CORPUS = "data/embedded/train30min_seed1234"  # vq_enhance.yaml and tera.yaml share it
ENHANCE_METRICS = (("pesq_wb", 3), ("stoi", 3), ("estoi", 3), ("si_sdr", 2), ("csig", 3), ("cbak", 3),
                   ("covl", 3), ("dnsmos_ovrl", 3), ("vqscore", 3))
REAL_MIX = ("python recipes/VQScore/prepare_real_mix.py --real ../shared/data/real --output data/real_mix",)


REAL_TEST = ("python -m speechbrain_sqe.dataio.real_testsets --shared ../shared/data --output data/real_test",)
REAL_SETS = ("speakers", "cross_source")
REAL_QUALITY = ("vqscore_spearman_pesq_wb", "vqscore_spearman_stoi", "vqscore_spearman_dnsmos_ovrl",
                "vqscore_spearman_distillmos")
#: Row label -> run name (``results/vqreal/<run>``) of the VQScore real-speech ablation.
REAL_ABLATION = {"(a)": "a_real", "(a2)": "a_real_seed2", "(b)": "b_realism", "(c)": "c_real_tts",
                 "(c2)": "c_real_tts_seed2", "(c3)": "c_real_tts_seed3", "(d1)": "d1_valid192",
                 "(d2)": "d2_floor30", "(d3)": "d3_noreverb", "(e)": "e_realism_seed2"}


def real_quality_cells(report, test_set, peers=True):
    """Cells of a real-speech VQScore row (``measure_models.py``'s ``summary.json``): clean > noisy,
    Spearman of VQScore with PESQ, STOI, DNSMOS OVRL, Distill-MOS (and with ``peers``, DNSMOS OVRL's
    and Distill-MOS's with PESQ)."""
    quality = _json(report)[test_set]["quality"]
    keys = REAL_QUALITY + (("dnsmos_ovrl_spearman_pesq_wb", "distillmos_spearman_pesq_wb") if peers else ())
    return [f"{100 * quality['clean_above_noisy']:.1f}%"] + [_fmt(quality[k], 3) for k in keys]


def _real_shipped_row(test_set):
    return lambda reports: [str(_json(reports["shipped"])[test_set]["quality"]["pairs"])] + real_quality_cells(
        reports["shipped"], test_set)


def _real_ablation_row(config):
    return lambda reports: [cell for test_set in REAL_SETS
                            for cell in real_quality_cells(reports[config], test_set, peers=False)]


@dataclass
class Table:
    """One documented table: where it is, what fills each row, and which runs write the reports."""

    name: str
    anchor: str  # text just before the table (its first occurrence in the page)
    commands: tuple  # shell commands, in order, that write the report(s) from a fresh clone
    rows: dict = field(default_factory=dict)  # first cell -> function(reports) -> list of cells
    reports: dict = field(default_factory=dict)  # key -> report path (relative to the repository)
    page: str = "README.md"  # the document holding the table (relative to the repository)


def _fmt(value, digits):
    return f"{value:.{digits}f}"


def _json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def correlation_row(report):
    """Cells of a VQScore row: pairs, clean > noisy, Spearman with PESQ, STOI, DNSMOS OVRL."""
    summary = _json(report)
    overall = summary["overall"]
    cells = [str(summary["n"]), f"{100 * summary['clean_above_noisy']:.1f}%"]
    return cells + [_fmt(overall[m]["spearman"], 3) for m in ("pesq_wb", "stoi", "dnsmos_ovrl")]


def enhancement_row(report, system):
    """Cells of an enhancer row: the means of :data:`ENHANCE_METRICS` for ``system``."""
    means = _json(report)["overall"][system]
    return [_fmt(means[m], d) for m, d in ENHANCE_METRICS]


def robustness_by_snr(report):
    """Mean cosine over layers per SNR (the figure ``sqe analyze-ssl`` prints beside published ones)."""
    values = {}
    with open(report, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row["group"] == "snr":
                values.setdefault(float(row["condition"]), []).append(float(row["cosine"]))
    return {snr: sum(v) / len(v) for snr, v in values.items()}


def _tera_row(snr):
    def cells(reports):
        out = []
        for key in ("embedded", "real"):
            value = robustness_by_snr(reports[key]).get(float(snr)) if os.path.exists(reports[key]) else None
            out.append(None if value is None else _fmt(value, 3))
        return out
    return cells


def _enhancer_rows(labels):
    return {label: (lambda reports, system=system: enhancement_row(reports["summary"], system))
            for label, system in labels.items()}


ABLATION = {"noisy input": "noisy", "step 1 only": "step1", "step 1 + 2": "step1+2",
            "step 1 + 2, mix 0.1": "step1+2 mix 0.1", "step 1 + 2, mix 0.2": "step1+2 mix 0.2",
            "step 1 + 2, mix 0.3": "step1+2 mix 0.3"}

TABLES = [
    Table(
        "VQScore, shipped model", "## Results (default recipe, measured)",
        ("python train.py hparams/vqscore.yaml",  # (make demo) generates the 60-minute corpus
         ("python recipes/VQScore/evaluate_pairs.py --manifest data/embedded/train60min_seed1234/test.csv "
          "--output results/vqscore_shipped/embedded --metrics pesq_wb stoi dnsmos_ovrl"),) + REAL_MIX + (
            ("python recipes/VQScore/evaluate_pairs.py --manifest data/real_mix/test.csv "
             "--output results/vqscore_shipped/real --metrics pesq_wb stoi dnsmos_ovrl"),),
        rows={
            "embedded test split": lambda r: correlation_row(r["embedded"]),
            "older: the real pairs of": lambda r: correlation_row(r["real"]),
        },
        reports={"embedded": "results/vqscore_shipped/embedded/correlations.json",
                 "real": "results/vqscore_shipped/real/correlations.json"},
        page="docs/results/vqscore.md",
    ),
    Table(
        "VQScore on the real-speech test sets (shipped model)", "**On the real-speech test sets**",
        (*REAL_TEST, ("python recipes/RealSpeech/measure_models.py --testsets data/real_test --enhancer '' "
                      "--output results/vqreal/measure/shipped --jobs 1")),
        rows={"`speakers`": _real_shipped_row("speakers"), "`cross_source`": _real_shipped_row("cross_source")},
        reports={"shipped": "results/vqreal/measure/shipped/summary.json"},
        page="docs/results/vqscore.md",
    ),
    Table(
        "VQScore trained on real speech (ablation)", "**Trained on real speech: the ablation",
        ("# the training commands of the VQScore ablation (docs/results/vqscore.md), then for each <config>:",
         ("python recipes/RealSpeech/measure_models.py --vqscore results/vqreal/<config>/hub --enhancer '' "
          "--output results/vqreal/measure/<config> --jobs 1")),
        rows={"shipped": lambda r: [c for t in REAL_SETS for c in real_quality_cells(r["shipped"], t, peers=False)],
              **{label: _real_ablation_row(config) for label, config in REAL_ABLATION.items()}},
        reports={"shipped": "results/vqreal/measure/shipped/summary.json",
                 **{config: f"results/vqreal/measure/{config}/summary.json" for config in REAL_ABLATION.values()}},
        page="docs/results/vqscore.md",
    ),
    Table(
        "VQ enhancer, default recipe", "**Default recipe**",
        ("python train.py hparams/vq_enhance.yaml",),
        rows=_enhancer_rows(ABLATION),
        reports={"summary": "results/vq_enhance/1234/report/summary.json"},
        page="docs/results/vq_enhancer.md",
    ),
    Table(
        "VQ enhancer, shipped model's run", "**Shipped model**",
        (("python train.py hparams/vq_enhance.yaml --step1_epochs=32 --number_of_epochs=48 --export_mix=0.2 "
          "--output_folder=results/vq_enhance_long/1234"),),
        rows=_enhancer_rows({("step 1 + 2, mix 0.1 (shipped default)" if system == "step1+2 mix 0.1" else label): system
                             for label, system in ABLATION.items()}),
        reports={"summary": "results/vq_enhance_long/1234/report/summary.json"},
        page="docs/results/vq_enhancer.md",
    ),
    Table(
        "TERA robustness (shipped model)", "| SNR (dB) | TERA base (published)",
        (f"python -m speechbrain_sqe.dataio.embedded --data_folder {ENHANCE_CORPUS} --train_minutes 30",
         f"sqe analyze-ssl --pairs {ENHANCE_CORPUS}/test.csv --output results/tera_robustness/embedded",)
        + REAL_MIX + ("sqe analyze-ssl --pairs data/real_mix/test.csv --output results/tera_robustness/real",),
        rows={str(snr): _tera_row(snr) for snr in (-5, 0, 5, 10, 15, 20)},
        reports={"embedded": "results/tera_robustness/embedded/ssl_robustness.csv",
                 "real": "results/tera_robustness/real/ssl_robustness.csv"},
        page="docs/results/tera.md",
    ),
]


def _clean(cell):
    return cell.strip().replace("**", "").strip()


def readme_table(text, anchor):
    """The markdown table that first follows ``anchor`` in ``text``: ``{first cell: [other cells]}``.

    Arguments
    ---------
    text : str
        The page (the README or a results page).
    anchor : str
        Text just before the table.

    Returns
    -------
    dict
        Rows by their first cell (``**`` emphasis removed), header and rule lines left out.

    Example
    -------
    >>> readme_table("x\\n\\n| a | b |\\n|---|---|\\n| **r** | 1.0 |\\n\\ny", "x")
    {'r': ['1.0']}
    """
    start = text.index(anchor)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        cells = [_clean(c) for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _match_row(rows, label):
    """The row whose first cell is ``label`` (or, failing that, the one row starting with it)."""
    if label in rows:
        return rows[label]
    found = [key for key in rows if key.startswith(label)]
    if len(found) != 1:
        raise KeyError(f"row {label!r}: {len(found)} rows start with it")
    return rows[found[0]]


def check_table(table, text, root=ROOT):
    """Compares one table's documented cells with its reports.

    Arguments
    ---------
    table : Table
        The table spec.
    text : str
        The page holding the table.
    root : str
        Where the report paths are relative to.

    Returns
    -------
    tuple
        ``(status, messages, regenerated)``: status ``ok``, ``differs``, ``partial`` (some reports
        absent, the others agree) or ``absent``; one message
        per differing cell (or the absent reports); ``{label: cells}`` regenerated.
    """
    reports = {key: os.path.join(root, path) for key, path in table.reports.items()}
    absent = [path for key, path in table.reports.items() if not os.path.exists(reports[key])]
    if len(absent) == len(reports):
        return "absent", absent, {}
    readme = readme_table(text, table.anchor)
    messages, regenerated = [], {}
    for label, make in table.rows.items():
        try:
            cells = make(reports)
        except FileNotFoundError:  # this row's run has not been made: listed as absent below
            continue
        except (OSError, KeyError) as error:  # a report of another run (missing system or file)
            messages.append(f"{label}: cannot be regenerated ({error})")
            continue
        regenerated[label] = cells
        try:
            written = _match_row(readme, label)
        except KeyError as error:
            messages.append(str(error))
            continue
        offset = len(written) - len(cells)  # generated cells are the row's last ones
        for index, cell in enumerate(cells):
            if cell is not None and written[offset + index] != cell:
                messages.append(f"{label!r}, column {offset + index + 2}: page {written[offset + index]!r}, "
                                f"report {cell!r}")
    status = "differs" if messages else ("partial" if absent else "ok")
    return status, messages + [f"absent: {path}" for path in absent], regenerated


def page_text(table, document=None):
    """The text of the page holding ``table`` (or of ``document``, where given)."""
    with open(document or os.path.join(ROOT, table.page), encoding="utf-8") as stream:
        return stream.read()


def main(argv=None):
    """Checks (and with ``--run`` first makes) the documented tables; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default=None,
                        help="one document holding every table (default: each table's own page)")
    parser.add_argument("--root", default=ROOT, help="where the results/ and data/ folders are")
    parser.add_argument("--print", action="store_true", help="print the regenerated rows")
    parser.add_argument("--commands", action="store_true", help="print the commands and exit")
    parser.add_argument("--run", action="store_true", help="run the commands of tables whose reports are absent")
    parser.add_argument("--strict", action="store_true", help="absent reports fail too")
    args = parser.parse_args(argv)
    if args.commands:
        for table in TABLES:
            print(f"# {table.name}\n" + "\n".join(table.commands))
        return 0
    status = 0
    for table in TABLES:
        if args.run and not all(os.path.exists(os.path.join(args.root, p)) for p in table.reports.values()):
            for command in table.commands:
                if command.startswith("#") or "<config>" in command:  # documented, not runnable as is
                    print(f"  (not run: {command})", flush=True)
                    continue
                print(f"$ {command}", flush=True)
                subprocess.run(shlex.split(command.replace("sqe ", f"{sys.executable} -m speechbrain_sqe.cli ", 1))
                               if command.startswith("sqe ") else [sys.executable] + shlex.split(command)[1:],
                               cwd=args.root, check=True)
        result, messages, regenerated = check_table(table, page_text(table, args.readme), args.root)
        print(f"{result:>8}  {table.name}")
        for message in messages:
            print(f"          {message}")
        if result in ("absent", "partial"):
            print("          made by: " + " && ".join(table.commands))
        if args.print:
            for label, cells in regenerated.items():
                print("          | " + " | ".join([label] + [c or "" for c in cells]) + " |")
        status |= result == "differs" or (args.strict and result in ("absent", "partial"))
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
