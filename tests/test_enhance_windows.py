"""Long inputs are enhanced in overlapping windows joined by crossfades (``Enhancer.run_chain``,
``segment_seconds``, ``sqe enhance --segment-seconds``)."""

import contextlib

import numpy as np
import pytest
import soundfile
import torch
from speech import add_noise, speech_like

from speechbrain_sqe import cli
from speechbrain_sqe.inference.enhancement import BSSEEnhancer, VQEnhancer

RATE = 16000


@pytest.fixture(scope="module")
def bsse():
    return BSSEEnhancer.from_hparams(source=BSSEEnhancer.DEFAULT_SOURCE)


@pytest.fixture(scope="module")
def vq():
    return VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE)


@contextlib.contextmanager
def windows_of(enhancer, seconds):
    """``enhancer.segment_seconds = seconds`` for the block, the model's own afterwards."""
    enhancer.segment_seconds = seconds
    try:
        yield
    finally:
        enhancer.__dict__.pop("_segment_seconds", None)


def _noisy(seconds, seed=0):
    return torch.as_tensor(add_noise(speech_like(seconds, seed=seed), 5, "pink", seed=1), dtype=torch.float32)


def _snr_db(reference, estimate):
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum()))


def test_windows_rebuild_the_input_exactly_through_an_identity_chain(bsse):
    """The overlap-add itself: an identity chain gives every input back (ragged batch, all three
    kinds of rows: shorter than a window, a few windows, an uneven last window), and no window
    the chain sees is longer than the window or outside its file."""
    wavs = torch.randn(3, 7 * RATE + 123)
    lengths = torch.tensor([1.0, 0.4, 0.13])
    seen = []

    def identity(batch, lens):
        seen.append((batch.shape, None if lens is None else lens.clone()))
        return batch

    with windows_of(bsse, 2.0):
        out = bsse.run_chain(wavs, lengths, identity)
    sizes = [round(float(x) * wavs.shape[1]) for x in lengths]
    for row, size in enumerate(sizes):
        assert torch.allclose(out[row, :size], wavs[row, :size], atol=1e-6)
        assert float(out[row, size:].abs().sum()) == 0.0
    assert all(shape[1] <= 2 * RATE and shape[0] <= 3 for shape, _ in seen)  # a batch of windows at most
    assert len(seen) >= 2  # more windows than one batch: several passes


def test_short_inputs_take_the_whole_input_path(bsse):
    """An input no longer than the window is enhanced exactly as without windows."""
    noisy = _noisy(3.0)
    with windows_of(bsse, None):
        whole = bsse.enhance_batch(noisy)
    with windows_of(bsse, 3.5):
        windowed = bsse.enhance_batch(noisy)
    assert torch.equal(whole, windowed)


@pytest.mark.parametrize("name", ["bsse", "vq"])
def test_windowed_enhancement_stays_close_to_whole_file(name, request):
    """A 12 s input in 4 s windows: same length, and within the windows' receptive-field error of
    the whole-file output (far closer to it than the enhancement is to its input)."""
    enhancer = request.getfixturevalue(name)
    noisy = _noisy(12.0, seed=3)
    with windows_of(enhancer, None):
        whole = enhancer.enhance_batch(noisy)
    with windows_of(enhancer, 4.0):
        windowed = enhancer.enhance_batch(noisy)
    assert windowed.shape == whole.shape == noisy.shape
    assert torch.isfinite(windowed).all()
    agreement = _snr_db(whole, windowed)
    change = _snr_db(whole, noisy)
    assert agreement > change + 6, (agreement, change)


def test_bad_segment_lengths_are_refused(bsse):
    with pytest.raises(ValueError, match="segment_seconds must be a positive number"):
        bsse.segment_seconds = -1
    with windows_of(bsse, 0.01), pytest.raises(ValueError, match="segment_seconds=0.01 is too short"):
        bsse.enhance_batch(_noisy(1.0))
    assert bsse.segment_seconds == bsse.SEGMENT_SECONDS == 30.0


def test_cli_segment_seconds(tmp_path, capsys):
    """``sqe enhance --segment-seconds``: windows as asked, ``none`` for whole files, a bad value
    refused by the parser with a clear message."""
    path = tmp_path / "long.wav"
    soundfile.write(path, _noisy(9.0, seed=5).numpy(), RATE)
    outputs = {}
    for value in ("3", "none"):
        out_dir = tmp_path / f"out_{value}"
        assert cli.main(["enhance", str(path), "--out-dir", str(out_dir), "--model", BSSEEnhancer.DEFAULT_SOURCE,
                         "--segment-seconds", value, "--no-progress"]) == 0
        outputs[value], rate = soundfile.read(out_dir / "long.wav")
        assert rate == RATE and outputs[value].shape[0] == 9 * RATE
    assert not np.array_equal(outputs["3"], outputs["none"])
    with pytest.raises(SystemExit):
        cli.main(["enhance", str(path), "--out-dir", str(tmp_path / "x"), "--segment-seconds", "0"])
    assert "expected a positive number of seconds or 'none', got '0'" in capsys.readouterr().err
