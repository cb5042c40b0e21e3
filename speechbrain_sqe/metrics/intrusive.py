"""Intrusive (reference-based) metrics: PESQ, STOI/ESTOI and SI-SDR/SI-SNR.

Every function takes the reference (clean) and the degraded (processed) waveform as 1-D numpy
arrays or torch tensors of the same length at ``sample_rate`` and returns a float. Problems are
reported as :class:`MetricError` with a message naming the metric and the cause (for example
PESQ finding no speech), never as a silent NaN.
"""

import warnings

import numpy as np


class MetricError(ValueError):
    """Raised when a metric cannot be computed; the message names the metric and the cause."""


class MetricUnavailableError(ImportError):
    """Raised when a metric cannot run here at all (a missing optional package, a model that
    cannot be loaded); the message says why and what to install. Unlike :class:`MetricError`
    it is never recorded per file: it stops the evaluation."""


def as_numpy(wav, name="signal"):
    """Returns a waveform as a 1-D float64 numpy array.

    Arguments
    ---------
    wav : numpy.ndarray, torch.Tensor or sequence of floats
        A mono waveform, shape ``[time]`` (a ``[1, time]`` array is squeezed).
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        The samples, float64, shape ``[time]``.

    Example
    -------
    >>> as_numpy([0.0, 0.5]).dtype
    dtype('float64')
    """
    if hasattr(wav, "detach"):  # torch tensor, without importing torch here
        wav = wav.detach().cpu().numpy()
    array = np.asarray(wav, dtype=np.float64)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise MetricError(f"{name}: expected a mono waveform [time], got shape {array.shape}")
    return array


def _check_pair(ref, deg, metric):
    ref = as_numpy(ref, "reference")
    deg = as_numpy(deg, "degraded")
    if ref.shape != deg.shape:
        raise MetricError(
            f"{metric}: reference and degraded lengths differ ({ref.shape[0]} vs {deg.shape[0]} "
            "samples); trim them first (compute_metrics does)"
        )
    if ref.shape[0] == 0:
        raise MetricError(f"{metric}: empty signals")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        raise MetricError(f"{metric}: signals hold NaN or Inf samples")
    return ref, deg


def pesq(ref, deg, sample_rate=16000, mode="wb"):
    """PESQ (ITU-T P.862.2 wide band or P.862 narrow band, MOS-LQO) with the ``pesq`` package.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        16000 (``wb`` or ``nb``) or 8000 (``nb`` only).
    mode : str
        ``"wb"`` (wide band, P.862.2) or ``"nb"`` (narrow band, P.862 + P.862.1 mapping).

    Returns
    -------
    float
        MOS-LQO, about 1.0 to 4.64 (wide band) or 4.55 (narrow band).

    Raises
    ------
    MetricError
        Unsupported rate/mode, silent signal, no utterance detected, too short (< 0.25 s).

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> voiced = np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.2
    >>> round(pesq(voiced, voiced), 2)
    4.64
    """
    name = f"pesq_{mode}"
    if mode not in ("wb", "nb"):
        raise MetricError(f"pesq: mode must be 'wb' or 'nb', got {mode!r}")
    if sample_rate not in (8000, 16000) or (mode == "wb" and sample_rate != 16000):
        raise MetricError(
            f"{name}: PESQ {'wide band needs 16000 Hz' if mode == 'wb' else 'needs 8000 or 16000 Hz'},"
            f" got {sample_rate} Hz"
        )
    ref, deg = _check_pair(ref, deg, name)
    for label, signal in (("reference", ref), ("degraded signal", deg)):
        if not np.any(signal):
            raise MetricError(f"{name}: the {label} is digital silence (PESQ is undefined)")
    import pesq as pesq_lib

    try:
        return float(pesq_lib.pesq(sample_rate, ref, deg, mode))
    except pesq_lib.NoUtterancesError as error:
        raise MetricError(
            f"{name}: PESQ detected no utterance (no speech activity found in the reference or "
            "degraded signal: silent, too quiet or not speech)"
        ) from error
    except pesq_lib.BufferTooShortError as error:
        raise MetricError(f"{name}: signal too short for PESQ (it needs at least 0.25 s)") from error
    except (pesq_lib.PesqError, ValueError, ArithmeticError) as error:
        raise MetricError(f"{name}: PESQ failed ({type(error).__name__}: {_text(error)})") from error


def _text(error):
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    return str(message) or type(error).__name__


def stoi(ref, deg, sample_rate=16000, extended=False):
    """STOI (Taal et al. 2011) or extended STOI (Jensen and Taal 2016) with ``pystoi``.

    ``pystoi`` resamples to 10 kHz and removes silent frames first, as the reference MATLAB code.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate of both.
    extended : bool
        Compute ESTOI instead of STOI.

    Returns
    -------
    float
        STOI in [0, 1] (ESTOI can be slightly negative).

    Raises
    ------
    MetricError
        When fewer than 30 speech frames (about 0.4 s) remain after silence removal.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(16000) * 0.1
    >>> round(stoi(x, x), 3)
    1.0
    """
    name = "estoi" if extended else "stoi"
    ref, deg = _check_pair(ref, deg, name)
    from pystoi import stoi as stoi_lib

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = stoi_lib(ref, deg, sample_rate, extended=extended)
    for warning in caught:
        if "Not enough STFT frames" in str(warning.message):
            raise MetricError(
                f"{name}: fewer than 30 speech frames (about 0.4 s) after silence removal: "
                "the signal is too short or silent"
            )
    return float(value)


def si_sdr(ref, deg, zero_mean=False):
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    The reference is scaled by ``alpha = <deg, ref> / <ref, ref>``; then
    ``SI-SDR = 10 log10(|alpha ref|^2 / |deg - alpha ref|^2)``. Scaling ``deg`` (or ``ref``) by
    any non-zero factor leaves it unchanged. A perfect estimate gives a large finite value
    (the noise energy is floored at machine epsilon times the target energy: at most 156.5 dB).

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Estimated (degraded) waveform, same length.
    zero_mean : bool
        Remove the mean of both signals first (``True`` gives SI-SNR, see :func:`si_snr`).

    Returns
    -------
    float
        SI-SDR in dB.

    Example
    -------
    >>> import numpy as np
    >>> ref = np.array([1.0, -1.0, 1.0, -1.0])
    >>> noise = np.array([1.0, 1.0, -1.0, -1.0]) * 0.1   # orthogonal to ref
    >>> round(si_sdr(ref, 3 * (ref + noise)), 6)   # 10 log10(4 / 0.04)
    20.0
    """
    name = "si_snr" if zero_mean else "si_sdr"
    ref, deg = _check_pair(ref, deg, name)
    if zero_mean:
        ref = ref - ref.mean()
        deg = deg - deg.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy == 0.0:
        raise MetricError(f"{name}: the reference is {'constant' if zero_mean else 'all zeros'}")
    target = (np.dot(deg, ref) / ref_energy) * ref
    noise = deg - target
    target_energy = float(np.dot(target, target))
    if target_energy == 0.0:
        raise MetricError(f"{name}: the estimate is orthogonal to the reference (SI-SDR = -inf)")
    noise_energy = max(float(np.dot(noise, noise)), np.finfo(np.float64).eps * target_energy)
    return float(10.0 * np.log10(target_energy / noise_energy))


def si_snr(ref, deg):
    """Scale-invariant signal-to-noise ratio in dB: :func:`si_sdr` of the zero-mean signals.

    This is the usual SI-SNR of speech separation (Luo and Mesgarani, Conv-TasNet).

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Estimated waveform, same length.

    Returns
    -------
    float
        SI-SNR in dB.

    Example
    -------
    >>> import numpy as np
    >>> ref = np.array([1.0, -1.0, 1.0, -1.0])
    >>> round(si_snr(ref, 0.5 + ref), 6) > 100   # a DC offset does not count
    True
    """
    return si_sdr(ref, deg, zero_mean=True)
