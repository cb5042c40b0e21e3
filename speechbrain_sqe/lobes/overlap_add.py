"""The centred STFT and its overlap-add inverse laid out ``[batch, frames, bins]``, for resynthesis
on CPU.

What matches ``torch.stft`` / ``torch.istft`` (``center=True``, reflect padding, a periodic window
of ``win_length`` zero-padded to ``n_fft`` in the middle, one-sided, not normalised): the same
frames, spectra and waveform, within float32 rounding (a few 1e-7 on unit-scale speech,
tests/test_overlap_add.py). What differs: the layout and the inverse's overlap-add. ``torch.stft``
returns ``[batch, bins, frames]``, a transposed view in which every elementwise step on the
spectrum (the magnitude, the phase) runs strided; ``torch.istft`` overlap-adds with ``fold``
(``unfold_backward``) and rebuilds the window envelope on each call. Here the frames stay
``[batch, frames, bins]`` and the overlap-add is ``ceil(n_fft / hop)`` shifted additions of
hop-sized slices: resynthesis of a 6 s file with the noisy phase took 2.9 against 6.2 ms (one
thread; benchmarks/RESULTS.md, session 32). SpeechBrain's ``STFT``/``ISTFT`` wrap the same torch
calls, so this is written here.

Authors: speechbrain-sqe contributors
"""

import torch
import torch.nn.functional as F

__all__ = ["centred_spectra", "frame_spectra", "full_window", "overlap_add_inverse", "reflect_pad"]


def full_window(window_fn, n_fft, win_length, like):
    """``window_fn(win_length)`` zero-padded to ``n_fft`` in the middle, as ``torch.stft`` does.

    Arguments
    ---------
    window_fn : callable
        Window constructor (``torch.hann_window``...).
    n_fft : int
        FFT size.
    win_length : int
        Window length (<= ``n_fft``).
    like : torch.Tensor
        Tensor giving the dtype and device.

    Returns
    -------
    torch.Tensor
        ``[n_fft]``.

    Example
    -------
    >>> full_window(torch.hann_window, 8, 4, torch.zeros(1)).tolist()
    [0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    window = window_fn(win_length, dtype=like.dtype, device=like.device)
    left = (n_fft - win_length) // 2
    return F.pad(window, (left, n_fft - win_length - left))


def reflect_pad(wav, pad):
    """``wav`` ``[batch, samples]`` reflect-padded by ``pad`` samples at each end, as ``torch.stft``
    centres its frames: the same values, 2.5 times faster than its ``reflection_pad1d`` here
    (16 x 5 s: 0.4 against 1.0 ms).

    Arguments
    ---------
    wav : torch.Tensor
        ``[batch, samples]`` with more than ``pad`` samples.
    pad : int
        Samples added at each end.

    Returns
    -------
    torch.Tensor
        ``[batch, samples + 2 * pad]``.

    Example
    -------
    >>> reflect_pad(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 2).tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]]
    """
    if wav.shape[-1] <= pad:
        raise ValueError(f"a waveform of {wav.shape[-1]} samples is too short for reflect padding by {pad} "
                         f"(an STFT of n_fft {2 * pad} needs at least {pad + 1} samples)")
    return torch.cat([wav[:, 1 : pad + 1].flip(1), wav, wav[:, -pad - 1 : -1].flip(1)], dim=1)


def frame_spectra(padded, n_fft, hop_length, window):
    """One-sided spectra of the windowed frames of an already padded signal (``torch.stft`` with
    ``center=False``, transposed).

    Arguments
    ---------
    padded : torch.Tensor
        ``[batch, samples]`` (at least ``n_fft``).
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples.
    window : torch.Tensor
        ``[n_fft]`` (:func:`full_window`).

    Returns
    -------
    torch.Tensor
        Complex ``[batch, 1 + (samples - n_fft) // hop_length, n_fft // 2 + 1]``.

    Example
    -------
    >>> frame_spectra(torch.randn(2, 1000), 64, 16, torch.hann_window(64)).shape
    torch.Size([2, 59, 33])
    """
    return torch.fft.rfft(padded.unfold(-1, n_fft, hop_length) * window, dim=-1)


def centred_spectra(wav, n_fft, hop_length, window):
    """One-sided spectra of the frames of ``wav`` reflect-padded by ``n_fft // 2`` on each side.

    Arguments
    ---------
    wav : torch.Tensor
        ``[batch, samples]`` (more than ``n_fft // 2`` samples, as reflect padding needs).
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples.
    window : torch.Tensor
        ``[n_fft]`` (:func:`full_window`).

    Returns
    -------
    torch.Tensor
        Complex ``[batch, 1 + samples // hop_length, n_fft // 2 + 1]``: ``torch.stft(wav, ...,
        center=True, return_complex=True)`` transposed.

    Example
    -------
    >>> wav, window = torch.randn(2, 1000), torch.hann_window(64)
    >>> spec = centred_spectra(wav, 64, 16, window)
    >>> ref = torch.stft(wav, 64, 16, window=window, center=True, return_complex=True)
    >>> spec.shape, bool((spec - ref.transpose(1, 2)).abs().max() < 1e-4)
    (torch.Size([2, 63, 33]), True)
    """
    return frame_spectra(reflect_pad(wav, n_fft // 2), n_fft, hop_length, window)


def overlap_add_inverse(spectra, n_fft, hop_length, window, length):
    """Waveforms from one-sided spectra by windowed overlap-add, as ``torch.istft`` with
    ``center=True`` and ``length``.

    Arguments
    ---------
    spectra : torch.Tensor
        Complex ``[batch, frames, n_fft // 2 + 1]``.
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples.
    window : torch.Tensor
        ``[n_fft]`` (:func:`full_window`), the analysis window.
    length : int
        Samples of the output (at most ``(frames - 1) * hop_length + n_fft // 2``; a shorter
        span, or a window envelope of 0 inside it, is refused).

    Returns
    -------
    torch.Tensor
        ``[batch, length]``.

    Example
    -------
    >>> wav, window = torch.randn(2, 1000), torch.hann_window(64)
    >>> out = overlap_add_inverse(centred_spectra(wav, 64, 16, window), 64, 16, window, 1000)
    >>> out.shape, bool((out - wav).abs().max() < 1e-5)
    (torch.Size([2, 1000]), True)
    """
    batch, frames = spectra.shape[:2]
    pieces = -(-n_fft // hop_length)  # hop-sized slices per frame (the last one zero-padded)
    width = pieces * hop_length

    def add_shifted(frame_slices):  # [..., frames, pieces, hop] -> [..., (frames + pieces - 1) * hop]
        out = frame_slices.new_zeros(*frame_slices.shape[:-3], frames + pieces - 1, hop_length)
        for piece in range(pieces):
            out[..., piece : piece + frames, :] += frame_slices[..., piece, :]
        return out.flatten(-2)

    signal = torch.fft.irfft(spectra, n=n_fft, dim=-1)
    # in place where autograd does not need the product (one pass less over the frames)
    signal = signal * window if signal.requires_grad else signal.mul_(window)
    if width != n_fft:
        signal = F.pad(signal, (0, width - n_fft))
    signal = add_shifted(signal.view(batch, frames, pieces, hop_length))
    # the envelope from the window's squared slices, repeated by a view (not copied per frame)
    squares = F.pad(window.square(), (0, width - n_fft)).view(pieces, hop_length)
    envelope = add_shifted(squares.expand(frames, pieces, hop_length))
    start = n_fft // 2
    envelope = envelope[start : start + length]
    if length > signal.shape[-1] - start or bool((envelope < 1e-11).any()):
        raise ValueError(
            f"overlap-add of {frames} frames (n_fft={n_fft}, hop={hop_length}) cannot give {length} samples "
            "with a nonzero window envelope")
    return signal[:, start : start + length] / envelope
