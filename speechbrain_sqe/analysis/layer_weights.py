"""Learned SSL layer weights against each layer's clean-noisy (CN) distance (Hung et al., Interspeech 2022).

BSSE's finding: the layers whose embeddings move most between clean and noisy speech (larger CN
distance) get larger weights in the weighted sum, and fine-tuning the SSL model makes the CN
distance grow. This module joins the weights of a trained model with the per-layer CN distance
that :mod:`speechbrain_sqe.analysis.ssl_robustness` computes (the machinery of ``sqe analyze-ssl``:
the rows of :meth:`~speechbrain_sqe.analysis.ssl_robustness.RobustnessAccumulator.results`, group
``overall``), measured with the upstream before fine-tuning and after it, and writes a table
(CSV and markdown) and a plot (weight against CN distance, one point per layer).

Authors: speechbrain-sqe contributors
"""

import csv
import math
import os

from speechbrain_sqe.metrics.correlation import correlation

__all__ = ["format_layer_weight_markdown", "layer_weight_rows", "write_layer_weight_report"]

#: The robustness measures carried into the table (per stage).
MEASURES = ("cn_distance", "cosine", "nmse")


def _overall(rows):
    """``{layer: row}`` of the ``overall`` group of robustness rows."""
    return {int(row["layer"]): row for row in rows if row.get("group", "overall") == "overall"}


def layer_weight_rows(weights, robustness):
    """One row per layer: its weight and its robustness measures at each stage.

    Arguments
    ---------
    weights : sequence of float
        The learned layer weights (softmax, input representation first).
    robustness : dict
        ``{stage: rows}`` with ``rows`` from ``RobustnessAccumulator.results()`` (only the
        ``overall`` group is read), e.g. ``{"pretrained": ..., "fine-tuned": ...}``.

    Returns
    -------
    list of dict
        ``{"layer", "weight", "<measure> (<stage>)" ...}``.

    Raises
    ------
    ValueError
        When a stage has another number of layers than ``weights``.

    Example
    -------
    >>> rows = [{"layer": 0, "group": "overall", "cn_distance": 0.1, "cosine": 0.9, "nmse": 0.2},
    ...         {"layer": 1, "group": "overall", "cn_distance": 0.3, "cosine": 0.8, "nmse": 0.4}]
    >>> table = layer_weight_rows([0.4, 0.6], {"pretrained": rows})
    >>> table[1]["weight"], table[1]["cn_distance (pretrained)"]
    (0.6, 0.3)
    """
    weights = [float(w) for w in weights]
    table = [{"layer": layer, "weight": weight} for layer, weight in enumerate(weights)]
    for stage, rows in robustness.items():
        by_layer = _overall(rows)
        if sorted(by_layer) != list(range(len(weights))):
            raise ValueError(f"{stage}: robustness rows for layers {sorted(by_layer)}, but {len(weights)} weights")
        for row in table:
            for measure in MEASURES:
                row[f"{measure} ({stage})"] = float(by_layer[row["layer"]][measure])
    return table


def _stages(table):
    return [key[len("cn_distance (") : -1] for key in table[0] if key.startswith("cn_distance (")]


def format_layer_weight_markdown(table, precision=3):
    """Markdown of the table, with the Spearman correlation of weight and CN distance per stage.

    Arguments
    ---------
    table : list of dict
        From :func:`layer_weight_rows`.
    precision : int
        Decimals.

    Returns
    -------
    str
        Markdown text.

    Example
    -------
    >>> rows = [{"layer": i, "group": "overall", "cn_distance": d, "cosine": 0.9, "nmse": 0.2}
    ...         for i, d in enumerate([0.1, 0.2, 0.3])]
    >>> print(format_layer_weight_markdown(layer_weight_rows([0.2, 0.3, 0.5], {"pretrained": rows})))
    | layer | weight | CN distance (pretrained) |
    |---|---|---|
    | 0 | 0.200 | 0.100 |
    | 1 | 0.300 | 0.200 |
    | 2 | 0.500 | 0.300 |
    <BLANKLINE>
    Spearman (weight, CN distance): pretrained 1.000 (3 layers)
    """
    stages = _stages(table)
    header = ["layer", "weight"] + [f"CN distance ({stage})" for stage in stages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [str(row["layer"]), f"{row['weight']:.{precision}f}"]
        cells += [f"{row[f'cn_distance ({stage})']:.{precision}f}" for stage in stages]
        lines.append("| " + " | ".join(cells) + " |")
    weights = [row["weight"] for row in table]
    parts = []
    for stage in stages:
        rho = correlation(weights, [row[f"cn_distance ({stage})"] for row in table])["spearman"]
        parts.append(f"{stage} {'n/a' if math.isnan(rho) else f'{rho:.{precision}f}'}")
    lines += ["", f"Spearman (weight, CN distance): {', '.join(parts)} ({len(table)} layers)"]
    return "\n".join(lines)


def write_layer_weight_report(table, output_folder, prefix="layer_weights"):
    """Writes ``<prefix>.csv``, ``<prefix>.md`` and ``<prefix>.png`` (weight against CN distance).

    Arguments
    ---------
    table : list of dict
        From :func:`layer_weight_rows`.
    output_folder : str
        Where to write (created).
    prefix : str
        File name stem.

    Returns
    -------
    dict
        Paths: ``csv``, ``markdown``, ``plot``.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"layer": i, "group": "overall", "cn_distance": d, "cosine": 0.9, "nmse": 0.2}
    ...         for i, d in enumerate([0.1, 0.2, 0.3])]
    >>> table = layer_weight_rows([0.2, 0.3, 0.5], {"pretrained": rows, "fine-tuned": rows})
    >>> paths = write_layer_weight_report(table, tempfile.mkdtemp())
    >>> sorted(os.path.basename(p) for p in paths.values())
    ['layer_weights.csv', 'layer_weights.md', 'layer_weights.png']
    """
    os.makedirs(output_folder, exist_ok=True)
    paths = {key: os.path.join(output_folder, f"{prefix}.{ext}") for key, ext in
             (("csv", "csv"), ("markdown", "md"), ("plot", "png"))}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    with open(paths["markdown"], "w", encoding="utf-8") as stream:
        stream.write(format_layer_weight_markdown(table) + "\n")
    _plot(table, paths["plot"])
    return paths


def _plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for stage, marker in zip(_stages(table), "os^vD"):
        xs = [row[f"cn_distance ({stage})"] for row in table]
        ys = [row["weight"] for row in table]
        ax.plot(xs, ys, marker, label=stage)
        for row, x, y in zip(table, xs, ys):
            ax.annotate(str(row["layer"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("clean-noisy distance of the layer")
    ax.set_ylabel("learned layer weight")
    ax.set_title("SSL layer weights vs CN distance")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
