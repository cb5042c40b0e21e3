"""recipes/RealSpeech/measure_enhancers.py: the metric cache and the summaries."""

import importlib.util
import os

import numpy as np
import pytest

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.metrics.runner import Pair

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "RealSpeech",
                      "measure_enhancers.py")


def _load():
    spec = importlib.util.spec_from_file_location("measure_enhancers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cache_reuses_values_and_follows_file_contents(tmp_path):
    module = _load()
    x = np.random.default_rng(0).standard_normal(16000) * 0.1
    ref, deg = str(tmp_path / "ref.wav"), str(tmp_path / "deg.wav")
    save_audio(ref, x)
    save_audio(deg, x + 0.1 * np.random.default_rng(1).standard_normal(16000))
    cache = module.MetricCache(str(tmp_path / "cache.json"))
    first = cache.scores([Pair("a", ref, deg)], ["stoi"], progress=False)["a"]["stoi"]
    assert cache.computed == 1
    again = module.MetricCache(str(tmp_path / "cache.json"))
    assert again.scores([Pair("a", ref, deg)], ["stoi"], progress=False)["a"]["stoi"] == first
    assert again.computed == 0
    save_audio(deg, x)  # same path, new contents: scored again, not read from the cache
    changed = again.scores([Pair("a", ref, deg)], ["stoi"], progress=False)["a"]["stoi"]
    assert again.computed == 1 and changed == pytest.approx(1.0, abs=1e-3) and changed > first


def test_reference_free_metric_keyed_by_the_degraded_file_only(tmp_path):
    module = _load()
    cache = module.MetricCache()
    for name in ("ref1.wav", "ref2.wav", "deg.wav"):
        save_audio(str(tmp_path / name), np.zeros(1600))
    one = Pair("a", str(tmp_path / "ref1.wav"), str(tmp_path / "deg.wav"))
    two = Pair("a", str(tmp_path / "ref2.wav"), str(tmp_path / "deg.wav"))
    assert cache.key("dnsmos_ovrl", one) == cache.key("dnsmos_ovrl", two)
    assert cache.key("pesq_wb", one) != cache.key("pesq_wb", two)


def test_summary_means_per_snr_and_markdown():
    module = _load()
    rows = [{"snr": snr, "pesq_wb": 1.0 + k, "gain": 0.8 + 0.1 * k}
            for k, snr in enumerate(["-5.0", "-5.0", "20.0"])]
    summary = module.summarize(rows, ["pesq_wb"])
    assert summary["pesq_wb"] == pytest.approx(2.0)
    assert summary["by_snr"]["-5.0"]["pesq_wb"] == pytest.approx(1.5)
    assert summary["gain_median"] == pytest.approx(0.9)
    text = module.format_markdown({"speakers": {"noisy input": summary}}, ["pesq_wb"])
    assert "| speakers | noisy input | 2.000 |" in text and "| -5 dB | 20 dB |" in text


def test_seeded_checkpoint_starts_step1_from_the_weights(tmp_path):
    import json

    import torch

    spec = importlib.util.spec_from_file_location("seed_vq_finetune", os.path.join(os.path.dirname(SCRIPT),
                                                                                  "seed_vq_finetune.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    template = tmp_path / "CKPT+template"
    template.mkdir()
    layer = torch.nn.Linear(3, 2)
    torch.save(layer.state_dict(), template / "vqvae.ckpt")
    torch.save(layer.state_dict(), template / "teacher.ckpt")
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), template / "optimizer.ckpt")
    (template / "counter.ckpt").write_text("2")
    (template / "phase.ckpt").write_text('{"phase": 2}')
    trained = torch.nn.Linear(3, 2).state_dict()
    torch.save(trained, tmp_path / "weights.ckpt")
    target = module.seed(str(template), str(tmp_path / "weights.ckpt"), str(tmp_path / "save"))
    loaded = torch.load(os.path.join(target, "vqvae.ckpt"))
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert torch.load(os.path.join(target, "optimizer.ckpt"))["state"] == {}
    with open(os.path.join(target, "counter.ckpt")) as counter, open(os.path.join(target, "phase.ckpt")) as phase:
        assert counter.read() == "0" and json.load(phase) == {"phase": 1}
    with pytest.raises(SystemExit):  # never over an existing run
        module.seed(str(template), str(tmp_path / "weights.ckpt"), str(tmp_path / "save"))
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "other.ckpt")
    with pytest.raises(SystemExit):  # another configuration
        module.seed(str(template), str(tmp_path / "other.ckpt"), str(tmp_path / "save2"))


def test_any_enhancer_and_the_reference_rule(tmp_path):
    """A BSSE folder (loaded with load_model) beside a VQ enhancer; ``--reference auto`` scores every
    system against both references since BSSE dereverberates (the cache keeps them apart);
    ``reverb``, the default, against the reverberant one only."""
    from hub_folders import build_vq_enhancer_hub
    from test_peer_enhancers import build_bsse_hub, reverberant_manifest

    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    from speechbrain_sqe.metrics.registry import compute_metrics

    module = _load()
    vq = build_vq_enhancer_hub(VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8),
                               str(tmp_path / "vq"))
    bsse = build_bsse_hub(str(tmp_path / "bsse"))
    _, rows = reverberant_manifest(tmp_path, count=1)
    common = ["--testsets", str(tmp_path), "--enhancer", f"vq={vq}", "--enhancer", f"x={bsse}",
              "--sets", "speakers", "--metrics", "stoi", "--jobs", "1"]
    report = module.main(common + ["--output", str(tmp_path / "auto"), "--reference", "auto"])
    assert report["dereverberating"] == ["x"]
    assert report["references"] == {"speakers": "clean_reverb_wav", "speakers (dry reference)": "clean_wav"}
    assert report["computed_metric_values"] == 6  # 3 systems x 2 references
    for table, column in report["references"].items():
        assert list(report["sets"][table]) == ["noisy input", "vq", "x"]
        for system, folder in (("noisy input", None), ("x", "x")):
            degraded = rows[0]["noisy_wav"] if folder is None else str(
                tmp_path / "auto" / "enhanced" / "speakers" / folder / "u0.wav")
            expected = compute_metrics(load_audio(rows[0][column], 16000, warn=False),
                                       load_audio(degraded, 16000, warn=False), ["stoi"])["stoi"]
            assert report["sets"][table][system]["stoi"] == pytest.approx(expected, abs=1e-6), (table, system)
    assert (tmp_path / "auto" / "speakers_dry_x.csv").exists() and (tmp_path / "auto" / "speakers_x.csv").exists()
    assert "| speakers (dry reference) | x |" in (tmp_path / "auto" / "summary.md").read_text()
    default = module.main(common + ["--output", str(tmp_path / "reverb"), "--cache", str(tmp_path / "auto" /
                                                                                         "metric_cache.json")])
    assert default["references"] == {"speakers": "clean_reverb_wav"}
    assert default["computed_metric_values"] == 2  # the input's value read from the cache; the new outputs scored
    assert default["sets"]["speakers"]["noisy input"]["stoi"] == report["sets"]["speakers"]["noisy input"]["stoi"]
