"""Synthetic room impulse responses (RIRs), reverberation and T60 measurement.

The RIR model is the exponential-decay ("Polack") model, not a geometric room simulation:

- a direct-path impulse of amplitude 1 at sample 0 (so reverberant speech stays time-aligned
  with the dry speech it came from);
- 4-12 sparse early reflections between 1 and 50 ms, random signs, amplitudes on the decay curve;
- a late tail of Gaussian noise times ``exp(-6.91 t / T60)`` (amplitude falls by 60 dB in T60
  seconds), starting after the first reflection with a short fade-in, scaled to a random
  direct-to-reverberant ratio (DRR), and gently low-passed (air/wall absorption of high
  frequencies).

:func:`estimate_t60` measures T60 back from an RIR by Schroeder backward integration.
"""

import numpy as np
from scipy.signal import fftconvolve, lfilter

#: ln(10**3): amplitude decays by 60 dB when exp(-DECAY * t / T60) with t = T60.
DECAY = 3.0 * np.log(10.0)


def synthetic_rir(t60, rng, sample_rate=16000, drr_db=None):
    """Makes one RIR with reverberation time ``t60`` by the exponential-decay model (see module doc).

    Arguments
    ---------
    t60 : float
        Reverberation time in seconds (60 dB energy decay).
    rng : numpy.random.Generator
        The random source.
    sample_rate : int
        Rate.
    drr_db : float, optional
        Direct-to-reverberant energy ratio in dB; drawn in [-3, 8] dB, lower for longer T60,
        when None.

    Returns
    -------
    numpy.ndarray
        float32 RIR, shape ``[time]`` (length 1.5 x T60 + 50 ms), direct path at sample 0, peak 1.

    Example
    -------
    >>> import numpy as np
    >>> rir = synthetic_rir(0.5, np.random.default_rng(0))
    >>> float(rir[0]), abs(estimate_t60(rir) - 0.5) < 0.1
    (1.0, True)
    """
    length = int((1.5 * t60 + 0.05) * sample_rate)
    t = np.arange(length) / sample_rate
    envelope = np.exp(-DECAY * t / t60)
    rir = np.zeros(length)
    # early reflections: sparse impulses riding on the same decay
    for _ in range(rng.integers(4, 13)):
        delay = int(rng.uniform(0.001, 0.05) * sample_rate)
        rir[delay] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * envelope[delay]
    # late tail, fading in from the first reflection time
    onset = rng.uniform(0.002, 0.01)
    fade = np.clip((t - onset) / 0.01, 0.0, 1.0)
    tail = rng.standard_normal(length) * envelope * fade
    # mild low-pass so the tail is darker than the direct sound
    pole = rng.uniform(0.1, 0.5)
    tail = lfilter([1 - pole], [1, -pole], tail)
    if drr_db is None:
        drr_db = rng.uniform(-3.0, 8.0) - 4.0 * (t60 - 0.2)
    reverberant = np.sum(rir**2) + np.sum(tail**2)
    # direct energy is 1; scale tail + reflections to the wanted DRR
    scale = np.sqrt(10 ** (-drr_db / 10) / reverberant)
    rir = (rir + tail) * scale
    rir[0] = 1.0
    return (rir / np.max(np.abs(rir))).astype(np.float32)


def estimate_t60(rir, sample_rate=16000, decay_range=(-5.0, -25.0)):
    """Estimates T60 by Schroeder backward integration and a line fit over ``decay_range`` dB.

    The default fits the decay from -5 to -25 dB (T20) and extrapolates to 60 dB. A noise floor
    at the end of a measured RIR is subtracted and cut off before the integration.

    Arguments
    ---------
    rir : numpy.ndarray
        Impulse response, shape ``[time]``.
    sample_rate : int
        Its rate.
    decay_range : tuple of float
        The energy-decay-curve levels (dB) between which the line is fitted.

    Returns
    -------
    float
        T60 in seconds (nan when the curve never decays through the range, or when the
        estimate exceeds twice the analysed length).

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> rir = np.random.default_rng(0).standard_normal(16000) * np.exp(-6.91 * t / 0.4)
    >>> round(estimate_t60(rir), 1)
    0.4
    """
    energy = np.asarray(rir, dtype=np.float64) ** 2
    energy = energy[int(np.argmax(energy)) :]  # from the direct path on
    # Measured RIRs end in a noise floor, which flattens the decay curve: subtract the floor
    # power (taken from the last 10 %) and stop where the smoothed decay reaches floor + 3 dB.
    tail = energy[-max(1, len(energy) // 10) :]
    floor = float(np.mean(tail))
    hop = max(1, int(0.01 * sample_rate))
    frames = energy[: len(energy) // hop * hop].reshape(-1, hop).mean(axis=1)
    if floor > 0 and len(frames):
        below = np.flatnonzero(frames < 2.0 * floor)
        if len(below):
            energy = energy[: max(hop * 5, below[0] * hop)]
        energy = np.clip(energy - floor, 0.0, None)
    edc = np.cumsum(energy[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0] + 1e-30)
    high, low = max(decay_range), min(decay_range)
    index = np.flatnonzero((edc_db <= high) & (edc_db >= low))
    if len(index) < 2:
        return float("nan")
    slope = np.polyfit(index / sample_rate, edc_db[index], 1)[0]  # dB per second
    t60 = -60.0 / slope if slope < 0 else float("nan")
    # a decay far longer than the response itself is not a measurement (odd or truncated RIRs)
    return float(t60) if t60 <= 2.0 * len(energy) / sample_rate else float("nan")


def reverberate(wav, rir):
    """Convolves ``wav`` with ``rir``, keeps the input length and the input's RMS.

    Keeping the length and aligning on the direct path (sample 0 of our RIRs; the peak of measured
    ones, see :func:`align_rir`) keeps the reverberant speech time-aligned with the dry reference.

    Arguments
    ---------
    wav : numpy.ndarray
        Dry signal, shape ``[time]``.
    rir : numpy.ndarray
        Impulse response with its direct path at sample 0.

    Returns
    -------
    numpy.ndarray
        Reverberant signal, same shape and RMS as ``wav``.

    Example
    -------
    >>> import numpy as np
    >>> dry = np.random.default_rng(0).standard_normal(16000).astype("float32")
    >>> wet = reverberate(dry, synthetic_rir(0.3, np.random.default_rng(1)))
    >>> wet.shape, round(float(np.std(wet) / np.std(dry)), 2)
    ((16000,), 1.0)
    """
    wav = np.asarray(wav, dtype=np.float64)
    wet = fftconvolve(wav, np.asarray(rir, dtype=np.float64))[: len(wav)]
    wet *= np.sqrt(np.mean(wav**2) / (np.mean(wet**2) + 1e-20))
    return wet.astype(np.float32)


def align_rir(rir, pre_samples=0):
    """Drops what comes before the direct path (the largest peak) of a measured RIR.

    Arguments
    ---------
    rir : numpy.ndarray
        Impulse response, shape ``[time]``.
    pre_samples : int
        Samples kept before the peak.

    Returns
    -------
    numpy.ndarray
        The RIR starting ``pre_samples`` before its peak, scaled to peak 1.

    Example
    -------
    >>> import numpy as np
    >>> align_rir(np.array([0.0, 0.0, 0.5, 0.25]))
    array([1. , 0.5], dtype=float32)
    """
    rir = np.asarray(rir, dtype=np.float64)
    peak = int(np.argmax(np.abs(rir)))
    rir = rir[max(0, peak - pre_samples) :]
    return (rir / (np.max(np.abs(rir)) + 1e-20)).astype(np.float32)
