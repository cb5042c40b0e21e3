"""Local attention (``lobes/local_attention.py``, ``ConvVQVAE.set_attention_context``, the VQ
enhancer's ``attention_seconds`` and ``attention_halo_seconds``): each chunk without halo is exactly
the transformer run on that chunk alone, with a halo it is the whole-input transformer under the
window mask, padding stays padding, gradients and dropout work in training, and the options reach
the shipped enhancer from Python, its folder and ``sqe enhance --option``."""

import itertools

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.lobes.conv_stack import _run_transformer, _transformer
from speechbrain_sqe.lobes.local_attention import chunk_layout, local_transformer


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


def _window_mask(time, chunk, halo):
    """[time, time] True where a query may attend to a key, from the chunk layout."""
    size, starts = chunk_layout(time, chunk, halo)
    padded = len(starts) * size
    window = min(size + 2 * halo, padded)
    allowed = torch.zeros(padded, padded, dtype=torch.bool)
    for index, start in enumerate(starts.tolist()):
        allowed[index * size:(index + 1) * size, start:start + window] = True
    return allowed[:time, :time]


@pytest.mark.parametrize("time, chunk, halo", [(100, 30, 10), (97, 25, 3), (130, 40, 20), (64, 16, 1), (9, 2, 1)])
def test_local_attention_is_the_transformer_under_the_window_mask(transformer, time, chunk, halo):
    x = torch.randn(3, time, 16)
    valid = torch.arange(time)[None] < torch.tensor([time, time - 5, time // 2])[:, None]
    with torch.no_grad():
        local = local_transformer(transformer, x, valid, chunk, halo)
        masked = transformer(x, mask=~_window_mask(time, chunk, halo), src_key_padding_mask=~valid)
        whole = transformer(x, src_key_padding_mask=~valid)
    keep = valid[..., None]
    torch.testing.assert_close(local * keep, masked * keep, atol=1e-5, rtol=0)
    assert not torch.allclose(local * keep, whole * keep, atol=1e-3)  # the window is smaller than the input
    # run through the stack: padded frames zeroed, valid frames independent of the padding's content
    with torch.no_grad():
        out = _run_transformer(transformer, x, valid, chunk, halo)
    assert float(out[2, time // 2:].abs().sum()) == 0.0
    x[2, time // 2:] = 50.0
    with torch.no_grad():
        torch.testing.assert_close(_run_transformer(transformer, x, valid, chunk, halo)[2, :time // 2],
                                   out[2, :time // 2])


def test_windows_as_long_as_the_input_are_the_whole_input(transformer):
    x = torch.randn(2, 45, 16)
    valid = torch.arange(45)[None] < torch.tensor([45, 30])[:, None]
    with torch.no_grad():
        local = local_transformer(transformer, x, valid, 10, 45)
        whole = transformer(x, src_key_padding_mask=~valid)
    torch.testing.assert_close(local * valid[..., None], whole * valid[..., None], atol=1e-5, rtol=0)
    size, starts = chunk_layout(10, 4, 1)
    assert (size, starts.tolist()) == (4, [0, 3, 6])  # windows shifted inside the padded input


def test_local_attention_trains(transformer):
    torch.manual_seed(1)
    stack = _transformer(16, 4, 2, 0.3).train()
    x = torch.randn(2, 40, 16)
    first, second = (local_transformer(stack, x, None, 10, 5, stride=4) for _ in range(2))
    assert not torch.allclose(first, second)  # dropout is on in training
    first.square().mean().backward()
    grads = [p.grad for p in stack.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(stack.layers[0].self_attn.in_proj_weight.grad.abs().sum()) > 0
    stack.eval()
    with torch.no_grad():
        torch.testing.assert_close(local_transformer(stack, x, None, 10, 5), local_transformer(stack, x, None, 10, 5))


def test_refused_contexts():
    from speechbrain_sqe.lobes.conv_stack import ConvVQVAE

    model = ConvVQVAE(channels=(8,), codebook_dim=8, codebook_size=4, transformer_layers=1, heads=2)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="whole number of frames"):
            model.set_attention_context(bad)
    for bad in (-1, 0.5):
        with pytest.raises(ValueError, match="halo must be a whole number"):
            model.set_attention_context(12, halo=bad)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunk_layout(10, 0)
    model.set_attention_context(12, halo=3)
    assert model.encoder.attention_halo == 3 and model.decoder.attention_context == 12
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
    default = enhancer.enhance_batch(wavs, lengths, mix=0.0)
    stack = enhancer.mods.vqvae.encoder  # the shipped folder: 1 s chunks, 1 s on each side, every 8th frame
    assert (stack.attention_context, stack.attention_halo, stack.attention_stride) == (125, 125, 8)
    whole = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=0)
    assert enhancer.mods.vqvae.encoder.attention_context is None
    assert float((default - whole).abs().max()) > 1e-4  # 5 s files: local attention has fewer keys
    # longer than the files: the same as the whole file
    torch.testing.assert_close(enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=6.0), whole)
    chunked = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=1.0, attention_halo_seconds=0,
                                     attention_stride=0)
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
    for name, option in (("whole", ["--option", "attention_seconds=0"]),
                         ("chunked", ["--option", "attention_seconds=1", "--option", "attention_halo_seconds=0",
                                      "--option", "attention_stride=0"])):
        assert main(["enhance", str(path), "--out-dir", str(tmp_path / name), "--model", "vq_enhancer", "--no-progress",
                     *option]) == 0
        outputs[name] = soundfile.read(str(tmp_path / name / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(outputs["whole"] - outputs["chunked"]).max() > 1
    folder = tmp_path / "model"
    VQEnhancer.export(str(folder), dict(enhancer.mods), frontend=enhancer.frontend, mix=0.1, attention_seconds=1.0)
    assert main(["enhance", str(path), "--out-dir", str(tmp_path / "folder"), "--model", str(folder),
                 "--no-progress"]) == 0
    from_folder = soundfile.read(str(tmp_path / "folder" / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(from_folder - outputs["chunked"]).max() <= 1


def test_vq_enhancer_attention_halo_seconds(tmp_path):
    enhancer = VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE)
    wavs = torch.from_numpy(np.stack([_noisy_speech(6.0), _noisy_speech(6.0, seed=2)]))
    lengths = torch.tensor([1.0, 0.6])
    whole = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=0)
    chunks = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=1.0, attention_halo_seconds=0,
                                    attention_stride=0)
    local = enhancer.enhance_batch(wavs, lengths, mix=0.0, attention_seconds=1.0, attention_halo_seconds=1.0,
                                   attention_stride=0)
    sampled = enhancer.enhance_batch(wavs, lengths, mix=0.0)  # the shipped default: every 8th frame too
    assert enhancer.mods.vqvae.encoder.attention_halo == 125  # frames of 8 ms
    assert float(local[1, round(0.6 * 96000):].abs().sum()) == 0.0
    # the halo gives each chunk context: nearer the whole-file output than chunks alone
    assert float((local - whole).abs().mean()) < float((chunks - whole).abs().mean())
    assert float((sampled - whole).abs().mean()) < float((local - whole).abs().mean())
    assert float((local - chunks).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="seconds >= 0"):
        enhancer.enhance_batch(wavs, lengths, attention_seconds=1.0, attention_halo_seconds=-0.5)
    assert VQEnhancer.parse_options(["attention_halo_seconds=0.5"]) == {"attention_halo_seconds": 0.5}

    from speechbrain_sqe.cli import main

    path = tmp_path / "noisy.wav"
    soundfile.write(str(path), _noisy_speech(4.0), 16000)
    option = ["--option", "attention_seconds=1", "--option", "attention_halo_seconds=0.5", "--option", "attention_stride=8"]
    assert main(["enhance", str(path), "--out-dir", str(tmp_path / "cli"), "--model", "vq_enhancer", "--no-progress",
                 *option]) == 0
    from_cli = soundfile.read(str(tmp_path / "cli" / "noisy.wav"), dtype="int16")[0].astype(int)
    folder = tmp_path / "model"
    VQEnhancer.export(str(folder), dict(enhancer.mods), frontend=enhancer.frontend, mix=0.1,
                      attention_seconds=1.0, attention_halo_seconds=0.5, attention_stride=8)
    assert {"attention_halo_seconds: 0.5", "attention_stride: 8"} <= set((folder / "hyperparams.yaml").read_text().splitlines())
    assert main(["enhance", str(path), "--out-dir", str(tmp_path / "folder"), "--model", str(folder),
                 "--no-progress"]) == 0
    from_folder = soundfile.read(str(tmp_path / "folder" / "noisy.wav"), dtype="int16")[0].astype(int)
    assert np.abs(from_folder - from_cli).max() <= 1


def _strided_window_bias(time, chunk, halo, stride):
    """[time, time] additive bias of local attention with sampled keys: 0 in the window, log(stride)
    on every stride-th frame outside it, -inf elsewhere."""
    allowed = _window_mask(time, chunk, halo)
    bias = torch.full((time, time), float("-inf"))
    bias[allowed] = 0.0
    sampled = (torch.arange(time) % stride == 0)[None].expand(time, -1) & ~allowed
    bias[sampled] = float(np.log(stride))
    return bias


@pytest.mark.parametrize("time, chunk, halo, stride", [(100, 20, 10, 4), (97, 25, 0, 8), (64, 16, 4, 3)])
def test_sampled_keys_are_the_transformer_under_the_weighted_mask(transformer, time, chunk, halo, stride):
    x = torch.randn(3, time, 16)
    valid = torch.arange(time)[None] < torch.tensor([time, time - 6, time // 2])[:, None]
    with torch.no_grad():
        local = local_transformer(transformer, x, valid, chunk, halo, stride)
        padding = torch.zeros(valid.shape).masked_fill(~valid, float("-inf"))  # float, as the mask
        masked = transformer(x, mask=_strided_window_bias(time, chunk, halo, stride), src_key_padding_mask=padding)
        plain = local_transformer(transformer, x, valid, chunk, halo)
    keep = valid[..., None]
    torch.testing.assert_close(local * keep, masked * keep, atol=1e-5, rtol=0)
    assert not torch.allclose(local * keep, plain * keep, atol=1e-3)  # the sampled keys are seen


@pytest.mark.parametrize("time, chunk, halo, stride", [(100, 20, 10, 4), (97, 25, 0, 8), (50, 20, 5, 0)])
def test_offsets_as_a_head_dimension_or_a_mask(transformer, monkeypatch, time, chunk, halo, stride):
    """The CPU path (score offsets in a ninth head dimension) and the GPU path (a float mask) give
    the same outputs, with padding and sampled keys."""
    from speechbrain_sqe.lobes import local_attention

    x = torch.randn(2, time, 16)
    valid = torch.arange(time)[None] < torch.tensor([time, time - 7])[:, None]
    with torch.no_grad():
        packed = local_transformer(transformer, x, valid, chunk, halo, stride)
        monkeypatch.setattr(local_attention, "OFFSETS_AS_A_DIMENSION", ())
        masked = local_transformer(transformer, x, valid, chunk, halo, stride)
    keep = valid[..., None]
    torch.testing.assert_close(packed * keep, masked * keep, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride", [0, 4])
def test_cpu_units_in_groups_give_the_one_call_outputs(transformer, monkeypatch, stride):
    """With a gather budget of one (row, chunk) unit's keys, the CPU path runs the kernel once per
    unit (buffers glibc reuses instead of mapping afresh): same outputs and gradients as one call,
    and the same outputs from the reused buffers of inference."""
    from speechbrain_sqe.lobes import local_attention

    calls = []
    sdpa = local_attention.F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        calls.append(q.shape[0])
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(local_attention.F, "scaled_dot_product_attention", recording)
    x = torch.randn(3, 90, 16, requires_grad=True)
    valid = torch.arange(90)[None] < torch.tensor([90, 71, 40])[:, None]
    keep = valid[..., None]
    whole = local_transformer(transformer.eval(), x, valid, 20, 10, stride)
    (grad_whole,) = torch.autograd.grad((whole * keep).square().sum(), x)
    assert calls == [3 * 5] * 2  # 5 chunks of 18 frames per row, one call per layer
    monkeypatch.setattr(local_attention, "GATHER_BYTES", 1)
    calls.clear()
    grouped = local_transformer(transformer, x, valid, 20, 10, stride)
    (grad_grouped,) = torch.autograd.grad((grouped * keep).square().sum(), x)
    assert calls == [1] * 30  # each unit alone, in both layers
    torch.testing.assert_close(grouped * keep, whole * keep, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_grouped, grad_whole, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference: the groups gathered into two reused buffers
        calls.clear()
        reused = local_transformer(transformer, x, valid, 20, 10, stride)
    assert calls == [1] * 30
    torch.testing.assert_close(reused * keep, whole * keep, atol=1e-6, rtol=0)


def test_small_cpu_heads_are_zero_padded_to_the_fast_width(transformer, monkeypatch):
    """Heads of 4 dimensions (the fixture's) reach the CPU kernel zero-padded to CPU_HEAD_WIDTH,
    with or without score offsets, and give the unpadded path's outputs."""
    from speechbrain_sqe.lobes import local_attention

    widths = []
    sdpa = local_attention.F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        widths.append((q.shape[-1], k.shape[-1], v.shape[-1]))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(local_attention.F, "scaled_dot_product_attention", recording)
    x = torch.randn(2, 60, 16)
    with torch.no_grad():
        for valid in (None, torch.arange(60)[None] < torch.tensor([[60], [45]])):  # no offsets; padding
            widths.clear()
            padded = local_transformer(transformer, x, valid, 20, 10)
            assert widths == [(local_attention.CPU_HEAD_WIDTH,) * 3] * 2  # one call per layer
            monkeypatch.setattr(local_attention, "OFFSETS_AS_A_DIMENSION", ())
            plain = local_transformer(transformer, x, valid, 20, 10)
            monkeypatch.setattr(local_attention, "OFFSETS_AS_A_DIMENSION", ("cpu",))
            assert widths[-1] == (4, 4, 4)
            keep = torch.ones(2, 60, 1, dtype=torch.bool) if valid is None else valid[..., None]
            torch.testing.assert_close(padded * keep, plain * keep, atol=1e-5, rtol=0)


def test_sampled_keys_inside_a_window_are_not_scored_twice(transformer, monkeypatch):
    """97 frames, 4 chunks of 25 without halo, every 8th frame: each chunk holds 3 or 4 of the 13
    sampled frames, so at most 10 are outside; 25 + 10 keys are scored per query, not 25 + 13."""
    from speechbrain_sqe.lobes import local_attention

    widths = []
    sdpa = local_attention.F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        widths.append(k.shape[-2])
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(local_attention.F, "scaled_dot_product_attention", recording)
    with torch.no_grad():
        local_transformer(transformer, torch.randn(1, 97, 16), None, 25, 0, 8)
    assert widths == [35, 35]  # one call per layer


def test_sampled_keys_approach_the_whole_input_on_smooth_inputs(transformer):
    """Each sampled key stands for the frames around it: on an input that changes slowly, the
    strided keys give nearly the whole input's attention, much nearer than the window alone."""
    time = 400
    x = torch.nn.functional.interpolate(torch.randn(1, 16, 25), size=time, mode="linear").transpose(1, 2)
    with torch.no_grad():
        whole = transformer(x)
        window_only = local_transformer(transformer, x, None, 40, 20)
        sampled = local_transformer(transformer, x, None, 40, 20, stride=4)
    assert float((sampled - whole).abs().mean()) < 0.25 * float((window_only - whole).abs().mean())


def test_the_whole_input_where_local_attention_has_no_fewer_keys(transformer):
    x = torch.randn(2, 60, 16)
    with torch.no_grad():
        whole = transformer(x)
        # 30-frame chunks, 15 on each side, every 4th frame: 60 + 15 keys >= 60 frames
        torch.testing.assert_close(_run_transformer(transformer, x, None, 30, 15, 4), whole)
        assert not torch.allclose(_run_transformer(transformer, x, None, 20, 5, 6), whole, atol=1e-3)


def test_refused_strides():
    from speechbrain_sqe.lobes.conv_stack import ConvVQVAE

    model = ConvVQVAE(channels=(8,), codebook_dim=8, codebook_size=4, transformer_layers=1, heads=2)
    for bad in (1, -2, 2.5):
        with pytest.raises(ValueError, match="stride must be 0"):
            model.set_attention_context(12, halo=2, stride=bad)
    model.set_attention_context(12, halo=2, stride=8)
    assert model.decoder.attention_stride == 8
    assert VQEnhancer.parse_options(["attention_stride=8"]) == {"attention_stride": 8}
    with pytest.raises(ValueError, match="option attention_stride"):
        VQEnhancer.parse_options(["attention_stride=1"])


def test_whole_input_transformer_with_padding():
    """Padded frames are keys of no one, at inference through local attention, in training through
    torch's key padding mask, and for pre-LN layers (which local attention does not run) too."""
    from speechbrain_sqe.lobes.local_attention import whole_input_transformer

    torch.manual_seed(0)
    x = torch.randn(2, 40, 16)
    valid = torch.arange(40)[None] < torch.tensor([[40], [25]])
    for norm_first in (False, True):
        layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
        stack = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
        reference = stack(x, src_key_padding_mask=~valid).detach()
        with torch.no_grad():
            inference = whole_input_transformer(stack, x, valid)
        trained = whole_input_transformer(stack, x, valid)  # autograd on: torch's path
        for out in (inference, trained.detach()):
            torch.testing.assert_close(out[0], reference[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out[1, :25], reference[1, :25], atol=1e-5, rtol=0)
            # the second file alone, unpadded: padding changed nothing
            torch.testing.assert_close(out[1, :25], stack(x[1:, :25]).detach()[0], atol=1e-5, rtol=0)
