"""Magnitude-spectrogram features of VQScore (Fu et al., ICLR 2024).

The authors compute, at 16 kHz, ``torch.stft`` with ``n_fft=512``, a 512-sample Hann window,
``center=True`` and the default ``reflect`` padding, then the magnitude
``sqrt(clamp(re**2 + im**2, min=1e-7))``, laid out ``[batch, time, n_fft // 2 + 1]``. The hop is 256
samples for quality estimation and 128 for the enhancement variant, which also takes ``log1p`` of
the magnitude.

The complex STFT here is SpeechBrain's :class:`speechbrain.processing.features.STFT`, configured with
``window_fn=torch.hann_window`` and ``pad_mode="reflect"`` (its defaults, a Hamming window and
constant padding, differ from the authors'); it is bit-identical to the authors' ``torch.stft`` call.
SpeechBrain's :func:`~speechbrain.processing.features.spectral_magnitude` is *not* used: it adds its
epsilon (``sqrt(power + eps)``) where the authors clamp (``sqrt(max(power, 1e-7))``), which changes
near-silent bins, so the magnitude is taken here.

Batches of different lengths: the last frames of a zero-padded waveform see zeros where the same
waveform alone would be reflect-padded, so a padded batch's spectrogram differs from each
utterance's own near its end. :func:`stft_magnitude` with ``lengths`` (and :class:`STFTMagnitude`)
therefore transforms each utterance on its own samples and pads the frames, which gives exactly the
per-utterance spectrogram; :func:`frame_lengths` converts the relative waveform lengths to relative
frame lengths for the model.

Authors: speechbrain-sqe contributors
"""

import torch
from speechbrain.processing.features import STFT

__all__ = ["MAGNITUDE_FLOOR", "STFTMagnitude", "frame_lengths", "num_frames", "stft_magnitude"]

#: Floor of the power spectrum before the square root (the authors' ``clamp(min=1e-7)``).
MAGNITUDE_FLOOR = 1e-7


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


def _make_stft(n_fft, hop_length, win_length, sample_rate):
    """SpeechBrain STFT configured as the authors' ``torch.stft`` call."""
    # SpeechBrain takes window and hop in milliseconds and rounds them back to samples.
    stft = STFT(
        sample_rate=sample_rate,
        win_length=win_length * 1000.0 / sample_rate,
        hop_length=hop_length * 1000.0 / sample_rate,
        n_fft=n_fft,
        window_fn=torch.hann_window,
        center=True,
        pad_mode="reflect",
        onesided=True,
    )
    if stft.win_length != win_length or stft.hop_length != hop_length:  # pragma: no cover
        raise ValueError("window/hop lengths cannot be represented by SpeechBrain's STFT")
    return stft


def _magnitude(stft_out, log1p):
    """``[..., 2]`` real/imaginary parts -> clamped magnitude (optionally ``log1p``)."""
    power = stft_out.pow(2).sum(-1)
    mag = torch.sqrt(torch.clamp(power, min=MAGNITUDE_FLOOR))
    return torch.log1p(mag) if log1p else mag


def stft_magnitude(
    wav,
    n_fft=512,
    hop_length=256,
    win_length=512,
    lengths=None,
    log1p=False,
    sample_rate=16000,
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
        Sampling rate (only used to configure SpeechBrain's STFT, which works in milliseconds).

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
    stft = _make_stft(n_fft, hop_length, win_length, sample_rate)
    if lengths is None:
        spec = _magnitude(stft(wav), log1p)
    else:
        total = num_frames(wav.shape[1], hop_length)
        abs_samples = torch.round(lengths.float() * wav.shape[1]).long().clamp(1, wav.shape[1])
        # Utterances of the same length share one batched transform (training crops mostly do).
        groups = {}
        for index, n in enumerate(abs_samples.tolist()):
            groups.setdefault(n, []).append(index)
        spec = None
        for n, members in groups.items():
            frames = _magnitude(stft(wav[members, :n]), log1p)
            if spec is None:
                spec = frames.new_zeros(wav.shape[0], total, frames.shape[-1])
            spec = spec.index_copy(0, torch.tensor(members, device=wav.device),
                                   torch.nn.functional.pad(frames, (0, 0, 0, total - frames.shape[1])))
    return spec[0] if squeeze else spec


class STFTMagnitude(torch.nn.Module):
    """Module wrapper of :func:`stft_magnitude` (for HyperPyYAML ``compute_stft`` entries).

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
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.log1p = log1p
        self.sample_rate = sample_rate

    def forward(self, wav, lengths=None):
        """Computes the magnitude spectrogram.

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
            Magnitudes ``[batch, frames, n_fft // 2 + 1]``.
        """
        return stft_magnitude(
            wav,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            lengths=lengths,
            log1p=self.log1p,
            sample_rate=self.sample_rate,
        )

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
