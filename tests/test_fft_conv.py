"""Tests of the overlap-save convolution (speechbrain_sqe.lobes.fft_conv) and of its use by the conv
stacks and the interfaces of VQScore and the VQ enhancer (``convolution=``, ``--convolution``)."""

from csv import DictReader

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.inference.convolution import resolve_convolution
from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.conv_stack import ConvDecoderStack, ConvEncoderStack
from speechbrain_sqe.lobes.fft_conv import OverlapSaveConv1d


@pytest.mark.parametrize("frames", [1, 5, 26, 27, 52, 100, 613])
@pytest.mark.parametrize("block", [16, 32, 64])
def test_matches_conv1d_for_any_length(frames, block):
    torch.manual_seed(frames + block)
    conv = torch.nn.Conv1d(20, 12, 7, padding=3)
    x = torch.randn(3, 20, frames)
    with torch.no_grad():
        expected, got = conv(x), OverlapSaveConv1d(conv, block)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_kernel_sizes_channels_last_input_and_no_bias():
    torch.manual_seed(0)
    for kernel in (1, 3, 7, 11):
        conv = torch.nn.Conv1d(9, 5, kernel, padding=kernel // 2, bias=kernel != 3)
        x = torch.randn(2, 40, 9).transpose(1, 2)  # channels-last storage, as the stacks pass it
        with torch.no_grad():
            torch.testing.assert_close(OverlapSaveConv1d(conv)(x), conv(x), atol=2e-5, rtol=1e-5)


def test_exact_under_a_callers_bfloat16_autocast():
    """Inside torch.autocast the products would come out in bfloat16 and fail to fill the float32
    buffers; the convolution runs in float32 instead (bfloat16 inputs too)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(20, 12, 7, padding=3)
    x = torch.randn(2, 20, 90)
    with torch.no_grad():
        expected = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            from_float, from_bfloat16 = OverlapSaveConv1d(conv)(x), OverlapSaveConv1d(conv)(x.bfloat16())
    assert from_float.dtype == from_bfloat16.dtype == torch.float32
    torch.testing.assert_close(from_float, expected, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(from_bfloat16, conv(x.bfloat16().float()), atol=2e-5, rtol=1e-5)


def test_spectra_follow_weight_updates():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(4, 3, 7, padding=3)
    fast, x = OverlapSaveConv1d(conv), torch.randn(1, 4, 50)
    with torch.no_grad():
        fast(x)
        conv.weight.mul_(-2.0)  # in place (as load_state_dict copies)
        conv.bias.add_(1.0)
        torch.testing.assert_close(fast(x), conv(x), atol=2e-5, rtol=1e-5)
        conv.weight = torch.nn.Parameter(torch.randn(3, 4, 7))  # replaced
        torch.testing.assert_close(fast(x), conv(x), atol=2e-5, rtol=1e-5)


def test_unsupported_convolutions_are_refused():
    with pytest.raises(ValueError, match="stride-1"):
        OverlapSaveConv1d(torch.nn.Conv1d(4, 4, 7, stride=2, padding=3))
    with pytest.raises(ValueError, match="stride-1"):
        OverlapSaveConv1d(torch.nn.Conv1d(4, 4, 7, padding=0))
    with pytest.raises(ValueError, match="even block"):
        OverlapSaveConv1d(torch.nn.Conv1d(4, 4, 7, padding=3), block=7)


def test_stacks_match_direct_and_train_with_the_direct_convolution():
    torch.manual_seed(0)
    enc = ConvEncoderStack(65, (24, 16), 8).eval()
    dec = ConvDecoderStack(8, (24, 16), 65, transformer_layers=1, heads=4).eval()
    spec, lengths = torch.rand(3, 70, 65), torch.tensor([1.0, 0.6, 0.2])
    with torch.no_grad():
        z, out = enc(spec, lengths), dec(enc(spec, lengths), lengths)
        enc.set_convolution("overlap_save")
        dec.set_convolution("overlap_save")
        z_fast = enc(spec, lengths)
        out_fast = dec(z_fast, lengths)
    torch.testing.assert_close(z_fast, z, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_fast, out, atol=1e-4, rtol=1e-4)
    assert float(z_fast[2, 14:].abs().sum()) == 0.0 and float(out_fast[2, 14:].abs().sum()) == 0.0
    # With autograd (training, or gradients through the scorer) the direct convolution runs.
    enc.train()
    loss = enc(spec, lengths).square().sum()
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in enc.convs.parameters())
    with pytest.raises(ValueError, match="convolution must be one of"):
        enc.set_convolution("fft")


def test_resolve_convolution():
    assert resolve_convolution("auto", "cpu") == "overlap_save"
    assert resolve_convolution("auto", torch.device("cuda", 1)) == "direct"
    assert resolve_convolution("direct", "cpu") == "direct"
    with pytest.raises(ValueError, match="auto, direct, overlap_save"):
        resolve_convolution("winograd", "cpu")


def _speechlike(rate=16000, seconds=1.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 10))
    return (0.1 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def test_vqscore_and_vq_enhancer_default_to_overlap_save_on_cpu():
    # The shipped models: their real weights, codebooks and front ends.
    wavs = torch.from_numpy(np.stack([_speechlike(seed=0), _speechlike(seed=1)]))
    lengths = torch.tensor([1.0, 0.7])
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE)
    assert scorer.convolution == "overlap_save"
    fast = scorer.score_batch(wavs, lengths)
    scorer.set_convolution("direct")
    assert scorer.convolution == "direct" and scorer.mods.vqvae.encoder.convolution == "direct"
    torch.testing.assert_close(fast, scorer.score_batch(wavs, lengths), atol=1e-5, rtol=0)
    enhancer = VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE, convolution="direct")
    assert enhancer.convolution == "direct"
    direct = enhancer.enhance_batch(wavs, lengths, mix=0.0)
    enhancer.set_convolution("auto")
    assert enhancer.mods.vqvae.decoder.convolution == "overlap_save"
    torch.testing.assert_close(enhancer.enhance_batch(wavs, lengths, mix=0.0), direct, atol=1e-4, rtol=0)


def test_cli_convolution_option(tmp_path, capsys):
    from speechbrain_sqe.cli import main

    path = tmp_path / "a.wav"
    soundfile.write(str(path), _speechlike(), 16000)
    rows = {}
    for choice in ("direct", "overlap_save"):
        csv = tmp_path / f"{choice}.csv"
        assert main(["score", str(path), "--csv", str(csv), "--convolution", choice, "--no-progress"]) == 0
        with open(csv, newline="", encoding="utf-8") as stream:
            rows[choice] = float(next(iter(DictReader(stream)))["vqscore"])
    assert rows["direct"] == pytest.approx(rows["overlap_save"], abs=1e-5)
    # A model without convolutions to choose refuses a forced algorithm with a clear message.
    assert main(["score", str(path), "--model", "sqa", "--convolution", "direct", "--no-progress"]) == 2
    assert "has no convolution choice (--convolution)" in capsys.readouterr().err


def test_enhance_cli_convolution_option(tmp_path, capsys):
    from speechbrain_sqe.cli import main

    path = tmp_path / "noisy.wav"
    soundfile.write(str(path), _speechlike(seconds=1.0), 16000)
    outputs = {}
    for choice in ("direct", "overlap_save"):
        out = tmp_path / choice
        assert main(["enhance", str(path), "--out-dir", str(out), "--model", "vq_enhancer", "--convolution", choice,
                     "--no-progress"]) == 0
        outputs[choice] = soundfile.read(str(out / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(outputs["direct"] - outputs["overlap_save"]).max() <= 1  # one 16-bit step
    # BSSE (the default enhancer) has no convolution stack: a forced algorithm is refused, naming the option.
    assert main(["enhance", str(path), "--out-dir", str(tmp_path / "b"), "--convolution", "direct", "--no-progress"]) == 2
    assert "has no convolution choice (--convolution)" in capsys.readouterr().err


@pytest.mark.parametrize("max_rows", [1, 3, 5, 40])
def test_long_inputs_are_transformed_in_groups_of_blocks(max_rows):
    # Groups of whole items (max_rows >= blocks per item) or of one item's blocks: the same output.
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 4, 7, padding=3)
    x = torch.randn(3, 6, 100)  # 4 blocks of 26 frames per item
    with torch.no_grad():
        expected = OverlapSaveConv1d(conv)(x)
        grouped = OverlapSaveConv1d(conv, max_rows=max_rows)(x)
        torch.testing.assert_close(grouped, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(grouped, conv(x), atol=2e-5, rtol=1e-5)
