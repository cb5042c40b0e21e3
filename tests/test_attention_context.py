"""Attention within chunks (``ConvVQVAE.set_attention_context``, the VQ enhancer's
``attention_seconds``): each chunk is exactly the transformer run on that chunk alone, padding
stays padding, and the option reaches the shipped enhancer from Python, its folder and ``sqe
enhance --option``."""

import itertools

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.lobes.conv_stack import _run_transformer, _transformer


@pytest.fixture
def transformer():
    torch.manual_seed(0)
    return _transformer(16, 4, 2, 0.0).eval()


@pytest.mark.parametrize("time, context, sizes", [(50, 20, [17, 17, 16]), (40, 20, [20, 20]), (41, 40, [21, 20]),
                                                  (30, 30, [30]), (7, 1, [1] * 7)])
def test_chunks_are_the_transformer_on_each_chunk_alone(transformer, time, context, sizes):
    x = torch.randn(2, time, 16)
    with torch.no_grad():
        chunked = _run_transformer(transformer, x, None, context)
        starts = np.cumsum([0, *sizes])
        alone = torch.cat([transformer(x[:, a:b]) for a, b in itertools.pairwise(starts)], dim=1)
    assert chunked.shape == x.shape
    torch.testing.assert_close(chunked, alone, atol=1e-5, rtol=0)
    if len(sizes) > 1:  # the chunks do not see each other: not the whole input's attention
        assert not torch.allclose(chunked, transformer(x), atol=1e-3)


def test_padded_frames_and_chunks_of_padding_only(transformer):
    x = torch.randn(2, 60, 16)
    mask = torch.zeros(2, 60, dtype=torch.bool)
    mask[0], mask[1, :15] = True, True  # the second item: 15 frames, then two chunks of padding only
    with torch.no_grad():
        chunked = _run_transformer(transformer, x, mask, 20)
        alone = transformer(x[1:, :15])
    assert torch.isfinite(chunked).all() and float(chunked[1, 15:].abs().sum()) == 0.0
    torch.testing.assert_close(chunked[1:, :15], alone, atol=1e-5, rtol=0)
    # the padded item's valid frames do not depend on what its padding holds
    x[1, 15:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(_run_transformer(transformer, x, mask, 20)[1, :15], chunked[1, :15])


def test_refused_contexts():
    from speechbrain_sqe.lobes.conv_stack import ConvVQVAE

    model = ConvVQVAE(channels=(8,), codebook_dim=8, codebook_size=4, transformer_layers=1, heads=2)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="whole number of frames"):
            model.set_attention_context(bad)
    model.set_attention_context(12)
    model.set_attention_context(None)
    assert model.encoder.attention_context is None and model.decoder.attention_context is None


def _noisy_speech(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return (0.1 * voiced + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def test_vq_enhancer_attention_seconds(tmp_path, capsys):
    enhancer = VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE)
    wavs = torch.from_numpy(np.stack([_noisy_speech(5.0), _noisy_speech(5.0, seed=1)]))
    lengths = torch.tensor([1.0, 0.5])
    whole = enhancer.enhance_batch(wavs, lengths, mix=0.0)
    assert enhancer.mods.vqvae.encoder.attention_context is None  # the shipped folder: whole file
    torch.testing.assert_close(enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=0), whole)
    # longer than the files: the same as the whole file
    torch.testing.assert_close(enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=6.0), whole)
    chunked = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=1.0)
    assert enhancer.mods.vqvae.decoder.attention_context == 125  # frames of 8 ms
    assert chunked.shape == whole.shape and float((chunked - whole).abs().max()) > 1e-3
    assert float(chunked[1, 40000:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="seconds >= 0"):
        enhancer.enhance_batch(wavs, lengths, attention_seconds=-1.0)
    assert VQEnhancer.parse_options(["attention_seconds=2"]) == {"attention_seconds": 2.0}
    with pytest.raises(ValueError, match="option attention_seconds"):
        VQEnhancer.parse_options(["attention_seconds=inf"])

    # from the command line, and as a hub folder's default
    from speechbrain_sqe.cli import main

    path = tmp_path / "noisy.wav"
    soundfile.write(str(path), _noisy_speech(3.0), 16000)
    outputs = {}
    for name, option in (("whole", []), ("chunked", ["--option", "attention_seconds=1"])):
        assert main(["enhance", str(path), "--out-dir", str(tmp_path / name), "--no-progress", *option]) == 0
        outputs[name] = soundfile.read(str(tmp_path / name / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(outputs["whole"] - outputs["chunked"]).max() > 1
    folder = tmp_path / "model"
    VQEnhancer.export(str(folder), dict(enhancer.mods), frontend=enhancer.frontend, mix=0.1, attention_seconds=1.0)
    assert main(["enhance", str(path), "--out-dir", str(tmp_path / "folder"), "--model", str(folder),
                 "--no-progress"]) == 0
    from_folder = soundfile.read(str(tmp_path / "folder" / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(from_folder - outputs["chunked"]).max() <= 1
