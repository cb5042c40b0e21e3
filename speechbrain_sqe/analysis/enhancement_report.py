"""Enhancement report: metric means per system, overall and per test condition, with a plot.

Input: per-file metric rows of several systems (``noisy``, ``step1``, ``step1+2``, mixes...) on the
same test pairs; output: ``per_file.csv``, ``summary.json``, ``report.md`` (markdown tables) and
``metrics_by_snr.png``.
"""

import json
import logging
import math
import os

from speechbrain_sqe.analysis.quality_report import _sort_key, _write_csv, rows_by_id

__all__ = ["format_enhancement_markdown", "summarize_systems", "write_enhancement_report"]


def _mean(values):
    values = [float(v) for v in values if v is not None and v != "" and math.isfinite(float(v))]
    return sum(values) / len(values) if values else float("nan")


def summarize_systems(table, metrics, group_columns=("snr", "noise_type")):
    """Means of each metric per system, overall and per value of each condition column.

    Arguments
    ---------
    table : list of dict
        Per-file rows with ``system``, the condition columns and the metrics.
    metrics : list of str
        The metric columns.
    group_columns : sequence of str
        Condition columns to break the means down by.

    Returns
    -------
    dict
        ``{"systems", "metrics", "n", "overall": {system: {metric: mean}},
        "per_condition": {column: {value: {system: {metric: mean}}}}}``.

    Example
    -------
    >>> table = [{"system": "noisy", "snr": "0", "pesq_wb": 1.2}, {"system": "vq", "snr": "0", "pesq_wb": 1.6}]
    >>> summary = summarize_systems(table, ["pesq_wb"], ["snr"])
    >>> summary["overall"]["vq"]["pesq_wb"], summary["per_condition"]["snr"]["0"]["noisy"]["pesq_wb"]
    (1.6, 1.2)
    """
    systems = list(dict.fromkeys(row["system"] for row in table))

    def means(rows):
        return {s: {m: _mean(r.get(m) for r in rows if r["system"] == s) for m in metrics} for s in systems}

    summary = {
        "systems": systems,
        "metrics": list(metrics),
        "n": {s: sum(row["system"] == s for row in table) for s in systems},
        "overall": means(table),
        "per_condition": {},
    }
    for column in group_columns:
        values = sorted({str(row.get(column)) for row in table if row.get(column) not in (None, "")},
                        key=_sort_key)
        summary["per_condition"][column] = {
            value: means([row for row in table if str(row.get(column)) == value]) for value in values
        }
    return summary


def format_enhancement_markdown(summary, condition_metrics=("pesq_wb", "dnsmos_ovrl")):
    """Markdown tables of a :func:`summarize_systems` summary.

    Arguments
    ---------
    summary : dict
        The summary.
    condition_metrics : sequence of str
        The metrics shown in the per-condition tables (those present).

    Returns
    -------
    str
        Markdown text: one overall table (systems x metrics), then per condition one table per metric
        (condition values x systems).
    """
    metrics, systems = summary["metrics"], summary["systems"]
    lines = ["| system | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for system in systems:
        cells = " | ".join(f"{summary['overall'][system][m]:.3f}" for m in metrics)
        lines.append(f"| {system} | {summary['n'][system]} | {cells} |")
    for column, groups in summary["per_condition"].items():
        for metric in [m for m in condition_metrics if m in metrics]:
            lines += ["", f"{metric} per {column}:", "",
                      f"| {column} | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
            for value, stats in groups.items():
                lines.append(f"| {value} | " + " | ".join(f"{stats[s][metric]:.3f}" for s in systems) + " |")
    return "\n".join(lines) + "\n"


def plot_metrics_by_snr(summary, path, metrics=("pesq_wb", "stoi", "dnsmos_ovrl")):
    """Line plot of metric means against SNR, one line per system, one panel per metric.

    Arguments
    ---------
    summary : dict
        A :func:`summarize_systems` summary with an ``snr`` breakdown.
    path : str
        The PNG file.
    metrics : sequence of str
        Metrics to plot (those present in the summary).
    """
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in summary["metrics"]]
    groups = summary["per_condition"].get("snr", {})
    if not metrics or not groups:
        return
    snrs = list(groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False,
                             constrained_layout=True)
    for axis, metric in zip(axes[0], metrics):
        for system in summary["systems"]:
            axis.plot([float(s) for s in snrs], [groups[s][system][metric] for s in snrs], marker="o",
                      label=system, linestyle="--" if system == "noisy" else "-")
        axis.set_xlabel("input SNR (dB)")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_enhancement_report(results, manifest, output_folder, metrics, group_columns=("snr", "noise_type")):
    """Writes the per-file CSV, the summary JSON, the markdown tables and the SNR plot.

    Arguments
    ---------
    results : dict
        ``{system: [row, ...]}``, each row with ``file`` (the manifest ID) and metric values.
    manifest : str
        The test manifest (for the condition columns).
    output_folder : str
        Where to write (created).
    metrics : list of str
        The metric columns to summarise (those absent from every row are dropped).
    group_columns : sequence of str
        Condition columns of the manifest to break the means down by.

    Returns
    -------
    dict
        The summary (see :func:`summarize_systems`).

    Example
    -------
    >>> import tempfile, csv
    >>> folder = tempfile.mkdtemp()
    >>> manifest = os.path.join(folder, "test.csv")
    >>> with open(manifest, "w") as f:
    ...     _ = f.write("ID,snr,noise_type\\na,0,babble\\nb,5,hum\\n")
    >>> results = {"noisy": [{"file": "a", "pesq_wb": 1.1}, {"file": "b", "pesq_wb": 1.5}],
    ...            "vq": [{"file": "a", "pesq_wb": 1.4}, {"file": "b", "pesq_wb": 1.9}]}
    >>> summary = write_enhancement_report(results, manifest, folder, ["pesq_wb", "stoi"])
    >>> summary["metrics"], round(summary["overall"]["vq"]["pesq_wb"], 2)
    (['pesq_wb'], 1.65)
    >>> sorted(f for f in os.listdir(folder) if f != "test.csv")
    ['metrics_by_snr.png', 'per_file.csv', 'report.md', 'summary.json']
    """
    os.makedirs(output_folder, exist_ok=True)
    conditions = rows_by_id(manifest)
    table = []
    for system, rows in results.items():
        for row in rows:
            condition = conditions.get(row["file"], {})
            entry = {"system": system, "id": row["file"]}
            entry.update({column: condition.get(column, "") for column in group_columns})
            entry.update({m: row.get(m) for m in metrics})
            table.append(entry)
    present = [m for m in metrics if any(r.get(m) not in (None, "") for r in table)]
    summary = summarize_systems(table, present, group_columns)
    _write_csv(os.path.join(output_folder, "per_file.csv"), table)
    with open(os.path.join(output_folder, "summary.json"), "w", encoding="utf-8") as stream:
        json.dump(summary, stream, indent=1)
    with open(os.path.join(output_folder, "report.md"), "w", encoding="utf-8") as stream:
        stream.write(format_enhancement_markdown(summary))
    plot_metrics_by_snr(summary, os.path.join(output_folder, "metrics_by_snr.png"))
    return summary
