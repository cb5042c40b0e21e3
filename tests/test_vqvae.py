"""Tests of speechbrain_sqe.lobes.vqvae and speechbrain_sqe.lobes.spectral."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.masking import masked_instance_norm
from speechbrain_sqe.lobes.spectral import STFTMagnitude, frame_lengths, stft_magnitude
from speechbrain_sqe.lobes.vqvae import (
    VQVAEQualityDecoder,
    VQVAEQualityEncoder,
    VQVAEQualityModel,
    spectral_cosine_loss,
)


def _harmonic(gen, seconds=1.0, sr=16000):
    """A voiced-speech-like signal: harmonics of a vibrato f0 under a syllabic envelope."""
    t = torch.arange(int(seconds * sr)) / sr
    f0 = 100 + 150 * torch.rand(1, generator=gen)
    vibrato = 1 + 0.05 * torch.sin(2 * math.pi * (2 + 3 * torch.rand(1, generator=gen)) * t)
    phase = 2 * math.pi * torch.cumsum(f0 * vibrato, 0) / sr
    wav = sum((0.7**k) * torch.sin((k + 1) * phase) for k in range(12))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * (1 + 2 * torch.rand(1, generator=gen)) * t).abs()
    return 0.1 * wav * envelope


def _authors_stft_magnitude(x, hop):
    """The authors' feature, written from their description (torch.stft defaults: reflect pad)."""
    spec = torch.stft(x, 512, hop, 512, window=torch.hann_window(512), return_complex=True)
    spec = torch.view_as_real(spec)
    return torch.sqrt(torch.clamp(spec[..., 0] ** 2 + spec[..., 1] ** 2, min=1e-7)).transpose(2, 1)


# ---------------------------------------------------------------- spectral features
@pytest.mark.parametrize("hop", [256, 128])
def test_stft_magnitude_matches_the_authors(hop):
    torch.manual_seed(0)
    wav = torch.randn(2, 8000) * 0.1
    wav[1, 4000:] = 0.0  # silent stretch: the clamp matters there
    ours = stft_magnitude(wav, hop_length=hop)
    ref = _authors_stft_magnitude(wav, hop)
    assert ours.shape == (2, 1 + 8000 // hop, 257)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(stft_magnitude(wav, hop_length=hop, log1p=True), torch.log1p(ref), atol=1e-6)
    assert float(ours.min()) >= math.sqrt(1e-7) - 1e-9


def test_stft_magnitude_with_lengths_is_exact_per_utterance():
    torch.manual_seed(0)
    wav = torch.randn(2, 8000)
    lengths = torch.tensor([1.0, 0.55])
    spec = STFTMagnitude()(wav, lengths)
    frames = torch.round(frame_lengths(lengths, 8000) * spec.shape[1]).long()
    alone = stft_magnitude(wav[1, :4400])
    assert frames.tolist() == [spec.shape[1], alone.shape[0]]
    assert torch.allclose(spec[1, : alone.shape[0]], alone, atol=1e-6)
    assert (spec[1, alone.shape[0] :] == 0).all()


# ---------------------------------------------------------------- model
def test_shapes_and_parameter_count():
    model = VQVAEQualityModel()
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.85e6 < n_params < 0.95e6, n_params  # about 0.9 M, as the paper's QE model
    spec = torch.rand(2, 30, 257)
    spec_hat, z, vq = model(spec)
    assert spec_hat.shape == (2, 30, 257) and (spec_hat >= 0).all()
    assert z.shape == (2, 30, 32) and vq.quantized.shape == (2, 30, 32)
    assert vq.indices.shape == (2, 30) and model.quantizer.embed.shape == (2048, 32)
    assert len(model.encoder.convs) == 6 and len(model.decoder.convs) == 6
    assert model.encode(spec).shape == (2, 30, 32)


def test_configurable_sizes():
    model = VQVAEQualityModel(
        input_size=129, channels=(48, 24, 12), codebook_dim=6, codebook_size=16, kernel_size=3,
        distance="euclidean",
    )
    spec = torch.rand(1, 12, 129)
    spec_hat, z, _ = model(spec)
    assert spec_hat.shape == (1, 12, 129) and z.shape == (1, 12, 6)
    assert [c.out_channels for c in model.encoder.convs] == [48, 48, 24, 24, 12, 12, 6, 6]
    assert [c.out_channels for c in model.decoder.convs] == [6, 12, 12, 24, 24, 48, 48, 129]
    assert isinstance(VQVAEQualityEncoder(), torch.nn.Module) and isinstance(VQVAEQualityDecoder(), torch.nn.Module)


def test_masked_instance_norm_matches_instance_norm():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 17)
    ref = torch.nn.InstanceNorm1d(5)(x)
    assert torch.allclose(masked_instance_norm(x), ref, atol=1e-6)
    full = torch.ones(3, 17, dtype=torch.bool)
    assert torch.allclose(masked_instance_norm(x, full), ref, atol=1e-5)


def _initialised_model(**kwargs):
    torch.manual_seed(0)
    model = VQVAEQualityModel(**kwargs)
    model(torch.rand(3, 40, kwargs.get("input_size", 257)))  # k-means initialisation
    return model.eval()


def test_padded_batch_scores_equal_per_utterance_scores():
    model = _initialised_model(codebook_size=64)
    torch.manual_seed(1)
    specs = [torch.rand(n, 257) * torch.rand(1, 257) for n in (37, 20, 9)]
    batch = torch.zeros(3, 37, 257)
    for i, s in enumerate(specs):
        batch[i, : s.shape[0]] = s
    batch[1, 20:] = 5.0  # whatever the padding holds
    lengths = torch.tensor([s.shape[0] / 37 for s in specs])
    with torch.no_grad():
        scores = model.score(batch, lengths)
        frames = model.score_frames(batch, lengths)
        z = model.encode(batch, lengths)
        for i, s in enumerate(specs):
            n = s.shape[0]
            alone = model.score(s.unsqueeze(0))
            assert torch.allclose(scores[i], alone[0], atol=1e-5), (i, scores[i], alone)
            assert torch.allclose(frames[i, :n], model.score_frames(s.unsqueeze(0))[0], atol=1e-5)
            assert (frames[i, n:] == 0).all()
            assert torch.allclose(z[i, :n], model.encode(s.unsqueeze(0))[0], atol=1e-4)
            spec_hat = model(batch, lengths).spec_hat
            assert torch.allclose(spec_hat[i, :n], model(s.unsqueeze(0)).spec_hat[0], atol=1e-4)
    # Without lengths the padding leaks into the norms and the short utterances' scores change.
    with torch.no_grad():
        unmasked = model.score(batch)
    assert not torch.allclose(unmasked[1:], scores[1:], atol=1e-3)


def test_scoring_never_updates_the_codebook_and_uses_no_decoder():
    model = _initialised_model(codebook_size=32)
    model.train()
    state = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    spec = torch.rand(2, 25, 257)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.fill_(float("nan"))  # the decoder must not be involved
        scores = model.score(spec)
    assert torch.isfinite(scores).all()  # the NaN decoder was not involved (values checked below)
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(value, state[key]), key
    # Differentiable with respect to the input (e.g. for adversarial or enhancement losses).
    spec_grad = spec.clone().requires_grad_(True)
    model.score(spec_grad).sum().backward()
    assert spec_grad.grad is not None and spec_grad.grad.abs().sum() > 0
    # score == mean of cos(z_t, code_t), code = nearest unit-norm code to z_t
    z = model.encode(spec)
    codes = model.quantizer.codebook[(F.normalize(z, dim=-1) @ model.quantizer.codebook.t()).argmax(-1)]
    expected = F.cosine_similarity(z, codes, dim=-1).mean(1)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_spectral_cosine_loss_masks_padding_and_matches_definition():
    torch.manual_seed(0)
    x, x_hat = torch.rand(2, 10, 257), torch.rand(2, 10, 257)
    ref = -F.cosine_similarity(x, x_hat, dim=-1).mean()
    assert torch.allclose(spectral_cosine_loss(x, x_hat), ref, atol=1e-5)
    lengths = torch.tensor([1.0, 0.5])
    garbage = x_hat.clone()
    garbage[1, 5:] = -x[1, 5:]
    masked = spectral_cosine_loss(x, x_hat, lengths)
    assert torch.allclose(masked, spectral_cosine_loss(x, garbage, lengths))
    cos = F.cosine_similarity(torch.cat([x[0], x[1, :5]]), torch.cat([x_hat[0], x_hat[1, :5]]), dim=-1)
    assert torch.allclose(masked, -cos.mean(), atol=1e-5)


def test_tiny_overfit_lowers_the_loss_and_separates_clean_from_noisy():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    wavs = torch.stack([_harmonic(gen) for _ in range(4)])
    spec = stft_magnitude(wavs)
    model = VQVAEQualityModel(channels=(32, 16), codebook_dim=8, codebook_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(100):
        spec_hat, _, vq = model(spec)
        if step == 0:  # right after the k-means initialisation
            with torch.no_grad():
                initial_scores = model.score(spec)
        loss = 45 * spectral_cosine_loss(spec, spec_hat) + vq.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 20  # from about -10 to below -40 (minimum -45)
    model.eval()
    noisy = wavs + 0.3 * torch.randn(wavs.shape, generator=gen)  # about -11 dB SNR
    with torch.no_grad():
        clean_scores = model.score(spec)
        noisy_scores = model.score(stft_magnitude(noisy))
    assert clean_scores.mean() > initial_scores.mean() + 0.05  # training fits the clean frames
    assert (clean_scores > noisy_scores).all(), (clean_scores, noisy_scores)
    assert (clean_scores - noisy_scores).mean() > 0.02


def test_state_dict_round_trip():
    model = _initialised_model(codebook_size=16)
    state = model.state_dict()
    assert "quantizer.initted" in state and "encoder.convs.0.weight" in state
    restored = VQVAEQualityModel(codebook_size=16)
    restored.load_state_dict(state)
    restored.eval()
    spec = torch.rand(2, 15, 257)
    with torch.no_grad():
        assert torch.equal(restored.score(spec), model.score(spec))
        assert torch.equal(restored(spec).spec_hat, model(spec).spec_hat)
