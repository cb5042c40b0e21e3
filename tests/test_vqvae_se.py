"""Tests of the VQScore enhancement VQ-VAE, its losses, resynthesis and the waveform attack."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.adversarial import l2_waveform_attack
from speechbrain_sqe.lobes.spectral import STFTMagnitude, frame_lengths, stft_magnitude
from speechbrain_sqe.lobes.vqvae_se import (
    VQVAEEnhancementModel,
    resynthesize,
    spectral_convergence_loss,
)

SMALL = {"channels": (32, 24), "codebook_dim": 16, "codebook_size": 32, "heads": 4}


def _small(**kwargs):
    torch.manual_seed(0)
    return VQVAEEnhancementModel(**{**SMALL, **kwargs})


def _specs(batch=3, time=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.log1p(5 * torch.rand(batch, time, 257, generator=g) ** 2)


def test_default_shapes_and_parameter_count():
    model = VQVAEEnhancementModel()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"VQVAEEnhancementModel parameters: {n_params}")
    assert 2.5e6 < n_params < 3.5e6
    enc = sum(p.numel() for p in model.encoder.parameters())
    dec = sum(p.numel() for p in model.decoder.parameters())
    assert abs(enc - dec) < 0.05 * enc
    assert model.quantizer.embed.shape == (4096, 128)
    assert model.quantizer.distance == "euclidean"
    assert model.config["commitment_weight"] == 3.0
    assert VQVAEEnhancementModel(**model.config).config == model.config
    spec = _specs(2, 20)
    with torch.no_grad():
        spec_hat, z, vq = model(spec, torch.tensor([1.0, 0.5]))
    assert spec_hat.shape == (2, 20, 257) and z.shape == (2, 20, 128)
    assert vq.indices.shape == (2, 20)
    assert bool((spec_hat >= 0).all())
    assert float(spec_hat[1, 10:].abs().sum()) == 0.0 and float(z[1, 10:].abs().sum()) == 0.0


def test_padded_batch_equals_single_utterances():
    model = _small()
    spec = _specs(3, 30)
    model(spec)  # k-means initialisation
    model.eval()
    lengths = torch.tensor([1.0, 0.7, 0.4])
    with torch.no_grad():
        spec_hat, z, vq = model(spec, lengths)
        enhanced = model.enhance_spec(spec, lengths)
        for i, n in enumerate([30, 21, 12]):
            s_hat, z_i, vq_i = model(spec[i : i + 1, :n])
            torch.testing.assert_close(z[i : i + 1, :n], z_i, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(spec_hat[i : i + 1, :n], s_hat, atol=1e-5, rtol=1e-4)
            assert torch.equal(vq.indices[i : i + 1, :n], vq_i.indices)
            torch.testing.assert_close(enhanced[i : i + 1, :n], s_hat, atol=1e-5, rtol=1e-4)
            assert float(spec_hat[i, n:].abs().sum()) == 0.0


def test_gradients_reach_encoder_and_decoder():
    model = _small()
    spec = _specs(2, 20)
    lengths = torch.tensor([1.0, 0.6])
    spec_hat, _, vq = model(spec, lengths)
    loss = 45 * spectral_convergence_loss(spec, spec_hat, lengths) + vq.loss
    loss.backward()
    for module in (model.encoder, model.decoder):
        for name, p in module.named_parameters():
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_spectral_convergence_masks_padding():
    x = _specs(2, 20)
    x_hat = x * 0.8
    lengths = torch.tensor([1.0, 0.5])
    padded = x_hat.clone()
    padded[1, 10:] = 100.0
    a = spectral_convergence_loss(x, padded, lengths)
    torch.testing.assert_close(a, torch.tensor(0.2), atol=1e-5, rtol=1e-5)


def test_overfit_step1_loss_decreases():
    model = _small(dropout=0.0, codebook_size=16)
    spec = _specs(4, 24)
    lengths = torch.tensor([1.0, 0.9, 0.8, 0.7])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        spec_hat, _, vq = model(spec, lengths)
        loss = 45 * spectral_convergence_loss(spec, spec_hat, lengths) + vq.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("step-1 losses", losses[::10], losses[-1])
    assert losses[-1] < 0.6 * losses[0], losses[::10]


def test_student_ce_decreases_with_frozen_codebook():
    model = _small(dropout=0.0)
    spec = _specs(3, 20)
    lengths = torch.tensor([1.0, 0.8, 0.6])
    model(spec, lengths)  # k-means initialisation
    codebook = model.quantizer.embed.clone()
    targets = torch.randint(0, 32, (3, 20), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        vq = model(spec, lengths, target_indices=targets, freeze_codebook=True).vq
        opt.zero_grad()
        vq.ce_loss.backward()
        opt.step()
        losses.append(vq.ce_loss.item())
    print("student CE", losses[::10], losses[-1])
    assert losses[-1] < 0.7 * losses[0], losses[::10]
    assert torch.equal(model.quantizer.embed, codebook)
    logits = model.token_logits(spec, lengths)
    assert logits.shape == (3, 20, 32)
    mask = torch.arange(20) < torch.tensor([[20], [16], [12]])
    ce = F.cross_entropy(logits[mask], targets[mask])
    torch.testing.assert_close(ce, model(spec, lengths, targets, freeze_codebook=True).vq.ce_loss)


def test_attack_raises_loss_with_exact_norm_and_untouched_padding():
    model = _small()
    compute_stft = STFTMagnitude(hop_length=128, log1p=True)
    g = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(3, 4000, generator=g)
    lengths = torch.tensor([1.0, 0.75, 0.5])
    wav = wav * (torch.arange(4000) < (lengths * 4000).unsqueeze(1))
    spec_lengths = frame_lengths(lengths, wav.shape[1], hop_length=128)
    model(compute_stft(wav, lengths), spec_lengths)  # k-means initialisation (teacher)
    model.eval()
    with torch.no_grad():
        tokens = model(compute_stft(wav, lengths), spec_lengths).vq.indices

    def loss_fn(x):
        out = model(compute_stft(x, lengths), spec_lengths, target_indices=tokens)
        return out.vq.ce_loss

    wav_adv, eps = l2_waveform_attack(
        wav, lengths, loss_fn, eps_range=(0.03, 0.1), generator=torch.Generator().manual_seed(2)
    )
    assert not wav_adv.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert bool(((eps >= 0.03) & (eps <= 0.1)).all())
    with torch.no_grad():
        assert float(loss_fn(wav_adv)) > float(loss_fn(wav))
    for i, n in enumerate([4000, 3000, 2000]):
        delta = (wav_adv[i, :n] - wav[i, :n]).double().norm()
        expected = eps[i].double() * wav[i, :n].double().norm()
        assert abs(float(delta / expected) - 1.0) < 1e-4
        assert torch.equal(wav_adv[i, n:], wav[i, n:])


def test_attack_fixed_eps_and_zero_gradient():
    wav = torch.randn(2, 100)
    wav_adv, eps = l2_waveform_attack(wav, None, lambda x: x.sum(), eps_range=(0.2, 0.2))
    torch.testing.assert_close(eps, torch.full((2,), 0.2))
    torch.testing.assert_close((wav_adv - wav).norm(dim=1), 0.2 * wav.norm(dim=1))
    same, _ = l2_waveform_attack(wav, None, lambda x: (0 * x).sum())
    assert torch.equal(same, wav)


def _snr_db(ref, est):
    return 10 * math.log10(float(ref.pow(2).sum() / (ref - est).pow(2).sum()))


@pytest.mark.parametrize("window_fn", [torch.hann_window, torch.hamming_window])
def test_resynthesis_with_clean_magnitude_reproduces_signal(window_fn):
    t = torch.arange(16000) / 16000
    g = torch.Generator().manual_seed(0)
    wav = torch.sin(2 * math.pi * 220 * t) + 0.5 * torch.sin(2 * math.pi * 1330 * t)
    wav = (wav + 0.05 * torch.randn(16000, generator=g)).unsqueeze(0)
    spec = torch.stft(
        wav, 512, 128, 512, window_fn(512), center=True, pad_mode="reflect", return_complex=True
    )
    mag = spec.abs().transpose(1, 2)
    out = resynthesize(mag, wav, n_fft=512, hop_length=128, window_fn=window_fn)
    assert out.shape == wav.shape
    assert _snr_db(wav, out) > 30


def test_resynthesis_from_model_features_and_padded_batch():
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 8000, generator=g)
    lengths = torch.tensor([1.0, 0.6])
    wav[1, 4800:] = 0
    log_mag = stft_magnitude(wav, hop_length=128, lengths=lengths, log1p=True)
    out = resynthesize(torch.expm1(log_mag), wav, lengths=lengths)
    assert out.shape == wav.shape
    assert _snr_db(wav[0], out[0]) > 30
    assert _snr_db(wav[1, :4800], out[1, :4800]) > 30
    assert float(out[1, 4800:].abs().sum()) == 0.0
    # Noisy phase: a different magnitude keeps the noisy signal's length.
    noisy = wav + 0.1 * torch.randn(2, 8000, generator=g)
    assert resynthesize(torch.expm1(log_mag), noisy).shape == (2, 8000)
