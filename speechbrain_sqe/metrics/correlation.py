"""Correlation statistics between predicted scores and targets (for example MOS labels).

Pearson (linear), Spearman (rank) and Kendall (tau-b) coefficients from :mod:`scipy.stats`, with
their two-sided p-values and the number of pairs used, at utterance level (:func:`correlation`),
per condition (:func:`correlation_table`, one row per group plus an ``overall`` row) and at
condition/system level (:func:`condition_means` then :func:`correlation`). Tables are lists of
row dicts (as :class:`csv.DictReader` gives); no pandas needed.
"""

import math
import warnings

import numpy as np

from speechbrain_sqe.metrics.registry import finite_values

#: Keys of one correlation result, in order.
STAT_KEYS = (
    "n", "pearson", "pearson_p", "spearman", "spearman_p", "kendall", "kendall_p",
)
#: Label of the all-rows entry of :func:`correlation_table`.
OVERALL = "overall"


def _pairs(scores, targets):
    scores, targets = list(scores), list(targets)
    if len(scores) != len(targets):
        raise ValueError(f"scores and targets differ in length ({len(scores)} vs {len(targets)})")
    x, y = [], []
    for score, target in zip(scores, targets):
        both = finite_values([score, target])
        if both.size == 2:
            x.append(both[0])
            y.append(both[1])
    return np.asarray(x), np.asarray(y)


def correlation(scores, targets):
    """Pearson, Spearman and Kendall correlations with p-values.

    Pairs where either value is missing, blank or not finite are left out; ``n`` counts the
    pairs used. With fewer than 3 pairs, or a constant input, the coefficients are ``nan``.

    Arguments
    ---------
    scores : sequence
        Predicted scores (numbers or numeric strings).
    targets : sequence
        Target values, same length.

    Returns
    -------
    dict
        ``n``, ``pearson``, ``pearson_p``, ``spearman``, ``spearman_p``, ``kendall``,
        ``kendall_p``.

    Example
    -------
    >>> stats = correlation([1, 2, 3, 4, 5], [1.1, 1.9, 3.2, 3.9, 5.3])
    >>> stats["n"], round(stats["pearson"], 3), round(stats["spearman"], 6), round(stats["kendall"], 6)
    (5, 0.995, 1.0, 1.0)
    """
    from scipy import stats

    x, y = _pairs(scores, targets)
    result = {key: math.nan for key in STAT_KEYS}
    result["n"] = int(x.size)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pearson = stats.pearsonr(x, y)
        spearman = stats.spearmanr(x, y)
        kendall = stats.kendalltau(x, y)
    result.update(
        pearson=float(pearson[0]), pearson_p=float(pearson[1]),
        spearman=float(spearman[0]), spearman_p=float(spearman[1]),
        kendall=float(kendall[0]), kendall_p=float(kendall[1]),
    )
    return result


def correlation_table(rows, score, target, group_by=None):
    """Correlations of two columns within each group of rows, plus over all rows.

    Arguments
    ---------
    rows : list of dict
        The table, one dict per utterance (values may be numbers or strings).
    score : str
        Column of the predicted scores.
    target : str
        Column of the targets.
    group_by : str, optional
        Column naming the condition of each row; rows missing it go to the group ``""``.
        Without it, only the overall row is returned.

    Returns
    -------
    list of dict
        One dict per group, sorted by group name, then the ``overall`` one; each has
        ``group`` and the keys of :func:`correlation`.

    Example
    -------
    >>> rows = [{"cond": c, "pred": p, "mos": m} for c, p, m in [
    ...     ("a", 1, 1.2), ("a", 2, 2.1), ("a", 3, 2.8),
    ...     ("b", 1, 3.0), ("b", 2, 2.0), ("b", 3, 1.0)]]
    >>> table = correlation_table(rows, "pred", "mos", group_by="cond")
    >>> [(t["group"], t["n"], round(t["spearman"], 2)) for t in table]
    [('a', 3, 1.0), ('b', 3, -1.0), ('overall', 6, -0.24)]
    """
    table = []
    if group_by is not None:
        groups = {}
        for row in rows:
            groups.setdefault(str(row.get(group_by, "")), []).append(row)
        for name in sorted(groups):
            members = groups[name]
            stats = correlation([r.get(score) for r in members], [r.get(target) for r in members])
            table.append({"group": name, **stats})
    stats = correlation([r.get(score) for r in rows], [r.get(target) for r in rows])
    table.append({"group": OVERALL, **stats})
    return table


def condition_means(rows, columns, group_by):
    """Per-condition means of some columns (for condition- or system-level correlation).

    Arguments
    ---------
    rows : list of dict
        The utterance table.
    columns : list of str
        Numeric columns to average (non-finite and blank values are left out).
    group_by : str
        Column naming the condition.

    Returns
    -------
    list of dict
        One row per condition, sorted: ``{group_by: name, "n": rows, column: mean, ...}``.

    Example
    -------
    >>> rows = [{"sys": "x", "pesq": 2.0}, {"sys": "x", "pesq": 3.0}, {"sys": "y", "pesq": "1"}]
    >>> condition_means(rows, ["pesq"], "sys")
    [{'sys': 'x', 'n': 2, 'pesq': 2.5}, {'sys': 'y', 'n': 1, 'pesq': 1.0}]
    """
    groups = {}
    for row in rows:
        groups.setdefault(str(row.get(group_by, "")), []).append(row)
    out = []
    for name in sorted(groups):
        members = groups[name]
        entry = {group_by: name, "n": len(members)}
        for column in columns:
            values = finite_values([r.get(column) for r in members])
            entry[column] = float(values.mean()) if values.size else math.nan
        out.append(entry)
    return out
