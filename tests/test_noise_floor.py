"""The running noise floor (noise-aware BSSE input): it tracks a steady noise under speech bursts,
follows a level change, ignores padding, and a BSSE model with it exports and reloads unchanged."""

import tempfile

import pytest
import torch

from speechbrain_sqe.inference.enhancement import BSSEEnhancer, bsse_frontend
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.lobes.bsse import BSSEModel, bsse_forward
from speechbrain_sqe.lobes.noise_floor import noise_floor


def _bursty(frames=400, bins=4, floor=0.3, seed=0):
    """A steady floor with 0.15 s bursts every 0.4 s (as syllables over a noise)."""
    generator = torch.Generator().manual_seed(seed)
    spec = floor + 0.02 * torch.rand(1, frames, bins, generator=generator)
    for start in range(10, frames, 40):
        spec[:, start : start + 15] += 2.0
    return spec


def test_floor_tracks_the_noise_under_bursts_and_never_exceeds_the_signal():
    spec = _bursty()
    floor = noise_floor(spec, window=101, smooth=5)
    assert floor.shape == spec.shape
    assert float(floor.min()) >= 0.3 and float(floor.max()) < 0.33  # the bursts never lift it
    smoothed = torch.nn.functional.avg_pool1d(spec.transpose(1, 2), 5, 1, 2, count_include_pad=False).transpose(1, 2)
    assert bool((floor <= smoothed + 1e-6).all())


def test_floor_follows_a_level_change_within_half_a_window():
    spec = torch.cat([torch.full((1, 200, 2), 0.2), torch.full((1, 200, 2), 1.0)], dim=1)
    floor = noise_floor(spec, window=51, smooth=1)
    assert torch.allclose(floor[0, :200], torch.tensor(0.2))
    assert torch.allclose(floor[0, 226:], torch.tensor(1.0))  # 25 frames (half the window) after the step


def test_padded_frames_take_no_part_and_come_out_zero():
    a, b = _bursty(300, seed=1), 0.1 * _bursty(180, seed=2)
    batch = torch.zeros(2, 300, 4)
    batch[0], batch[1, :180] = a[0], b[0]
    batch[1, 180:] = -5.0  # padding that would win a minimum if it counted
    floor = noise_floor(batch, torch.tensor([1.0, 0.6]))
    assert torch.allclose(floor[0], noise_floor(a)[0]) and torch.allclose(floor[1, :180], noise_floor(b)[0])
    assert float(floor[1, 180:].abs().sum()) == 0.0


@pytest.mark.parametrize("feature", ["spectrum", "cross"])
def test_bsse_with_the_floor_exports_reloads_and_treats_a_padded_batch_as_each_alone(feature):
    from speechbrain_sqe.lobes.tera import TERAModel

    tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0).eval()
    model = BSSEModel(feature, ssl_layers=2, ssl_size=16, proj_size=16, hidden_size=12, noise_floor_frames=31).eval()
    assert model.input_size == {"spectrum": 402, "cross": 418}[feature]
    wavs = 0.1 * torch.randn(2, 9600, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([1.0, 0.55])
    with torch.no_grad():
        _, enhanced, frame_lengths = bsse_forward(model, bsse_frontend(), wavs, lengths, tera)
        _, alone, _ = bsse_forward(model, bsse_frontend(), wavs[1:, : round(0.55 * 9600)], None, tera)
    frames = alone.shape[1]
    assert round(float(frame_lengths[1]) * enhanced.shape[1]) == frames
    assert torch.allclose(enhanced[1, :frames], alone[0], atol=1e-5)
    assert float(enhanced[1, frames:].abs().sum()) == 0.0
    modules = {"enhancer": model} if feature == "spectrum" else {"enhancer": model, "ssl": tera}
    enhancer = load_model(BSSEEnhancer.export(tempfile.mkdtemp(), modules), task="enhancement")
    assert enhancer.mods.enhancer.noise_floor_frames == 31
    with torch.no_grad():
        _, reloaded, _ = bsse_forward(enhancer.mods.enhancer, bsse_frontend(), wavs, lengths, enhancer.upstream)
    assert torch.allclose(reloaded, enhanced, atol=1e-6)
