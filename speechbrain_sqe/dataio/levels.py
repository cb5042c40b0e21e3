"""Level and silence handling of speech: active level, normalisation, pause trimming, noise floor.

Levels are in dB relative to full scale (an RMS of 1.0 is 0 dBFS). The active level is a
simplified ITU-T P.56: the mean power over 20 ms frames within 40 dB of the loudest frame, so
pauses do not lower the level of a sentence.

Why a noise floor: TTS pauses are exact digital zeros, which never occurs in a recording (there is
always microphone and room noise). Models trained on such "too clean" speech learn that
silence means zeros and transfer badly to real recordings. :func:`add_noise_floor` adds a very
low white+pink noise (by default 60-70 dB below the speech level, drawn per utterance).
"""

import numpy as np

#: Default speech level of the corpus in dBFS.
TARGET_LEVEL_DB = -26.0


def _frame_power(wav, frame):
    count = max(1, len(wav) // frame)
    frames = np.asarray(wav[: count * frame], dtype=np.float64).reshape(count, frame)
    return (frames**2).mean(axis=1)


def active_level_db(wav, sample_rate=16000, dynamic_range_db=40.0):
    """Active speech level in dBFS (mean power of frames within ``dynamic_range_db`` of the loudest).

    Arguments
    ---------
    wav : numpy.ndarray
        Waveform, shape ``[time]``.
    sample_rate : int
        Its rate.
    dynamic_range_db : float
        Frames quieter than the loudest by more than this are pauses.

    Returns
    -------
    float
        The level in dBFS (-inf for digital silence).

    Example
    -------
    >>> import numpy as np
    >>> tone = 0.1 * np.sin(np.arange(16000) / 3.0)
    >>> round(active_level_db(np.concatenate([tone, np.zeros(16000)])), 1)  # pause ignored
    -23.0
    """
    power = _frame_power(wav, int(0.02 * sample_rate))
    if power.max() <= 0:
        return float("-inf")
    active = power >= power.max() * 10 ** (-dynamic_range_db / 10)
    return float(10 * np.log10(power[active].mean()))


def normalize_level(wav, target_db=TARGET_LEVEL_DB, sample_rate=16000):
    """Scales ``wav`` so that its active level is ``target_db`` dBFS.

    Arguments
    ---------
    wav : numpy.ndarray
        Waveform, shape ``[time]``.
    target_db : float
        Wanted active level.
    sample_rate : int
        Its rate.

    Returns
    -------
    numpy.ndarray
        The scaled waveform (unchanged when silent).

    Example
    -------
    >>> import numpy as np
    >>> out = normalize_level(0.5 * np.sin(np.arange(16000) / 3.0), -26.0)
    >>> round(active_level_db(out), 2)
    -26.0
    """
    level = active_level_db(wav, sample_rate)
    if not np.isfinite(level):
        return wav
    return (wav * 10 ** ((target_db - level) / 20)).astype(np.float32)


def trim_pauses(wav, rng, sample_rate=16000, edge=(0.1, 0.2), max_pause=0.5, pause=(0.25, 0.45), threshold_db=-45.0):
    """Sets leading/trailing silence to ``edge`` seconds and shortens long internal pauses.

    TTS engines leave long silences around and inside sentences (or none at all before the first
    word); real read speech has natural pauses of a few hundred milliseconds. Cuts fall in
    near-silence and get a 5 ms cross-fade; missing edge silence is padded with zeros.

    Arguments
    ---------
    wav : numpy.ndarray
        Waveform, shape ``[time]``.
    rng : numpy.random.Generator
        Draws the kept edge and pause lengths.
    sample_rate : int
        Its rate.
    edge : tuple of float
        Range of the silence kept before the first and after the last speech frame (seconds).
    max_pause : float
        Internal pauses longer than this (seconds) are shortened...
    pause : tuple of float
        ...to a length drawn from this range (seconds).
    threshold_db : float
        A 10 ms frame is silent when its power is this far below the loudest frame.

    Returns
    -------
    numpy.ndarray
        The trimmed waveform.

    Example
    -------
    >>> import numpy as np
    >>> burst = 0.1 * np.sin(np.arange(8000) / 3.0)
    >>> wav = np.concatenate([np.zeros(16000), burst, np.zeros(32000), burst, np.zeros(16000)])
    >>> out = trim_pauses(wav, np.random.default_rng(0))
    >>> 1.3 < len(out) / 16000 < 1.9  # 0.5 + 0.5 s of speech, pause <= 0.45 s, edges <= 0.2 s
    True
    >>> len(trim_pauses(burst, np.random.default_rng(0))) > len(burst) + 0.2 * 16000  # padded
    True
    """
    hop = int(0.01 * sample_rate)
    power = _frame_power(wav, hop)
    if power.max() <= 0:
        return wav
    speech = np.flatnonzero(power > power.max() * 10 ** (threshold_db / 10))
    first, last = speech[0] * hop, min(len(wav), (speech[-1] + 1) * hop)
    lead, trail = int(rng.uniform(*edge) * sample_rate), int(rng.uniform(*edge) * sample_rate)
    # speech may start/end right at the file edge: pad with zeros (the noise floor comes later)
    pieces = [np.zeros(max(0, lead - first), dtype=np.float32)]
    start = max(0, first - lead)
    # internal pauses: gaps between consecutive speech frames
    gaps = np.flatnonzero(np.diff(speech) * hop > max_pause * sample_rate)
    for gap in gaps:
        gap_start, gap_end = (speech[gap] + 1) * hop, speech[gap + 1] * hop
        keep = int(rng.uniform(*pause) * sample_rate)
        pieces.append(wav[start : gap_start + keep // 2])
        start = gap_end - (keep - keep // 2)
    pieces.append(wav[start : min(len(wav), last + trail)])
    pieces.append(np.zeros(max(0, last + trail - len(wav)), dtype=np.float32))
    return _crossfade_concat([p for p in pieces if len(p)], int(0.005 * sample_rate))


def _crossfade_concat(pieces, fade):
    out = np.asarray(pieces[0], dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for piece in pieces[1:]:
        piece = np.asarray(piece, dtype=np.float32)
        if len(out) < fade or len(piece) < fade:
            out = np.concatenate([out, piece])
            continue
        mixed = out[-fade:] * ramp[::-1] + piece[:fade] * ramp
        out = np.concatenate([out[:-fade], mixed, piece[fade:]])
    return out


def colored_noise(length, exponent, rng, sample_rate=16000, low_cut=20.0):
    """Gaussian noise with a power spectrum proportional to ``1 / f**exponent``, unit RMS.

    ``exponent`` 0 is white, 1 pink (-3 dB/octave), 2 brown (-6 dB/octave). The shaping is done in
    the frequency domain; below ``low_cut`` Hz the spectrum is held flat to avoid a huge DC drift.

    Arguments
    ---------
    length : int
        Number of samples.
    exponent : float
        Spectral slope exponent.
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate (sets where ``low_cut`` falls).
    low_cut : float
        Frequency in Hz under which the spectrum stops rising.

    Returns
    -------
    numpy.ndarray
        float32 noise, shape ``[length]``, RMS 1.

    Example
    -------
    >>> import numpy as np
    >>> pink = colored_noise(16000, 1.0, np.random.default_rng(0))
    >>> pink.shape, round(float(np.sqrt(np.mean(pink ** 2))), 3)
    ((16000,), 1.0)
    """
    spectrum = np.fft.rfft(rng.standard_normal(length))
    if exponent:
        freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
        spectrum *= np.maximum(freqs, low_cut) ** (-exponent / 2.0)
    noise = np.fft.irfft(spectrum, n=length)
    noise -= noise.mean()
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise_floor(wav, rng, floor_db=(-70.0, -60.0), sample_rate=16000):
    """Adds a very low white+pink noise floor, ``floor_db`` below the active speech level.

    Arguments
    ---------
    wav : numpy.ndarray
        Clean speech, shape ``[time]``.
    rng : numpy.random.Generator
        Draws the floor level, its white/pink balance and the noise.
    floor_db : float or tuple of float or None
        Floor level relative to the active speech level in dB: a fixed value, a ``(low, high)``
        range drawn per utterance, or None for no floor.
    sample_rate : int
        Its rate.

    Returns
    -------
    numpy.ndarray
        Speech plus floor (no exact digital zeros remain at 16-bit precision for usual levels).

    Example
    -------
    >>> import numpy as np
    >>> wav = np.concatenate([0.05 * np.sin(np.arange(16000) / 3.0), np.zeros(8000)])
    >>> out = add_noise_floor(wav, np.random.default_rng(0), -60.0)
    >>> pause_db = 10 * np.log10(np.mean(out[16000:] ** 2))
    >>> round(float(pause_db - active_level_db(wav)))
    -60
    """
    if floor_db is None or floor_db is False:
        return wav
    level = np.atleast_1d(np.asarray(floor_db, dtype=float))
    floor = float(rng.uniform(level.min(), level.max())) if len(level) > 1 else float(level[0])
    speech_db = active_level_db(wav, sample_rate)
    if not np.isfinite(speech_db):
        speech_db = TARGET_LEVEL_DB
    mix = rng.uniform(0.3, 0.7)  # share of pink in the floor's power
    noise = np.sqrt(1 - mix) * colored_noise(len(wav), 0.0, rng, sample_rate)
    noise += np.sqrt(mix) * colored_noise(len(wav), 1.0, rng, sample_rate)
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    return (wav + noise * 10 ** ((speech_db + floor) / 20)).astype(np.float32)
