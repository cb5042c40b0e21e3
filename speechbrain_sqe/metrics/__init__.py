"""Objective speech quality metrics, correlation statistics and the parallel evaluation runner.

- :mod:`~speechbrain_sqe.metrics.intrusive`: PESQ (wide/narrow band), STOI, ESTOI, SI-SDR, SI-SNR;
- :mod:`~speechbrain_sqe.metrics.composite`: CSIG, CBAK, COVL (Hu and Loizou) with LLR, WSS, segSNR;
- :mod:`~speechbrain_sqe.metrics.dnsmos`: DNSMOS P.835/P.808 (optional ``eval`` extra);
- :mod:`~speechbrain_sqe.metrics.registry`: the metric registry (:func:`register_metric`,
  :func:`register_predictor` for learned predictors such as VQScore), :func:`compute_metrics`;
- :mod:`~speechbrain_sqe.metrics.correlation`: Pearson/Spearman/Kendall, overall and per condition;
- :mod:`~speechbrain_sqe.metrics.runner`: file pairing, parallel evaluation, CSV and summary.

The functions named like their module (``composite.composite``, ``dnsmos.dnsmos``,
``correlation.correlation``) are reached through it
(``from speechbrain_sqe.metrics.composite import composite``), so that the names stay modules. Importing this package is light (numpy only); torch, scipy, pesq, pystoi and speechmos are
imported when first needed.
"""

from speechbrain_sqe.metrics.composite import llr, segmental_snr, wss
from speechbrain_sqe.metrics.correlation import condition_means, correlation_table
from speechbrain_sqe.metrics.dnsmos import DnsmosUnavailableError, dnsmos_available
from speechbrain_sqe.metrics.intrusive import (
    MetricError,
    MetricUnavailableError,
    pesq,
    si_sdr,
    si_snr,
    stoi,
)
from speechbrain_sqe.metrics.registry import (
    DEFAULT_METRICS,
    INTRUSIVE_METRICS,
    LEARNED_METRICS,
    METRICS,
    NONINTRUSIVE_METRICS,
    VQSCORE_INTERFACE,
    MetricSpec,
    Predictor,
    compute_metrics,
    compute_nonintrusive_metrics,
    metric_table,
    needs_reference,
    register_group,
    register_metric,
    register_predictor,
    resolve_metrics,
    split_available,
    trim_to_equal_length,
    try_compute_metrics,
    unregister_metric,
)
from speechbrain_sqe.metrics.runner import (
    EvaluationResult,
    Failure,
    Pair,
    PairingError,
    evaluate,
    evaluate_pairs,
    format_failures,
    format_summary,
    pair_files,
    summarize,
    write_csv,
    write_failures_csv,
)

__all__ = [
    "DEFAULT_METRICS",
    "INTRUSIVE_METRICS",
    "LEARNED_METRICS",
    "METRICS",
    "NONINTRUSIVE_METRICS",
    "VQSCORE_INTERFACE",
    "DnsmosUnavailableError",
    "EvaluationResult",
    "Failure",
    "MetricError",
    "MetricSpec",
    "MetricUnavailableError",
    "Pair",
    "PairingError",
    "Predictor",
    "compute_metrics",
    "compute_nonintrusive_metrics",
    "condition_means",
    "correlation_table",
    "dnsmos_available",
    "evaluate",
    "evaluate_pairs",
    "format_failures",
    "format_summary",
    "llr",
    "metric_table",
    "needs_reference",
    "pair_files",
    "pesq",
    "register_group",
    "register_metric",
    "register_predictor",
    "resolve_metrics",
    "segmental_snr",
    "si_sdr",
    "si_snr",
    "split_available",
    "stoi",
    "summarize",
    "trim_to_equal_length",
    "try_compute_metrics",
    "unregister_metric",
    "write_csv",
    "write_failures_csv",
    "wss",
]
