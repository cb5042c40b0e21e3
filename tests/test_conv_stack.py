"""Tests of speechbrain_sqe.lobes.conv_stack, the stack and wiring both VQScore VQ-VAEs share, and
of the shipped models built on it (state-dict keys and recorded outputs)."""

import os

import pytest
import torch

from speechbrain_sqe.lobes.conv_stack import (
    ConvDecoderStack,
    ConvEncoderStack,
    ConvVQVAE,
)
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
from speechbrain_sqe.utils.safe_load import load_state_dict_safely

PRETRAINED = os.path.join(os.path.dirname(__file__), "..", "speechbrain_sqe", "pretrained")

QUALITY = {"norm": "instance", "residual_last_stage": False, "transformer_layers": None}
ENHANCEMENT = {"norm": "mean", "residual_last_stage": True, "transformer_layers": 1, "heads": 4}


def _spec(batch=3, time=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, time, 65, generator=g)


@pytest.mark.parametrize("options", [QUALITY, ENHANCEMENT], ids=["quality", "enhancement"])
def test_encoder_decoder_shapes_gradients_and_padding(options):
    torch.manual_seed(0)
    enc = ConvEncoderStack(65, (24, 16), 8, **options).eval()
    dec = ConvDecoderStack(8, (24, 16), 65, transformer_layers=options["transformer_layers"],
                           heads=options.get("heads", 8)).eval()
    spec, lengths = _spec(), torch.tensor([1.0, 0.7, 0.4])
    spec.requires_grad_(True)
    z = enc(spec, lengths)
    out = dec(z, lengths)
    assert z.shape == (3, 30, 8) and out.shape == (3, 30, 65) and bool((out >= 0).all())
    out.sum().backward()
    assert spec.grad is not None and float(spec.grad[0].abs().sum()) > 0
    assert float(spec.grad[2, 12:].abs().sum()) == 0.0  # padded frames influence nothing
    assert all(p.grad is not None for p in list(enc.parameters()) + list(dec.parameters()))
    with torch.no_grad():
        z, out = enc(spec, lengths), dec(enc(spec, lengths), lengths)
        for i, n in enumerate([30, 21, 12]):
            z_alone = enc(spec[i : i + 1, :n])
            torch.testing.assert_close(z[i : i + 1, :n], z_alone, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out[i : i + 1, :n], dec(z_alone), atol=1e-5, rtol=1e-4)
            assert float(z[i, n:].abs().sum()) == 0.0 and float(out[i, n:].abs().sum()) == 0.0


def test_stage_layout_of_both_models():
    quality = VQVAEQualityModel(channels=(48, 24), codebook_dim=8, codebook_size=4)
    enhancement = VQVAEEnhancementModel(channels=(48, 24), codebook_dim=8, codebook_size=4, heads=4)
    for model in (quality, enhancement):
        assert isinstance(model, ConvVQVAE)
        assert [c.out_channels for c in model.encoder.convs] == [48, 48, 24, 24, 8, 8]
        assert [c.out_channels for c in model.decoder.convs] == [8, 24, 24, 48, 48, 257]
    assert quality.encoder.transformer is None and quality.decoder.transformer is None
    assert len(enhancement.encoder.transformer.layers) == 2 and len(enhancement.decoder.transformer.layers) == 2
    with pytest.raises(ValueError, match="norm"):
        ConvEncoderStack(norm="batch")
    with pytest.raises(ValueError, match="odd"):
        ConvDecoderStack(kernel_size=4)


# ------------------------------------------------------------------ the shipped models
def _shipped(name):
    folder = os.path.join(PRETRAINED, name)
    if not os.path.isfile(os.path.join(folder, "vqvae.ckpt")):
        pytest.skip(f"{folder} has no checkpoint")
    return folder


@pytest.mark.parametrize(
    "name, cls", [("vqscore", VQVAEQualityModel), ("vq_enhancer", VQVAEEnhancementModel)]
)
def test_shipped_checkpoint_keys_are_the_models_keys(name, cls):
    from hyperpyyaml import load_hyperpyyaml

    folder = _shipped(name)
    with open(os.path.join(folder, "hyperparams.yaml")) as f:
        model = load_hyperpyyaml(f)["vqvae"]
    assert type(model) is cls
    state = load_state_dict_safely(os.path.join(folder, "vqvae.ckpt"))
    assert set(state) == set(model.state_dict())
    assert any(k.startswith("encoder.convs.") for k in state) and any(k.startswith("quantizer.") for k in state)
    if cls is VQVAEEnhancementModel:
        assert any(k.startswith("encoder.transformer.") for k in state)
        assert any(k.startswith("decoder.transformer.") for k in state)
    model.load_state_dict(state, strict=True)


def _inputs():
    g = torch.Generator().manual_seed(2024)
    return 0.1 * torch.randn(2, 8000, generator=g), torch.tensor([1.0, 0.6])


def test_shipped_vqscore_outputs_are_the_recorded_ones(tmp_path):
    """Values recorded with the code before the conv_stack refactor (bit-identical after it)."""
    from speechbrain_sqe.inference.quality import VQScore

    scorer = VQScore.from_hparams(source=_shipped("vqscore"), savedir=str(tmp_path))
    wavs, lengths = _inputs()
    stft = scorer.frontend
    spec, flens = stft(wavs, lengths), stft.frame_lengths(lengths, 8000)
    model = scorer.mods.vqvae.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.score(spec, flens), torch.tensor([0.5799224376678467, 0.5964242815971375]),
            atol=1e-5, rtol=0,
        )
        assert model(spec, flens).vq.indices[:, :6].tolist() == [
            [1136, 1136, 1483, 1716, 950, 1192], [666, 468, 1415, 386, 994, 299],
        ]


def test_shipped_enhancer_outputs_are_the_recorded_ones(tmp_path):
    """Values recorded with the code before the conv_stack/front-end refactor (bit-identical)."""
    from speechbrain_sqe.inference.enhancement import VQEnhancer

    enhancer = VQEnhancer.from_hparams(source=_shipped("vq_enhancer"), savedir=str(tmp_path))
    wavs, lengths = _inputs()
    frontend = enhancer.frontend
    with torch.no_grad():
        spec = frontend(wavs, lengths)
        indices = enhancer.mods.vqvae(spec, frontend.frame_lengths(lengths, 8000)).vq.indices
    assert indices[:, :6].tolist() == [[114, 914, 37, 849, 849, 431], [65, 581, 527, 747, 27, 560]]
    # The lobes' chain (the interface also matches the input's speech level since issue 10).
    from speechbrain_sqe.lobes.vqvae_se import enhance_waveforms

    with torch.no_grad():
        out = enhance_waveforms(enhancer.mods.vqvae, frontend, wavs, lengths, mix=0.0)
    torch.testing.assert_close(out.norm(dim=1), torch.tensor([1.222816824913025, 0.6361033916473389]),
                               atol=1e-5, rtol=1e-5)
    recorded = torch.tensor([
        [0.020015111193060875, 0.006602374836802483, -0.030469661578536034, 0.0106672253459692,
         -0.00895528681576252],
        [0.0006021906738169491, 0.0005987073527649045, 0.0010103831300511956, 0.0, 0.0],
    ])
    torch.testing.assert_close(out[:, 1000:8000:1500], recorded, atol=1e-6, rtol=0)


def test_a_partly_frozen_stack_trains():
    """Inference runs the activations and skip sums in place; with only some convolutions trainable
    (a partial fine-tuning) the trainable ones still get gradients: nothing they saved is overwritten."""
    model = VQVAEQualityModel(channels=(16, 8), codebook_dim=8, codebook_size=32)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.encoder.convs[1].weight.requires_grad_(True)  # the second of a stage: its input `a` is saved
    model.decoder.convs[2].weight.requires_grad_(True)
    lengths = torch.tensor([1.0, 0.6])
    model.encoder(torch.rand(2, 20, 257), lengths).square().sum().backward()
    model.decoder(torch.rand(2, 20, 8), lengths).sum().backward()
    assert float(model.encoder.convs[1].weight.grad.abs().sum()) > 0
    assert float(model.decoder.convs[2].weight.grad.abs().sum()) > 0
