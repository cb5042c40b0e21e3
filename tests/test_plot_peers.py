"""tools/plot_peers.py: per-SNR means of a peers CSV, and the PNG written from them."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import plot_peers


def test_means_per_system_and_snr_and_the_figure(tmp_path):
    lines = ["system,ID,snr,pesq_wb,dnsmos_ovrl"]
    for system, offset in (("noisy", 0.0), ("bsse", 0.5)):
        for index, snr in enumerate((-5, -5, 5, 5)):
            lines.append(f"{system},u{index},{snr},{1.0 + offset + index * 0.1},{'' if index == 3 else 2.0}")
    table = tmp_path / "peers.csv"
    table.write_text("\n".join(lines) + "\n")
    import csv

    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    means = plot_peers.means_by(rows, "pesq_wb")
    assert [system for system in means] == ["noisy", "bsse"]
    assert means["bsse"][0][0] == -5.0 and abs(means["bsse"][0][1] - 1.55) < 1e-9
    assert len(plot_peers.means_by(rows, "dnsmos_ovrl")["noisy"]) == 2  # the empty cell skipped
    out = tmp_path / "plot.png"
    plot_peers.main([f"set={table}", "--out", str(out)])
    assert out.stat().st_size > 10_000
