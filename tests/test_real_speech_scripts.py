"""The real-speech measurement scripts: summaries computed from per-file rows, and the level measure."""

import importlib.util
import os

import numpy as np
import pytest

RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "RealSpeech")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(RECIPE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_of_quality_rows():
    rng = np.random.default_rng(0)
    rows = []
    for k in range(40):
        pesq = 1.0 + k * 0.08
        rows.append({"vqscore_clean": 0.9, "vqscore_noisy": 0.5 + k * 0.01 if k != 39 else 0.95,
                     "pesq_wb": pesq, "stoi": 0.5 + rng.uniform(0, 0.4), "dnsmos_ovrl": 6 - pesq,
                     "distillmos": pesq + rng.normal(0, 0.01), "reverb": "True" if k % 2 else "False"})
    summary = _load("summarize_quality").summarize(rows)
    assert summary["pairs"] == 40 and summary["clean_above_noisy"] == pytest.approx(39 / 40)
    assert summary["vqscore_spearman_pesq_wb"] == pytest.approx(1.0, abs=1e-9)  # monotonic: rank 1
    assert summary["dnsmos_ovrl_spearman_pesq_wb"] == pytest.approx(-1.0)
    assert summary["distillmos_spearman_pesq_wb"] > 0.99
    assert summary["dry"]["pairs"] == summary["reverberant"]["pairs"] == 20


def test_least_squares_gain_measures_the_level():
    ls_gain = _load("measure_models").ls_gain
    reference = np.sin(np.arange(16000) / 7.0)
    assert ls_gain(0.3 * reference, reference) == pytest.approx(0.3)
    noise = np.random.default_rng(1).standard_normal(16000)
    assert ls_gain(reference + noise, reference) == pytest.approx(1.0, abs=0.05)


def test_enhancement_reference_follows_the_enhancer(tmp_path):
    """``--reference auto``: a dereverberating enhancer (BSSE) against the dry clean speech; the
    default ``reverb`` against the reverberant one, as before."""
    from test_peer_enhancers import build_bsse_hub, reverberant_manifest

    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.metrics.registry import compute_metrics

    module = _load("measure_models")
    bsse = build_bsse_hub(str(tmp_path / "bsse"))
    _, rows = reverberant_manifest(tmp_path, count=1)
    for choice, column in (("auto", "clean_wav"), ("reverb", "clean_reverb_wav")):
        out = tmp_path / choice
        results = module.main(["--testsets", str(tmp_path), "--output", str(out), "--vqscore", "",
                               "--enhancer", bsse, "--reference", choice, "--enhance-metrics", "stoi",
                               "--sets", "speakers", "--jobs", "1"])
        enhancement = results["speakers"]["enhancement"]
        assert enhancement["reference"] == column
        reference = load_audio(rows[0][column], 16000, warn=False)
        for side, path in (("noisy", rows[0]["noisy_wav"]), ("enhanced", str(out / "enhanced" / "speakers" / "u0.wav"))):
            expected = compute_metrics(reference, load_audio(path, 16000, warn=False), ["stoi"])["stoi"]
            assert enhancement[f"{side}_stoi"] == pytest.approx(expected, abs=1e-6), (choice, side)
        assert ("(reference clean_wav)" in (out / "summary.md").read_text()) == (column == "clean_wav")


def test_tts_behaviour_check_passes_the_shipped_enhancer_and_fails_a_broken_one(tmp_path):
    """The candidate check computes the pinned tests' gains: the shipped model passes them (as the
    tests say), and the same folder with its weights scrambled fails and exits 1."""
    import shutil

    import torch

    module = _load("check_tts_behaviour")
    shipped = os.path.join(os.path.dirname(RECIPE), "..", "speechbrain_sqe", "pretrained", "vq_enhancer")
    rows = module.check(shipped)
    assert [(r["kind"], r["snr"]) for r in rows] == list(module.CONDITIONS)
    assert all(r["passed"] for r in rows), rows
    broken = tmp_path / "broken"
    shutil.copytree(shipped, broken)
    state = torch.load(broken / "vqvae.ckpt", map_location="cpu")
    generator = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v.shape, generator=generator) * v.std().nan_to_num(1.0) if v.is_floating_point()
                 and v.dim() > 1 else v) for k, v in state.items()}
    torch.save(state, broken / "vqvae.ckpt")
    assert module.main([str(broken)]) == 1


def test_tts_behaviour_check_judges_bsse_folders_by_their_shipped_models_checks():
    """The same check for BSSE-kind candidates: the shipped BSSE passes the BSSE checks, the shipped
    guided enhancer the guided one's (pink noise only), and checks of another interface are refused."""
    module = _load("check_tts_behaviour")
    pretrained = os.path.join(os.path.dirname(RECIPE), "..", "speechbrain_sqe", "pretrained")
    rows = module.check(os.path.join(pretrained, "bsse"))
    assert {r["checks"] for r in rows} == {"bsse"} and len(rows) == 4
    assert all(r["passed"] for r in rows), rows
    rows = module.check(os.path.join(pretrained, "sqa_guided"), "sqa_guided")
    assert [(r["kind"], r["snr"]) for r in rows] == [("pink", 5), ("pink", 0)]
    assert all(r["passed"] for r in rows), rows
    with pytest.raises(ValueError, match="loads as BSSEEnhancer"):
        module.check(os.path.join(pretrained, "bsse"), "vq_enhancer")


def test_package_noise_list_keeps_the_base_splits_and_adds_training_noise_only(tmp_path):
    """``prepare_package_noise.py`` on a fake install root (its own audio): long files kept once
    (duplicates and short files left out), down-mixed and resampled to 16 kHz, music capped per
    package, and a list with every base row (test noises still test) plus the new files as training noise."""
    import csv

    import soundfile as sf

    from speechbrain_sqe.dataio.manifest_corpus import read_source_list

    rng = np.random.default_rng(0)
    root = tmp_path / "root"
    ambience = root / "usr/share/games/megaglest/tilesets"
    for tileset, seconds in (("forest", 4.0), ("meadow", 4.0), ("desert", 1.0)):
        (ambience / tileset / "sounds").mkdir(parents=True)
    rain = rng.standard_normal((4 * 44100, 2)).astype("float32") * 0.1
    sf.write(ambience / "forest/sounds/rain.ogg", rain, 44100)      # stereo Ogg Vorbis at 44.1 kHz
    sf.write(ambience / "meadow/sounds/rain.ogg", rain, 44100)      # the same file in another tileset
    sf.write(ambience / "desert/sounds/wolf.wav", rain[:22050], 22050)  # one second: too short
    music = root / "usr/share/games/colobot/music"
    music.mkdir(parents=True)
    for k in range(7):
        sf.write(music / f"track{k}.ogg", rng.standard_normal(4 * 16000).astype("float32") * 0.1, 16000)
    base = tmp_path / "base"
    (base / "noise").mkdir(parents=True)
    for name in ("train_noise", "test_noise"):
        sf.write(base / "noise" / f"{name}.wav", np.zeros(16000, dtype="float32") + 0.01, 16000)
    (base / "splits.csv").write_text("path,kind,split\nnoise/train_noise.wav,noise,train\nnoise/test_noise.wav,noise,test\n")

    out = tmp_path / "out"
    _load("prepare_package_noise").main(["--root", str(root), "--out", str(out), "--base-list", str(base / "splits.csv")])

    with open(out / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    new = [r for r in rows if r["path"].startswith(str(out))]
    assert [os.path.basename(r["path"]) for r in new] == (
        ["ambience_forest_rain.wav"] + [f"music_colobot_track{k}.wav" for k in range(5)])
    assert all(r["kind"] == "noise" and r["split"] == "train" for r in new)
    assert {(os.path.basename(r["path"]), r["split"]) for r in rows if r not in new} == {
        ("train_noise.wav", "train"), ("test_noise.wav", "test")}
    assert all(os.path.isabs(r["path"]) and os.path.exists(r["path"]) for r in rows)
    info = sf.info(out / "ambience_forest_rain.wav")
    assert (info.samplerate, info.channels) == (16000, 1) and abs(info.frames - 4 * 16000) <= 1
    splits = read_source_list(str(out / "splits.csv"), "noise")
    assert [os.path.basename(p) for p in splits["test"]] == ["test_noise.wav"]
    assert "licence" in (out / "SOURCES.md").read_text()
