"""Intrusive (reference-based) metrics: PESQ, STOI/ESTOI and SI-SDR/SI-SNR.

Every function takes the reference (clean) and the degraded (processed) waveform as 1-D numpy
arrays or torch tensors of the same length at ``sample_rate`` and returns a float. Problems are
reported as :class:`MetricError` with a message naming the metric and the cause (for example
PESQ finding no speech), never as a silent NaN.
"""

import itertools
import warnings

import numpy as np

#: Shortest signal PESQ takes (its ``BufferTooShortError`` below this).
PESQ_MIN_SECONDS = 0.25
#: Longest signal given to the native PESQ code in one call. Its utterance table holds 50
#: entries and is not bounds-checked: a reference with more utterances (a 5-minute recording)
#: makes it segfault. Longer signals are refused, or measured in segments when asked
#: (:func:`set_pesq_segments`).
PESQ_MAX_SECONDS = 60.0
#: Shortest signal STOI takes: 30 frames of 25.6 ms at its 10 kHz rate (50 % overlap), 0.41 s.
STOI_MIN_SECONDS = (30 * 128 + 128) / 10000
#: How long signals are measured: ``{"pesq_segment_seconds": None or float}`` (see
#: :func:`set_pesq_segments`); notes on how the last values were measured (:func:`pop_notes`).
_SETTINGS = {"pesq_segment_seconds": None}
_NOTES = {}


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


def set_pesq_segments(seconds=None):
    """Measures PESQ of signals longer than :data:`PESQ_MAX_SECONDS` in segments, or refuses them.

    With ``seconds`` set, a long pair is cut into consecutive segments of about that length,
    PESQ is computed on each (segments where PESQ finds no speech are left out) and the
    duration-weighted mean is returned; :func:`pop_notes` then says how it was measured. With
    ``None`` (the default) a long pair is refused with a :class:`MetricError` before the native
    call. The setting is per process (each worker of the runner sets it per file).

    Arguments
    ---------
    seconds : float or None
        Segment length, between 1 s and :data:`PESQ_MAX_SECONDS`.

    Example
    -------
    >>> set_pesq_segments(30.0); set_pesq_segments(None)
    >>> set_pesq_segments(0.1)
    Traceback (most recent call last):
    ...
    ValueError: PESQ segments must last 1 to 60 s, not 0.1
    """
    if seconds is not None and not 1.0 <= float(seconds) <= PESQ_MAX_SECONDS:
        raise ValueError(f"PESQ segments must last 1 to {PESQ_MAX_SECONDS:g} s, not {seconds:g}")
    _SETTINGS["pesq_segment_seconds"] = None if seconds is None else float(seconds)


def pop_notes():
    """Returns and clears the notes on how the metrics computed since the last call were measured.

    Returns
    -------
    dict
        Metric name to note (for example ``{"pesq_wb": "mean of 10 segments of 30 s"}``); empty
        when everything was measured whole.

    Example
    -------
    >>> pop_notes()
    {}
    """
    notes = dict(_NOTES)
    _NOTES.clear()
    return notes


def pesq(ref, deg, sample_rate=16000, mode="wb"):
    """PESQ (ITU-T P.862.2 wide band or P.862 narrow band, MOS-LQO) with the ``pesq`` package.

    Signals longer than :data:`PESQ_MAX_SECONDS` are refused before the native call (it crashes
    on long recordings), unless :func:`set_pesq_segments` asked for a measure in segments.

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
        Unsupported rate/mode, silent signal, no utterance detected, too short (< 0.25 s), too
        long (> :data:`PESQ_MAX_SECONDS` without segments).

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
    seconds = ref.shape[0] / sample_rate
    if seconds < PESQ_MIN_SECONDS:
        raise MetricError(f"{name}: signal too short for PESQ ({seconds:.3f} s; it needs at least 0.25 s)")
    if seconds > PESQ_MAX_SECONDS:
        segment = _SETTINGS["pesq_segment_seconds"]
        if segment is None:
            raise MetricError(
                f"{name}: {seconds:.1f} s is longer than the {PESQ_MAX_SECONDS:g} s PESQ can measure "
                "in one piece (its native code crashes on long recordings); measure it in segments "
                "(sqe evaluate --pesq-segment SECONDS) or cut it"
            )
        return _segmented_pesq(ref, deg, sample_rate, mode, segment)
    return _pesq_call(ref, deg, sample_rate, mode)


def _segmented_pesq(ref, deg, sample_rate, mode, segment):
    """Duration-weighted mean PESQ over consecutive segments (a short tail joins the last one)."""
    name = f"pesq_{mode}"
    step = round(segment * sample_rate)
    bounds = list(range(0, ref.shape[0], step))
    if len(bounds) > 1 and ref.shape[0] - bounds[-1] < step // 2:
        bounds.pop()  # a tail shorter than half a segment is measured with the segment before it
    bounds.append(ref.shape[0])
    values, weights, skipped = [], [], 0
    for start, end in itertools.pairwise(bounds):
        try:
            values.append(_pesq_call(ref[start:end], deg[start:end], sample_rate, mode))
            weights.append(end - start)
        except MetricError:
            skipped += 1  # silent or speechless segment
    if not values:
        raise MetricError(f"{name}: PESQ found no speech in any of the {skipped} segments of {segment:g} s")
    note = f"{name}: mean of {len(values)} segments of {segment:g} s"
    if skipped:
        note += f" ({skipped} without speech left out)"
    _NOTES[name] = note
    return float(np.average(values, weights=weights))


def _pesq_call(ref, deg, sample_rate, mode):
    """The native PESQ call, its errors turned into :class:`MetricError`."""
    name = f"pesq_{mode}"
    if not (np.any(ref) and np.any(deg)):
        raise MetricError(f"{name}: a segment is digital silence (PESQ is undefined)")
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
    if ref.shape[0] / sample_rate < STOI_MIN_SECONDS:
        raise MetricError(
            f"{name}: signal too short for STOI ({ref.shape[0] / sample_rate:.3f} s; it needs at "
            f"least {STOI_MIN_SECONDS:.2f} s of speech)"
        )
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
