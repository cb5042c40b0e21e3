"""tools/readme_tables.py: the result tables of the README and of docs/results/ regenerated from report
files written by the real report writers, and a wrong number in the text found."""

import json
import os
import sys

import pytest
import torch

from speechbrain_sqe.analysis.enhancement_report import write_enhancement_report
from speechbrain_sqe.analysis.quality_report import write_quality_report
from speechbrain_sqe.analysis.ssl_robustness import (
    RobustnessAccumulator,
    write_robustness_report,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import readme_tables

SNRS = (-5, 0, 5, 10, 15, 20)


def _manifest(path, count):
    lines = ["ID,clean_wav,noisy_wav,snr,noise_type,reverb"]
    lines += [f"u{i},c{i}.wav,n{i}.wav,{SNRS[i % 6]},white,False" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A results tree like the runs write, for every table of readme_tables.TABLES."""
    root = tmp_path_factory.mktemp("root")
    manifest = _manifest(root / "test.csv", 12)
    scores = {f"u{i}": {"vqscore_noisy": 0.5 + 0.02 * i, "vqscore_clean": 0.9 - 0.01 * (i == 3) * 50}
              for i in range(12)}
    reference = {f"u{i}": {"pesq_wb": 1.0 + 0.1 * i + 0.3 * (i % 2), "stoi": 0.5 + 0.01 * (i % 5),
                           "dnsmos_ovrl": 2.0 + 0.05 * (i % 4)} for i in range(12)}
    tables = {table.name.split(",")[0]: table for table in readme_tables.TABLES}
    for path in tables["VQScore"].reports.values():
        write_quality_report(scores, reference, manifest, str(root / os.path.dirname(path)))
    metrics = [m for m, _ in readme_tables.ENHANCE_METRICS]
    results = {system: [{"file": f"u{i}", **{m: 1.0 + 0.01 * i + 0.1 * k + 0.001 * j for j, m in enumerate(metrics)}}
                        for i in range(12)] for k, system in enumerate(readme_tables.ABLATION.values())}
    for table in readme_tables.TABLES:
        if table.name.startswith("VQ enhancer"):
            write_enhancement_report(results, manifest, str(root / os.path.dirname(table.reports["summary"])), metrics)
    # The real-speech measurements (recipes/RealSpeech/measure_models.py's summary.json layout).
    keys = readme_tables.REAL_QUALITY + ("dnsmos_ovrl_spearman_pesq_wb", "distillmos_spearman_pesq_wb")
    for table in readme_tables.TABLES:
        for k, path in enumerate(table.reports.values()):
            if "results/vqreal/measure/" in path and not (root / path).exists():
                summary = {test_set: {"quality": {"pairs": 96, "clean_above_noisy": 0.98 + 0.001 * k,
                                                  **{key: 0.5 + 0.01 * k + 0.001 * j + 0.1 * t
                                                     for j, key in enumerate(keys)}}}
                           for t, test_set in enumerate(readme_tables.REAL_SETS)}
                os.makedirs(root / os.path.dirname(path), exist_ok=True)
                (root / path).write_text(json.dumps(summary))
    generator = torch.Generator().manual_seed(0)
    for name in ("embedded", "real"):
        accumulator = RobustnessAccumulator()
        clean = [torch.randn(6, 20, 8, generator=generator) for _ in range(3)]
        noisy = [layer + 0.5 * torch.randn(6, 20, 8, generator=generator) for layer in clean]
        accumulator.add(clean, noisy, conditions=[{"snr": str(s)} for s in SNRS], ids=[f"u{s}" for s in SNRS])
        folder = os.path.dirname(tables["TERA robustness (shipped model)"].reports[name])
        write_robustness_report(accumulator.results(), str(root / folder))
    return root


def _readme_from(regenerated_by_table):
    """A README with each table's anchor and the regenerated rows (a fixed first column set)."""
    parts = []
    for table in readme_tables.TABLES:
        rows = regenerated_by_table[table.name]
        width = max(len(cells) for cells in rows.values())
        parts += [table.anchor, "", "| label" + " | h" * width + " |", "|---" * (width + 1) + "|"]
        parts += ["| " + " | ".join([label] + [c or "" for c in cells]) + " |" for label, cells in rows.items()]
        parts.append("")
    return "\n".join(parts)


def test_regenerated_tables_match_and_a_changed_number_is_found(reports, tmp_path, capsys):
    regenerated = {}
    for table in readme_tables.TABLES:
        status, messages, rows = readme_tables.check_table(table, readme_tables.page_text(table), str(reports))
        assert status == "differs" and rows, (table.name, messages)  # made-up reports: not the page's
        regenerated[table.name] = rows
    text = _readme_from(regenerated)
    for table in readme_tables.TABLES:
        assert readme_tables.check_table(table, text, str(reports))[0] == "ok", table.name
    path = tmp_path / "README.md"
    path.write_text(text)
    assert readme_tables.main(["--readme", str(path), "--root", str(reports)]) == 0
    # One cell changed: the check names the row, the column and both values, and fails.
    cells = regenerated["VQ enhancer, default recipe"]["step 1 only"]
    wrong = text.replace("| step 1 only | " + " | ".join(cells), "| step 1 only | 9.999 | " + " | ".join(cells[1:]), 1)
    path.write_text(wrong)
    capsys.readouterr()
    assert readme_tables.main(["--readme", str(path), "--root", str(reports)]) == 1
    out = capsys.readouterr().out
    assert "differs  VQ enhancer, default recipe" in out and f"page '9.999', report '{cells[0]}'" in out


def test_regenerated_cells_are_the_reports_numbers(reports):
    report = reports / readme_tables.TABLES[0].reports["embedded"]
    summary = readme_tables._json(report)
    cells = readme_tables.correlation_row(report)
    assert cells[0] == "12" and cells[1] == f"{100 * summary['clean_above_noisy']:.1f}%" and cells[1] == "91.7%"
    assert cells[2] == f"{summary['overall']['pesq_wb']['spearman']:.3f}"
    by_snr = readme_tables.robustness_by_snr(reports / "results/tera_robustness/embedded/ssl_robustness.csv")
    assert sorted(by_snr) == [float(s) for s in SNRS] and all(0 < v < 1 for v in by_snr.values())


def test_absent_reports_list_the_command(tmp_path, capsys):
    assert readme_tables.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "absent  VQScore" in out and "made by: python train.py hparams/vqscore.yaml" in out
    assert readme_tables.main(["--root", str(tmp_path), "--strict"]) == 1
