"""SSL layer robustness: NMSE / cosine / CN distance, streaming, grouping, reports."""

import pytest
import torch

from speechbrain_sqe.analysis.ssl_robustness import (
    PUBLISHED_FIGURES,
    RobustnessAccumulator,
    RunningMoments,
    clean_std,
    format_published_comparison,
    format_robustness_table,
    layer_statistics,
    write_robustness_report,
)


def _layers(batch=3, frames=25, dims=(8, 12, 6), seed=0):
    generator = torch.Generator().manual_seed(seed)
    # Layers with different scales and offsets, like real SSL layers.
    return [(index + 1) * 3.0 * torch.randn(batch, frames, dim, generator=generator) + index
            for index, dim in enumerate(dims)]


def _by(rows, group, condition=None):
    return {r["layer"]: r for r in rows
            if r["group"] == group and (condition is None or r["condition"] == condition)}


def test_identical_embeddings():
    clean = _layers()
    acc = RobustnessAccumulator()
    acc.add(clean, [c.clone() for c in clean], torch.tensor([1.0, 0.6, 0.8]))
    for row in acc.results():
        assert row["nmse"] == 0.0
        assert row["cosine"] == pytest.approx(1.0, abs=1e-9)
        assert row["cn_distance"] == 0.0
    for stats in layer_statistics(clean, clean):
        assert torch.all(stats["nmse"] == 0) and torch.all(stats["cn_distance"] == 0)
        assert torch.allclose(stats["cosine"], torch.ones(3, dtype=torch.float64))


def test_more_noise_raises_nmse_and_lowers_cosine():
    clean = _layers()
    noise = [torch.randn(c.shape, generator=torch.Generator().manual_seed(7)) for c in clean]
    acc_rows = []
    for std in (0.1, 0.5, 1.0, 3.0, 10.0):
        acc = RobustnessAccumulator()
        acc.add(clean, [c + std * n for c, n in zip(clean, noise)])
        acc_rows.append(_by(acc.results(), "overall"))
    for layer in range(3):
        nmse = [rows[layer]["nmse"] for rows in acc_rows]
        cosine = [rows[layer]["cosine"] for rows in acc_rows]
        cn = [rows[layer]["cn_distance"] for rows in acc_rows]
        assert nmse == sorted(nmse) and len(set(nmse)) == len(nmse)
        assert cosine == sorted(cosine, reverse=True) and len(set(cosine)) == len(cosine)
        assert cn == sorted(cn) and cn[0] > 0


def test_scaling_a_layer_leaves_metrics_unchanged():
    clean = _layers()
    noisy = [c + torch.randn_like(c) for c in clean]
    base, scaled = RobustnessAccumulator(), RobustnessAccumulator()
    base.add(clean, noisy)
    scaled.add([clean[0], 10 * clean[1], clean[2]], [noisy[0], 10 * noisy[1], noisy[2]])
    for a, b in zip(base.results(), scaled.results()):
        for metric in ("nmse", "cosine", "cn_distance"):  # float32 inputs: x10 rounds
            assert a[metric] == pytest.approx(b[metric], rel=1e-6)


def test_nmse_matches_direct_formula_over_streamed_batches():
    clean, noisy = _layers(seed=1), None
    noisy = [c + 0.7 * torch.randn_like(c) for c in clean]
    acc = RobustnessAccumulator()
    acc.add([c[:2] for c in clean], [x[:2] for x in noisy])
    acc.add([c[2:] for c in clean], [x[2:] for x in noisy])
    got = acc.utterance_metrics()
    sigma = clean_std(clean)
    for layer, (c, x) in enumerate(zip(clean, noisy)):
        c, x = c.double(), x.double()
        assert torch.allclose(sigma[layer], c.reshape(-1, c.shape[-1]).std(0, unbiased=False))
        expected = (((c - x) / sigma[layer]) ** 2).mean(dim=(1, 2))
        assert torch.allclose(got["nmse"][layer], expected)
        cosine = torch.nn.functional.cosine_similarity(c, x, dim=-1).mean(1)
        assert torch.allclose(got["cosine"][layer], cosine)
        cn = (c.mean(1) - x.mean(1)).norm(dim=-1) / c.norm(dim=-1).mean()
        assert torch.allclose(got["cn_distance"][layer], cn)
    # layer_statistics with the set-wide sigma agrees with the accumulator.
    norms = [c.double().norm(dim=-1).mean() for c in clean]
    stats = layer_statistics(clean, noisy, sigma=sigma, clean_norm=norms)
    assert torch.allclose(stats[1]["nmse"], got["nmse"][1])
    # Two-pass form: sigma from a separate clean pass.
    two_pass = RobustnessAccumulator()
    two_pass.add_clean_moments([10 * c for c in clean])
    two_pass.add(clean, noisy)
    assert torch.allclose(two_pass.utterance_metrics()["nmse"], got["nmse"] / 100)


def test_padding_is_ignored():
    clean, noisy = _layers(batch=2, frames=20), None
    noisy = [c + 0.3 * torch.randn_like(c) for c in clean]
    # Utterance 1 is 12 frames long; its padding holds garbage (huge values and NaN).
    padded_clean, padded_noisy = [c.clone() for c in clean], [x.clone() for x in noisy]
    for c, x in zip(padded_clean, padded_noisy):
        c[1, 12:] = 1e6
        x[1, 12:] = float("nan")
    padded = RobustnessAccumulator()
    padded.add(padded_clean, padded_noisy, torch.tensor([1.0, 0.6]))
    separate = RobustnessAccumulator()
    separate.add([c[:1] for c in clean], [x[:1] for x in noisy])
    separate.add([c[1:, :12] for c in clean], [x[1:, :12] for x in noisy])
    for a, b in zip(padded.results(), separate.results()):
        for metric in ("nmse", "cosine", "cn_distance"):
            assert a[metric] == pytest.approx(b[metric], rel=1e-9)
    moments = RunningMoments()
    moments.update(padded_clean[0], torch.tensor([1.0, 0.6]))
    assert moments.count == 32 and torch.isfinite(moments.std()).all()


def test_grouping_by_condition():
    acc = RobustnessAccumulator()
    conditions = [
        {"snr": 0.0, "t60": 0.0, "noise_type": "white", "reverb": False},
        {"snr": "0", "t60": "0.45", "noise_type": "babble", "reverb": "True"},  # manifest strings
        {"snr": 10.0, "t60": 0.2, "noise_type": "white", "reverb": True},
        {"snr": 10, "t60": 0.9, "noise_type": "babble", "reverb": True},
        {"snr": -7.5, "reverb": True},  # no T60: "reverberant"; no noise type
        {},  # clean-only condition: only in "overall"
    ]
    clean = _layers(batch=6, dims=(4, 4))
    noise_std = torch.tensor([3.0, 3.0, 0.3, 0.3, 5.0, 1.0])[:, None, None]
    acc.add(clean, [c + noise_std * torch.randn_like(c) for c in clean], None, conditions,
            ids=[f"u{i}" for i in range(6)])
    rows = acc.results()
    layer0 = [(r["group"], r["condition"], r["n"]) for r in rows if r["layer"] == 0]
    assert layer0 == [
        ("overall", "all", 6),
        ("snr", "-7.5", 1), ("snr", "0", 2), ("snr", "10", 2),
        ("t60", "dry", 1), ("t60", "<=0.3s", 1), ("t60", "0.3-0.6s", 1), ("t60", ">0.6s", 1),
        ("t60", "reverberant", 1),
        ("noise_type", "babble", 2), ("noise_type", "white", 2),
    ]
    assert len(rows) == 2 * len(layer0)
    for layer in (0, 1):
        assert _by(rows, "snr", "0")[layer]["nmse"] > _by(rows, "snr", "10")[layer]["nmse"]
        assert _by(rows, "snr", "0")[layer]["cosine"] < _by(rows, "snr", "10")[layer]["cosine"]
    utterances = acc.utterance_rows()
    assert len(utterances) == 12 and utterances[1]["id"] == "u1" and utterances[1]["layer"] == 0


def test_report_and_tables(tmp_path):
    acc = RobustnessAccumulator()
    for snr in (-7.0, 0.0, 5.0, 10.0, 15.0):
        clean = _layers(batch=2, frames=15, dims=(6, 6, 6), seed=int(snr) + 10)
        noisy = [c + 10 ** (-snr / 20) * torch.randn_like(c) for c in clean]
        acc.add(clean, noisy, torch.tensor([1.0, 0.8]),
                [{"snr": snr, "t60": 0.0, "noise_type": "white", "reverb": False}] * 2)
    rows = acc.results()
    table = format_robustness_table(rows, group="snr", metric="cosine")
    assert table.splitlines()[0] == "| snr | n | layer 0 | layer 1 | layer 2 |"
    assert len(table.splitlines()) == 2 + 5 and "| -7 | 2 |" in table
    assert "layer 2" in format_robustness_table(rows, group="overall", metric="nmse")
    assert format_robustness_table(rows, group="missing") == ""
    comparison = format_published_comparison(rows, layer=1, label="ours")
    assert "| 5 | 0.859 | - | " in comparison and "TERA" in comparison
    assert len(comparison.splitlines()) == 2 + len(PUBLISHED_FIGURES["snr"])

    paths = write_robustness_report(rows, str(tmp_path / "out"), acc.utterance_rows())
    lines = (tmp_path / "out" / "ssl_robustness.csv").read_text().splitlines()
    assert lines[0] == "layer,group,condition,n,nmse,cosine,cn_distance"
    assert len(lines) == 1 + len(rows)
    markdown = (tmp_path / "out" / "ssl_robustness.md").read_text()
    assert "## cosine per snr" in markdown and "| layer 0 |" in markdown and "0.746" in markdown
    assert len(paths["plots"]) == 2
    for path in paths["plots"]:
        assert (tmp_path / "out" / path.split("/")[-1]).stat().st_size > 1000
    assert (tmp_path / "out" / "ssl_robustness_utterances.csv").exists()


def test_published_figures_shape():
    snrs = PUBLISHED_FIGURES["snr"]
    for values in PUBLISHED_FIGURES["models"].values():
        assert len(values) == len(snrs)
    assert PUBLISHED_FIGURES["models"]["TERA"][0] == 0.746
    assert PUBLISHED_FIGURES["models"]["WavLM"][-1] == 0.847
