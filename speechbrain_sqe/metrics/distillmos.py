"""Distill-MOS (Stahl and Gamper, 2025), a learned non-intrusive MOS, through the optional ``distillmos`` package.

Distill-MOS is a small convolution + transformer model distilled from an XLS-R based MOS predictor;
its weights ship inside the ``distillmos`` wheel (no download at run time), so it runs offline like
DNSMOS. It is part of the ``eval`` extra (``pip install speechbrain-sqe[eval]``). Where the package
is missing, :func:`distillmos` raises :class:`DistillMosUnavailableError` (an ``ImportError``)
saying so; nothing is imported at module import time.

The model reads 16 kHz audio, normalizes each 7.68 s window to its peak and averages the windows
(shorter clips are zero-padded), so the score does not depend on the input level.
"""

import numpy as np

from speechbrain_sqe.metrics.intrusive import (
    MetricError,
    MetricUnavailableError,
    as_numpy,
)

#: The rate the model works at; other rates are resampled.
DISTILLMOS_SAMPLE_RATE = 16000
INSTALL_HINT = "pip install speechbrain-sqe[eval]"

_MODEL = None


class DistillMosUnavailableError(MetricUnavailableError):
    """Raised when Distill-MOS is asked for but the ``distillmos`` package cannot be imported."""


def _load_package():
    try:
        import distillmos
    except ImportError as error:  # distillmos itself or xls_r_sqa / transformers
        missing = getattr(error, "name", None) or str(error)
        raise DistillMosUnavailableError(
            f"Distill-MOS needs the optional 'distillmos' package (import failed: {missing}). "
            f"Install the evaluation extra: {INSTALL_HINT}"
        ) from error
    return distillmos


def require_distillmos():
    """Raises :class:`DistillMosUnavailableError` (with the install hint) where Distill-MOS cannot run.

    The availability check of the ``distillmos`` metric in the registry.

    Raises
    ------
    DistillMosUnavailableError
        When ``distillmos`` cannot be imported.

    Example
    -------
    >>> try:
    ...     require_distillmos()
    ... except DistillMosUnavailableError as error:
    ...     assert "speechbrain-sqe[eval]" in str(error)
    """
    _load_package()


def _model():
    """The model, built once per process (weights from the wheel, read with ``weights_only=True``)."""
    global _MODEL
    if _MODEL is None:
        import contextlib
        import io

        package = _load_package()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints where it loaded weights from
            model = package.ConvTransformerSQAModel()
        _MODEL = model.eval()
    return _MODEL


def distillmos(deg, sample_rate=16000):
    """The Distill-MOS score of one waveform (MOS scale, 1 to 5, higher is better).

    Arguments
    ---------
    deg : numpy.ndarray or torch.Tensor
        The waveform to rate, shape ``[time]``.
    sample_rate : int
        Its rate (resampled to 16 kHz if different).

    Returns
    -------
    float
        The predicted MOS.

    Raises
    ------
    DistillMosUnavailableError
        When ``distillmos`` cannot be imported.
    MetricError
        For an empty, silent or non-finite signal.

    Example
    -------
    >>> import numpy as np
    >>> try:
    ...     score = distillmos(np.random.default_rng(0).standard_normal(16000) * 0.05)
    ... except DistillMosUnavailableError:
    ...     score = 1.0
    >>> 1.0 <= score <= 5.0
    True
    """
    import torch

    audio = as_numpy(deg, "degraded")
    if audio.size == 0 or not np.any(audio):
        raise MetricError("distillmos: the signal is empty or digital silence")
    if not np.isfinite(audio).all():
        raise MetricError("distillmos: the signal holds NaN or Inf samples")
    model = _model()
    wav = torch.from_numpy(audio.astype(np.float32))
    if sample_rate != DISTILLMOS_SAMPLE_RATE:
        import torchaudio

        wav = torchaudio.functional.resample(wav, sample_rate, DISTILLMOS_SAMPLE_RATE)
    with torch.inference_mode():
        score = model(wav[None])
    return float(score.reshape(-1)[0])
