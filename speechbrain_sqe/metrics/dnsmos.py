"""DNSMOS P.835 (Reddy et al., 2022), non-intrusive, through the optional ``speechmos`` package.

``speechmos`` carries Microsoft's ONNX models and runs them with ``onnxruntime``; it also
imports ``librosa`` (for the P.808 mel features). They are the ``eval`` extra of this package:
``pip install speechbrain-sqe[eval]``. Where they are missing, :func:`dnsmos` raises
:class:`DnsmosUnavailableError` (an ``ImportError``) saying so; nothing is imported at module
import time.
"""

import logging

import numpy as np

from speechbrain_sqe.metrics.intrusive import (
    MetricError,
    MetricUnavailableError,
    as_numpy,
)

#: The rate the DNSMOS models work at; other rates are resampled.
DNSMOS_SAMPLE_RATE = 16000
#: speechmos output key of each registered metric name.
DNSMOS_KEYS = {
    "dnsmos_ovrl": "ovrl_mos",
    "dnsmos_sig": "sig_mos",
    "dnsmos_bak": "bak_mos",
    "dnsmos_p808": "p808_mos",
}

INSTALL_HINT = "pip install speechbrain-sqe[eval]"


class DnsmosUnavailableError(MetricUnavailableError):
    """Raised when DNSMOS is asked for but ``speechmos`` (or one of its dependencies) is absent."""


def _load_speechmos():
    # librosa's numba compiler logs thousands of DEBUG lines into SpeechBrain's experiment log.
    logging.getLogger("numba").setLevel(logging.WARNING)
    try:
        from speechmos import dnsmos as speechmos_dnsmos
    except ImportError as error:  # speechmos itself, onnxruntime, librosa, requests...
        missing = getattr(error, "name", None) or str(error)
        raise DnsmosUnavailableError(
            "DNSMOS needs the optional 'speechmos' package with onnxruntime and librosa "
            f"(import failed: {missing}). Install the evaluation extra: {INSTALL_HINT}"
        ) from error
    return speechmos_dnsmos


def require_dnsmos():
    """Raises :class:`DnsmosUnavailableError` (with the install hint) where DNSMOS cannot run.

    The availability check of the DNSMOS metrics in the registry.

    Raises
    ------
    DnsmosUnavailableError
        When ``speechmos``/``onnxruntime``/``librosa`` cannot be imported.

    Example
    -------
    >>> try:
    ...     require_dnsmos()
    ... except DnsmosUnavailableError as error:
    ...     assert "speechbrain-sqe[eval]" in str(error)
    """
    _load_speechmos()


def dnsmos_available():
    """Tells whether DNSMOS can run here, and why not.

    Returns
    -------
    tuple
        ``(True, "")`` or ``(False, message)`` where the message says what to install.

    Example
    -------
    >>> ok, why = dnsmos_available()
    >>> ok or "speechbrain-sqe[eval]" in why
    True
    """
    try:
        _load_speechmos()
    except DnsmosUnavailableError as error:
        return False, str(error)
    return True, ""


#: onnxruntime threads per DNSMOS session (None: onnxruntime's default, one per core).
_SESSION_THREADS = None


def set_session_threads(count):
    """Limits the onnxruntime threads of the DNSMOS sessions created after this call.

    The parallel metrics runner calls it with 1 in each worker process: with its default of one
    thread per core, each worker oversubscribes the cores and DNSMOS runs about 3 times slower.

    Arguments
    ---------
    count : int or None
        Threads per session (None: onnxruntime's default).

    Example
    -------
    >>> set_session_threads(None)
    """
    global _SESSION_THREADS
    _SESSION_THREADS = count


def _scorer(speechmos_dnsmos):
    """speechmos's DNSMOS scorer, created here with ``_SESSION_THREADS`` when it is set."""
    if _SESSION_THREADS is None or speechmos_dnsmos.dnsmos is not None:
        return
    import os

    import onnxruntime

    # speechmos builds its sessions with onnxruntime's defaults and has no thread option: build
    # the same two sessions with a thread limit and install them as speechmos's global scorer.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _SESSION_THREADS
    options.inter_op_num_threads = 1
    folder = os.path.join(os.path.dirname(os.path.abspath(speechmos_dnsmos.__file__)), "dnsmos_models")
    scorer = speechmos_dnsmos.DNSMOS.__new__(speechmos_dnsmos.DNSMOS)
    scorer.primary_model_path = os.path.join(folder, "sig_bak_ovr.onnx")
    scorer.onnx_sess = onnxruntime.InferenceSession(scorer.primary_model_path, options)
    scorer.p808_onnx_sess = onnxruntime.InferenceSession(os.path.join(folder, "model_v8.onnx"), options)
    speechmos_dnsmos.dnsmos = scorer


def dnsmos(deg, sample_rate=16000):
    """DNSMOS P.835 scores (overall, signal, background) and the DNSMOS P.808 score.

    Clips shorter than 9.01 s are repeated to that length by ``speechmos`` (as Microsoft's
    reference script); longer clips are scored on 9.01 s windows with a 1 s hop and averaged.

    Arguments
    ---------
    deg : numpy.ndarray or torch.Tensor
        The waveform to rate, shape ``[time]``, values in [-1, 1] (clipped if slightly beyond).
    sample_rate : int
        Its rate (resampled to 16 kHz if different).

    Returns
    -------
    dict
        ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_p808`` (MOS scale, 1 to 5).

    Raises
    ------
    DnsmosUnavailableError
        When ``speechmos``/``onnxruntime``/``librosa`` cannot be imported.
    MetricError
        For an empty or silent signal.

    Example
    -------
    >>> import numpy as np
    >>> try:
    ...     scores = dnsmos(np.random.default_rng(0).standard_normal(16000) * 0.05)
    ...     print(sorted(scores))
    ... except DnsmosUnavailableError:
    ...     print(['dnsmos_bak', 'dnsmos_ovrl', 'dnsmos_p808', 'dnsmos_sig'])
    ['dnsmos_bak', 'dnsmos_ovrl', 'dnsmos_p808', 'dnsmos_sig']
    """
    speechmos_dnsmos = _load_speechmos()
    _scorer(speechmos_dnsmos)
    audio = as_numpy(deg, "degraded")
    if audio.size == 0 or not np.any(audio):
        raise MetricError("dnsmos: the signal is empty or digital silence")
    if not np.isfinite(audio).all():
        raise MetricError("dnsmos: the signal holds NaN or Inf samples")
    if sample_rate != DNSMOS_SAMPLE_RATE:
        import torch
        import torchaudio

        audio = torchaudio.functional.resample(
            torch.from_numpy(audio), sample_rate, DNSMOS_SAMPLE_RATE
        ).numpy()
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    try:
        result = speechmos_dnsmos.run(audio, DNSMOS_SAMPLE_RATE)
    except Exception as error:  # onnxruntime/librosa failures
        raise MetricError(f"dnsmos: speechmos failed ({type(error).__name__}: {error})") from error
    return {name: float(result[key]) for name, key in DNSMOS_KEYS.items()}
