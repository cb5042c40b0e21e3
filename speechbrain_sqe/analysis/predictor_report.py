"""How well no-reference predictors agree with the true metrics, per utterance and per system.

The issue-14 report of the learned multi-metric predictor, beside the single-score predictors
(VQScore, DNSMOS OVRL, Distill-MOS): for every true metric (PESQ, STOI, ESTOI, SI-SDR against the
reference; DNSMOS OVRL and Distill-MOS as computed) and every predictor column meant to follow
it, the linear (LCC) and rank (SRCC) correlations and, where the predictor gives the metric in
its own units, the mean squared error,

- at **utterance** level: over every row (every file of every system), and
- at **system** level: over the per-system means (:func:`~speechbrain_sqe.metrics.correlation.condition_means`),
  the ranking of enhancers a user would read off a leaderboard;

and, per system, the mean predicted minus the mean true value (:func:`system_bias_rows`): an
enhancer trained against a predictor (the SQA-guided one) shows up there as a system the predictor
over-rates by far more than the others, which the correlations alone hide.

Correlations come from :mod:`speechbrain_sqe.metrics.correlation` (one implementation); this
module only arranges them into tables, a Markdown report and a scatter plot.
"""

import logging
import math

import numpy as np

from speechbrain_sqe.metrics.correlation import condition_means, correlation
from speechbrain_sqe.metrics.registry import finite_values

__all__ = ["agreement_rows", "format_agreement_markdown", "format_bias_markdown", "plot_agreement", "system_bias_rows"]

LEVELS = ("utterance", "system")


def _mse(predicted, true):
    pairs = [(p, t) for p, t in zip(predicted, true) if finite_values([p, t]).size == 2]
    if not pairs:
        return math.nan
    values = np.asarray(pairs, dtype=float)
    return float(np.mean((values[:, 0] - values[:, 1]) ** 2))


def agreement_rows(rows, predictors, system_column="system"):
    """LCC, SRCC and MSE of each (true metric, predictor) pair at utterance and system level.

    Arguments
    ---------
    rows : list of dict
        One dict per file: the system name, the true metric columns and the predictor columns
        (numbers or numeric strings; blank or non-finite cells are left out pair by pair).
    predictors : list of tuple
        ``(target, name, column, same_units)``: the true metric column, the predictor's display
        name, the column of its score, and whether that score is the target metric in its own
        units (then the MSE is reported; a single-score predictor such as VQScore is only
        correlated).
    system_column : str
        Column naming the system (the enhancer, or the noisy input).

    Returns
    -------
    list of dict
        One dict per (level, target, predictor): ``level``, ``target``, ``predictor``, ``n``,
        ``lcc``, ``srcc``, ``mse`` (nan where not comparable).

    Example
    -------
    >>> rows = [{"system": s, "pesq_wb": t, "sqa_pesq_wb": t + e, "vqscore": 0.1 * t}
    ...         for s, base in (("a", 1.0), ("b", 2.0), ("c", 3.0))
    ...         for t, e in ((base, 0.1), (base + 0.5, -0.1), (base + 0.2, 0.0))]
    >>> table = agreement_rows(rows, [("pesq_wb", "ours", "sqa_pesq_wb", True),
    ...                               ("pesq_wb", "VQScore", "vqscore", False)])
    >>> [(r["level"], r["predictor"], r["n"], round(r["srcc"], 2), round(r["mse"], 3)) for r in table]
    [('utterance', 'ours', 9, 1.0, 0.007), ('utterance', 'VQScore', 9, 1.0, nan), ('system', 'ours', 3, 1.0, 0.0), ('system', 'VQScore', 3, 1.0, nan)]
    """
    columns = sorted({column for item in predictors for column in (item[0], item[2])})
    systems = condition_means(rows, columns, system_column)
    out = []
    for level, table in (("utterance", rows), ("system", systems)):
        for target, name, column, same_units in predictors:
            predicted = [row.get(column) for row in table]
            true = [row.get(target) for row in table]
            stats = correlation(predicted, true)
            out.append({
                "level": level, "target": target, "predictor": name, "n": stats["n"],
                "lcc": stats["pearson"], "srcc": stats["spearman"],
                "mse": _mse(predicted, true) if same_units else math.nan,
            })
    return out


def system_bias_rows(rows, predictors, system_column="system"):
    """Per system, the mean true value and each same-units predictor's mean minus it.

    Arguments
    ---------
    rows : list of dict
        One dict per file, as for :func:`agreement_rows`.
    predictors : list of tuple
        ``(target, name, column, same_units)`` as for :func:`agreement_rows`; only those with
        ``same_units`` are compared (a VQScore is on another scale).
    system_column : str
        Column naming the system.

    Returns
    -------
    list of dict
        One dict per (system, target, predictor): ``system``, ``target``, ``predictor``, ``n``
        (files with both values), ``true``, ``predicted`` (means over those files) and ``bias``
        (``predicted - true``; nan where no file has both).

    Example
    -------
    >>> rows = [{"system": "a", "pesq_wb": 1.2, "sqa_pesq_wb": 1.3},
    ...         {"system": "b", "pesq_wb": 1.4, "sqa_pesq_wb": 4.0}]
    >>> [(r["system"], round(r["bias"], 2)) for r in system_bias_rows(rows, [("pesq_wb", "ours", "sqa_pesq_wb", True)])]
    [('a', 0.1), ('b', 2.6)]
    """
    groups = {}
    for row in rows:
        groups.setdefault(str(row.get(system_column, "")), []).append(row)
    out = []
    for system in sorted(groups):
        for target, name, column, same_units in predictors:
            if not same_units:
                continue
            pairs = [(row.get(column), row.get(target)) for row in groups[system]]
            pairs = np.asarray([pair for pair in pairs if finite_values(pair).size == 2], dtype=float).reshape(-1, 2)
            predicted, true = (pairs.mean(0) if len(pairs) else (math.nan, math.nan))
            out.append({"system": system, "target": target, "predictor": name, "n": len(pairs),
                        "true": float(true), "predicted": float(predicted), "bias": float(predicted - true)})
    return out


def format_bias_markdown(bias, targets=None, predictors=None):
    """:func:`system_bias_rows` as one Markdown table: a row per (true metric, system), the mean
    true value, then ``predicted - true`` per predictor.

    Arguments
    ---------
    bias : list of dict
        :func:`system_bias_rows`' output.
    targets, predictors : list of str, optional
        Row and column order (default: first appearance).

    Returns
    -------
    str
        The Markdown table ("" when nothing is comparable).

    Example
    -------
    >>> bias = [{"system": "b", "target": "pesq_wb", "predictor": "ours", "n": 1, "true": 1.4,
    ...          "predicted": 4.0, "bias": 2.6}]
    >>> print(format_bias_markdown(bias))
    | true metric | system (n) | true mean | ours: predicted - true |
    |---|---|---|---|
    | pesq_wb | b (1) | 1.400 | +2.600 |
    """
    if not bias:
        return ""
    targets = targets or list(dict.fromkeys(entry["target"] for entry in bias))
    predictors = predictors or list(dict.fromkeys(entry["predictor"] for entry in bias))
    found = {(entry["target"], entry["system"], entry["predictor"]): entry for entry in bias}
    systems = list(dict.fromkeys(entry["system"] for entry in bias))
    lines = ["| true metric | system (n) | true mean | " + " | ".join(f"{name}: predicted - true" for name in predictors) + " |",
             "|---" * (len(predictors) + 3) + "|"]
    for target in targets:
        for system in systems:
            entries = [found.get((target, system, name)) for name in predictors]
            first = next((entry for entry in entries if entry is not None), None)
            if first is None:
                continue
            cells = ["" if entry is None or math.isnan(entry["bias"]) else f"{entry['bias']:+.3f}" for entry in entries]
            lines.append(f"| {target} | {system} ({first['n']}) | {first['true']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry):
    if entry is None:
        return ""
    text = f"{entry['lcc']:.3f} / {entry['srcc']:.3f}"
    if not math.isnan(entry["mse"]):
        text += f" / {entry['mse']:.3g}"
    return text


def format_agreement_markdown(table, level, targets=None, predictors=None):
    """One Markdown table of :func:`agreement_rows` at one level: a row per true metric, a column per
    predictor, cells ``LCC / SRCC`` (``/ MSE`` where the units match).

    Arguments
    ---------
    table : list of dict
        :func:`agreement_rows`' output.
    level : str
        ``utterance`` or ``system``.
    targets, predictors : list of str, optional
        Row and column order (default: first appearance).

    Returns
    -------
    str
        The Markdown table.

    Example
    -------
    >>> table = [{"level": "system", "target": "pesq_wb", "predictor": "ours", "n": 5, "lcc": 0.9,
    ...           "srcc": 0.8, "mse": 0.01}]
    >>> print(format_agreement_markdown(table, "system"))
    | true metric (system level, n) | ours |
    |---|---|
    | pesq_wb (5) | 0.900 / 0.800 / 0.01 |
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; one of {', '.join(LEVELS)}")
    entries = [entry for entry in table if entry["level"] == level]
    targets = targets or list(dict.fromkeys(entry["target"] for entry in entries))
    predictors = predictors or list(dict.fromkeys(entry["predictor"] for entry in entries))
    found = {(entry["target"], entry["predictor"]): entry for entry in entries}
    lines = [f"| true metric ({level} level, n) | " + " | ".join(predictors) + " |",
             "|---" * (len(predictors) + 1) + "|"]
    for target in targets:
        counts = [found[(target, name)]["n"] for name in predictors if (target, name) in found]
        label = f"{target} ({max(counts) if counts else 0})"
        lines.append(f"| {label} | " + " | ".join(_cell(found.get((target, name))) for name in predictors) + " |")
    return "\n".join(lines)


def plot_agreement(rows, pairs, path, system_column="system", title=None):
    """Scatter plots of predicted against true values, one panel per ``(target, column, label)``,
    each file a dot coloured by system and each system's mean a larger marker.

    Arguments
    ---------
    rows : list of dict
        As for :func:`agreement_rows`.
    pairs : list of tuple
        ``(target, column, label)`` per panel.
    path : str
        The PNG written.
    system_column : str
        Column naming the system.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    systems = sorted({str(row.get(system_column, "")) for row in rows})
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.0), squeeze=False)
    for axis, (target, column, label) in zip(axes[0], pairs):
        for index, system in enumerate(systems):
            members = [row for row in rows if str(row.get(system_column, "")) == system]
            xy = np.asarray([finite_values([row.get(target), row.get(column)]) for row in members
                             if finite_values([row.get(target), row.get(column)]).size == 2], dtype=float)
            if xy.size == 0:
                continue
            colour = colours(index % 20)
            axis.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.35, color=colour)
            axis.scatter(xy[:, 0].mean(), xy[:, 1].mean(), s=60, marker="D", color=colour,
                         edgecolor="black", label=system)
        axis.set_xlabel(f"true {target}")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best", markerscale=0.6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
