"""The learned multi-metric quality predictor's lobes: shapes, range activations, the masked loss,
padded batches, what trains (head and layer weights, never the frozen SSL), a tiny overfit, and the
interface (several named scores per file, export, registry)."""

import math
import tempfile

import numpy as np
import pytest
import torch

from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.inference.quality import (
    LearnedQualityPredictor,
    QualityPredictor,
    VQScore,
)
from speechbrain_sqe.lobes.bsse import configure_ssl_finetuning
from speechbrain_sqe.lobes.sqa_predictor import (
    DEFAULT_METRICS,
    RangeActivation,
    SQAPredictor,
    masked_metric_mse,
    sqa_forward,
)
from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.metrics import registry

METRICS = ["pesq_wb", "stoi", "si_sdr"]


def _tera():
    tera = TERAModel(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, dropout=0.0)
    configure_ssl_finetuning(tera, "frozen")
    return tera


def _model(metrics=METRICS, dropout=0.0, spectral_mels=0):
    return SQAPredictor(metrics, ssl_layers=3, ssl_size=16, d_model=16, num_layers=1, num_heads=2,
                        ffn_size=32, dropout=dropout, spectral_mels=spectral_mels)


def _wavs(batch=2, samples=8000, seed=0):
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_default_metric_ranges():
    torch.manual_seed(0)
    model = SQAPredictor(ssl_layers=3, ssl_size=16, d_model=16, num_layers=1, num_heads=2, ffn_size=32)
    scores = sqa_forward(model.eval(), _tera(), _wavs(3), torch.tensor([1.0, 0.7, 0.4]))
    assert scores.shape == (3, len(DEFAULT_METRICS))
    assert model.metrics == list(DEFAULT_METRICS)
    ranges = dict(zip(model.metrics, model.ranges))
    assert ranges["pesq_wb"] == [1.0, 4.5] and ranges["stoi"] == [0.0, 1.0] and ranges["estoi"] == [0.0, 1.0]
    assert ranges["dnsmos_ovrl"] == [1.0, 5.0] and ranges["distillmos"] == [1.0, 5.0]
    assert ranges["si_sdr"] == [None, None]
    # Scales: the width of bounded ranges, 30 dB for SI-SDR.
    assert dict(zip(model.metrics, model.scales)) == {
        "pesq_wb": 3.5, "stoi": 1.0, "estoi": 1.0, "si_sdr": 30.0, "dnsmos_ovrl": 4.0, "distillmos": 4.0}
    with pytest.raises(ValueError, match="no known range for mystery"):
        SQAPredictor(["mystery"])


def test_range_activations_stay_in_range_for_any_input():
    act = RangeActivation([[1.0, 4.5], [0.0, 1.0], [2.0, None], [None, 3.0], [None, None]], [3.5, 1.0, 1.0, 1.0, 30.0])
    x = torch.cat([torch.linspace(-1e4, 1e4, 101), torch.tensor([-80.0, 80.0, 0.0])]).unsqueeze(1).expand(-1, 5)
    y = act(x)
    assert bool(((y[:, 0] >= 1.0) & (y[:, 0] <= 4.5)).all())
    assert bool(((y[:, 1] >= 0.0) & (y[:, 1] <= 1.0)).all())
    assert bool((y[:, 2] >= 2.0).all()) and bool((y[:, 3] <= 3.0).all())
    assert torch.equal(y[:, 4], 30.0 * x[:, 4])  # unbounded: the head's value, scaled
    assert torch.isfinite(y).all()
    # Mid-range at 0, monotone everywhere.
    assert act(torch.zeros(1, 5))[0, :2].tolist() == pytest.approx([2.75, 0.5])
    assert bool((y[1:101] >= y[0:100]).all())


def test_masked_loss_ignores_nan_labels():
    pred = torch.tensor([[2.0, 0.5, 10.0], [3.0, 0.9, 0.0]], requires_grad=True)
    labels = torch.tensor([[1.0, math.nan, 4.0], [math.nan, math.nan, 0.0]])
    loss, per_metric = masked_metric_mse(pred, labels, [3.5, 1.0, 30.0])
    expected = [((2.0 - 1.0) / 3.5) ** 2, ((10.0 - 4.0) / 30.0) ** 2 / 2]
    assert float(loss.detach()) == pytest.approx(sum(expected) / 2)
    assert per_metric[0] == pytest.approx(expected[0]) and math.isnan(per_metric[1])
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[1, 0] == 0 and (pred.grad[:, 1] == 0).all()  # missing labels: no gradient
    assert pred.grad[0, 0] > 0
    # A prediction where the label is missing does not count, however wrong.
    wild = pred.detach().clone()
    wild[1, 0], wild[0, 1] = 1e6, -1e6
    assert float(masked_metric_mse(wild, labels, [3.5, 1.0, 30.0])[0]) == pytest.approx(float(loss.detach()))
    # A batch without any label: a zero loss that still backpropagates (no NaN).
    empty = torch.full((2, 3), math.nan)
    loss, per_metric = masked_metric_mse(pred, empty)
    assert float(loss.detach()) == 0.0 and torch.isnan(per_metric).all()
    pred.grad = None
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


@pytest.mark.parametrize("spectral_mels", [0, 24])
def test_padded_batch_gives_each_items_own_score(spectral_mels):
    torch.manual_seed(1)
    model, tera = _model(spectral_mels=spectral_mels).eval(), _tera()
    long, short = _wavs(1, 12000, seed=1)[0], _wavs(1, 7000, seed=2)[0]
    batch = torch.zeros(2, 12000)
    batch[0], batch[1, :7000] = long, short
    batch[1, 7000:] = 0.5  # padding with garbage must not matter
    with torch.no_grad():
        together = sqa_forward(model, tera, batch, torch.tensor([1.0, 7000 / 12000]))
        alone = torch.cat([sqa_forward(model, tera, long[None]), sqa_forward(model, tera, short[None])])
    assert torch.allclose(together, alone, atol=1e-4), (together, alone)
    # ...and the padding is not simply ignored by accident: the padded item alone differs.
    with torch.no_grad():
        padded_alone = sqa_forward(model, tera, batch[1:2])
    assert not torch.allclose(padded_alone, alone[1:2], atol=1e-3)


@pytest.mark.parametrize("spectral_mels", [0, 24])
def test_gradients_reach_head_and_layer_weights_not_the_frozen_ssl(spectral_mels):
    torch.manual_seed(2)
    model, tera = _model(spectral_mels=spectral_mels), _tera()
    labels = torch.tensor([[3.0, 0.8, 10.0], [1.5, math.nan, -2.0]])
    loss, _ = model.loss(sqa_forward(model, tera, _wavs(2), torch.tensor([1.0, 0.6])), labels)
    loss.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    assert model.weighted.weights.grad is not None and model.weighted.weights.grad.abs().sum() > 0
    assert model.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tera.parameters())
    assert not any(p.requires_grad for p in tera.parameters())
    if spectral_mels:
        assert model.spectral_proj.weight.grad.abs().sum() > 0


def test_spectral_branch_sees_what_cmvn_hides_and_needs_the_waveforms():
    # A louder noise floor under the same speech-like signal: the SSL states (TERA: per-utterance
    # CMVN, level-normalized) change little; the spectral branch's features change a lot.
    torch.manual_seed(5)
    model = _model(spectral_mels=24).eval()
    t = torch.arange(16000) / 16000.0
    tone = 0.3 * torch.sin(2 * math.pi * 220 * t) * (torch.sin(2 * math.pi * 3 * t) > 0)
    quiet = (tone + 0.001 * torch.randn(16000))[None]
    loud = (tone + 0.05 * torch.randn(16000))[None]
    frames = 101
    gap = (model.spectral_features(quiet, None, frames) - model.spectral_features(loud, None, frames)).abs()
    assert float(gap.mean()) > 0.2
    # Another upstream's hop (20 ms: half the frames): resampled to its frame count.
    assert model.spectral_features(quiet, None, 51).shape == (1, 51, 24)
    states = torch.randn(3, 1, frames, 16)
    with pytest.raises(ValueError, match="spectral branch .* pass the waveforms"):
        model(states, torch.tensor([frames]))


def test_tiny_overfit_makes_the_loss_go_down():
    torch.manual_seed(3)
    model, tera = _model(), _tera()
    wavs, lens = _wavs(4, 6000, seed=3), torch.tensor([1.0, 0.9, 0.8, 0.7])
    labels = torch.tensor([[1.2, 0.3, -5.0], [2.0, 0.5, 0.0], [3.0, math.nan, 8.0], [4.2, 0.95, 20.0]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss, _ = model.loss(sqa_forward(model, tera, wavs, lens), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


# --- the interface -----------------------------------------------------------------------------------

def test_spectral_predictor_exports_and_scores_as_trained(tmp_path):
    torch.manual_seed(6)
    model, tera = _model(spectral_mels=24).eval(), _tera()
    folder = LearnedQualityPredictor.export(str(tmp_path / "hub"), {"predictor": model, "ssl": tera})
    scorer = load_model(folder, task="quality")
    wavs, lens = _wavs(2, 9000, seed=7), torch.tensor([1.0, 0.8])
    with torch.no_grad():
        expected = sqa_forward(model, tera, wavs, lens)
    assert scorer.mods.predictor.spectral_mels == 24
    assert torch.allclose(scorer.score_metrics_batch(wavs, lens), expected, atol=1e-5)


@pytest.fixture(scope="module")
def hub():
    torch.manual_seed(4)
    folder = tempfile.mkdtemp()
    return LearnedQualityPredictor.export(folder, {"predictor": _model().eval(), "ssl": _tera()})


def test_interface_gives_one_named_score_per_metric(hub, tmp_path):
    scorer = load_model(hub, task="quality")
    assert isinstance(scorer, LearnedQualityPredictor)
    assert list(scorer.metric_names) == METRICS
    wavs, lens = _wavs(2, 8000, seed=5), torch.tensor([1.0, 0.5])
    table = scorer.score_metrics_batch(wavs, lens)
    assert table.shape == (2, 3)
    assert torch.equal(scorer.score_batch(wavs, lens), table[:, 0])  # the primary metric
    from speechbrain_sqe.dataio.audio import save_audio

    save_audio(str(tmp_path / "a.wav"), wavs[0].numpy(), 16000)
    scores = scorer.score_file_metrics(str(tmp_path / "a.wav"))
    assert list(scores) == METRICS
    assert [scores[name] for name in METRICS] == pytest.approx(table[0].tolist(), abs=2e-3)  # 16-bit file
    assert 1.0 <= scores["pesq_wb"] <= 4.5 and 0.0 <= scores["stoi"] <= 1.0
    # The same through from_hparams.
    again = LearnedQualityPredictor.from_hparams(source=hub)
    assert torch.allclose(again.score_metrics_batch(wavs, lens), table)


def test_single_score_predictors_keep_their_one_name():
    from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel

    scorer = VQScore.from_hparams(source=VQScore.export(tempfile.mkdtemp(), {"vqvae": VQVAEQualityModel(codebook_size=16)}))
    assert isinstance(scorer, QualityPredictor) and tuple(scorer.metric_names) == ("vqscore",)
    wavs = _wavs(2, 8000, seed=7)
    table = scorer.score_metrics_batch(wavs, torch.tensor([1.0, 0.5]))
    assert table.shape == (2, 1) and torch.equal(table[:, 0], scorer.score_batch(wavs, torch.tensor([1.0, 0.5])))


def test_registered_predictor_gives_every_metric_from_one_pass(hub, monkeypatch):
    from speechbrain_sqe.inference.quality import register_quality_model

    specs = register_quality_model("sqa_test", hub)
    try:
        assert [spec.name for spec in specs] == [f"sqa_test_{name}" for name in METRICS]
        assert [spec.range for spec in specs] == [(1.0, 4.5), (0.0, 1.0), (None, None)]
        assert all(spec.learned and not spec.needs_reference for spec in specs)
        calls = []
        real = LearnedQualityPredictor.score_metrics_batch

        def counted(self, *args, **kwargs):
            calls.append(1)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(LearnedQualityPredictor, "score_metrics_batch", counted)
        wav = np.asarray(_wavs(1, 8000, seed=6)[0], dtype=np.float64)
        scores = registry.compute_nonintrusive_metrics(wav, [spec.name for spec in specs])
        assert len(calls) == 1  # one pass of the model for the three metrics
        scorer = LearnedQualityPredictor.from_hparams(source=hub)
        expected = real(scorer, torch.as_tensor(wav, dtype=torch.float32)[None])[0]
        assert [scores[f"sqa_test_{name}"] for name in METRICS] == pytest.approx(expected.tolist(), abs=1e-5)
    finally:
        for spec in specs:
            registry.METRICS.pop(spec.name, None)


def test_sqe_evaluate_with_a_registered_predictor_folder(hub, tmp_path):
    from speechbrain_sqe import cli
    from speechbrain_sqe.dataio.audio import save_audio

    for index in range(2):
        save_audio(str(tmp_path / "deg" / f"f{index}.wav"), _wavs(1, 16000, seed=10 + index)[0].numpy(), 16000)
    out = tmp_path / "eval.csv"
    try:
        status = cli.main(["evaluate", "--deg", str(tmp_path / "deg"), "--predictor", f"my_sqa={hub}",
                           "--metrics", "my_sqa", "--csv", str(out), "--no-progress"])
        assert status == 0
        import csv

        with open(out, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            rows = list(reader)
        assert [f"my_sqa_{name}" for name in METRICS] == [c for c in reader.fieldnames if c.startswith("my_sqa_")]
        scorer = LearnedQualityPredictor.from_hparams(source=hub)
        for row in rows:
            expected = scorer.score_file_metrics(row["deg"])
            assert [float(row[f"my_sqa_{name}"]) for name in METRICS] == pytest.approx(
                [expected[name] for name in METRICS], abs=1e-4)
    finally:
        for name in METRICS:
            registry.METRICS.pop(f"my_sqa_{name}", None)


def test_sqe_score_prints_and_writes_one_column_per_metric(hub, tmp_path, capsys):
    import csv

    from speechbrain_sqe import cli
    from speechbrain_sqe.dataio.audio import save_audio

    t = torch.arange(16000) / 16000
    for index in range(3):  # voiced-like tones (the CLI leaves files without speech unscored)
        wav = 0.3 * torch.sin(2 * math.pi * (150 + 40 * index) * t) * (1 + torch.sin(2 * math.pi * 3 * t)) / 2
        save_audio(str(tmp_path / "audio" / f"f{index}.wav"), wav.numpy(), 16000)
    out = tmp_path / "scores.csv"
    assert cli.main(["score", str(tmp_path / "audio"), "--model", hub, "--csv", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == [*METRICS, "path"]
    assert all(f"mean {name} " in printed for name in METRICS)
    with open(out, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
    assert reader.fieldnames == ["path", *METRICS, "duration", "speech"] and len(rows) == 3
    scorer = LearnedQualityPredictor.from_hparams(source=hub)
    for row in rows:
        expected = scorer.score_file_metrics(row["path"])
        assert [float(row[name]) for name in METRICS] == pytest.approx([expected[n] for n in METRICS], abs=1e-3)
