"""benchmarks/bench_enhance_speed.py: throughput rows of any enhancer (loaded with load_model) and of
the peers, measured in the same run, file decoding and writing included."""

import numpy as np
import pytest
from test_peer_enhancers import build_bsse_hub, load_benchmark_module


def test_rows_per_enhancer_and_peer(tmp_path, capsys):
    """A BSSE folder (not a VQ enhancer: loaded by the interface it names) and a peer, one row each."""
    pytest.importorskip("noisereduce")
    bench = load_benchmark_module("bench_enhance_speed")
    bsse = build_bsse_hub(str(tmp_path / "bsse"))
    rows = bench.main(["--synthetic", "--files", "3", "--seconds", "1", "--threads", "1", "--batch-sizes", "2",
                       "--batch-threads", "auto", "2", "--enhancer", f"x={bsse}", "--peers", "noisereduce"])
    assert [(row["system"], row["batch_size"], row["batch_threads"]) for row in rows] == [
        ("x", 2, "auto"), ("x", 2, 2), ("noisereduce", None, None)]
    for row in rows:
        assert "error" not in row, row
        assert row["audio"] == pytest.approx(3.0) and row["x_real_time"] > 0 and row["cpu"] > 0
        assert np.isfinite(row["peak_mb"])
    table = capsys.readouterr().out
    assert "| x | 1 | 2 | auto | 3 | 3.0 |" in table and "| x | 1 | 2 | 2 | 3 | 3.0 |" in table
    assert "| noisereduce | 1 | - | - | 3 | 3.0 |" in table


def test_default_systems_and_model_option(tmp_path):
    bench = load_benchmark_module("bench_enhance_speed")
    parser_args = type("Args", (), {"model": None, "enhancer": [], "peers": []})
    from speechbrain_sqe.inference.hub import DEFAULT_SOURCES

    assert bench.plan_systems(parser_args()) == [("bsse", {"source": DEFAULT_SOURCES["enhancement"]})]
    args = parser_args()
    args.model, args.enhancer = str(tmp_path / "my_model"), [("b", "somewhere")]
    assert [name for name, _ in bench.plan_systems(args)] == ["my_model", "b"]
    args.enhancer = [("my_model", "again")]
    with pytest.raises(SystemExit):
        bench.plan_systems(args)
