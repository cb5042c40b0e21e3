"""Tests of speechbrain_sqe.lobes.tera and speechbrain_sqe.lobes.alteration."""

import pytest
import torch

from speechbrain_sqe.lobes.alteration import TERAAlteration, masked_l1_loss
from speechbrain_sqe.lobes.tera import (
    TERA_BASE_CONFIG,
    TERAEncoder,
    TERAFeatures,
    TERAModel,
    sinusoid_position_encoding,
)


def _tiny(**kw):
    cfg = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "dropout": 0.0}
    cfg.update(kw)
    return TERAModel(**cfg)


# ---------------------------------------------------------------- features
def _s3prl_logmel(wav):
    """s3prl's OnlinePreprocessor log-mel + CMVN for one utterance, written with torchaudio."""
    from torchaudio.transforms import MelScale

    rms = wav.pow(2).mean().pow(0.5)
    wav = wav * (10 ** (-25 / 20)) / (rms + 1e-10)
    spec = torch.stft(wav, 400, 160, 400, window=torch.hann_window(400), center=True, pad_mode="reflect",
                      normalized=False, onesided=True, return_complex=True)
    mel = MelScale(sample_rate=16000, n_mels=80)(spec.abs() ** 2)  # [80, T]
    mel = (mel + 1e-10).log()
    mel = (mel - mel.mean(-1, keepdim=True)) / (mel.std(-1, keepdim=True) + 1e-10)
    return mel.transpose(0, 1)


def test_features_match_s3prl_logmel_and_ignore_padding():
    torch.manual_seed(0)
    wav = torch.randn(2, 6400) * torch.linspace(0.1, 1.0, 6400)
    feats, flens = TERAFeatures()(wav, torch.tensor([1.0, 0.5]))
    assert feats.shape == (2, 41, 80)
    ref0 = _s3prl_logmel(wav[0])
    ref1 = _s3prl_logmel(wav[1, :3200])
    torch.testing.assert_close(feats[0], ref0, atol=1e-4, rtol=1e-4)
    n1 = round(flens[1].item() * 41)
    assert n1 == ref1.shape[0] == 21
    torch.testing.assert_close(feats[1, :n1], ref1, atol=1e-4, rtol=1e-4)
    assert feats[1, n1:].abs().sum() == 0
    # CMVN over the valid frames: zero mean, unit (unbiased) std per channel
    torch.testing.assert_close(feats[1, :n1].mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats[1, :n1].std(0), torch.ones(80), atol=1e-3, rtol=0)


def test_position_encoding_values():
    pe = sinusoid_position_encoding(10, 6)
    assert pe[0, 0] == 0 and pe[0, 1] == 1
    torch.testing.assert_close(pe[3, 2], torch.sin(torch.tensor(3 / 10000 ** (2 / 6))))
    torch.testing.assert_close(pe[3, 5], torch.cos(torch.tensor(3 / 10000 ** (4 / 6))))


# ---------------------------------------------------------------- encoder / model
def test_shapes_config_and_presets():
    model = _tiny()
    feats = torch.randn(3, 25, 80)
    states = model.encoder(feats)
    assert len(states) == 3 and all(s.shape == (3, 25, 32) for s in states)
    assert model(feats).shape == (3, 25, 80)
    rebuilt = TERAModel(**model.config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    small = TERAModel.small()
    assert small.config["hidden_size"] == 192 and small.config["num_heads"] == 4
    assert TERA_BASE_CONFIG == {"hidden_size": 768, "num_layers": 3, "num_heads": 12, "intermediate_size": 3072}
    with pytest.raises(ValueError, match="max_positions"):
        TERAEncoder(hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8, max_positions=10)(
            torch.randn(1, 11, 80))


def test_gradients_reach_all_parameters():
    model = _tiny(dropout=0.1)
    feats = torch.randn(2, 20, 80)
    loss = model(feats, torch.tensor([1.0, 0.7])).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_padded_batch_equals_alone():
    torch.manual_seed(1)
    model = _tiny().eval()
    wav = torch.randn(2, 8000)
    lengths = torch.tensor([1.0, 0.55])
    with torch.no_grad():
        batch = model.hidden_states(wav, lengths)
        alone = model.hidden_states(wav[1:, : round(0.55 * 8000)])
        pred_b = model(*model.extract_features(wav, lengths))
        pred_a = model(*model.extract_features(wav[1:, : round(0.55 * 8000)]))
    n = alone[0].shape[1]
    for hb, ha in zip(batch, alone):
        torch.testing.assert_close(hb[1, :n], ha[0], atol=1e-5, rtol=1e-5)
        assert hb[1, n:].abs().sum() == 0
    torch.testing.assert_close(pred_b[1, :n], pred_a[0], atol=1e-5, rtol=1e-5)


def test_tiny_pretraining_overfits():
    torch.manual_seed(0)
    model = _tiny()
    alteration = TERAAlteration(noise_prob=0.0)
    wav = torch.randn(2, 4800)
    lengths = torch.tensor([1.0, 0.8])
    feats, flens = model.extract_features(wav, lengths)
    altered, mask = alteration(feats, flens)
    assert mask.any()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = masked_l1_loss(model(altered, flens), feats, mask)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


# ---------------------------------------------------------------- alteration
def _batch(n_utts=300, time=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_utts, time, 80, generator=gen) + 3.0  # never exactly 0
    lengths = 0.5 + 0.5 * torch.rand(n_utts, generator=gen)
    return feats, lengths


def test_alteration_is_deterministic_and_never_touches_padding():
    feats, lengths = _batch(20)
    alter = TERAAlteration(noise_prob=1.0)
    torch.manual_seed(3)
    a1, m1 = alter(feats, lengths)
    torch.manual_seed(3)
    a2, m2 = alter(feats, lengths)
    assert torch.equal(a1, a2) and torch.equal(m1, m2)
    valid = torch.arange(200)[None] < torch.round(lengths * 200)[:, None]
    assert torch.equal(a1[~valid], feats[~valid])
    assert not m1[~valid].any()
    assert not torch.equal(a1[valid], feats[valid])


def test_time_alteration_statistics():
    feats, lengths = _batch()
    torch.manual_seed(0)
    altered, mask = TERAAlteration(max_freq_fraction=0.0, noise_prob=0.0)(feats, lengths)
    frames = mask.all(-1)  # time labels cover all channels
    assert torch.equal(frames, mask.any(-1))
    n_valid = torch.round(lengths * 200)
    coverage = frames.sum(1) / n_valid
    assert 0.11 < coverage.mean() < 0.155  # 15 % minus span overlaps
    spans = torch.round(n_valid * 0.15 / 7)  # round(n * 0.15 / 7) spans of 7 frames
    assert (frames.sum(1) <= spans * 7).all()
    for row in frames[:50]:
        runs = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])]))
        starts, ends = (runs == 1).nonzero().flatten(), (runs == -1).nonzero().flatten()
        assert ((ends - starts) >= 7).all()  # spans of 7, merged when overlapping
    kinds = {"zero": 0, "kept": 0, "replaced": 0}
    for b in range(len(feats)):
        sel = frames[b]
        if (altered[b, sel] == 0).all():
            kinds["zero"] += 1
        elif torch.equal(altered[b, sel], feats[b, sel]):
            kinds["kept"] += 1
        else:
            kinds["replaced"] += 1
        assert torch.equal(altered[b, ~sel], feats[b, ~sel])
    n = len(feats)
    assert abs(kinds["zero"] / n - 0.8) < 0.07
    assert abs(kinds["replaced"] / n - 0.1) < 0.05
    assert abs(kinds["kept"] / n - 0.1) < 0.05


def test_frequency_and_noise_alteration_statistics():
    feats, lengths = _batch()
    torch.manual_seed(0)
    altered, mask = TERAAlteration(time_proportion=0.0, noise_prob=0.0)(feats, lengths)
    widths = []
    for b in range(len(feats)):
        n = int(torch.round(lengths[b] * 200))
        chans = mask[b, 0]
        assert torch.equal(mask[b, :n], chans.expand(n, 80))
        idx = chans.nonzero().flatten()
        if len(idx):
            assert idx[-1] - idx[0] + 1 == len(idx)  # one contiguous block
        assert (altered[b, :n, chans] == 0).all()
        widths.append(len(idx))
    widths = torch.tensor(widths)
    assert widths.max() <= 16 and widths.min() == 0 and widths.max() >= 14
    assert 6.5 < widths.float().mean() < 9.5  # U{0..16}: mean 8
    torch.manual_seed(0)
    noisy, mask = TERAAlteration(time_proportion=0.0, max_freq_fraction=0.0, noise_per_utterance=True)(
        feats, lengths)
    assert not mask.any()
    changed = (noisy != feats).flatten(1).any(1).float().mean()
    assert 0.09 < changed < 0.21
    diff = (noisy - feats)[(noisy != feats)]
    assert abs(diff.std() - 0.2) < 0.01


def test_masked_l1_loss_ignores_unmasked():
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.zeros(2, 5, 3, dtype=torch.bool)
    assert masked_l1_loss(pred, target, mask) == 0
    mask[0, 1] = True
    torch.testing.assert_close(masked_l1_loss(pred, target, mask), (pred[0, 1] - target[0, 1]).abs().mean())


def test_shipped_checkpoint_keys_and_recorded_init_args():
    import os

    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_sqe.utils.safe_load import load_state_dict_safely

    folder = os.path.join(os.path.dirname(__file__), "..", "speechbrain_sqe", "pretrained", "tera")
    if not os.path.isfile(os.path.join(folder, "tera.ckpt")):
        pytest.skip("no shipped TERA checkpoint")
    with open(os.path.join(folder, "hyperparams.yaml")) as f:
        model = load_hyperpyyaml(f)["tera"]
    state = load_state_dict_safely(os.path.join(folder, "tera.ckpt"))
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    assert model.init_args == model.config and model.init_args["hidden_size"] == 192
    assert TERAModel(**model.init_args).state_dict().keys() == model.state_dict().keys()
