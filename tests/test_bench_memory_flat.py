"""benchmarks/bench_memory_flat.py --trace: one job per task over the largest size, its peak RSS read
at each requested size as the job passes it, and the plot."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_trace_reads_the_peak_at_each_size_of_one_run(tmp_path):
    """Files of 6 s (600 an hour): 0.01 h = 6 files, 0.02 h = 12; the shipped VQScore and BSSE."""
    plot = tmp_path / "trace.png"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_memory_flat.py"),
                          "--hours", "0.02", "0.01", "--file-minutes", "0.1", "--threads", "1", "--trace",
                          "--plot", str(plot)], capture_output=True, text=True, check=True, cwd=ROOT, timeout=600)
    rows = re.findall(r"^\| (score|enhance) \| (\S+) \| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \|$", out.stdout, re.MULTILINE)
    assert [(task, hours) for task, _, hours, *_ in rows] == [
        ("score", "0.01"), ("score", "0.02"), ("enhance", "0.01"), ("enhance", "0.02")], out.stdout
    for task in ("score", "enhance"):
        (_, _, _, files_a, peak_a, _), (_, _, _, files_b, peak_b, resident_b) = [r for r in rows if r[0] == task]
        assert 6 <= int(files_a) <= int(files_b) == 12  # the first sample at or past each size
        assert 100 < int(peak_a) <= int(peak_b)  # a peak so far never falls
        assert int(resident_b) <= int(peak_b) + 8  # two kernel counters, read a moment apart
    assert "20 h" not in out.stdout and re.search(r"score \(VQScore\): 0.02 h in [\d.]+ s", out.stdout)
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
