"""How well a quality estimator agrees with intrusive metrics: per-file CSV, correlations, plot.

Used by the VQScore recipe (and any later no-reference estimator): reference metrics of the noisy
files are computed once per split with the parallel runner and cached; the report joins them with
the estimator's scores, computes Pearson/Spearman/Kendall overall and per condition (SNR, noise
family, reverberation), and draws a scatter plot.
"""

import csv
import json
import logging
import os

from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.dataio.resumable_csv import ResumableCSV, ResumeError
from speechbrain_sqe.metrics.correlation import correlation
from speechbrain_sqe.metrics.registry import split_available
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

logger = logging.getLogger(__name__)

#: Manifest columns that define a test condition.
CONDITION_COLUMNS = ("snr", "noise_type", "reverb")


def available_metrics(metrics):
    """Drops the metrics that cannot run here (DNSMOS without the ``eval`` extra), with a warning.

    Arguments
    ---------
    metrics : list of str
        Requested metric names.

    Returns
    -------
    list of str
        The names that can be computed here.

    Example
    -------
    >>> available_metrics(["pesq_wb", "stoi"])
    ['pesq_wb', 'stoi']
    """
    names, reasons = split_available(metrics)
    for name, why in reasons.items():
        logger.warning("skipping %s: %s", name, why)
    return names


def rows_by_id(manifest):
    """Reads a SpeechBrain CSV manifest as a dict of rows by ID.

    Arguments
    ---------
    manifest : str
        The CSV file.

    Returns
    -------
    dict
        ``{ID: row}``.
    """
    return {row["ID"]: row for row in read_manifest(manifest)}


def load_reference_metrics(manifest, cache, metrics, jobs=1, timeout=None):
    """Intrusive metrics of each noisy file against its clean reference, cached in a CSV.

    The cache is written as files finish (one appended line each, in crash-isolated workers),
    so an interrupted recipe keeps what was computed and the next call computes only the rest;
    a row is reused only for the same files, unchanged since (path, size and modification time).
    When complete, the cache is rewritten in manifest order (write-then-rename).

    Arguments
    ---------
    manifest : str
        A pairs manifest (``ID``, ``clean_wav``, ``noisy_wav`` columns).
    cache : str
        CSV where the values are kept (``ID``, ``signature``, then the metrics); a cache of other
        metrics is started anew.
    metrics : list of str
        Metric names (see :mod:`speechbrain_sqe.metrics`), e.g. ``["pesq_wb", "stoi"]``.
    jobs : int
        Parallel processes.
    timeout : float, optional
        Seconds one pair may take (see :func:`~speechbrain_sqe.metrics.runner.evaluate_pairs`).

    Returns
    -------
    dict
        ``{ID: {metric: value}}``, in manifest order.

    Raises
    ------
    RuntimeError
        When some pairs could not be scored (they are listed; the others stay in the cache).
    """
    metrics = available_metrics(metrics)
    rows = rows_by_id(manifest)
    signatures = {uid: _signature(row) for uid, row in rows.items()}
    columns = ["ID", "signature", *metrics]
    try:
        table = ResumableCSV(cache, columns, key="ID", resume=True)
    except ResumeError as error:
        logger.info("%s; computing the reference metrics anew", error)
        table = ResumableCSV(cache, columns, key="ID")
    stale = [uid for uid, cells in table.rows.items()
             if signatures.get(uid) != cells[1] or not all(cells[2:])]
    for uid in stale:
        table.discard(uid)
    todo = [uid for uid in rows if uid not in table.rows]
    if todo:
        logger.info("reference metrics: %d of %d pairs to compute", len(todo), len(rows))
        pairs = [Pair(file=uid, ref=rows[uid]["clean_wav"], deg=rows[uid]["noisy_wav"]) for uid in todo]

        def save(result):
            table.append({"ID": result["file"], "signature": signatures[result["file"]],
                          **{m: result[m] for m in metrics}})

        _, failures = evaluate_pairs(pairs, metrics=metrics, jobs=jobs, timeout=timeout, on_row=save)
        for failure in failures:  # a row with an empty metric is not a result: recompute it next time
            table.discard(failure.file)
        if failures:
            table.finalize(list(rows))
            raise RuntimeError(f"reference metrics failed for {manifest}: {failures[:5]}")
    if todo or stale or list(table.rows) != list(rows):
        table.finalize(list(rows))
    return {uid: {m: float(cells[2 + i]) for i, m in enumerate(metrics)}
            for uid in rows for cells in [table.rows[uid]]}


def _signature(row):
    """Real paths, sizes and modification times of a pair's files (the real path, so that a manifest
    naming the same files through a link or another spelling keeps its cached values)."""
    parts = []
    for path in (row["clean_wav"], row["noisy_wav"]):
        stat = os.stat(path)
        parts.append(f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def write_quality_report(scores, reference, manifest, output_folder, score_key="vqscore_noisy"):
    """Writes the per-file CSV, the correlation tables (JSON and markdown) and a scatter plot.

    Arguments
    ---------
    scores : dict
        ``{ID: {"vqscore_noisy": float, "vqscore_clean": float}}``.
    reference : dict
        ``{ID: {metric: value}}`` from :func:`load_reference_metrics`.
    manifest : str
        The pairs manifest (for paths and conditions).
    output_folder : str
        Where ``scores.csv``, ``correlations.json``, ``correlations.md`` and ``scatter.png`` go.
    score_key : str
        The score column correlated with the reference metrics.

    Returns
    -------
    dict
        The summary: overall correlations per metric, per-condition tables, the clean > noisy rate.
    """
    rows = rows_by_id(manifest)
    os.makedirs(output_folder, exist_ok=True)
    table = []
    for uid, score in scores.items():
        if uid not in reference:
            continue
        row = rows[uid]
        entry = {"ID": uid, "noisy_wav": row.get("noisy_wav"), "clean_wav": row.get("clean_wav")}
        entry.update({column: row[column] for column in CONDITION_COLUMNS if column in row})
        entry.update(score)
        entry.update(reference[uid])
        table.append(entry)
    _write_csv(os.path.join(output_folder, "scores.csv"), table)
    metrics = list(next(iter(reference.values())).keys())
    summary = {
        "n": len(table),
        "clean_above_noisy": sum(r["vqscore_clean"] > r["vqscore_noisy"] for r in table) / max(len(table), 1),
        "overall": {m: correlation([r[score_key] for r in table], [r[m] for r in table]) for m in metrics},
        "per_condition": {},
    }
    for column in CONDITION_COLUMNS:
        if table and column in table[0]:
            summary["per_condition"][column] = _per_group(table, column, score_key, metrics)
    with open(os.path.join(output_folder, "correlations.json"), "w", encoding="utf-8") as stream:
        json.dump(summary, stream, indent=2)
    with open(os.path.join(output_folder, "correlations.md"), "w", encoding="utf-8") as stream:
        stream.write(format_summary_markdown(summary))
    plot_scatter(table, score_key, metrics, os.path.join(output_folder, "scatter.png"))
    return summary


def _per_group(table, column, score_key, metrics):
    groups = {}
    for row in table:
        groups.setdefault(row[column], []).append(row)
    result = {}
    for value, members in sorted(groups.items(), key=lambda item: _sort_key(item[0])):
        result[value] = {"n": len(members), "mean_score": sum(r[score_key] for r in members) / len(members)}
        for metric in metrics:
            result[value][metric] = correlation([r[score_key] for r in members], [r[metric] for r in members])
    return result


def _sort_key(value):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def format_summary_markdown(summary):
    """Formats a report summary as markdown tables.

    Arguments
    ---------
    summary : dict
        As returned by :func:`write_quality_report`.

    Returns
    -------
    str
        Markdown text.
    """
    lines = [
        f"Files: {summary['n']}; clean scores above noisy: {100 * summary['clean_above_noisy']:.1f}%",
        "",
        "| metric | Pearson | Spearman | Kendall |",
        "|---|---|---|---|",
    ]
    for metric, corr in summary["overall"].items():
        lines.append(f"| {metric} | {corr['pearson']:.3f} | {corr['spearman']:.3f} | {corr['kendall']:.3f} |")
    for column, groups in summary["per_condition"].items():
        metrics = [k for k in next(iter(groups.values())) if k not in ("n", "mean_score")]
        lines += ["", f"Per {column}:", "", "| " + column + " | n | mean score | "
                  + " | ".join(f"Spearman {m}" for m in metrics) + " |",
                  "|---" * (3 + len(metrics)) + "|"]
        for value, stats in groups.items():
            cells = " | ".join(f"{stats[m]['spearman']:.3f}" for m in metrics)
            lines.append(f"| {value} | {stats['n']} | {stats['mean_score']:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_scatter(table, score_key, metrics, path):
    """Scatter plots of the score against each reference metric, one panel per metric.

    Arguments
    ---------
    table : list of dict
        Rows with ``score_key`` and each metric.
    score_key : str
        The score column (x axis).
    metrics : list of str
        The reference metrics (y axes).
    path : str
        The PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # font-cache DEBUG chatter
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 1, 4.2), squeeze=False,
                             constrained_layout=True)
    for axis, metric in zip(axes[0], metrics):
        x = [r[score_key] for r in table]
        y = [r[metric] for r in table]
        snr = [float(r.get("snr", 0) or 0) for r in table]
        points = axis.scatter(x, y, c=snr, cmap="viridis", s=14)
        corr = correlation(x, y)
        axis.set_title(f"{metric}\nSpearman {corr['spearman']:.3f}, Pearson {corr['pearson']:.3f}",
                       fontsize=10)
        axis.set_xlabel(score_key)
        axis.set_ylabel(metric)
    fig.colorbar(points, ax=axes[0].tolist(), label="SNR (dB)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_csv(path, table):
    fields = []
    for row in table:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
