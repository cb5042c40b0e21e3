"""The GPU-session tools: benchmarks/bench_gpu.py (throughput rows of scorers and enhancers, on the
CPU here; CUDA where a GPU is lent) and tools/gpu_session/make_carry.py (the speaker-balanced real
speech subset that fits one device call)."""

import csv
import importlib.util
import json
import os

import numpy as np
import pytest
import soundfile
import torch
from test_peer_enhancers import build_bsse_hub, load_benchmark_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VQSCORE = os.path.join(ROOT, "speechbrain_sqe", "pretrained", "vqscore")


def _write(path, seconds, rate=16000, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.shape)
    soundfile.write(path, (0.1 * np.sin(2 * np.pi * 150 * t) + 0.01 * noise).astype(np.float32), rate,
                    subtype="PCM_16")


def test_rows_for_a_scorer_and_an_enhancer(tmp_path, capsys):
    bench = load_benchmark_module("bench_gpu")
    for index in range(3):
        _write(str(tmp_path / "audio" / f"sub{index % 2}" / f"f{index}.wav"), 1.0, seed=index)
    bsse = build_bsse_hub(str(tmp_path / "bsse"))
    report = tmp_path / "rows.json"
    rows = bench.main(["--folder", str(tmp_path / "audio"), "--files", "3", "--device", "cpu", "--batch-sizes", "2",
                       "--repeats", "1", "--workers", "0", "--no-shipped", "--scorer", f"vq={VQSCORE}",
                       "--enhancer", f"b={bsse}", "--enhancer", f"missing={tmp_path / 'nowhere'}",
                       "--json", str(report)])
    # The missing folder fails alone: its row says so, the others are measured.
    assert [(row["task"], row["system"], row["batch"]) for row in rows] == [("quality", "vq", 2), ("enhancement", "b", 2)]
    for row in rows:
        assert row["files"] == 3 and row["audio_s"] == pytest.approx(3.0)
        assert row["x_real_time"] > 0 and row["files_per_s"] == pytest.approx(3 / row["elapsed"])
    table = capsys.readouterr().out
    assert "| enhancement | missing | 2 | failed: " in table and "| quality | vq | 2 | 3 | 3 |" in table
    assert json.loads(report.read_text())["rows"] == json.loads(json.dumps(rows))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    bench = load_benchmark_module("bench_gpu")
    _write(str(tmp_path / "a.wav"), 0.5)
    with pytest.raises(SystemExit, match="no CUDA device here"):
        bench.main(["--folder", str(tmp_path), "--device", "cuda"])


def _carry_module():
    spec = importlib.util.spec_from_file_location("make_carry", os.path.join(ROOT, "tools", "gpu_session", "make_carry.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_carry_is_speaker_balanced_cut_and_readable(tmp_path):
    """Every training speaker's shortest file before anyone's second; long files cut to their middle
    seconds; the budget kept; the smallest test noise and room; the recipes' readers accept it."""
    from speechbrain_sqe.dataio.manifest_corpus import (
        read_source_list,
        read_speech_manifest,
    )

    shared = tmp_path / "shared"
    speech = [("a1.wav", "a", "train", 1.0), ("a2.wav", "a", "train", 1.5), ("b1.wav", "b", "train", 8.0),
              ("c1.wav", "c", "train", 2.0), ("v1.wav", "v", "valid", 1.0), ("t1.wav", "t", "test", 1.0)]
    with open(_path(shared / "speech" / "manifest.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "path", "speaker", "split", "duration_s"])
        for index, (name, speaker, split, seconds) in enumerate(speech):
            _write(str(shared / "speech" / speaker / name), seconds, seed=index)
            writer.writerow([name, f"{speaker}/{name}", speaker, split, seconds])
    sources = [("noise/n1.wav", "noise", "train", 2.0), ("noise/big.wav", "noise", "test", 3.0),
               ("noise/small.wav", "noise", "test", 1.0), ("rirs/r1.wav", "rir", "train", 0.2),
               ("rirs/r2.wav", "rir", "test", 0.3)]
    with open(_path(shared / "real" / "splits.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "kind", "split"])
        for index, (path, kind, split, seconds) in enumerate(sources):
            _write(str(shared / "real" / path), seconds, seed=10 + index)
            writer.writerow([path, kind, split])
    one_second = os.path.getsize(shared / "speech" / "a" / "a1.wav")
    out = tmp_path / "carry"
    # Room for 5.5 s: round one takes a1 (1 s), b1 (8 s cut to 2 s) and c1 (2 s); a's second file
    # (1.5 s) would pass the budget.
    summary = _carry_module().build(str(shared), str(out), train_mib=5.5 * one_second / 2**20, max_seconds=2.0,
                                    valid=1, test=1)
    assert "training speech 3 files of 3 speakers" in summary
    with open(out / "speech" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows if r["split"] == "train"] == ["a/a1.wav", "b/b1.wav", "c/c1.wav"]
    assert soundfile.info(str(out / "speech" / "b" / "b1.wav")).duration == pytest.approx(2.0)
    assert [r["duration_s"] for r in rows if r["path"] == "b/b1.wav"] == ["2.000"]
    splits = read_speech_manifest(str(out / "speech" / "manifest.csv"))
    assert {split: len(files) for split, files in splits.items()} == {"train": 3, "valid": 1, "test": 1}
    assert [os.path.basename(f) for f in read_source_list(str(out / "real" / "splits.csv"), "noise")["test"]] == ["small.wav"]
    assert len(read_source_list(str(out / "real" / "splits.csv"), "rir")["train"]) == 1


def _path(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return str(path)
