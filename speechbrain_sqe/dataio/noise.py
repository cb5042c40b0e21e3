"""Noise families synthesised by the project (no recorded noise is used by the embedded corpus).

=============  ===========================================================================
family         what it is
=============  ===========================================================================
white          Gaussian white noise (flat spectrum)
pink           1/f noise (-3 dB/octave)
brown          1/f^2 noise (-6 dB/octave), rumble-like
babble         3-6 other talkers (speech of other voices/sentences) summed
hum            mains hum: 50 or 60 Hz with harmonics, odd-harmonic buzz, slow wobble
alarm          beeps (tone bursts), sirens (FM sweeps) or two-tone alternations
clicks         impulsive clicks and crackles (Poisson bursts) over a faint pink bed
modulated      white/pink/brown noise amplitude-modulated at 0.5-8 Hz
=============  ===========================================================================

Every generator returns float32 noise of unit RMS; the mixer sets the level.
"""

import numpy as np

from speechbrain_sqe.dataio.levels import active_level_db, colored_noise

NOISE_FAMILIES = ("white", "pink", "brown", "babble", "hum", "alarm", "clicks", "modulated")


def _unit_rms(noise):
    noise = np.asarray(noise, dtype=np.float64)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def hum_noise(length, rng, sample_rate=16000):
    """Mains hum: a 50 or 60 Hz fundamental with decaying harmonics (odd ones stronger).

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> hum = hum_noise(16000, np.random.default_rng(0))
    >>> peak_hz = np.argmax(np.abs(np.fft.rfft(hum))[:200])  # 1 Hz bins
    >>> int(peak_hz) % 50 == 0 or int(peak_hz) % 60 == 0
    True
    """
    t = np.arange(length) / sample_rate
    f0 = rng.choice([50.0, 60.0]) * (1 + rng.uniform(-0.003, 0.003))
    harmonics = int(min(rng.integers(6, 30), (sample_rate / 2 - 100) // f0))
    tilt = rng.uniform(0.5, 1.5)
    out = np.zeros(length)
    for k in range(1, harmonics + 1):
        amp = k**-tilt * (rng.uniform(1.0, 3.0) if k % 2 else rng.uniform(0.2, 1.0))
        out += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    wobble = 1 + rng.uniform(0.0, 0.2) * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)
    out = _unit_rms(out * wobble)
    return _unit_rms(out + 10 ** (-rng.uniform(20, 35) / 20) * colored_noise(length, 1.0, rng, sample_rate))


def alarm_noise(length, rng, sample_rate=16000):
    """Alarms and tones: beeping tone bursts, a siren (sinusoidal FM sweep) or a two-tone alternation.

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> alarm_noise(8000, np.random.default_rng(1)).shape
    (8000,)
    """
    t = np.arange(length) / sample_rate
    kind = rng.choice(["beeps", "siren", "two_tone", "chirps"])
    if kind == "siren":
        centre, depth, rate = rng.uniform(600, 1500), rng.uniform(150, 600), rng.uniform(0.2, 3.0)
        freq = centre + depth * np.sin(2 * np.pi * rate * t)
        gate = np.ones(length)
    elif kind == "chirps":  # repeated linear sweeps
        period = rng.uniform(0.2, 1.0)
        low, high = sorted(rng.uniform(300, 4000, size=2))
        freq = low + (high - low) * ((t % period) / period)
        gate = np.ones(length)
    elif kind == "two_tone":
        period = rng.uniform(0.3, 1.2)
        f1, f2 = rng.uniform(400, 2500, size=2)
        freq = np.where((t % period) < period / 2, f1, f2)
        gate = np.ones(length)
    else:  # beeps: on/off tone bursts
        period, duty = rng.uniform(0.15, 1.0), rng.uniform(0.2, 0.7)
        freq = np.full(length, rng.uniform(500, 3500))
        gate = ((t % period) < duty * period).astype(float)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    tone = np.sin(phase) + rng.uniform(0, 0.5) * np.sin(2 * phase) + rng.uniform(0, 0.3) * np.sin(3 * phase)
    ramp = int(0.005 * sample_rate)  # soften the gate edges (5 ms) as real buzzers do
    gate = np.convolve(gate, np.ones(ramp) / ramp, mode="same")
    out = _unit_rms(tone * gate)
    return _unit_rms(out + 10 ** (-rng.uniform(25, 40) / 20) * colored_noise(length, 1.0, rng, sample_rate))


def click_noise(length, rng, sample_rate=16000):
    """Impulsive noise: Poisson-timed clicks (short decaying bursts) over a faint pink bed.

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> clicks = click_noise(16000, np.random.default_rng(0))
    >>> float(np.max(np.abs(clicks))) > 5.0  # impulsive: high crest factor
    True
    """
    rate = rng.uniform(2.0, 30.0)
    count = max(1, rng.poisson(rate * length / sample_rate))
    out = np.zeros(length)
    for start in rng.integers(0, length, size=count):
        size = int(rng.uniform(0.0005, 0.006) * sample_rate) + 1
        burst = rng.standard_normal(size) * np.exp(-np.arange(size) / (size / 4.0))
        stop = min(length, start + size)
        out[start:stop] += 10 ** (rng.uniform(-20, 0) / 20) * burst[: stop - start]
    out = _unit_rms(out)
    return _unit_rms(out + 10 ** (-rng.uniform(25, 40) / 20) * colored_noise(length, 1.0, rng, sample_rate))


def modulated_noise(length, rng, sample_rate=16000):
    """Broadband noise whose amplitude is modulated at 0.5-8 Hz (sine or smoothed square).

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate.

    Returns
    -------
    numpy.ndarray
        Unit-RMS noise, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> modulated_noise(16000, np.random.default_rng(0)).shape
    (16000,)
    """
    t = np.arange(length) / sample_rate
    carrier = colored_noise(length, float(rng.choice([0.0, 1.0, 2.0])), rng, sample_rate)
    rate, depth = rng.uniform(0.5, 8.0), rng.uniform(0.5, 1.0)
    wave = np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:
        wave = np.tanh(4 * wave)  # closer to on/off (machinery, wipers)
    return _unit_rms(carrier * (1 + depth * wave))


def babble_noise(length, rng, talkers, sample_rate=16000):
    """Babble: the sum of several talkers, each looped to ``length`` from a random offset.

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        Draws offsets and per-talker gains (+-3 dB around equal active levels).
    talkers : list of numpy.ndarray
        Speech of each talker (other voices and sentences than the target utterance).
    sample_rate : int
        Rate.

    Returns
    -------
    numpy.ndarray
        Unit-RMS babble, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> talkers = [np.sin(np.arange(4000) / (3 + k)) for k in range(4)]
    >>> babble_noise(10000, rng, talkers).shape
    (10000,)
    """
    if not talkers:
        raise ValueError("babble needs at least one talker")
    out = np.zeros(length)
    for speech in talkers:
        speech = np.asarray(speech, dtype=np.float64)
        level = active_level_db(speech, sample_rate)
        if not np.isfinite(level):
            continue
        looped = np.tile(speech, length // len(speech) + 2)
        start = rng.integers(0, len(speech))
        gain = 10 ** ((rng.uniform(-3, 3) - level) / 20)
        out += gain * looped[start : start + length]
    return _unit_rms(out)


def make_noise(family, length, rng, sample_rate=16000, talkers=None):
    """Synthesises ``length`` samples of one noise family (see :data:`NOISE_FAMILIES`).

    Arguments
    ---------
    family : str
        One of :data:`NOISE_FAMILIES`.
    length : int
        Number of samples.
    rng : numpy.random.Generator
        The random source (the noise is a pure function of its state).
    sample_rate : int
        Rate.
    talkers : list of numpy.ndarray, optional
        Speech for ``babble`` (required for that family only).

    Returns
    -------
    numpy.ndarray
        float32 noise of unit RMS, shape ``[length]``.

    Example
    -------
    >>> import numpy as np
    >>> [make_noise(f, 800, np.random.default_rng(0)).shape for f in ("white", "hum")]
    [(800,), (800,)]
    """
    if family == "white":
        return colored_noise(length, 0.0, rng, sample_rate)
    if family == "pink":
        return colored_noise(length, 1.0, rng, sample_rate)
    if family == "brown":
        return colored_noise(length, 2.0, rng, sample_rate)
    if family == "babble":
        return babble_noise(length, rng, talkers or [], sample_rate)
    if family == "hum":
        return hum_noise(length, rng, sample_rate)
    if family == "alarm":
        return alarm_noise(length, rng, sample_rate)
    if family == "clicks":
        return click_noise(length, rng, sample_rate)
    if family == "modulated":
        return modulated_noise(length, rng, sample_rate)
    raise ValueError(f"unknown noise family {family!r}; known: {', '.join(NOISE_FAMILIES)}")
