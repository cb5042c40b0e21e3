"""Tests of speechbrain_sqe.inference.convert (official VQScore checkpoint conversion)."""

import argparse

import pytest
import torch
import torch.nn.functional as F

from speechbrain_sqe.inference.convert import (
    OfficialCheckpointError,
    convert_official_vqscore_checkpoint,
    load_official_vqscore,
)
from speechbrain_sqe.lobes.spectral import stft_magnitude

ENC_SIZES = [(257, 128), (128, 128), (128, 64), (64, 64), (64, 32), (32, 32)]
DEC_SIZES = [(32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 257)]
CODEBOOK = "quantizer.quantizer._codebook."


def _official_state_dict(seed=0, codebook_size=2048, dim=32, scalar_initted=False):
    """Random weights in the authors' VQVAE_QE key naming and shapes (their code is not imported)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, sizes in (("CNN_1D_encoder.conv_enc", ENC_SIZES), ("CNN_1D_decoder.conv_dec", DEC_SIZES)):
        for i, (cin, cout) in enumerate(sizes, start=1):
            state[f"{name}{i}.weight"] = torch.randn(cout, cin, 7, generator=gen) / (7 * cin) ** 0.5
            state[f"{name}{i}.bias"] = 0.1 * torch.randn(cout, generator=gen)
    embed = F.normalize(torch.randn(1, codebook_size, dim, generator=gen), dim=-1)
    cluster_size = 5 * torch.rand(1, codebook_size, generator=gen)
    state[CODEBOOK + "initted"] = torch.tensor(1.0) if scalar_initted else torch.Tensor([True])
    state[CODEBOOK + "cluster_size"] = cluster_size
    state[CODEBOOK + "embed_avg"] = embed * cluster_size[..., None]
    state[CODEBOOK + "embed"] = embed
    return state


def _training_checkpoint(state):
    """The structure the authors' trainer saves."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-5, betas=(0.5, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=200000, gamma=1.0)
    return {
        "optimizer": {"VQVAE": optimizer.state_dict()},
        "scheduler": {"VQVAE": scheduler.state_dict()},
        "steps": 800000,
        "epochs": 12,
        "model": {"VQVAE": state},
    }


def _reference_vqscore(state, wav):
    """Straightforward re-implementation of the authors' QE scoring (plain InstanceNorm1d)."""
    act = torch.nn.LeakyReLU(0.3)

    def conv(i):
        layer = torch.nn.Conv1d(*ENC_SIZES[i - 1], kernel_size=7, stride=1, padding=3)
        layer.load_state_dict(
            {"weight": state[f"CNN_1D_encoder.conv_enc{i}.weight"], "bias": state[f"CNN_1D_encoder.conv_enc{i}.bias"]}
        )
        return layer

    def norm(c):
        return torch.nn.InstanceNorm1d(c)

    spec = torch.stft(wav, 512, 256, 512, window=torch.hann_window(512), return_complex=True)
    spec = torch.view_as_real(spec)
    x = torch.sqrt(torch.clamp(spec[..., 0] ** 2 + spec[..., 1] ** 2, min=1e-7))  # [B, F, T]
    x = norm(257)(x)
    enc1 = norm(128)(act(conv(1)(x)))
    enc2 = norm(128)(act(conv(2)(enc1)))
    enc3 = norm(64)(act(conv(3)(enc1 + enc2)))
    enc4 = norm(64)(act(conv(4)(enc3)))
    enc5 = norm(32)(act(conv(5)(enc3 + enc4)))
    z = norm(32)(conv(6)(enc5)).transpose(2, 1)  # [B, T, 32]
    embed = state[CODEBOOK + "embed"][0]
    indices = (F.normalize(z, dim=-1) @ embed.t()).argmax(-1)
    zq = embed[indices]
    eps = 1e-5
    cos = torch.sum(z / (z.norm(dim=-1, keepdim=True) + eps) * zq / (zq.norm(dim=-1, keepdim=True) + eps), -1)
    return cos.mean(dim=1)


def test_converted_model_scores_like_the_reference(tmp_path):
    state = _official_state_dict()
    path = tmp_path / "checkpoint-800000steps.pkl"
    torch.save(_training_checkpoint(state), path)
    model = load_official_vqscore(str(path))
    assert not model.training
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(2, 24000)
    with torch.no_grad():
        ours = model.score(stft_magnitude(wav))
        ref = _reference_vqscore(state, wav)
    assert ours.shape == (2,)
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)
    # Random weights give far-from-trivial scores: the comparison is meaningful.
    assert ref.abs().max() < 0.99


def test_conversion_key_layout_and_strict_loading():
    state = _official_state_dict(codebook_size=16, scalar_initted=True)
    converted = convert_official_vqscore_checkpoint({"model": {"VQVAE": state}})
    assert converted["encoder.convs.0.weight"] is state["CNN_1D_encoder.conv_enc1.weight"]
    assert converted["decoder.convs.5.bias"] is state["CNN_1D_decoder.conv_dec6.bias"]
    assert converted["quantizer.embed"].shape == (16, 32)
    assert converted["quantizer.embed_avg"].shape == (16, 32)
    assert converted["quantizer.cluster_size"].shape == (16,)
    assert converted["quantizer.initted"].shape == (1,) and float(converted["quantizer.initted"]) == 1.0
    model = load_official_vqscore(state)  # a bare state dict also works
    assert model.quantizer.codebook_size == 16 and float(model.quantizer.initted) == 1.0
    # DataParallel prefixes are accepted.
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert convert_official_vqscore_checkpoint(prefixed).keys() == converted.keys()


def test_non_weights_only_file_needs_trust_pickle(tmp_path):
    checkpoint = _training_checkpoint(_official_state_dict(codebook_size=8))
    checkpoint["config"] = argparse.Namespace(task="Quality_Estimation")  # a pickled object
    path = tmp_path / "checkpoint.pkl"
    torch.save(checkpoint, path)
    with pytest.raises(OfficialCheckpointError, match="trust_pickle=True"):
        load_official_vqscore(path)
    model = load_official_vqscore(path, trust_pickle=True)
    assert model.quantizer.codebook_size == 8


def test_wrong_layouts_are_refused():
    state = _official_state_dict(codebook_size=8)
    with pytest.raises(OfficialCheckpointError, match="enhancement"):
        convert_official_vqscore_checkpoint(
            {**state, "CNN_1D_encoder.transformer_encoder.layers.0.linear1.weight": torch.zeros(1)}
        )
    with pytest.raises(OfficialCheckpointError, match="unexpected keys"):
        convert_official_vqscore_checkpoint({**state, "something.else": torch.zeros(1)})
    with pytest.raises(OfficialCheckpointError):
        convert_official_vqscore_checkpoint({"encoder.convs.0.weight": torch.zeros(1)})
