"""Front ends of the lobes, configured from YAML and used identically in training, evaluation and
inference: the magnitude spectrogram of VQScore (optionally ``log1p``-compressed) with its inverse
(resynthesis with the noisy phase), and TERA's log-mel features.

:class:`SpectralFrontEnd` (``forward(wav, lengths) -> [batch, frames, bins]``,
:meth:`~SpectralFrontEnd.frame_lengths`, :meth:`~SpectralFrontEnd.resynthesize`) is the one object a
recipe's and hub folder's ``frontend`` entry builds; the enhancement chain
(:func:`speechbrain_sqe.lobes.vqvae_se.enhance_waveforms`) takes it, so a change of the STFT in the
YAML reaches training, validation, test and inference alike. :class:`STFTMagnitude` is the same
module with its historical defaults (hop 256, 512-sample window, no ``log1p``), the VQScore front
end (hub folders written before the front-end module also name it as
``speechbrain_sqe.lobes.spectral.STFTMagnitude``).

Magnitude spectrogram -- what matches the VQScore authors (Fu et al., ICLR 2024): at 16 kHz,
``torch.stft`` with ``n_fft=512``, a 512-sample Hann window, ``center=True`` and the default
``reflect`` padding, then the magnitude ``sqrt(clamp(re**2 + im**2, min=1e-7))``, laid out
``[batch, time, n_fft // 2 + 1]``; hop 256 for quality estimation, 128 (and ``log1p``) for the
enhancement variant, whose waveform is resynthesised from the enhanced magnitude and the noisy
phase by ``torch.istft``. What differs: the STFT and its inverse are
:mod:`speechbrain_sqe.lobes.overlap_add` (the same frames, window and one-sided FFT, laid out
``[batch, frames, bins]``): bit-identical magnitudes (576 real test files, session 32) and the
same overlap-add within float rounding. SpeechBrain's
:class:`~speechbrain.processing.features.STFT` (used here until session 31, configured as the
authors' call) wraps ``torch.stft``, whose ``[batch, bins, frames]`` output made every elementwise
step strided: the VQScore front end took 8.8 against 6.2 ms for 16 files of 6 s (one thread), and
resynthesis 6.2 against 2.9 ms for one. SpeechBrain's
:func:`~speechbrain.processing.features.spectral_magnitude` is *not* used: it adds its epsilon
(``sqrt(power + eps)``) where the authors clamp (``sqrt(max(power, 1e-7))``), which changes
near-silent bins, so the magnitude is taken here.

Log-mel (:class:`TERAFeatures`) -- matches s3prl's ``OnlinePreprocessor`` used by the TERA
``logMel*`` configs (see :mod:`speechbrain_sqe.lobes.tera` for the details); SpeechBrain's ``Fbank``
is not used (its own filterbank and a dB scale with ``top_db``).

Batches of different lengths: the last frames of a zero-padded waveform see zeros where the same
waveform alone would be reflect-padded, so a padded batch's spectrogram differs from each
utterance's own near its end (s3prl and the authors transform the padded batch). Every front end
here therefore transforms each utterance on its own samples and pads the frames, which gives
exactly the per-utterance features; :func:`frame_lengths` converts the relative waveform lengths
to relative frame lengths for the model, and resynthesis likewise inverts each utterance alone.

Authors: speechbrain-sqe contributors
"""

import torch
from torch import nn

from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.overlap_add import (
    centred_spectra,
    frame_spectra,
    full_window,
    overlap_add_inverse,
)

__all__ = [
    "MAGNITUDE_FLOOR",
    "WINDOWS",
    "PhaseSpectralFrontEnd",
    "STFTMagnitude",
    "SpectralFrontEnd",
    "TERAFeatures",
    "frame_lengths",
    "num_frames",
    "resynthesize",
    "stft_magnitude",
]

#: Floor of the power spectrum before the square root (the authors' ``clamp(min=1e-7)``).
MAGNITUDE_FLOOR = 1e-7

#: Analysis/synthesis windows by name (``window`` of :class:`SpectralFrontEnd`): Hann for VQScore and
#: the VQ enhancer, Hamming for BSSE (Hung et al., 2022). Both are torch's periodic windows.
WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}


def num_frames(num_samples, hop_length=256, center=True, n_fft=512):
    """Number of STFT frames of a signal of ``num_samples`` samples.

    Arguments
    ---------
    num_samples : int or torch.Tensor
        Number(s) of samples.
    hop_length : int
        Hop in samples.
    center : bool
        Whether the STFT is centred (padded by ``n_fft // 2`` on both sides), as here.
    n_fft : int
        FFT size (only used when ``center`` is False).

    Returns
    -------
    int or torch.Tensor
        The number(s) of frames.

    Example
    -------
    >>> num_frames(16000)
    63
    >>> num_frames(torch.tensor([16000, 8000]), hop_length=128)
    tensor([126,  63])
    """
    if center:
        return 1 + num_samples // hop_length
    return 1 + (num_samples - n_fft) // hop_length


def frame_lengths(lengths, num_samples, hop_length=256, center=True, n_fft=512):
    """Converts relative waveform lengths into relative spectrogram-frame lengths.

    SpeechBrain batches carry lengths relative to the longest item (values in ``[0, 1]``); the
    spectrogram of a padded batch has ``num_frames(num_samples)`` frames, of which utterance ``i``
    owns ``num_frames(round(lengths[i] * num_samples))``.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative waveform lengths, shape ``[batch]``.
    num_samples : int
        Number of samples of the padded waveform batch (``wavs.shape[1]``).
    hop_length : int
        Hop in samples.
    center : bool
        Whether the STFT is centred.
    n_fft : int
        FFT size (only used when ``center`` is False).

    Returns
    -------
    torch.Tensor
        Relative frame lengths, shape ``[batch]``, float.

    Example
    -------
    >>> frame_lengths(torch.tensor([1.0, 0.5]), 16000)
    tensor([1.0000, 0.5079])
    """
    abs_samples = torch.round(lengths.float() * num_samples).long()
    frames = num_frames(abs_samples, hop_length, center, n_fft)
    total = num_frames(num_samples, hop_length, center, n_fft)
    return frames.float() / float(total)


def _reflect_pad_each(wav, abs_samples, pad):
    """``[batch, samples + 2 pad]``: row ``i`` holds ``wav[i, :abs_samples[i]]`` reflect-padded by
    ``pad`` at each end (as :func:`_reflect_pad` of that utterance alone), then zeros."""
    padded = wav.new_zeros(wav.shape[0], wav.shape[1] + 2 * pad)
    for row, n in enumerate(abs_samples):
        _check_reflect_padding(n, pad)
        padded[row, :pad] = wav[row, 1 : pad + 1].flip(0)
        padded[row, pad : pad + n] = wav[row, :n]
        padded[row, pad + n : 2 * pad + n] = wav[row, n - pad - 1 : n - 1].flip(0)
    return padded


def _check_reflect_padding(samples, pad):
    if samples <= pad:
        raise ValueError(f"a waveform of {samples} samples is too short for the STFT's reflect padding "
                         f"(n_fft {2 * pad}: at least {pad + 1} samples)")


def _magnitude(spectra, log1p):
    """Complex ``[batch, frames, bins]`` -> clamped magnitude (optionally ``log1p``), the same layout.

    Two squares and a sum on the real view (3 times faster than ``.square().sum(-1)``, and than
    ``abs``: 2.5 against 8.1 ms on 16 x 376 x 257 bins, one thread; ``abs`` computes ``hypot``,
    which also rounds differently from the authors' formula).
    """
    parts = torch.view_as_real(spectra)
    power = parts[..., 0].square() + parts[..., 1].square()
    if power.requires_grad:  # autograd keeps each step's output
        mag = power.clamp(min=MAGNITUDE_FLOOR).sqrt()
        return mag.log1p() if log1p else mag
    mag = power.clamp_(min=MAGNITUDE_FLOOR).sqrt_()  # inference: no new buffers
    return mag.log1p_() if log1p else mag


def _magnitudes_by_row(wav, abs_samples, n_fft, hop_length, window, log1p):
    """Inference path of :func:`stft_magnitude`: ``[batch, frames, bins]``, each row's frames
    transformed from its own samples (``abs_samples``) straight into the output, the frames past
    its end set to 0.

    Why one row at a time: the same values as the whole batch at once (the same frames, the same
    one-dimensional FFTs; tests/test_frontend.py), but each row's windowed frames and spectra (4 MB
    for 17 s at hop 128) stay in the cache between steps, the padding frames of shorter rows are
    not transformed at all, and no batch-sized temporaries are allocated (a batch of eight 17 s
    files made 35 MB ones at hop 128, above glibc's 32 MiB mmap threshold: mapped and page-faulted
    afresh at every call). One thread, eight files of 17 s at hop 128: 21 against 47 ms; sixteen
    of 17 s at hop 256: 16 against 20 ms (session 45)."""
    batch, samples = wav.shape
    frames = num_frames(samples, hop_length)
    out = wav.new_empty(batch, frames, n_fft // 2 + 1)
    for row, n in enumerate(abs_samples):
        _check_reflect_padding(n, n_fft // 2)
        count = num_frames(n, hop_length)
        spectra = centred_spectra(wav[row : row + 1, :n], n_fft, hop_length, window)[0]
        parts = torch.view_as_real(spectra)
        # the same operations as _magnitude (square, square, add; no fused multiply-add)
        mag = torch.square(parts[..., 0], out=out[row, :count]).add_(parts[..., 1].square())
        mag.clamp_(min=MAGNITUDE_FLOOR).sqrt_()
        if log1p:
            mag.log1p_()
        out[row, count:] = 0.0
    return out


def stft_magnitude(
    wav,
    n_fft=512,
    hop_length=256,
    win_length=512,
    lengths=None,
    log1p=False,
    sample_rate=16000,
    window="hann",
):
    """Magnitude spectrogram as computed by the VQScore authors.

    Arguments
    ---------
    wav : torch.Tensor
        Waveforms, shape ``[batch, samples]`` (or ``[samples]``).
    n_fft : int
        FFT size (512: 257 frequency bins).
    hop_length : int
        Hop in samples (256 for quality estimation, 128 for the enhancement variant).
    win_length : int
        Hann window length in samples.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]`` of the waveforms. When given, each utterance is transformed on
        its own valid samples (exactly as alone) and the frames beyond its end are zero. As with
        the authors' reflect padding, every signal needs more than ``n_fft // 2`` samples.
    log1p : bool
        Return ``log1p`` of the magnitude (the enhancement variant's input transform).
    sample_rate : int
        Sampling rate (not used since the STFT is in samples; kept for existing calls).
    window : str
        ``"hann"`` (the VQScore authors') or ``"hamming"`` (BSSE's), see :data:`WINDOWS`.

    Returns
    -------
    torch.Tensor
        Magnitudes, shape ``[batch, frames, n_fft // 2 + 1]`` with ``frames = 1 + samples // hop``
        (``[frames, n_fft // 2 + 1]`` for a 1-D input).

    Example
    -------
    >>> wav = torch.randn(2, 16000)  # [batch, samples]
    >>> stft_magnitude(wav).shape  # [batch, time, channels]
    torch.Size([2, 63, 257])
    >>> stft_magnitude(wav, hop_length=128, log1p=True).shape
    torch.Size([2, 126, 257])
    >>> spec = stft_magnitude(wav, lengths=torch.tensor([1.0, 0.5]))
    >>> torch.allclose(spec[1, :32], stft_magnitude(wav[1, :8000]))
    True
    """
    squeeze = wav.dim() == 1
    if squeeze:
        wav = wav.unsqueeze(0)
    window = full_window(WINDOWS[window], n_fft, win_length, wav)
    batch, samples = wav.shape
    abs_samples = [samples] * batch
    if lengths is not None:
        abs_samples = torch.round(lengths.float() * samples).long().clamp(1, samples).tolist()
    if not (torch.is_grad_enabled() and wav.requires_grad):
        spec = _magnitudes_by_row(wav, abs_samples, n_fft, hop_length, window, log1p)
        return spec[0] if squeeze else spec
    if all(n == samples for n in abs_samples):  # all full length: one transform, nothing to pad
        _check_reflect_padding(samples, n_fft // 2)
        spec = _magnitude(centred_spectra(wav, n_fft, hop_length, window), log1p)
        return spec[0] if squeeze else spec
    # One transform of the whole batch, each row reflect-padded at its own end: a frame of an
    # utterance sees only its own samples and padding, so its values are those of the utterance
    # alone; the frames beyond its end are then set to 0. (Before session 27 each group of equal
    # lengths had its own transform, gathered and scattered by index: about 2 % of VQScore's time on
    # real files of varied lengths.)
    spec = _magnitude(frame_spectra(_reflect_pad_each(wav, abs_samples, n_fft // 2), n_fft, hop_length, window), log1p)
    counts = [num_frames(n, hop_length) for n in abs_samples]
    if spec.requires_grad:  # autograd keeps the magnitudes (sqrt's output): a masked copy
        valid = torch.arange(spec.shape[1], device=spec.device) < torch.tensor(counts, device=spec.device)[:, None]
        spec = spec * valid.unsqueeze(-1).to(spec.dtype)
    else:
        for row, count in enumerate(counts):
            spec[row, count:] = 0.0
    return spec[0] if squeeze else spec


def _with_noisy_phase(magnitude, spectra):
    """``magnitude`` ``[batch, frames, bins]`` (real) with the phase of ``spectra`` (complex, the
    same shape): the magnitude times the unit phasor ``spectra / |spectra|``, as one real gain per
    bin (cheaper than a complex division); a bin of 0 (digital silence; or below 1e-19, whose square
    underflows) has phase 0. Returns the real view ``[batch, frames, bins, 2]``."""
    parts = torch.view_as_real(spectra)
    size = (parts[..., 0].square() + parts[..., 1].square()).sqrt_()
    gain = magnitude.to(parts.dtype) / size.clamp(min=torch.finfo(size.dtype).tiny)
    if torch.is_grad_enabled() and (gain.requires_grad or parts.requires_grad):
        out = parts * gain.unsqueeze(-1)
    else:  # the same products, 3.5 times faster than broadcasting over the pairs (inner size 2)
        out = torch.empty_like(parts)
        torch.mul(parts[..., 0], gain, out=out[..., 0])
        torch.mul(parts[..., 1], gain, out=out[..., 1])
    silent = size == 0
    if bool(silent.any()):  # there the gain may be inf (0 * inf = nan in both parts)
        out = torch.stack([torch.where(silent, magnitude.to(parts.dtype), out[..., 0]),
                           out[..., 1].masked_fill(silent, 0.0)], dim=-1)
    return out


def _resynthesize_by_row(magnitude, noisy_wav, n_fft, hop_length, window, lengths):
    """Inference path of :func:`resynthesize`: each row alone (its own samples and frames) into
    the output, the samples past its end 0.

    Why one row at a time: the same operations and values as the batch (or the groups of equal
    lengths) at once, but each row's spectra and frames stay in the cache between the steps and no
    batch-sized temporaries are allocated. One thread, eight files of 16-17 s at hop 128: see
    benchmarks/RESULTS.md (session 45)."""
    batch, total = noisy_wav.shape
    ends = [total] * batch
    if lengths is not None:
        ends = torch.round(lengths.float() * total).long().clamp(1, total).tolist()
    out = noisy_wav.new_empty(batch, total)
    for row, n in enumerate(ends):
        frames = int(num_frames(n, hop_length))
        spectra = centred_spectra(noisy_wav[row : row + 1, :n], n_fft, hop_length, window)
        shaped = _with_noisy_phase(magnitude[row : row + 1, :frames], spectra)
        out[row, :n] = overlap_add_inverse(torch.view_as_complex(shaped), n_fft, hop_length, window, n)[0]
        out[row, n:] = 0.0
    return out


def resynthesize(
    magnitude,
    noisy_wav,
    n_fft=512,
    hop_length=128,
    win_length=None,
    window_fn=torch.hann_window,
    lengths=None,
):
    """Waveform from a (linear) magnitude spectrogram and the phase of a (noisy) waveform.

    The phase is that of ``torch.stft(noisy_wav)`` with the same centred, reflect-padded framing
    as :func:`stft_magnitude`; the inverse is overlap-add with the same window, as ``torch.istft``
    (both from :mod:`speechbrain_sqe.lobes.overlap_add`, 2 times faster than the torch calls), so
    the clean magnitude of a signal with that signal's own phase gives the signal back. The model
    works on ``log1p`` magnitudes: pass
    ``torch.expm1(spec_hat)``.

    Arguments
    ---------
    magnitude : torch.Tensor
        Linear magnitudes ``[batch, frames, n_fft // 2 + 1]`` with ``frames = 1 + samples // hop``.
    noisy_wav : torch.Tensor
        Waveforms ``[batch, samples]`` giving the phase.
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples.
    win_length : int, optional
        Window length (defaults to ``n_fft``).
    window_fn : callable
        Window constructor (Hann, as the features; a Hamming window also reconstructs at hop 128).
    lengths : torch.Tensor, optional
        Relative waveform lengths ``[batch]``: each utterance is then resynthesised from its own
        samples and frames (as :func:`stft_magnitude` with
        ``lengths``), the padding of the output being 0.

    Returns
    -------
    torch.Tensor
        Waveforms ``[batch, samples]`` (same length as ``noisy_wav``).

    Example
    -------
    >>> wav = torch.randn(2, 4000)  # [batch, samples]
    >>> mag = stft_magnitude(wav, hop_length=128)  # [batch, time, channels]
    >>> out = resynthesize(mag, wav)
    >>> out.shape, bool((out - wav).abs().max() < 1e-3)
    (torch.Size([2, 4000]), True)
    """
    win_length = n_fft if win_length is None else win_length
    window = full_window(window_fn, n_fft, win_length, noisy_wav)
    if not (torch.is_grad_enabled() and (magnitude.requires_grad or noisy_wav.requires_grad)):
        return _resynthesize_by_row(magnitude, noisy_wav, n_fft, hop_length, window, lengths)

    def _one(mag, wav):
        spectra = centred_spectra(wav, n_fft, hop_length, window)
        shaped = _with_noisy_phase(mag[:, : spectra.shape[1]], spectra)
        return overlap_add_inverse(torch.view_as_complex(shaped), n_fft, hop_length, window, wav.shape[-1])

    if lengths is None:
        return _one(magnitude, noisy_wav)
    total = noisy_wav.shape[1]
    abs_samples = torch.round(lengths.float() * total).long().clamp(1, total).tolist()
    groups = {}  # utterances of the same length are resynthesised together
    for index, n in enumerate(abs_samples):
        groups.setdefault(n, []).append(index)
    out = torch.zeros_like(noisy_wav)
    for n, members in groups.items():
        frames = int(num_frames(n, hop_length))
        out[members, :n] = _one(magnitude[members, :frames], noisy_wav[members, :n])
    return out


@record_init_args
class SpectralFrontEnd(nn.Module):
    """Magnitude-spectrogram front end and its inverse (resynthesis with the noisy phase).

    ``forward`` is :func:`stft_magnitude` (``log1p`` of it with ``log1p=True``); ``resynthesize``
    undoes the compression (``expm1``), clamps at 0 and applies the phase of the noisy waveform
    with the same framing (:func:`resynthesize`). Constructor arguments are recorded in
    ``init_args`` (a hub export writes the ``!new:`` entry from them).

    Arguments
    ---------
    n_fft : int
        FFT size (512: 257 frequency bins).
    hop_length : int
        Hop in samples (128 for enhancement, 256 for quality estimation).
    win_length : int, optional
        Hann window length in samples (None: ``n_fft``).
    log1p : bool
        Compress the magnitudes with ``log1p`` (the enhancement model's input).
    sample_rate : int
        Sampling rate of the input.
    window : str
        Analysis and synthesis window, a name of :data:`WINDOWS` (``"hann"``; BSSE: ``"hamming"``).

    Example
    -------
    >>> frontend = SpectralFrontEnd(n_fft=512, hop_length=128, log1p=True)
    >>> wavs = torch.randn(2, 8000)  # [batch, samples]
    >>> lengths = torch.tensor([1.0, 0.5])
    >>> spec = frontend(wavs, lengths)
    >>> spec.shape  # [batch, time, channels]
    torch.Size([2, 63, 257])
    >>> frontend.frame_lengths(lengths, wavs.shape[1])
    tensor([1.0000, 0.5079])
    >>> out = frontend.resynthesize(spec, wavs, lengths)  # [batch, samples]
    >>> out.shape, bool((out[0] - wavs[0]).abs().max() < 1e-3), float(out[1, 4000:].abs().sum())
    (torch.Size([2, 8000]), True, 0.0)
    >>> frontend.init_args
    {'n_fft': 512, 'hop_length': 128, 'win_length': None, 'log1p': True, 'sample_rate': 16000, 'window': 'hann'}
    >>> bsse = SpectralFrontEnd(n_fft=400, hop_length=160, log1p=True, window="hamming")  # BSSE's
    >>> bsse(wavs).shape, bool((bsse.resynthesize(bsse(wavs), wavs) - wavs).abs().max() < 1e-3)
    (torch.Size([2, 51, 201]), True)
    """

    def __init__(self, n_fft=512, hop_length=128, win_length=None, log1p=True, sample_rate=16000, window="hann"):
        super().__init__()
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {sorted(WINDOWS)}, got {window!r}")
        self.window = window
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = n_fft if win_length is None else win_length
        self.log1p = log1p
        self.sample_rate = sample_rate

    @property
    def min_samples(self):
        """Shortest waveform the reflect padding accepts (``n_fft // 2 + 1`` samples)."""
        return self.n_fft // 2 + 1

    def forward(self, wav, lengths=None):
        """Computes the (compressed) magnitude spectrogram.

        Arguments
        ---------
        wav : torch.Tensor
            Waveforms ``[batch, samples]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``; when given, each utterance is transformed alone (exact
            per-utterance frames, zeros beyond its end).

        Returns
        -------
        torch.Tensor
            Magnitudes ``[batch, frames, n_fft // 2 + 1]`` with ``frames = 1 + samples // hop``.
        """
        return stft_magnitude(
            wav,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            lengths=lengths,
            log1p=self.log1p,
            sample_rate=self.sample_rate,
            window=self.window,
        )

    def num_frames(self, num_samples):
        """Frames of ``num_samples`` samples (see :func:`num_frames`).

        Arguments
        ---------
        num_samples : int or torch.Tensor
            Number(s) of samples.

        Returns
        -------
        int or torch.Tensor
            ``1 + num_samples // hop_length``.
        """
        return num_frames(num_samples, self.hop_length, center=True, n_fft=self.n_fft)

    def frame_lengths(self, lengths, num_samples):
        """Relative frame lengths of a batch (see :func:`frame_lengths`).

        Arguments
        ---------
        lengths : torch.Tensor
            Relative waveform lengths ``[batch]``.
        num_samples : int
            Samples of the padded waveform batch.

        Returns
        -------
        torch.Tensor
            Relative frame lengths ``[batch]``.
        """
        return frame_lengths(lengths, num_samples, self.hop_length, center=True, n_fft=self.n_fft)

    def resynthesize(self, spec, noisy_wav, lengths=None):
        """Waveforms from (compressed) magnitudes of this front end and the noisy phase.

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, frames, n_fft // 2 + 1]`` in this front end's scale (``log1p`` magnitudes when
            ``log1p``), e.g. an enhanced ``forward(noisy_wav, lengths)``.
        noisy_wav : torch.Tensor
            Waveforms ``[batch, samples]`` giving the phase.
        lengths : torch.Tensor, optional
            Relative waveform lengths ``[batch]`` (each utterance resynthesised alone; the padding
            of the output is 0).

        Returns
        -------
        torch.Tensor
            Waveforms ``[batch, samples]``.
        """
        magnitude = torch.expm1(spec) if self.log1p else spec
        return resynthesize(
            magnitude.clamp(min=0.0), noisy_wav, self.n_fft, self.hop_length, self.win_length,
            window_fn=WINDOWS[self.window], lengths=lengths,
        )


@record_init_args
class STFTMagnitude(SpectralFrontEnd):
    """:class:`SpectralFrontEnd` with the historical defaults (hop 256, 512-sample window, linear).

    The VQScore front end (``frontend`` of ``hparams/vqscore.yaml`` and of its hub folders; older
    folders name it ``speechbrain_sqe.lobes.spectral.STFTMagnitude`` under ``compute_stft``); same
    computation as :class:`SpectralFrontEnd`.

    Arguments
    ---------
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples (256 for quality estimation, 128 for enhancement).
    win_length : int
        Hann window length in samples.
    log1p : bool
        Return ``log1p`` of the magnitude.
    sample_rate : int
        Sampling rate of the input.

    Example
    -------
    >>> compute_stft = STFTMagnitude()
    >>> wavs = torch.randn(3, 8000)  # [batch, samples]
    >>> compute_stft(wavs).shape  # [batch, time, channels]
    torch.Size([3, 32, 257])
    >>> compute_stft.frame_lengths(torch.tensor([1.0, 0.6, 0.3]), wavs.shape[1])
    tensor([1.0000, 0.5938, 0.3125])
    """

    def __init__(self, n_fft=512, hop_length=256, win_length=512, log1p=False, sample_rate=16000):
        super().__init__(n_fft, hop_length, win_length, log1p, sample_rate)


def _per_utterance(wav, lengths, transform):
    """Applies ``transform`` to each utterance's own samples (those of equal length together) and
    zero-pads the ``[batch, frames, ...]`` results to the frames of the padded batch (those of
    ``transform`` on the full padded length, whichever utterance comes first).

    Example
    -------
    >>> frames = lambda w: w.unfold(1, 4, 4).unsqueeze(-1)  # [batch, samples // 4, 4, 1]
    >>> _per_utterance(torch.ones(2, 16), torch.tensor([0.5, 1.0]), frames).shape
    torch.Size([2, 4, 4, 1])
    """
    if lengths is None:
        return transform(wav)
    total = wav.shape[1]
    abs_samples = torch.round(lengths.float() * total).long().clamp(1, total).tolist()
    groups = {}
    for index, n in enumerate(abs_samples):
        groups.setdefault(n, []).append(index)
    parts = {n: transform(wav[members, :n]) for n, members in groups.items()}
    full = parts[total] if total in parts else transform(wav[:1])
    out = full.new_zeros(wav.shape[0], *full.shape[1:])
    for n, members in groups.items():
        out[members, : parts[n].shape[1]] = parts[n]
    return out


@record_init_args
class PhaseSpectralFrontEnd(SpectralFrontEnd):
    """Power-compressed magnitudes and unit phasors of the STFT, and synthesis from both.

    For models that estimate a phase as well as a magnitude (the shared-latent enhancer,
    :mod:`speechbrain_sqe.lobes.shared_latent`): ``forward`` gives ``|STFT| ** power`` (SSE's
    dynamic-range compression, ``power=0.5``), :meth:`phase` the unit phasors ``(cos, sin)`` of the
    same frames, :meth:`synthesize` the waveform of a compressed magnitude and any phasors (the
    inverse is ``torch.istft``, as :func:`resynthesize`), and the inherited :meth:`resynthesize`
    uses the noisy phase. Framing as :class:`SpectralFrontEnd` (centred, reflect padding; with
    ``lengths`` each utterance is transformed alone).

    Arguments
    ---------
    n_fft : int
        FFT size (SSE: 1024, 513 bins).
    hop_length : int
        Hop in samples (SSE: 256).
    win_length : int, optional
        Window length (None: ``n_fft``).
    power : float
        Exponent of the magnitude compression (SSE: 0.5).
    sample_rate : int
        Sampling rate of the input.
    window : str
        A name of :data:`WINDOWS` (SSE: ``"hann"``).

    Example
    -------
    >>> frontend = PhaseSpectralFrontEnd(n_fft=256, hop_length=64)
    >>> wavs, lengths = torch.randn(2, 4000), torch.tensor([1.0, 0.5])  # [batch, samples]
    >>> spec, phase = frontend(wavs, lengths), frontend.phase(wavs, lengths)
    >>> spec.shape, phase.shape  # [batch, time, bins], [batch, time, bins, (cos, sin)]
    (torch.Size([2, 63, 129]), torch.Size([2, 63, 129, 2]))
    >>> out = frontend.synthesize(spec, phase, wavs.shape[1], lengths)
    >>> bool((out[0] - wavs[0]).abs().max() < 1e-3), bool((out[1, :2000] - wavs[1, :2000]).abs().max() < 1e-3)
    (True, True)
    >>> float(out[1, 2000:].abs().sum())
    0.0
    """

    def __init__(self, n_fft=1024, hop_length=256, win_length=None, power=0.5, sample_rate=16000, window="hann"):
        super().__init__(n_fft, hop_length, win_length, log1p=False, sample_rate=sample_rate, window=window)
        if power <= 0:
            raise ValueError(f"power must be positive, got {power}")
        self.power = power

    def _complex(self, wav):
        window = WINDOWS[self.window](self.win_length, device=wav.device, dtype=wav.dtype)
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, window, center=True,
                          pad_mode="reflect", return_complex=True)
        return spec.transpose(1, 2)  # [batch, frames, bins]

    def forward(self, wav, lengths=None):
        """Compressed magnitudes ``|STFT| ** power`` ``[batch, frames, bins]`` (0 beyond each length)."""
        return super().forward(wav, lengths).pow(self.power)  # padded frames are 0 already

    def phase(self, wav, lengths=None):
        """Unit phasors ``[batch, frames, bins, 2]`` (cos, sin) of the STFT; ``(1, 0)`` for a zero
        bin, zeros beyond each length."""
        def transform(part):
            spec = self._complex(part)
            size = spec.abs()
            unit = torch.where(size > 0, spec / size.clamp(min=torch.finfo(size.dtype).tiny), 1.0)
            return torch.view_as_real(unit)
        return _per_utterance(wav, lengths, transform)

    def decompress(self, spec):
        """Linear magnitudes of compressed ones (negative values clamped to 0)."""
        return spec.clamp(min=0.0).pow(1.0 / self.power)

    def synthesize(self, spec, phase, num_samples, lengths=None):
        """Waveforms from compressed magnitudes and phasors (each utterance alone with ``lengths``).

        Arguments
        ---------
        spec : torch.Tensor
            Compressed magnitudes ``[batch, frames, bins]``.
        phase : torch.Tensor
            Phasors ``[batch, frames, bins, 2]`` (cos, sin); not renormalised here.
        num_samples : int
            Samples of the output (the padded batch's).
        lengths : torch.Tensor, optional
            Relative waveform lengths ``[batch]``; the output is 0 beyond each.

        Returns
        -------
        torch.Tensor
            Waveforms ``[batch, num_samples]``.
        """
        window = WINDOWS[self.window](self.win_length, device=spec.device, dtype=spec.dtype)
        complex_spec = self.decompress(spec).unsqueeze(-1) * phase
        complex_spec = torch.view_as_complex(complex_spec.contiguous())

        def one(part, n):
            return torch.istft(part.transpose(1, 2), self.n_fft, self.hop_length, self.win_length, window,
                               center=True, length=n)

        if lengths is None:
            return one(complex_spec, num_samples)
        abs_samples = torch.round(lengths.float() * num_samples).long().clamp(1, num_samples).tolist()
        groups = {}
        for index, n in enumerate(abs_samples):
            groups.setdefault(n, []).append(index)
        out = spec.new_zeros(spec.shape[0], num_samples)
        for n, members in groups.items():
            out[members, :n] = one(complex_spec[members, : int(self.num_frames(n))], n)
        return out

    def resynthesize(self, spec, noisy_wav, lengths=None):
        """Waveforms from compressed magnitudes and the phase of ``noisy_wav`` (same framing)."""
        return resynthesize(self.decompress(spec), noisy_wav, self.n_fft, self.hop_length, self.win_length,
                            window_fn=WINDOWS[self.window], lengths=lengths)


@record_init_args
class TERAFeatures(nn.Module):
    """s3prl's TERA log-mel front end with per-utterance CMVN over the valid frames.

    Matches s3prl's ``OnlinePreprocessor`` on each utterance alone; a padded batch is featurized
    utterance by utterance (see :mod:`speechbrain_sqe.lobes.tera` for what matches and differs).
    ``forward(wav, lengths)`` returns the features and their relative frame lengths.

    Arguments
    ---------
    n_mels : int
        Number of mel bins.
    sample_rate : int
        Sample rate of the input (16 kHz for TERA).
    win_ms : float
        Window length in ms.
    hop_ms : float
        Hop in ms.
    n_fft : int
        FFT size (s3prl: ``(n_freq - 1) * 2 = 400``).
    target_level : float or None
        Each utterance is scaled to this RMS level in dB before the STFT (s3prl: -25); None: no
        scaling.
    log : bool
        Take ``log(mel + eps)``.
    cmvn : bool
        Per-utterance mean and variance normalization.
    eps : float
        s3prl's epsilon (log floor and CMVN denominator).

    Example
    -------
    >>> feats = TERAFeatures()
    >>> wav = torch.randn(2, 16000)  # [batch, samples]
    >>> x, frame_lengths = feats(wav, torch.tensor([1.0, 0.5]))
    >>> x.shape, frame_lengths  # [batch, time, channels], [batch]
    (torch.Size([2, 101, 80]), tensor([1.0000, 0.5050]))
    >>> feats.init_args["n_fft"], feats.init_args["target_level"]
    (400, -25.0)
    """

    def __init__(self, n_mels=80, sample_rate=16000, win_ms=25, hop_ms=10, n_fft=400, target_level=-25.0,
                 log=True, cmvn=True, eps=1e-10):
        super().__init__()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.win_length = round(win_ms * sample_rate / 1000)
        self.hop_length = round(hop_ms * sample_rate / 1000)
        self.n_fft = n_fft
        self.target_level = target_level
        self.log = log
        self.cmvn = cmvn
        self.eps = eps
        from torchaudio.functional import melscale_fbanks

        fbank = melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, None, "htk")
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)  # [n_freqs, n_mels]

    def num_frames(self, num_samples):
        """Frames of an utterance of ``num_samples`` samples (``center=True``): ``1 + n // hop``."""
        return 1 + num_samples // self.hop_length

    def _one(self, wav):
        wav = wav.float()
        if self.target_level is not None:
            rms = wav.pow(2).mean().sqrt()
            wav = wav * (10 ** (self.target_level / 20)) / (rms + 1e-10)
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, window=self.window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        power = spec.abs().pow(2).transpose(0, 1)  # [T, n_freqs]
        mel = power @ self.fbank
        if self.log:
            mel = (mel + self.eps).log()
        if self.cmvn:
            mel = (mel - mel.mean(0, keepdim=True)) / (mel.std(0, keepdim=True) + self.eps)
        return mel

    def forward(self, wav, lengths=None):
        """Log-mel features.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, samples]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        feats : torch.Tensor
            ``[batch, frames, n_mels]``, 0 on padded frames.
        frame_lengths : torch.Tensor
            Relative lengths in frames ``[batch]`` (exact: ``round(rel * frames)`` is the count).
        """
        batch, max_samples = wav.shape
        if lengths is None:
            n_samples = [max_samples] * batch
        else:
            n_samples = torch.round(lengths.float() * max_samples).long().clamp(1, max_samples).tolist()
        max_frames = self.num_frames(max_samples)
        out = wav.new_zeros(batch, max_frames, self.n_mels, dtype=torch.float32)
        counts = []
        for b, n in enumerate(n_samples):
            mel = self._one(wav[b, :n])
            out[b, : mel.shape[0]] = mel
            counts.append(mel.shape[0])
        frame_lengths = torch.tensor(counts, dtype=torch.float32, device=wav.device) / max_frames
        return out, frame_lengths
