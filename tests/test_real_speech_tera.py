"""recipes/RealSpeech/measure_tera.py: every model sees the same alteration of the same speech, the
paired comparison, and models whose losses are not comparable are refused."""

import importlib.util
import os

import numpy as np
import pytest
import torch
from hub_folders import build_tera_hub

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.lobes.tera import TERAModel

RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "RealSpeech", "measure_tera.py")


def _load():
    spec = importlib.util.spec_from_file_location("measure_tera", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _testsets(folder, count=3):
    lines = ["ID,clean_wav"]
    for index in range(count):
        path = os.path.join(folder, f"u{index}.wav")
        save_audio(path, torch.randn(8000 + 4000 * index, generator=torch.Generator().manual_seed(index)) * 0.1)
        lines.append(f"u{index},{path}")
    for name in ("speakers", "cross_source"):
        with open(os.path.join(folder, f"{name}.csv"), "w") as stream:
            stream.write("\n".join(lines) + "\n")
    return folder


def _tiny(seed, **sizes):
    torch.manual_seed(seed)
    return TERAModel(**{"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, **sizes})


def test_same_model_twice_gives_equal_losses_and_a_zero_difference(tmp_path):
    measure = _load()
    testsets = _testsets(str(tmp_path / "sets"))
    hub = build_tera_hub(_tiny(0), str(tmp_path / "a"))
    copy = build_tera_hub(_tiny(0), str(tmp_path / "b"))
    other = build_tera_hub(_tiny(1), str(tmp_path / "c"))
    models = [hub, copy, other]
    results = measure.measure(models, testsets, seed=7, progress=False)
    for name in ("speakers", "cross_source"):
        losses = {source: [row[1] for row in results[name][source]] for source in models}
        assert losses[hub] == losses[copy]  # same weights, same alteration: the very same numbers
        assert losses[hub] != losses[other]
        assert all(row[3] > 0 for row in results[name][hub])
    summary = measure.summarize(results, models, resamples=100)
    versus = summary["speakers"][copy]["vs_baseline"]
    assert versus["mean_difference"] == 0 and versus["ci95"] == [0, 0] and versus["share_lower"] == 0
    pooled = summary["speakers"][hub]["pooled_loss"]
    rows = results["speakers"][hub]
    assert pooled == pytest.approx(sum(r[2] for r in rows) / sum(r[3] for r in rows))
    assert "| speakers |" in measure.to_markdown(summary, models, 7)


def test_the_alteration_seed_changes_the_loss(tmp_path):
    measure = _load()
    testsets = _testsets(str(tmp_path / "sets"), count=1)
    hub = build_tera_hub(_tiny(0), str(tmp_path / "a"))
    first = measure.measure([hub], testsets, seed=1, sets=("speakers",), progress=False)
    second = measure.measure([hub], testsets, seed=2, sets=("speakers",), progress=False)
    assert first["speakers"][hub][0][1] != second["speakers"][hub][0][1]


def test_models_with_other_front_ends_are_refused(tmp_path):
    measure = _load()
    testsets = _testsets(str(tmp_path / "sets"), count=1)
    hub = build_tera_hub(_tiny(0), str(tmp_path / "a"))
    other = build_tera_hub(_tiny(0, cmvn=False), str(tmp_path / "b"))
    with pytest.raises(SystemExit, match="front ends differ"):
        measure.measure([hub, other], testsets, seed=1, progress=False)


def test_paired_comparison_sees_a_consistent_improvement():
    measure = _load()
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.5, 0.8, 50)
    better = measure.paired_comparison(baseline - 0.02 + rng.normal(0, 0.005, 50), baseline, resamples=500)
    assert better["ci95"][1] < 0 and better["share_lower"] > 0.9
    noise = measure.paired_comparison(baseline + rng.normal(0, 0.02, 50), baseline, resamples=500)
    assert noise["ci95"][0] < 0 < noise["ci95"][1]
    with pytest.raises(ValueError):
        measure.paired_comparison([0.1], [0.1, 0.2])
