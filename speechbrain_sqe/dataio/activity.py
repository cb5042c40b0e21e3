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

__all__ = ["FLOOR_DBFS", "VOICING_THRESHOLD", "frame_activity", "has_speech", "speech_frames"]

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


def _loudest_frames(wav, sample_rate, hop, count):
    """The frames of :func:`_frames` (the same rows, with their ``window`` and ``max_lag``) of about
    the ``count`` loudest of ``wav``, ranked by the energy of the ``hop``-sample stretches that
    their windows cover (a ranking only: which frames count as voiced is :func:`_activity`'s)."""
    window = round(WINDOW_SECONDS * sample_rate)
    max_lag = int(sample_rate / PITCH_RANGE[0]) + 1
    total = 1 + wav.shape[0] // hop
    whole = wav.shape[0] // hop
    # energy of each stretch of hop samples (contiguous rows: no copy of the file, one pass)
    stretches = torch.linalg.vector_norm(wav[: whole * hop].view(whole, hop), dim=1).pow(2)
    stretches = torch.cat([stretches, wav[whole * hop :].pow(2).sum().reshape(1)])  # the rest
    reach = max(1, round(window / (2 * hop)))  # stretches on each side of a frame's centre
    energy = torch.nn.functional.avg_pool1d(
        torch.nn.functional.pad(stretches, (reach, reach - 1))[None, None], 2 * reach, stride=1)[0, 0]
    chosen = energy[:total].topk(min(count, total)).indices
    # rows of the zero-padded file's frames (one copy of the file: cheaper than gathering indices)
    right = max(0, (total - 1) * hop + window + max_lag - wav.shape[0] - window // 2)
    padded = torch.nn.functional.pad(wav, (window // 2, right))
    return padded.unfold(0, window + max_lag, hop)[chosen], window, max_lag


def _voiced_seconds(framed, sample_rate, hop):
    """Voiced time (s) of the frames of :func:`_frames` or :func:`_loudest_frames`."""
    frames, window, max_lag = framed
    level_db, periodicity = _activity(frames, window, max_lag, sample_rate)
    return int(_loud_and_voiced(level_db, periodicity)[1].sum()) * hop / sample_rate


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
    # The answer is the whole file's (voiced frames counted over all of them), but it needs only
    # enough voiced frames: first the file's loudest frames (those of 564 of 576 real test files
    # hold enough), then frames in blocks, stopping at the first block that completes the voiced
    # time (a speech file is decided in its first second or so). Analysing every frame halved `sqe
    # score`'s throughput (VQScore on 576 real files: 979-999 x against 1,632-1,900 x without the
    # check; benchmarks/RESULTS.md, session 28); the loudest frames first made the check 1.3-1.5
    # times faster again (session 30).
    wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
    if wav.shape[0] == 0:
        return False
    if _voiced_seconds(_loudest_frames(wav, sample_rate, hop, LOUDEST_FRAMES), sample_rate, hop) >= MIN_VOICED_SECONDS:
        return True
    voiced_frames = 0
    for start in range(0, 1 + wav.shape[0] // hop, SPEECH_CHECK_FRAMES):
        frames, window, max_lag = _frames(wav, sample_rate, hop, start, SPEECH_CHECK_FRAMES)
        level_db, periodicity = _activity(frames, window, max_lag, sample_rate)
        voiced_frames += int(_loud_and_voiced(level_db, periodicity)[1].sum())
        if voiced_frames * hop / sample_rate >= MIN_VOICED_SECONDS:
            return True
    return False
