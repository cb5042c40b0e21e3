"""A frame-level speech-activity measure: is there speech in this file, and in which frames?

What it measures, per 32 ms frame (centred, one frame per ``hop`` samples, the layout of a centred
STFT so that frame ``i`` lines up with a model's frame ``i``):

- **level**: the RMS after removing the frame's mean (so a DC offset reads as silence), in dBFS;
  frames below :data:`FLOOR_DBFS` are never speech (digital silence, very low noise floors);
- **voicing**: the YIN cumulative-mean-normalised difference function (de Cheveigne and Kawahara,
  2002) over pitch periods of 70-400 Hz; a frame whose minimum falls below :data:`VOICING_THRESHOLD`
  is voiced. Stationary noise (white, pink, brown) has no such dip, voiced speech has a deep one;
- **hangover**: a frame is speech when it is above the floor and within :data:`HANGOVER_SECONDS` of
  a voiced frame, so unvoiced consonants and short gaps around vowels count as speech.

A file "has speech" when at least :data:`MIN_VOICED_SECONDS` of it is voiced (3 frames of 16 ms).

The thresholds were set on the embedded corpus's *valid* split
(``benchmarks/speech_activity_valid.py``): all 48 clean and 47 of 48 noisy files read as speech (the
miss: -5 dB hum, 0.032 s voiced); of its 16 noise-only clips of 10 s, white, pink, brown,
amplitude-modulated noise and clicks read as no speech, babble, alarms and hum as speech.

Limits (plainly): this is a periodicity detector, not a trained VAD. Periodic noise in the pitch
range (alarm tones, hum, engine harmonics, music) counts as speech; babble *is* speech to it; whispered
speech has no voicing and counts as no speech; at very low SNR (below about -5 dB in white noise)
voiced frames may be missed. It is meant to catch inputs with no speech at all (silence, DC,
stationary noise) and to mark the pauses of speech, not to segment speech finely.

Example
-------
>>> import torch
>>> t = torch.arange(16000) / 16000
>>> vowel = 0.3 * sum(torch.sin(2 * torch.pi * 140 * k * t) / k for k in range(1, 6))
>>> has_speech(vowel, 16000), has_speech(torch.zeros(16000), 16000), has_speech(0.5 + 0 * t, 16000)
(True, False, False)
>>> has_speech(0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0)), 16000)
False
"""

import torch

__all__ = ["FLOOR_DBFS", "VOICING_THRESHOLD", "frame_activity", "has_speech", "has_speech_batch",
           "speech_frames"]

#: Frames quieter than this (RMS after removing the frame mean, dB re full scale) are not speech.
FLOOR_DBFS = -60.0
#: A frame is voiced when its YIN difference function dips below this (0: perfectly periodic).
VOICING_THRESHOLD = 0.5
#: Frames this close to a voiced frame count as speech too (unvoiced sounds, onsets, offsets).
HANGOVER_SECONDS = 0.2
#: Voiced audio a file needs to count as holding speech.
MIN_VOICED_SECONDS = 0.045
#: The pitch range searched, Hz.
PITCH_RANGE = (70.0, 400.0)
#: Analysis window, seconds.
WINDOW_SECONDS = 0.032
#: Frames :func:`has_speech` analyses at a time before it checks whether it has seen enough.
SPEECH_CHECK_FRAMES = 64
#: The loudest frames :func:`has_speech` analyses first (a speech file is loudest in its vowels).
LOUDEST_FRAMES = 16


def _frames(wav, sample_rate, hop, start=0, count=None):
    """Centred frames ``[frames, window + max_lag]`` (zero padded), one per ``hop`` samples: frames
    ``start`` to ``start + count`` of the ``1 + len // hop`` (all by default), cut from only the
    samples they cover (a speech check reads the first second of a file: framing the whole padded
    file took about a third of its time, session 29)."""
    window = round(WINDOW_SECONDS * sample_rate)
    max_lag = int(sample_rate / PITCH_RANGE[0]) + 1
    total = 1 + wav.shape[0] // hop
    count = total - start if count is None else min(count, total - start)
    first = start * hop - window // 2  # the first frame's first sample, in the waveform's indices
    last = first + (count - 1) * hop + window + max_lag
    piece = wav[max(first, 0) : max(min(last, wav.shape[0]), 0)]
    padded = torch.nn.functional.pad(piece, (max(-first, 0), last - first - piece.shape[0] - max(-first, 0)))
    frames = padded.unfold(0, window + max_lag, hop)
    return frames, window, max_lag


def frame_activity(wav, sample_rate=16000, hop=256):
    """Per-frame level (dBFS) and YIN voicing of a waveform.

    Arguments
    ---------
    wav : torch.Tensor
        ``[time]``, float, in ``[-1, 1]``.
    sample_rate : int
        Its rate.
    hop : int
        Samples between frames (the frame count is ``1 + len // hop``, as a centred STFT's).

    Returns
    -------
    level_db : torch.Tensor
        ``[frames]``, RMS of each mean-removed frame in dBFS.
    periodicity : torch.Tensor
        ``[frames]``, the minimum of the cumulative-mean-normalised difference over the pitch
        lags (about 1 for noise, near 0 for voiced speech).

    Example
    -------
    >>> level, periodicity = frame_activity(torch.zeros(1000), 16000, hop=256)
    >>> level.shape, bool((level < -100).all())
    (torch.Size([4]), True)
    """
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    frames, window, max_lag = _frames(wav, sample_rate, hop)
    return _activity(frames, window, max_lag, sample_rate)


def _fft_size(length):
    """The smallest ``2^a 3^b 5^c`` at or above ``length``, a size pocketfft transforms about as
    fast as a power of two."""
    size = length
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


def _activity(frames, window, max_lag, sample_rate):
    """:func:`frame_activity` of the frames of :func:`_frames` (each row on its own: any block of
    rows gives those rows' values)."""
    frames = frames - frames[:, :window].mean(dim=1, keepdim=True)
    head = frames[:, :window]
    level_db = 10 * torch.log10(head.pow(2).mean(dim=1) + 1e-12)
    # YIN difference d(tau) = sum x_j^2 + sum x_{j+tau}^2 - 2 sum x_j x_{j+tau}, via FFT.
    # A circular correlation of any size >= window + max_lag equals the linear one at the lags used
    # (j + tau < window + max_lag); the power of two above 2 (window + max_lag) was 2,048 here.
    size = _fft_size(window + max_lag)
    spectrum_a = torch.fft.rfft(head, n=size)
    spectrum_b = torch.fft.rfft(frames, n=size)
    cross = torch.fft.irfft(spectrum_a.conj() * spectrum_b, n=size)[:, 1 : max_lag + 1]
    squares = torch.nn.functional.pad(frames.pow(2).cumsum(dim=1), (1, 0))
    lags = torch.arange(1, max_lag + 1)
    shifted_energy = squares[:, window + 1 : window + max_lag + 1] - squares[:, 1 : max_lag + 1]
    energy = squares[:, window : window + 1]
    difference = (energy + shifted_energy - 2 * cross).clamp_min(0)
    cumulative = difference.cumsum(dim=1) / lags
    normalised = difference / cumulative.clamp_min(1e-12)
    low = int(sample_rate / PITCH_RANGE[1])
    periodicity = normalised[:, low - 1 :].min(dim=1).values
    return level_db, periodicity


def _loud_and_voiced(level_db, periodicity):
    """The frames above the floor, and those of them that are voiced (both ``[frames]`` bool)."""
    loud = level_db > FLOOR_DBFS
    return loud, loud & (periodicity < VOICING_THRESHOLD)


def speech_frames(wav, sample_rate=16000, hop=256):
    """Which frames hold speech (level above the floor, within the hangover of a voiced frame).

    Arguments
    ---------
    wav : torch.Tensor
        ``[time]``.
    sample_rate : int
        Its rate.
    hop : int
        Samples between frames (use the model's frame hop to line the frames up with its frames).

    Returns
    -------
    speech : torch.Tensor
        ``[frames]`` bool.
    voiced : torch.Tensor
        ``[frames]`` bool, the voiced frames (a subset of ``speech``).

    Example
    -------
    >>> t = torch.arange(32000) / 16000
    >>> vowel = 0.3 * torch.sin(2 * torch.pi * 150 * t) * (t < 1.0)
    >>> speech, voiced = speech_frames(vowel, 16000)
    >>> bool(speech[:50].all()), bool(speech[-50:].any())
    (True, False)
    """
    level_db, periodicity = frame_activity(wav, sample_rate, hop)
    loud, voiced = _loud_and_voiced(level_db, periodicity)
    reach = max(0, round(HANGOVER_SECONDS * sample_rate / hop))
    near = torch.nn.functional.max_pool1d(voiced.float()[None, None], 2 * reach + 1, stride=1,
                                          padding=reach)[0, 0] > 0
    return loud & near, voiced


def _loudest_frames(wavs, lengths, sample_rate, hop, count):
    """The frames of :func:`_frames` of about the ``count`` loudest frames of each row of a padded
    batch (``[batch, count, window + max_lag]``, every row's samples past its length read as 0),
    ranked by the energy of the ``hop``-sample stretches that their windows cover (a ranking only:
    which frames are voiced is :func:`_activity`'s), with ``[batch, count]`` True where a chosen
    frame is one of the row's ``1 + length // hop`` frames, and ``window`` and ``max_lag``."""
    window = round(WINDOW_SECONDS * sample_rate)
    max_lag = int(sample_rate / PITCH_RANGE[0]) + 1
    batch, time = wavs.shape
    totals = 1 + lengths // hop
    frames_needed = int(totals.max())
    right = max(0, (frames_needed - 1) * hop + window + max_lag - time - window // 2)
    padded = torch.nn.functional.pad(wavs, (window // 2, right))  # frame i starts at sample i * hop
    for row, length in enumerate(lengths.tolist()):
        padded[row, window // 2 + length :] = 0.0
    # energy of each stretch of hop samples (contiguous rows: one pass, no further copy)
    stretches = padded.shape[1] // hop
    energy = torch.linalg.vector_norm(padded[:, : stretches * hop].view(batch, stretches, hop), dim=2).pow(2)
    reach = max(1, round(window / hop))  # the stretches a frame's window covers
    energy = torch.nn.functional.avg_pool1d(energy[:, None], reach, stride=1)[:, 0, :frames_needed]
    energy = energy.masked_fill(torch.arange(frames_needed) >= totals[:, None], -1.0)
    chosen = energy.topk(min(count, frames_needed), dim=1).indices
    framed = padded.unfold(1, window + max_lag, hop)[torch.arange(batch)[:, None], chosen]
    return framed, chosen < totals[:, None], window, max_lag


def _voiced_seconds(frames, window, max_lag, sample_rate, hop):
    """Voiced time (s) of ``[frames, window + max_lag]`` frames of :func:`_frames`."""
    level_db, periodicity = _activity(frames, window, max_lag, sample_rate)
    return int(_loud_and_voiced(level_db, periodicity)[1].sum()) * hop / sample_rate


def has_speech_batch(wavs, lengths=None, sample_rate=16000, hop=256):
    """:func:`has_speech` of each file of a padded batch, the loudest frames of all files analysed
    together (one set of operations for the batch instead of about 40 per file: the 2,547 real
    files here in length-sorted batches of 16 in 1.11 s against 2.23 s for session 29's check,
    one thread, the same answers; benchmarks/RESULTS.md, session 30).

    Arguments
    ---------
    wavs : torch.Tensor
        ``[batch, time]``.
    lengths : sequence of int or torch.Tensor, optional
        Samples of each file (its samples past that are ignored); None: all ``time``.
    sample_rate : int
        Their rate.
    hop : int
        Samples between analysis frames.

    Returns
    -------
    list of bool
        ``has_speech(wavs[i, :lengths[i]])`` for each ``i``.

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> vowel = 0.3 * sum(torch.sin(2 * torch.pi * 140 * k * t) / k for k in range(1, 6))
    >>> wavs = torch.stack([vowel, torch.zeros(16000), vowel])  # [batch, time]
    >>> has_speech_batch(wavs, [16000, 16000, 500])
    [True, False, False]
    """
    wavs = torch.as_tensor(wavs, dtype=torch.float32).cpu()
    if wavs.dim() != 2:
        raise ValueError(f"has_speech_batch needs [batch, time], got {tuple(wavs.shape)}")
    batch, time = wavs.shape
    lengths = torch.full((batch,), time) if lengths is None else torch.as_tensor(lengths, dtype=torch.long)
    if lengths.shape != (batch,) or bool((lengths < 0).any()) or bool((lengths > time).any()):
        raise ValueError(f"has_speech_batch needs {batch} lengths in 0..{time} samples, got {lengths.tolist()}")
    if batch == 0:
        return []
    # The answer is the whole file's (voiced frames counted over all of them), but it needs only
    # enough voiced frames: first each file's loudest frames (those of 564 of 576 real test files
    # hold enough), then, for the others, frames in blocks, stopping at the first block that
    # completes the voiced time. Analysing every frame halved `sqe score`'s throughput (session 28).
    framed, real, window, max_lag = _loudest_frames(wavs, lengths, sample_rate, hop, LOUDEST_FRAMES)
    level_db, periodicity = _activity(framed.reshape(-1, framed.shape[-1]), window, max_lag, sample_rate)
    voiced = _loud_and_voiced(level_db, periodicity)[1].reshape(real.shape) & real
    found = (voiced.sum(dim=1) * hop / sample_rate >= MIN_VOICED_SECONDS).tolist()
    return [found[row] or _speech_in_blocks(wavs[row, : int(lengths[row])], sample_rate, hop)
            for row in range(batch)]


def _speech_in_blocks(wav, sample_rate, hop):
    """Whether ``wav`` has the voiced time, its frames analysed in blocks until it does."""
    voiced_seconds = 0.0
    for start in range(0, 1 + wav.shape[0] // hop, SPEECH_CHECK_FRAMES):
        voiced_seconds += _voiced_seconds(*_frames(wav, sample_rate, hop, start, SPEECH_CHECK_FRAMES),
                                          sample_rate, hop)
        if voiced_seconds >= MIN_VOICED_SECONDS:
            return True
    return False


def has_speech(wav, sample_rate=16000, hop=256):
    """Whether a waveform holds speech: at least :data:`MIN_VOICED_SECONDS` of voiced frames.

    Arguments
    ---------
    wav : torch.Tensor
        ``[time]``.
    sample_rate : int
        Its rate.
    hop : int
        Samples between analysis frames.

    Returns
    -------
    bool
        False for digital silence, a DC offset, stationary noise without speech.
    """
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    return has_speech_batch(wav[None], [wav.shape[0]], sample_rate, hop)[0]
