"""The centred STFT and overlap-add inverse of lobes/overlap_add.py against torch.stft/istft, and
resynthesis built on them (lobes/frontend.resynthesize)."""

import pytest
import torch

from speechbrain_sqe.lobes.frontend import resynthesize, stft_magnitude
from speechbrain_sqe.lobes.overlap_add import (
    centred_spectra,
    full_window,
    overlap_add_inverse,
)

# (n_fft, hop, win_length, window): the VQ enhancer's and VQScore's Hann, BSSE's Hamming (hop not
# dividing n_fft), a window shorter than n_fft
SETTINGS = [
    (512, 128, 512, torch.hann_window),
    (512, 256, 512, torch.hann_window),
    (400, 160, 400, torch.hamming_window),
    (512, 128, 400, torch.hann_window),
]


@pytest.mark.parametrize("n_fft, hop, win_length, window_fn", SETTINGS)
def test_spectra_and_inverse_match_torch(n_fft, hop, win_length, window_fn):
    torch.manual_seed(0)
    wav = torch.randn(3, 16000 + 37)
    window = full_window(window_fn, n_fft, win_length, wav)
    spectra = centred_spectra(wav, n_fft, hop, window)
    reference = torch.stft(wav, n_fft, hop, win_length, window_fn(win_length), center=True,
                           pad_mode="reflect", return_complex=True)
    assert spectra.shape == reference.transpose(1, 2).shape
    assert (spectra - reference.transpose(1, 2)).abs().max() < 1e-4 * reference.abs().max()
    # the inverse of any spectra (not only consistent ones), as torch.istft
    edited = spectra * torch.rand(spectra.shape)
    out = overlap_add_inverse(edited, n_fft, hop, window, wav.shape[-1])
    expected = torch.istft(edited.transpose(1, 2), n_fft, hop, win_length, window_fn(win_length), center=True,
                           length=wav.shape[-1])
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 1e-5


def test_inverse_refuses_more_samples_than_the_frames_hold():
    window = torch.hann_window(64)
    spectra = centred_spectra(torch.randn(1, 640), 64, 16, window)  # 41 frames
    assert overlap_add_inverse(spectra, 64, 16, window, 672).shape == (1, 672)  # 40 * 16 + 32
    with pytest.raises(ValueError, match="cannot give 673 samples"):
        overlap_add_inverse(spectra, 64, 16, window, 673)


def test_inverse_refuses_a_window_envelope_of_zero():
    window = torch.zeros(64)
    window[:16] = 1.0  # frames 48 samples apart leave gaps: no overlap-add can undo that
    spectra = centred_spectra(torch.randn(1, 640), 64, 48, window)
    with pytest.raises(ValueError, match="nonzero window envelope"):
        overlap_add_inverse(spectra, 64, 48, window, 600)


def test_resynthesis_matches_the_torch_calls_with_silent_bins():
    """A waveform with digital silence (bins of exactly 0: phase 0, the magnitude itself; with a
    magnitude of 5 there the gain overflows to inf, nan without the fix) and
    utterances of different lengths."""
    torch.manual_seed(1)
    wav = torch.randn(2, 8000)
    wav[0, 2000:5000] = 0.0
    lengths = torch.tensor([1.0, 0.7])
    magnitude = stft_magnitude(wav, hop_length=128, lengths=lengths) * 0.5 + 5.0  # [batch, frames, bins]
    out = resynthesize(magnitude, wav, hop_length=128, lengths=lengths)
    window = torch.hann_window(512)
    for row, samples in enumerate([8000, 5600]):
        spec = torch.stft(wav[row, :samples], 512, 128, 512, window, center=True, pad_mode="reflect",
                          return_complex=True)
        size = spec.abs()
        phase = torch.where(size > 0, spec / size.clamp(min=torch.finfo(size.dtype).tiny), 1.0)
        frames = spec.shape[-1]
        expected = torch.istft(magnitude[row, :frames].T * phase, 512, 128, 512, window, center=True,
                               length=samples)
        assert torch.isfinite(out[row]).all()
        assert (out[row, :samples] - expected).abs().max() < 1e-5
        assert bool((out[row, samples:] == 0).all())
    # the path of bins of exactly 0 ran (their gain is inf: without it, nan)
    assert bool((centred_spectra(wav[:1], 512, 128, window) == 0).any())


def test_resynthesis_gradients_match_the_torch_calls():
    """The SQA-guided enhancer trains through resynthesis: the gradient reaching the magnitude is
    that of torch.stft/istft."""
    torch.manual_seed(2)
    wav = torch.randn(1, 4000)
    magnitude = (stft_magnitude(wav, hop_length=128) * 0.8).requires_grad_()
    weights = torch.randn(4000)
    (resynthesize(magnitude, wav, hop_length=128)[0] * weights).sum().backward()
    ours = magnitude.grad.clone()
    magnitude.grad = None
    window = torch.hann_window(512)
    spec = torch.stft(wav[0], 512, 128, 512, window, center=True, pad_mode="reflect", return_complex=True)
    phase = spec / spec.abs()
    reference = torch.istft(magnitude[0].T * phase, 512, 128, 512, window, center=True, length=4000)
    (reference * weights).sum().backward()
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, magnitude.grad, atol=1e-5, rtol=1e-4)
