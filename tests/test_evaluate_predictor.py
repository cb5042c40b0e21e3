"""recipes/SQA/evaluate_predictor.py: a learned predictor scored against true metrics per file and per
system, beside VQScore and the table's DNSMOS / Distill-MOS; resumable."""

import csv
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from recipe_args import ROOT
from speech import add_noise, speech_like

from speechbrain_sqe.dataio.audio import save_audio


def _script():
    spec = importlib.util.spec_from_file_location(
        "evaluate_predictor", os.path.join(ROOT, "recipes", "SQA", "evaluate_predictor.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from speechbrain_sqe.inference.quality import LearnedQualityPredictor
    from speechbrain_sqe.lobes.sqa_predictor import SQAPredictor
    from speechbrain_sqe.lobes.tera import TERAModel

    folder = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    model = SQAPredictor(["pesq_wb", "stoi"], ssl_layers=2, ssl_size=16, d_model=16, num_layers=1,
                         num_heads=2, ffn_size=32)
    hub = LearnedQualityPredictor.export(str(folder / "hub"), {"predictor": model, "ssl": tera})
    rows = []
    clean = speech_like(2.0, seed=1)
    for system, snr in (("noisy", 0.0), ("good", 20.0), ("fair", 10.0)):
        for index in range(4):
            path = folder / system / f"u{index}.wav"
            path.parent.mkdir(exist_ok=True)
            save_audio(str(path), torch.tensor(add_noise(clean, snr + index, seed=index), dtype=torch.float32))
            # made-up true values ordered by SNR: the report must carry them through unchanged
            rows.append({"system": system, "ID": f"u{index}", "path": str(path), "pesq_wb": 1 + 0.1 * (snr + index),
                         "stoi": 0.5 + 0.02 * (snr + index), "dnsmos_ovrl": 2 + 0.05 * snr, "distillmos": ""})
    table = folder / "peers_set.csv"
    with open(table, "w", newline="") as stream:
        writer = csv.DictWriter(stream, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder, hub, table


def test_report_per_file_and_per_system_and_resume(setup, monkeypatch):
    folder, hub, table = setup
    script = _script()
    out = folder / "out"
    script.main(["--table", f"set={table}", "--predictor", f"tiny={hub}", "--output", str(out), "--no-progress"])
    with open(out / "set_scores.csv", newline="") as stream:
        scores = list(csv.DictReader(stream))
    assert [row["key"] for row in scores][:2] == ["noisy/u0", "noisy/u1"] and len(scores) == 12
    assert set(scores[0]) == {"key", "tiny_pesq_wb", "tiny_stoi", "vqscore"}
    assert all(1.0 <= float(row["tiny_pesq_wb"]) <= 4.5 and np.isfinite(float(row["vqscore"])) for row in scores)
    summary = json.loads((out / "summary.json").read_text())["set"]
    assert summary["files"] == 12 and summary["systems"] == ["fair", "good", "noisy"]
    entries = {(e["level"], e["target"], e["predictor"]): e for e in summary["agreement"]}
    # the table's DNSMOS column predicts PESQ perfectly by rank at system level (both ordered by SNR)
    assert entries[("system", "pesq_wb", "DNSMOS OVRL")]["srcc"] == pytest.approx(1.0)
    assert entries[("system", "pesq_wb", "tiny")]["n"] == 3 and entries[("utterance", "stoi", "tiny")]["n"] == 12
    assert entries[("utterance", "pesq_wb", "tiny")]["mse"] is not None  # same units: an MSE
    assert entries[("utterance", "pesq_wb", "VQScore")]["mse"] is None   # another scale: none
    assert ("utterance", "dnsmos_ovrl", "DNSMOS OVRL") not in entries   # not its own predictor
    report = (out / "report.md").read_text()
    assert "| pesq_wb (12) |" in report and "| pesq_wb (3) |" in report
    # per system, the predictor's mean minus the true mean (the gaming check), its own units only
    bias = {(e["system"], e["target"], e["predictor"]): e for e in summary["system_bias"]}
    assert {key[2] for key in bias} == {"tiny"} and len(bias) == 3 * 2   # 3 systems x (pesq_wb, stoi)
    noisy = [row for row in scores if row["key"].startswith("noisy/")]
    with open(table, newline="") as stream:
        true_noisy = [float(row["pesq_wb"]) for row in csv.DictReader(stream) if row["system"] == "noisy"]
    assert bias[("noisy", "pesq_wb", "tiny")]["bias"] == pytest.approx(
        np.mean([float(row["tiny_pesq_wb"]) for row in noisy]) - np.mean(true_noisy), abs=1e-9)
    assert "| pesq_wb | noisy (4) |" in report and "tiny: predicted - true" in report
    assert os.path.getsize(out / "set_agreement.png") > 1000

    # Resume: a run killed after some rows scores only the missing ones.
    lines = (out / "set_scores.csv").read_text().splitlines()
    with open(out / "set_scores.csv", "w") as stream:
        stream.write("\n".join(lines[:5]) + "\n")
    loaded = []
    real = script.load_audio
    monkeypatch.setattr(script, "load_audio", lambda path, **kw: loaded.append(path) or real(path, **kw))
    script.main(["--table", f"set={table}", "--predictor", f"tiny={hub}", "--output", str(out), "--no-progress"])
    assert len(loaded) == 8
    assert (out / "set_scores.csv").read_text().splitlines() == lines


def test_a_table_without_paths_is_refused(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("system,ID,pesq_wb\nnoisy,a,1.2\n")
    with pytest.raises(SystemExit, match="t.csv: missing column\\(s\\) path"):
        _script().read_table(str(bad))


def test_a_label_set_split_is_read_with_its_paths_resolved(tmp_path):
    """A label set's CSV names its own audio relative to its folder: the table's path is resolved."""
    folder = tmp_path / "labels"
    (folder / "valid" / "audio").mkdir(parents=True)
    split = folder / "valid.csv"
    split.write_text("ID,duration,wav,system,pesq_wb\n"
                     "a_c0,1.0,valid/audio/a_c0.wav,degraded,1.2\n"
                     "a_clean,1.0,/corpus/a.flac,clean,4.64\n")
    rows = _script().read_table(str(split))
    assert [row["key"] for row in rows] == ["degraded/a_c0", "clean/a_clean"]
    assert rows[0]["path"] == str(folder / "valid" / "audio" / "a_c0.wav")
    assert rows[1]["path"] == "/corpus/a.flac"
    no_wav = tmp_path / "n.csv"
    no_wav.write_text("ID,system,pesq_wb\na,noisy,1.2\n")
    with pytest.raises(SystemExit, match="n.csv: missing column\\(s\\) path"):
        _script().read_table(str(no_wav))
