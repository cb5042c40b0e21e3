"""Mixing speech with noise at a given SNR, with optional reverberation.

SNR convention: ``10 log10(P_speech / P_noise)`` with both powers taken over the whole file
(silences are already trimmed to natural pauses). For reverberant pairs the speech power is
that of the *reverberant* speech that is in the mixture (scaled to the dry speech RMS, see
:func:`~speechbrain_sqe.dataio.rooms.reverberate`), while the clean reference of the pair stays the
*dry* speech: a model is asked to recover dry speech from a noisy, reverberant recording.
"""

import numpy as np

from speechbrain_sqe.dataio.rooms import reverberate

#: Largest absolute sample value written; a pair that would exceed it is scaled down as a whole.
PEAK_LIMIT = 0.99


def signal_power(wav):
    """Mean power of a signal.

    Arguments
    ---------
    wav : numpy.ndarray
        Signal, any shape.

    Returns
    -------
    float
        ``mean(wav ** 2)``.

    Example
    -------
    >>> signal_power(np.ones(4) * 0.5)
    0.25
    """
    return float(np.mean(np.asarray(wav, dtype=np.float64) ** 2))


def measure_snr(speech, noise):
    """SNR in dB between a speech signal and a noise signal (whole-file powers).

    Arguments
    ---------
    speech : numpy.ndarray
        Speech, shape ``[time]``.
    noise : numpy.ndarray
        Noise, same shape.

    Returns
    -------
    float
        ``10 log10(P_speech / P_noise)``.

    Example
    -------
    >>> round(measure_snr(np.ones(10), 0.1 * np.ones(10)), 1)
    20.0
    """
    return float(10 * np.log10(signal_power(speech) / max(signal_power(noise), 1e-30)))


def fit_length(noise, length, rng=None):
    """Crops (at a random offset when ``rng`` is given) or loops ``noise`` to ``length`` samples.

    Arguments
    ---------
    noise : numpy.ndarray
        Noise, shape ``[time]``.
    length : int
        Wanted length.
    rng : numpy.random.Generator, optional
        Draws the start offset; None starts at 0.

    Returns
    -------
    numpy.ndarray
        Noise of shape ``[length]``.

    Example
    -------
    >>> fit_length(np.arange(3.0), 7).tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    """
    noise = np.asarray(noise)
    if len(noise) < length:
        noise = np.tile(noise, length // len(noise) + 1)
    start = 0 if rng is None or len(noise) == length else int(rng.integers(0, len(noise) - length + 1))
    return noise[start : start + length]


def make_pair(clean, noise, snr_db, rir=None, peak_limit=PEAK_LIMIT):
    """Makes a (clean reference, noisy mixture) pair.

    ``noisy = reverberate(clean, rir) + g * noise`` with ``g`` setting the SNR against the speech
    in the mixture. When the mixture would clip, clean and noisy are scaled by the same gain, so
    ``noisy - clean`` is still exactly the added noise for dry pairs.

    Arguments
    ---------
    clean : numpy.ndarray
        Dry clean speech, shape ``[time]``.
    noise : numpy.ndarray
        Noise, shape ``[time]`` or longer/shorter (see :func:`fit_length`).
    snr_db : float
        Wanted SNR in dB.
    rir : numpy.ndarray, optional
        Impulse response (direct path at sample 0); None for a dry mixture.
    peak_limit : float
        Largest absolute sample value of the outputs.

    Returns
    -------
    clean : numpy.ndarray
        The reference (dry speech), float32.
    noisy : numpy.ndarray
        The mixture, float32.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> speech = 0.05 * np.sin(np.arange(16000) / 4.0)
    >>> clean, noisy = make_pair(speech, rng.standard_normal(16000), 5.0)
    >>> round(measure_snr(clean, noisy - clean), 2)
    5.0
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(fit_length(noise, len(clean)), dtype=np.float64)
    speech = clean if rir is None else np.asarray(reverberate(clean, rir), dtype=np.float64)
    gain = np.sqrt(signal_power(speech) / (max(signal_power(noise), 1e-30) * 10 ** (snr_db / 10)))
    noisy = speech + gain * noise
    peak = max(np.max(np.abs(noisy)), np.max(np.abs(clean)))
    scale = min(1.0, peak_limit / peak) if peak > 0 else 1.0
    return (clean * scale).astype(np.float32), (noisy * scale).astype(np.float32)
