"""Spectrum-aware SSL vocoder lobes and interface: shapes per fusion, gradients to the fusion and the
layer weights, padded batches equal to each utterance alone, the generator's upsampling check, the
discriminators, the STFT loss and the exported enhancer (length and level)."""

import tempfile

import pytest
import torch

from speechbrain_sqe.inference.enhancement import SSLVocoderEnhancer, speech_energy
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.lobes.ssl_vocoder import (
    FUSIONS,
    HifiGANDiscriminators,
    MultiResolutionSTFTLoss,
    SpectrumSSLFusion,
    SSLVocoder,
    VocoderGenerator,
    check_upsampling,
    random_segments,
    spectrum_frontend,
    ssl_vocoder_forward,
)
from speechbrain_sqe.lobes.tera import TERAModel

torch.manual_seed(0)


def _tera():
    return TERAModel(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, dropout=0.0).eval()


def _model(fusion="cross_attention", ssl_layers="all", window=8):
    return SSLVocoder(fusion, ssl_layers=ssl_layers, ssl_num_layers=3, ssl_size=16, model_dim=16,
                      attention_heads=2, attention_window=window, upsample_initial_channel=16,
                      resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])


def _wavs(batch=2, samples=8000, seed=0):
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_shapes_and_gradients_reach_fusion_and_layer_weights(fusion):
    model, tera, frontend = _model(fusion), _tera(), spectrum_frontend("log")
    wavs, lengths = _wavs(), torch.tensor([1.0, 0.7])
    out = ssl_vocoder_forward(model, frontend, wavs, lengths, tera)
    assert out.shape == wavs.shape  # the output has the input's length
    assert float(out[1, 5600:].detach().abs().sum()) == 0.0  # nothing beyond the second utterance
    out.pow(2).sum().backward()
    assert model.weighted.weights.grad is not None and model.weighted.weights.grad.abs().sum() > 0
    fused = [p for name, p in model.fusion.named_parameters()]
    assert fused and all(p.grad is not None and p.grad.abs().sum() > 0 for p in fused)
    assert all(p.grad is None for p in tera.parameters())  # the upstream is not trained here
    # The spectrum reaches the output except in DeVo (embeddings only).
    assert (model.fusion.spec_proj is None) == (fusion == "none")


def test_last_layer_mode_reads_only_the_last_state():
    model = _model("add", ssl_layers="last")
    assert model.layer_weights() is None
    states = torch.randn(3, 1, 20, 16)
    spec = torch.rand(1, 20, 201)
    changed = states.clone()
    changed[:2] += 5.0  # the earlier layers do not matter
    assert torch.equal(model.features(spec, states), model.features(spec, changed))
    changed[2] += 1.0
    assert not torch.equal(model.features(spec, states), model.features(spec, changed))
    with pytest.raises(ValueError, match="ssl_layers"):
        SSLVocoder(ssl_layers="first")


@pytest.mark.parametrize("fusion", ["cross_attention", "film"])
def test_padded_batch_equals_each_utterance_alone(fusion):
    model, tera, frontend = _model(fusion).eval(), _tera(), spectrum_frontend("magnitude")
    wavs, lengths = _wavs(3, 6400, seed=1), torch.tensor([1.0, 0.55, 0.8])
    with torch.no_grad():
        batch = ssl_vocoder_forward(model, frontend, wavs, lengths, tera)
        for i in range(3):
            n = round(float(lengths[i]) * wavs.shape[1])
            alone = ssl_vocoder_forward(model, frontend, wavs[i : i + 1, :n], torch.ones(1), tera)
            assert torch.allclose(batch[i, :n], alone[0], atol=1e-5), i


def test_generator_alone_on_a_zero_padded_batch_differs_near_the_end():
    """Why the chain runs the generator per length: its convolutions reflect-pad their input, so
    zero-padded frames change an utterance's last samples (said in the module docstring)."""
    gen = VocoderGenerator(8, upsample_initial_channel=16, resblock_kernel_sizes=[3],
                           resblock_dilation_sizes=[[1, 3]]).eval()
    features = torch.randn(1, 8, 30)
    with torch.no_grad():
        alone = gen(features[:, :, :20])
        padded = gen(torch.nn.functional.pad(features[:, :, :20], (0, 10)))[:, : alone.shape[1]]
    assert alone.shape == (1, 3200)
    assert torch.allclose(alone[:, :1600], padded[:, :1600], atol=1e-5)  # far from the end: the same
    assert not torch.allclose(alone[:, -160:], padded[:, -160:], atol=1e-5)


def test_local_attention_window_limits_what_a_frame_sees():
    fusion = SpectrumSSLFusion("cross_attention", n_bins=5, ssl_size=4, model_dim=8, attention_heads=2,
                               attention_window=2).eval()
    spec, ssl = torch.rand(1, 20, 5), torch.randn(1, 20, 4)
    far = ssl.clone()
    far[:, 10:] += 3.0  # frames 10.. change: frame 5 (window 3..7) must not see it, frame 9 must
    with torch.no_grad():
        a, b = fusion(spec, ssl), fusion(spec, far)
    assert torch.allclose(a[:, :8], b[:, :8]) and not torch.allclose(a[:, 8:], b[:, 8:])


def test_bad_upsampling_is_refused_clearly():
    with pytest.raises(ValueError, match=r"multiply to 256 but the feature hop is 160"):
        SSLVocoder(upsample_factors=[8, 8, 2, 2], upsample_kernel_sizes=[16, 16, 4, 4])
    with pytest.raises(ValueError, match="even difference"):
        check_upsampling(160, [5, 4, 4, 2], [10, 8, 8, 4], 128)
    with pytest.raises(ValueError, match="one upsample kernel size per factor"):
        check_upsampling(160, [5, 4, 4, 2], [11, 8, 8], 128)
    with pytest.raises(ValueError, match="divisible"):
        check_upsampling(160, [5, 4, 4, 2], [11, 8, 8, 4], 40)
    check_upsampling(320, [5, 4, 4, 4], [11, 8, 8, 8], 128)  # 20 ms frames (WavLM)
    with pytest.raises(ValueError, match="fusion"):
        SpectrumSSLFusion("concat")
    with pytest.raises(ValueError, match="spectrum"):
        spectrum_frontend("mel")


def test_discriminators_and_losses_are_speechbrains():
    from speechbrain.lobes.models.HifiGAN import (
        DiscriminatorP,
        DiscriminatorS,
        STFTLoss,
    )

    full = HifiGANDiscriminators()
    assert [d.period for d in full.periods] == [2, 3, 5, 7, 11] and len(full.scales) == 3
    assert all(isinstance(d, DiscriminatorP) for d in full.periods)
    assert all(isinstance(d, DiscriminatorS) for d in full.scales)
    small = HifiGANDiscriminators(periods=[2], scales=0)
    scores, feats = small(torch.randn(2, 1, 3000))
    assert len(scores) == len(feats) == 1
    with pytest.raises(ValueError):
        HifiGANDiscriminators(periods=[], scales=0)
    loss = MultiResolutionSTFTLoss()
    assert all(isinstance(f, STFTLoss) for f in loss.loss_funcs)
    clean = torch.randn(2, 8000)
    mag, sc = loss(clean + 0.3 * torch.randn(2, 8000), clean)
    mag_small, sc_small = loss(clean + 0.03 * torch.randn(2, 8000), clean)
    assert float(mag_small) < float(mag) and float(sc_small) < float(sc)
    a, b = random_segments(torch.randn(3, 100), torch.randn(3, 100), None)
    assert a.shape == b.shape == (3, 100)


def test_export_loads_and_keeps_length_and_speech_level():
    model, tera = _model("cross_attention"), _tera()
    folder = SSLVocoderEnhancer.export(tempfile.mkdtemp(), {"enhancer": model, "ssl": tera},
                                       frontend=spectrum_frontend("magnitude"))
    enhancer = load_model(folder, task="enhancement")
    assert isinstance(enhancer, SSLVocoderEnhancer) and enhancer.frontend.log1p is False
    t = torch.arange(12345) / 16000
    noisy = (0.3 * torch.sin(2 * torch.pi * 220 * t) * (t > 0.2)) + 0.01 * torch.randn(12345)
    out = enhancer.enhance_batch(noisy)
    assert out.shape == noisy.shape
    if float(out.abs().max()) < 0.98:
        assert float(speech_energy(out.unsqueeze(0), noise_quantile=0.0)) == pytest.approx(
            float(speech_energy(noisy.unsqueeze(0))), rel=0.02)
    reference = ssl_vocoder_forward(model.eval(), spectrum_frontend("magnitude"), noisy.unsqueeze(0), None, tera)
    # Same waveform up to the level gain.
    cosine = torch.nn.functional.cosine_similarity(out.unsqueeze(0), reference.detach(), dim=1)
    assert float(cosine) > 0.999
