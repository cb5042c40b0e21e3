"""The Distill-MOS encoder as a frozen upstream: its last state with Distill-MOS's own head gives
Distill-MOS's score, long files are windowed, padding does not leak, checkpoints carry a fingerprint
of the weights only, and other weights are refused on load."""

import pytest
import torch

pytest.importorskip("distillmos")

from speechbrain_sqe.lobes.distillmos_encoder import (
    DistillMOSEncoder,
    DistillMOSEncoderError,
)
from speechbrain_sqe.metrics.distillmos import distillmos


@pytest.fixture(scope="module")
def encoder():
    return DistillMOSEncoder()


def _speechlike(seconds, seed=0):
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    envelope = (torch.sin(2 * torch.pi * 3 * t) > 0).float()
    return 0.3 * envelope * torch.sin(2 * torch.pi * 220 * t) + 0.01 * torch.randn(t.shape, generator=generator)


def test_last_state_with_distillmos_head_gives_its_score(encoder):
    wav = _speechlike(3.0)
    states = encoder.hidden_states(wav[None])
    assert len(states) == 8 and states[-1].shape == (1, 150, 200)
    # Distill-MOS's own head reads the whole padded window: rebuild it from the same pass.
    window = torch.nn.functional.pad(wav, (0, encoder.WINDOW - wav.shape[0]))
    full = encoder._window_states((window / window.abs().max())[None])[-1]
    assert torch.allclose(full[:, :150], states[-1], atol=1e-5)
    head = encoder.model.transformer_pool_attn
    pooled = head.pool(head.norm_trans(full.transpose(1, 2)).transpose(1, 2)).squeeze(-1)
    assert float(1 + 4 * torch.sigmoid(pooled)) == pytest.approx(distillmos(wav.numpy()), abs=1e-4)


def test_long_file_is_windowed_and_padding_does_not_leak(encoder):
    long, short = _speechlike(10.0, seed=1), _speechlike(2.0, seed=2)
    batch = torch.zeros(2, long.shape[0])
    batch[0], batch[1, : short.shape[0]] = long, short
    states = encoder.hidden_states(batch, torch.tensor([1.0, short.shape[0] / long.shape[0]]))
    assert states[3].shape == (2, 500, 200)
    alone = encoder.hidden_states(short[None])
    assert torch.allclose(states[3][1, :100], alone[3][0], atol=1e-5)
    assert float(states[3][1, 100:].abs().sum()) == 0.0
    # The second 7.68 s window starts fresh: frame 384 onward equals the tail encoded alone.
    tail = encoder.hidden_states(long[None, encoder.WINDOW:])
    assert torch.allclose(states[3][0, 384:], tail[3][0], atol=1e-5)


def test_checkpoint_holds_a_fingerprint_and_refuses_other_weights(encoder, tmp_path):
    assert list(encoder.state_dict()) == ["weights_fingerprint"]
    assert not list(encoder.parameters())
    encoder.train()
    assert not encoder.training  # frozen BatchNorm statistics
    DistillMOSEncoder().load_state_dict(encoder.state_dict())  # same weights: accepted
    # Other weights (a checkpoint of the same layout made here) are refused by name.
    import distillmos.sqa as package

    state = torch.load(package.DEFAULT_WEIGHTS_CHKPT, map_location="cpu", weights_only=True)
    state["model"] = {key: value * 1.01 if value.is_floating_point() else value
                      for key, value in state["model"].items()}
    other_path = tmp_path / "other.pt"
    torch.save(state, other_path)
    other = DistillMOSEncoder(weights=str(other_path))
    with pytest.raises(DistillMOSEncoderError, match="other Distill-MOS weights"):
        other.load_state_dict(encoder.state_dict())
    broken = tmp_path / "broken.pt"
    torch.save({"model": {"nothing": torch.zeros(1)}}, broken)
    with pytest.raises(DistillMOSEncoderError, match="is not a Distill-MOS checkpoint"):
        DistillMOSEncoder(weights=str(broken))


def test_wrong_rate_and_shape_are_refused(encoder):
    with pytest.raises(ValueError, match="16 kHz"):
        DistillMOSEncoder(sample_rate=8000)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        encoder.hidden_states(torch.randn(16000))



def test_compressed_spectrum_matches_the_wheel(encoder):
    from distillmos.sqa import _complex_compressed

    windows = torch.stack([_speechlike(1.0, seed=1), torch.nn.functional.pad(_speechlike(0.5, seed=2), (0, 8000))])
    ours = encoder.compressed_spectrum(windows)
    wheel = _complex_compressed(windows, 160, 320).permute(0, 3, 1, 2)
    assert ours.shape == wheel.shape == (2, 2, 161, 100)
    assert torch.allclose(ours, wheel, rtol=1e-5, atol=1e-6)
    assert torch.allclose(torch.flatten(encoder.model.cnn.cnn(ours), 1, -2), encoder.model.cnn(windows), atol=1e-5)


def test_states_give_a_finite_gradient_to_the_input_through_the_padding(encoder):
    """The wheel's square root would make it NaN at the window padding's exact zeros."""
    wav = _speechlike(1.0).requires_grad_(True)  # 1 s in a 7.68 s window: 6.68 s of zeros
    states = encoder.hidden_states(wav[None])
    assert states[-1].requires_grad
    states[-1].pow(2).mean().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in encoder.model.parameters())  # the weights stay frozen


def test_states_build_no_graph_for_an_input_without_gradient(encoder):
    assert not encoder.hidden_states(_speechlike(1.0)[None])[-1].requires_grad
