"""Composite measures CSIG, CBAK and COVL (Hu and Loizou, 2008) and their parts LLR, WSS, segSNR.

Y. Hu and P. C. Loizou, "Evaluation of objective quality measures for speech enhancement",
IEEE Trans. Audio, Speech and Language Processing 16(1), 2008. The regression is::

    Csig = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS
    Cbak = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR
    Covl = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS

each clipped to [1, 5]. This is our own vectorised implementation following the details of
Loizou's reference MATLAB code (``composite.m``, ``llr.m``, ``wss.m``, ``snr.m``):

- both signals are trimmed to the shorter length and machine epsilon is added (no exact zeros);
- frames of 30 ms (480 samples at 16 kHz), hop of a quarter frame (120 samples), a Hann window
  ``0.5 (1 - cos(2 pi n / (N + 1)))``, ``n = 1..N``; ``floor((len - N) / hop)`` frames
  (the reference code's count, one fewer than would fit);
- LLR: LPC order 16 (10 below 10 kHz) by Levinson-Durbin, ``log(a_d R_c a_d' / a_c R_c a_c')``,
  mean of the 95 % lowest frame values (not clipped, as in ``composite.m``);
- WSS: 25 critical bands (50 Hz to 3.6 kHz, the reference table, at any rate), FFT power
  spectrum (``2^nextpow2(2N)`` points), Klatt's weights ``Kmax = 20``, ``Klocmax = 1`` with the
  reference code's local-peak search, mean of the 95 % lowest frame values;
- segSNR: per-frame SNR clipped to [-10, 35] dB, mean over all frames;
- PESQ: at 16 kHz the wide band MOS-LQO (``pesq`` package, mode ``wb``), as in the usual
  Python ports used for VoiceBank-DEMAND results (pysepm, SEGAN/denoiser ``eval_composite``);
  at 8 kHz the raw P.862 score (narrow band MOS-LQO mapped back through P.862.1), as in the
  paper. The regression was fitted on narrow band raw PESQ at 8 kHz, so wide band values are
  comparable with the literature that uses the same convention, not with the paper's tables.
"""

import numpy as np

from speechbrain_sqe.metrics.intrusive import MetricError, _check_pair, pesq

#: Fraction of the best (lowest distortion) frames kept for LLR and WSS.
BEST_FRAME_FRACTION = 0.95
#: Limits of the per-frame SNR of the segmental SNR, in dB.
SEGSNR_RANGE = (-10.0, 35.0)

_CENTER_FREQ = np.array([
    50.0000, 120.000, 190.000, 260.000, 330.000, 400.000, 470.000, 540.000, 617.372, 703.378,
    798.717, 904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63,
])
_BANDWIDTH = np.array([
    70.0000, 70.0000, 70.0000, 70.0000, 70.0000, 70.0000, 70.0000, 77.3724, 86.0056, 95.3398,
    105.411, 116.256, 127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631,
    255.255, 276.072, 298.126, 321.465, 346.136,
])
_KMAX = 20.0
_KLOCMAX = 1.0


def _prepare(ref, deg, name):
    ref, deg = _check_pair(ref, deg, name)
    eps = np.finfo(np.float64).eps
    return ref + eps, deg + eps


def _framing(sample_rate):
    win = round(0.030 * sample_rate)
    return win, win // 4


def _frames(signal, sample_rate, name):
    """Windowed frames ``[frames, win]`` with the reference code's framing."""
    win, hop = _framing(sample_rate)
    count = (signal.shape[0] - win) // hop
    if count < 1:
        raise MetricError(
            f"{name}: signal too short ({signal.shape[0]} samples; at least {win + hop} needed)"
        )
    frames = np.lib.stride_tricks.sliding_window_view(signal, win)[::hop][:count]
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, win + 1) / (win + 1)))
    return frames * window


def _best_mean(values, fraction=BEST_FRAME_FRACTION):
    values = np.sort(values[np.isfinite(values)])
    if values.size == 0:
        return float("nan")
    keep = max(1, int(np.floor(values.size * fraction + 0.5)))  # MATLAB round
    return float(values[:keep].mean())


def _autocorrelation(frames, order):
    width = frames.shape[1]
    return np.stack(
        [np.einsum("ft,ft->f", frames[:, : width - k], frames[:, k:]) for k in range(order + 1)],
        axis=1,
    )


def _levinson(acorr):
    """LPC polynomials ``[1, -a_1, ..., -a_p]`` per frame by Levinson-Durbin, as ``lpcoeff.m``."""
    frames, order = acorr.shape[0], acorr.shape[1] - 1
    a = np.zeros((frames, order))
    error = acorr[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            past = a[:, :i].copy()
            sum_term = np.einsum("fk,fk->f", past, acorr[:, i:0:-1]) if i else 0.0
            reflection = (acorr[:, i + 1] - sum_term) / error
            a[:, i] = reflection
            if i:
                a[:, :i] = past - reflection[:, None] * past[:, ::-1]
            error = (1.0 - reflection * reflection) * error
    return np.concatenate([np.ones((frames, 1)), -a], axis=1)


def llr_frames(ref, deg, sample_rate=16000):
    """Per-frame log-likelihood ratio between the LPC models of the reference and the degraded.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate (LPC order 10 below 10 kHz, else 16).

    Returns
    -------
    numpy.ndarray
        LLR per frame (NaN where a frame is degenerate).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> float(np.abs(llr_frames(x, x)).max()) < 1e-9
    True
    """
    ref, deg = _prepare(ref, deg, "llr")
    order = 10 if sample_rate < 10000 else 16
    ref_frames = _frames(ref, sample_rate, "llr")
    deg_frames = _frames(deg, sample_rate, "llr")
    ref_acorr = _autocorrelation(ref_frames, order)
    ref_lpc = _levinson(ref_acorr)
    deg_lpc = _levinson(_autocorrelation(deg_frames, order))
    lags = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz = ref_acorr[:, lags]  # [frames, order + 1, order + 1]
    numerator = np.einsum("fi,fij,fj->f", deg_lpc, toeplitz, deg_lpc)
    denominator = np.einsum("fi,fij,fj->f", ref_lpc, toeplitz, ref_lpc)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / denominator
        return np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)), np.nan)


def _critical_filters(n_fft, sample_rate):
    half = n_fft // 2
    max_freq = sample_rate / 2.0
    bins = np.arange(half)
    min_factor = np.exp(-30.0 / (2.0 * 2.303))  # -30 dB point of the filter
    center = np.floor(_CENTER_FREQ / max_freq * half)
    width = _BANDWIDTH / max_freq * half
    norm = np.log(_BANDWIDTH[0]) - np.log(_BANDWIDTH)
    filters = np.exp(-11.0 * ((bins[None, :] - center[:, None]) / width[:, None]) ** 2 + norm[:, None])
    return filters * (filters > min_factor)


def _band_energies_db(frames, filters, n_fft):
    spectrum = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    energy = spectrum[:, : n_fft // 2] @ filters.T
    return 10.0 * np.log10(np.maximum(energy, 1e-10))


def _local_peaks(energy, slope):
    """Nearest spectral peak of each band, with the reference code's search (``wss.m``)."""
    bands = slope.shape[1]
    index = np.arange(bands)
    rising = slope > 0
    # first band >= i whose slope is not rising (or the last slope index)
    stop = np.where(~rising, index, bands)
    stop = np.minimum.accumulate(stop[:, ::-1], axis=1)[:, ::-1]
    stop = np.minimum(stop, bands)
    # last band <= i whose slope is rising (or -1)
    start = np.where(rising, index, -1)
    start = np.maximum.accumulate(start, axis=1)
    peak_index = np.where(rising, stop - 1, start + 1)
    return np.take_along_axis(energy, peak_index, axis=1)


def wss_frames(ref, deg, sample_rate=16000):
    """Per-frame weighted spectral slope distance (Klatt, 1982) as in Loizou's ``wss.m``.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate.

    Returns
    -------
    numpy.ndarray
        WSS per frame (0 for identical frames).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> float(wss_frames(x, x).max())
    0.0
    """
    ref, deg = _prepare(ref, deg, "wss")
    win, _ = _framing(sample_rate)
    n_fft = int(2 ** np.ceil(np.log2(2 * win)))
    filters = _critical_filters(n_fft, sample_rate)
    ref_db = _band_energies_db(_frames(ref, sample_rate, "wss"), filters, n_fft)
    deg_db = _band_energies_db(_frames(deg, sample_rate, "wss"), filters, n_fft)
    ref_slope = np.diff(ref_db, axis=1)
    deg_slope = np.diff(deg_db, axis=1)

    def weights(energy, slope):
        w_max = _KMAX / (_KMAX + energy.max(axis=1, keepdims=True) - energy[:, :-1])
        w_locmax = _KLOCMAX / (_KLOCMAX + _local_peaks(energy, slope) - energy[:, :-1])
        return w_max * w_locmax

    w = (weights(ref_db, ref_slope) + weights(deg_db, deg_slope)) / 2.0
    return (w * (ref_slope - deg_slope) ** 2).sum(axis=1) / w.sum(axis=1)


def segsnr_frames(ref, deg, sample_rate=16000):
    """Per-frame SNR in dB, clipped to [-10, 35] dB, as in Loizou's ``snr.m``.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate.

    Returns
    -------
    numpy.ndarray
        Clipped frame SNRs in dB.

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> round(float(segsnr_frames(x, 1.1 * x).mean()), 6)   # error 10 % of the signal: 20 dB
    20.0
    """
    ref, deg = _prepare(ref, deg, "segsnr")
    eps = np.finfo(np.float64).eps
    ref_frames = _frames(ref, sample_rate, "segsnr")
    deg_frames = _frames(deg, sample_rate, "segsnr")
    signal = (ref_frames**2).sum(axis=1)
    noise = ((ref_frames - deg_frames) ** 2).sum(axis=1)
    snr = 10.0 * np.log10(signal / (noise + eps) + eps)
    return np.clip(snr, *SEGSNR_RANGE)


def llr(ref, deg, sample_rate=16000):
    """Log-likelihood ratio: mean of the 95 % best frames of :func:`llr_frames`.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate.

    Returns
    -------
    float
        LLR (0 for identical signals; higher is worse).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> abs(llr(x, x)) < 1e-9
    True
    """
    return _best_mean(llr_frames(ref, deg, sample_rate))


def wss(ref, deg, sample_rate=16000):
    """Weighted spectral slope distance: mean of the 95 % best frames of :func:`wss_frames`.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate.

    Returns
    -------
    float
        WSS (0 for identical signals; higher is worse).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> wss(x, x)
    0.0
    """
    return _best_mean(wss_frames(ref, deg, sample_rate))


def segmental_snr(ref, deg, sample_rate=16000):
    """Segmental SNR in dB: mean over all frames of :func:`segsnr_frames`.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded waveform, same length.
    sample_rate : int
        Sampling rate.

    Returns
    -------
    float
        Segmental SNR in dB, within [-10, 35].

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> segmental_snr(x, x)
    35.0
    """
    return float(segsnr_frames(ref, deg, sample_rate).mean())


def _raw_pesq_from_mos_lqo(mos_lqo):
    """Inverse of the P.862.1 mapping ``0.999 + 4 / (1 + exp(-1.4945 x + 4.6607))``."""
    mos_lqo = min(max(mos_lqo, 0.999 + 1e-6), 4.999 - 1e-6)
    return (4.6607 - np.log(4.0 / (mos_lqo - 0.999) - 1.0)) / 1.4945


def composite(ref, deg, sample_rate=16000, pesq_score=None):
    """CSIG, CBAK and COVL (Hu and Loizou, 2008), with the parts they are computed from.

    Arguments
    ---------
    ref : numpy.ndarray or torch.Tensor
        Reference (clean) waveform, shape ``[time]``.
    deg : numpy.ndarray or torch.Tensor
        Degraded (processed) waveform, same length.
    sample_rate : int
        16000 (PESQ wide band MOS-LQO) or 8000 (raw narrow band PESQ), see the module notes.
    pesq_score : float, optional
        An already computed PESQ of this pair (at 16 kHz the wide band MOS-LQO, at 8 kHz the
        narrow band MOS-LQO), to avoid computing it twice.

    Returns
    -------
    dict
        ``csig``, ``cbak``, ``covl`` (each in [1, 5]) and ``pesq`` (the value used in the
        regression), ``llr``, ``wss``, ``segsnr``.

    Raises
    ------
    MetricError
        As :func:`~speechbrain_sqe.metrics.intrusive.pesq` (rate, silence, no utterance).

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> voiced = np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.2
    >>> scores = composite(voiced, voiced)
    >>> scores["csig"], scores["cbak"], scores["covl"]
    (5.0, 5.0, 5.0)
    """
    if sample_rate not in (8000, 16000):
        raise MetricError(f"composite: needs 8000 or 16000 Hz (for PESQ), got {sample_rate} Hz")
    ref, deg = _check_pair(ref, deg, "composite")
    mode = "wb" if sample_rate == 16000 else "nb"
    if pesq_score is None:
        pesq_score = pesq(ref, deg, sample_rate, mode)
    pesq_value = float(pesq_score) if mode == "wb" else float(_raw_pesq_from_mos_lqo(pesq_score))
    llr_value = llr(ref, deg, sample_rate)
    wss_value = wss(ref, deg, sample_rate)
    segsnr_value = segmental_snr(ref, deg, sample_rate)
    if not (np.isfinite(llr_value) and np.isfinite(wss_value)):
        raise MetricError("composite: no valid analysis frame (LLR/WSS undefined)")
    csig = 3.093 - 1.029 * llr_value + 0.603 * pesq_value - 0.009 * wss_value
    cbak = 1.634 + 0.478 * pesq_value - 0.007 * wss_value + 0.063 * segsnr_value
    covl = 1.594 + 0.805 * pesq_value - 0.512 * llr_value - 0.007 * wss_value
    return {
        "csig": _clip_mos(csig),
        "cbak": _clip_mos(cbak),
        "covl": _clip_mos(covl),
        "pesq": pesq_value,
        "llr": llr_value,
        "wss": wss_value,
        "segsnr": segsnr_value,
    }


def _clip_mos(value):
    return float(min(max(value, 1.0), 5.0))
