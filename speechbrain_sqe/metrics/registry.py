"""The registry of metric names and the functions computing a set of them on one pair.

=============== ========= =====================================================
name            reference what
=============== ========= =====================================================
``pesq_wb``     yes       PESQ wide band (P.862.2) MOS-LQO, 16 kHz only
``pesq_nb``     yes       PESQ narrow band (P.862 + P.862.1) MOS-LQO, 8/16 kHz
``stoi``        yes       STOI (pystoi)
``estoi``       yes       extended STOI (pystoi)
``si_sdr``      yes       scale-invariant SDR, dB (no mean removal)
``si_snr``      yes       scale-invariant SNR, dB (zero-mean SI-SDR)
``csig``        yes       composite signal distortion (Hu and Loizou), 1 to 5
``cbak``        yes       composite background intrusiveness, 1 to 5
``covl``        yes       composite overall quality, 1 to 5
``dnsmos_ovrl`` no        DNSMOS P.835 overall (``eval`` extra)
``dnsmos_sig``  no        DNSMOS P.835 signal (``eval`` extra)
``dnsmos_bak``  no        DNSMOS P.835 background (``eval`` extra)
``dnsmos_p808`` no        DNSMOS P.808 (``eval`` extra)
=============== ========= =====================================================

Higher is better for all of them. Metrics computed together (the composite trio reuses
``pesq_wb``; the four DNSMOS scores come from one pass) are computed once per pair.
"""

import math
from collections import namedtuple

import numpy as np

from speechbrain_sqe.metrics import composite as composite_module
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import intrusive
from speechbrain_sqe.metrics.intrusive import MetricError, as_numpy

MetricSpec = namedtuple("MetricSpec", ["name", "intrusive", "group", "description"])

#: All metrics, by name, in display order.
METRICS = {
    spec.name: spec
    for spec in [
        MetricSpec("pesq_wb", True, "pesq_wb", "PESQ wide band MOS-LQO (16 kHz)"),
        MetricSpec("pesq_nb", True, "pesq_nb", "PESQ narrow band MOS-LQO"),
        MetricSpec("stoi", True, "stoi", "short-time objective intelligibility"),
        MetricSpec("estoi", True, "estoi", "extended STOI"),
        MetricSpec("si_sdr", True, "si_sdr", "scale-invariant SDR (dB)"),
        MetricSpec("si_snr", True, "si_snr", "scale-invariant SNR, zero mean (dB)"),
        MetricSpec("csig", True, "composite", "composite signal distortion (1-5)"),
        MetricSpec("cbak", True, "composite", "composite background intrusiveness (1-5)"),
        MetricSpec("covl", True, "composite", "composite overall quality (1-5)"),
        MetricSpec("dnsmos_ovrl", False, "dnsmos", "DNSMOS P.835 overall"),
        MetricSpec("dnsmos_sig", False, "dnsmos", "DNSMOS P.835 signal"),
        MetricSpec("dnsmos_bak", False, "dnsmos", "DNSMOS P.835 background"),
        MetricSpec("dnsmos_p808", False, "dnsmos", "DNSMOS P.808"),
    ]
}

#: Metrics needing a reference signal.
INTRUSIVE_METRICS = tuple(name for name, spec in METRICS.items() if spec.intrusive)
#: Metrics computed from the degraded signal alone.
NONINTRUSIVE_METRICS = tuple(name for name, spec in METRICS.items() if not spec.intrusive)
#: Metrics of ``sqe evaluate`` when none are named: all intrusive ones that are cheap
#: (the composite trio reuses the PESQ computation; SI-SNR and PESQ NB are left to the asking).
DEFAULT_METRICS = ("pesq_wb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl")


def resolve_metrics(names=None):
    """Validates metric names and expands the aliases ``default``, ``all``, ``intrusive`` and
    ``nonintrusive``; duplicates are dropped, order kept.

    Arguments
    ---------
    names : str or list of str, optional
        Metric names or aliases; ``None`` gives :data:`DEFAULT_METRICS`.

    Returns
    -------
    list of str
        The metric names.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).

    Example
    -------
    >>> resolve_metrics(["stoi", "default"])[:3]
    ['stoi', 'pesq_wb', 'estoi']
    """
    if names is None:
        names = ["default"]
    if isinstance(names, str):
        names = [names]
    aliases = {
        "default": DEFAULT_METRICS,
        "all": tuple(METRICS),
        "intrusive": INTRUSIVE_METRICS,
        "nonintrusive": NONINTRUSIVE_METRICS,
    }
    resolved = []
    for name in names:
        expanded = aliases.get(name, (name,))
        for item in expanded:
            if item not in METRICS:
                raise ValueError(
                    f"unknown metric {item!r}; known metrics: {', '.join(METRICS)} "
                    f"(or {', '.join(aliases)})"
                )
            if item not in resolved:
                resolved.append(item)
    return resolved


def needs_reference(metrics):
    """Tells whether any of the metrics is intrusive (needs a reference).

    Arguments
    ---------
    metrics : list of str
        Metric names.

    Returns
    -------
    bool
        True when at least one needs the reference.

    Example
    -------
    >>> needs_reference(["dnsmos_ovrl"]), needs_reference(["stoi", "dnsmos_ovrl"])
    (False, True)
    """
    return any(METRICS[name].intrusive for name in resolve_metrics(metrics))


def trim_to_equal_length(ref_wav, deg_wav):
    """Cuts the longer of two waveforms at its end so both have the shorter's length.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor
        Reference waveform ``[time]``.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded waveform ``[time]``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(ref, deg)`` as float64 arrays of equal length (no alignment is attempted: files are
        expected to start together, as enhancement outputs do).

    Example
    -------
    >>> ref, deg = trim_to_equal_length([1.0, 2.0, 3.0], [1.0, 2.0])
    >>> ref.tolist(), deg.tolist()
    ([1.0, 2.0], [1.0, 2.0])
    """
    ref = as_numpy(ref_wav, "reference")
    deg = as_numpy(deg_wav, "degraded")
    length = min(ref.shape[0], deg.shape[0])
    return ref[:length], deg[:length]


def _compute_group(group, ref, deg, sample_rate, cache):
    if group == "pesq_wb":
        return {"pesq_wb": _cached(cache, "pesq_wb", lambda: intrusive.pesq(ref, deg, sample_rate, "wb"))}
    if group == "pesq_nb":
        return {"pesq_nb": _cached(cache, "pesq_nb", lambda: intrusive.pesq(ref, deg, sample_rate, "nb"))}
    if group == "stoi":
        return {"stoi": intrusive.stoi(ref, deg, sample_rate)}
    if group == "estoi":
        return {"estoi": intrusive.stoi(ref, deg, sample_rate, extended=True)}
    if group == "si_sdr":
        return {"si_sdr": intrusive.si_sdr(ref, deg)}
    if group == "si_snr":
        return {"si_snr": intrusive.si_snr(ref, deg)}
    if group == "composite":
        mode = "wb" if sample_rate == 16000 else "nb"
        if sample_rate in (8000, 16000):
            pesq_score = _cached(
                cache, f"pesq_{mode}", lambda: intrusive.pesq(ref, deg, sample_rate, mode)
            )
        else:
            pesq_score = None  # composite() raises the rate error
        scores = composite_module.composite(ref, deg, sample_rate, pesq_score=pesq_score)
        return {name: scores[name] for name in ("csig", "cbak", "covl")}
    if group == "dnsmos":
        return dnsmos_module.dnsmos(deg, sample_rate)
    raise ValueError(f"unknown metric group {group!r}")


def _cached(cache, key, compute):
    if key not in cache:
        try:
            cache[key] = compute()
        except MetricError as error:
            cache[key] = error
    if isinstance(cache[key], MetricError):
        raise cache[key]
    return cache[key]


def try_compute_metrics(ref_wav, deg_wav, metrics=None, sample_rate=16000):
    """Computes metrics on one pair, collecting the errors instead of raising them.

    The two waveforms are trimmed to the shorter length first (:func:`trim_to_equal_length`).
    Each metric that fails gets ``nan`` and an entry in the errors.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor or None
        Reference waveform ``[time]``; ``None`` is allowed when all metrics are non-intrusive.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded waveform ``[time]``.
    metrics : list of str, optional
        Metric names (see :data:`METRICS`); default :data:`DEFAULT_METRICS`.
    sample_rate : int
        Rate of both waveforms.

    Returns
    -------
    tuple of dict
        ``(values, errors)``: metric name to float, and metric name to error message.

    Raises
    ------
    DnsmosUnavailableError
        When a DNSMOS metric is asked for without the ``eval`` extra.

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> values, errors = try_compute_metrics(x, 0.5 * x, ["si_sdr", "pesq_wb"], 8000)
    >>> values["si_sdr"] > 100, bool(np.isnan(values["pesq_wb"])), "16000 Hz" in errors["pesq_wb"]
    (True, True, True)
    """
    metrics = resolve_metrics(metrics)
    if ref_wav is None:
        intrusive_names = [name for name in metrics if METRICS[name].intrusive]
        if intrusive_names:
            raise ValueError(f"metrics {intrusive_names} need a reference signal")
        deg = as_numpy(deg_wav, "degraded")
        ref = None
    else:
        ref, deg = trim_to_equal_length(ref_wav, deg_wav)
    values, errors, cache = {}, {}, {}
    groups = []
    for name in metrics:
        if METRICS[name].group not in groups:
            groups.append(METRICS[name].group)
    for group in groups:
        wanted = [name for name in metrics if METRICS[name].group == group]
        try:
            result = _compute_group(group, ref, deg, sample_rate, cache)
        except dnsmos_module.DnsmosUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - recorded per metric, never dropped
            message = str(error)
            if not isinstance(error, MetricError):
                message = f"{group}: unexpected {type(error).__name__}: {error}"
            for name in wanted:
                values[name] = math.nan
                errors[name] = message
            continue
        for name in wanted:
            values[name] = float(result[name])
    return {name: values[name] for name in metrics}, errors


def compute_metrics(ref_wav, deg_wav, metrics=None, sample_rate=16000):
    """Computes intrusive (and possibly non-intrusive) metrics of one reference/degraded pair.

    The two waveforms are trimmed to the shorter length first, cutting the end of the longer
    one (:func:`trim_to_equal_length`); no time alignment is done.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor
        Reference (clean) waveform ``[time]``.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded (noisy or enhanced) waveform ``[time]``.
    metrics : list of str, optional
        Metric names (see :data:`METRICS`); default :data:`DEFAULT_METRICS`.
    sample_rate : int
        Rate of both waveforms (PESQ needs 16000, or 8000 for ``pesq_nb``).

    Returns
    -------
    dict
        Metric name to float, in the order asked.

    Raises
    ------
    MetricError
        The first metric that cannot be computed, naming it and the cause.
    DnsmosUnavailableError
        When a DNSMOS metric is asked for without the ``eval`` extra.

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.1
    >>> scores = compute_metrics(x, np.concatenate([x, np.zeros(100)]), ["si_sdr", "stoi"])
    >>> round(scores["stoi"], 3), scores["si_sdr"] > 100
    (1.0, True)
    """
    values, errors = try_compute_metrics(ref_wav, deg_wav, metrics, sample_rate)
    for name, message in errors.items():
        raise MetricError(message if message.startswith(name) else f"{name}: {message}")
    return values


def compute_nonintrusive_metrics(deg_wav, metrics=None, sample_rate=16000):
    """Computes non-intrusive metrics (DNSMOS) of a degraded waveform alone.

    Arguments
    ---------
    deg_wav : numpy.ndarray or torch.Tensor
        The waveform ``[time]``.
    metrics : list of str, optional
        Non-intrusive metric names; default all of them (:data:`NONINTRUSIVE_METRICS`).
    sample_rate : int
        Its rate.

    Returns
    -------
    dict
        Metric name to float.

    Raises
    ------
    ValueError
        When an intrusive metric is asked for.
    DnsmosUnavailableError
        Without the ``eval`` extra (``pip install speechbrain-sqe[eval]``).

    Example
    -------
    >>> from speechbrain_sqe.metrics.dnsmos import DnsmosUnavailableError
    >>> import numpy as np
    >>> try:
    ...     scores = compute_nonintrusive_metrics(np.random.default_rng(0).standard_normal(16000) * 0.05)
    ...     print(sorted(scores)[0])
    ... except DnsmosUnavailableError:
    ...     print("dnsmos_bak")
    dnsmos_bak
    """
    metrics = resolve_metrics(NONINTRUSIVE_METRICS if metrics is None else metrics)
    intrusive_names = [name for name in metrics if METRICS[name].intrusive]
    if intrusive_names:
        raise ValueError(f"metrics {intrusive_names} need a reference; use compute_metrics")
    values, errors = try_compute_metrics(None, deg_wav, metrics, sample_rate)
    for name, message in errors.items():
        raise MetricError(message if message.startswith(name) else f"{name}: {message}")
    return values


def finite_values(values):
    """Keeps the finite floats of a sequence (strings are parsed; blanks and NaN are dropped).

    Arguments
    ---------
    values : iterable
        Numbers, numeric strings, ``None`` or blanks.

    Returns
    -------
    numpy.ndarray
        The finite values as float64.

    Example
    -------
    >>> finite_values([1, "2.5", "", None, float("nan")]).tolist()
    [1.0, 2.5]
    """
    out = []
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return np.asarray(out, dtype=np.float64)
