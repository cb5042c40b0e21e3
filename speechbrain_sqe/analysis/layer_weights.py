"""Learned SSL layer weights against each layer's clean-noisy (CN) distance (Hung et al., Interspeech 2022).

BSSE's finding: the layers whose embeddings move most between clean and noisy speech (larger CN
distance) get larger weights in the weighted sum, and fine-tuning the SSL model makes the CN
distance grow. This module joins the weights of a trained model with the per-layer CN distance
that :mod:`speechbrain_sqe.analysis.ssl_robustness` computes (the machinery of ``sqe analyze-ssl``:
the rows of :meth:`~speechbrain_sqe.analysis.ssl_robustness.RobustnessAccumulator.results`, group
``overall``), measured with the upstream before fine-tuning and after it, and writes a table
(CSV and markdown) and a plot (weight against CN distance, one point per layer).

Several runs (frozen, ``pf``, ``ef`` fine-tuning; ``ssl`` and ``cross`` features) side by side, from
their ``report/layer_weights.csv``::

    python -m speechbrain_sqe.analysis.layer_weights cross_frozen=results/bsse/cross_frozen/1234/report \
        cross_ef=results/bsse/cross_ef/1234/report --output results/bsse/layer_weights

Authors: speechbrain-sqe contributors
"""

import csv
import math
import os

from speechbrain_sqe.metrics.correlation import correlation

__all__ = [
    "compare_layer_weight_reports",
    "format_layer_weight_comparison",
    "format_layer_weight_markdown",
    "layer_weight_rows",
    "read_layer_weight_csv",
    "write_layer_weight_report",
]

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


def read_layer_weight_csv(path):
    """Reads a ``layer_weights.csv`` written by :func:`write_layer_weight_report` back as a table.

    Arguments
    ---------
    path : str
        The CSV, or the report folder holding ``layer_weights.csv``.

    Returns
    -------
    list of dict
        As :func:`layer_weight_rows` returns (numbers as float, ``layer`` as int).

    Raises
    ------
    ValueError
        When the file has no ``layer``/``weight``/``cn_distance (...)`` columns or no rows.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"layer": i, "group": "overall", "cn_distance": d, "cosine": 0.9, "nmse": 0.2}
    ...         for i, d in enumerate([0.1, 0.3])]
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_layer_weight_report(layer_weight_rows([0.4, 0.6], {"pretrained": rows}), folder)
    >>> read_layer_weight_csv(folder)[1]["cn_distance (pretrained)"]
    0.3
    """
    if os.path.isdir(path):
        path = os.path.join(path, "layer_weights.csv")
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "weight" not in rows[0] or "layer" not in rows[0] or not _stages(rows):
        raise ValueError(f"{path}: not a layer-weight report (needs rows with layer, weight, cn_distance (<stage>))")
    return [{key: int(value) if key == "layer" else float(value) for key, value in row.items()} for row in rows]


def _spearman(table, stage):
    rho = correlation([row["weight"] for row in table], [row[f"cn_distance ({stage})"] for row in table])["spearman"]
    return "n/a" if math.isnan(rho) else f"{rho:.2f}"


def format_layer_weight_comparison(tables, precision=3):
    """Markdown comparing runs: per run its weights, CN distances per stage and their Spearman.

    Arguments
    ---------
    tables : dict
        ``{run name: table}`` (tables from :func:`layer_weight_rows` or :func:`read_layer_weight_csv`).
    precision : int
        Decimals of weights and distances.

    Returns
    -------
    str
        Markdown: one row per run; lists are by layer, input representation first.

    Example
    -------
    >>> rows = [{"layer": i, "group": "overall", "cn_distance": d, "cosine": 0.9, "nmse": 0.2}
    ...         for i, d in enumerate([0.1, 0.3, 0.2])]
    >>> tuned = [dict(row, cn_distance=2 * row["cn_distance"]) for row in rows]
    >>> table = layer_weight_rows([0.2, 0.5, 0.3], {"pretrained": rows, "fine-tuned": tuned})
    >>> print(format_layer_weight_comparison({"ef": table}))
    | run | weight per layer | CN distance (pretrained) | CN distance (fine-tuned) | Spearman (weight, CN) |
    |---|---|---|---|---|
    | ef | 0.200 / 0.500 / 0.300 | 0.100 / 0.300 / 0.200 | 0.200 / 0.600 / 0.400 | pretrained 1.00, fine-tuned 1.00 |
    """
    stages = []
    for table in tables.values():
        stages += [stage for stage in _stages(table) if stage not in stages]
    header = ["run", "weight per layer"] + [f"CN distance ({stage})" for stage in stages] + ["Spearman (weight, CN)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, table in tables.items():
        cells = [name, " / ".join(f"{row['weight']:.{precision}f}" for row in table)]
        own = _stages(table)
        for stage in stages:
            cells.append(" / ".join(f"{row[f'cn_distance ({stage})']:.{precision}f}" for row in table)
                         if stage in own else "")
        cells.append(", ".join(f"{stage} {_spearman(table, stage)}" for stage in own))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_layer_weight_reports(tables, output_folder, prefix="layer_weights_compared"):
    """Writes the comparison of several runs: ``<prefix>.md`` and ``<prefix>.png`` (weight per layer of
    each run; CN distance per layer before fine-tuning and after it, per run).

    Arguments
    ---------
    tables : dict
        ``{run name: table}``.
    output_folder : str
        Where to write (created).
    prefix : str
        File name stem.

    Returns
    -------
    dict
        Paths: ``markdown``, ``plot``.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"layer": i, "group": "overall", "cn_distance": d, "cosine": 0.9, "nmse": 0.2}
    ...         for i, d in enumerate([0.1, 0.3])]
    >>> tables = {"frozen": layer_weight_rows([0.5, 0.5], {"pretrained": rows})}
    >>> paths = compare_layer_weight_reports(tables, tempfile.mkdtemp())
    >>> sorted(os.path.basename(p) for p in paths.values())
    ['layer_weights_compared.md', 'layer_weights_compared.png']
    """
    if not tables:
        raise ValueError("no layer-weight reports to compare")
    os.makedirs(output_folder, exist_ok=True)
    paths = {"markdown": os.path.join(output_folder, f"{prefix}.md"),
             "plot": os.path.join(output_folder, f"{prefix}.png")}
    with open(paths["markdown"], "w", encoding="utf-8") as stream:
        stream.write(format_layer_weight_comparison(tables) + "\n")
    _plot_comparison(tables, paths["plot"])
    return paths


def _plot_comparison(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    pretrained_drawn = set()
    for (name, table), marker in zip(tables.items(), "osD^v<>p*h"):
        layers = [row["layer"] for row in table]
        left.plot(layers, [row["weight"] for row in table], marker + "-", label=name)
        for stage in _stages(table):
            values = [row[f"cn_distance ({stage})"] for row in table]
            if stage == "pretrained":  # the same upstream for every run: drawn once
                if tuple(values) in pretrained_drawn:
                    continue
                pretrained_drawn.add(tuple(values))
                right.plot(layers, values, "k--", label="pretrained upstream")
            else:
                right.plot(layers, values, marker + "-", label=f"{name} ({stage})")
    left.set_title("learned layer weight")
    right.set_title("clean-noisy distance of the layer")
    for ax in (left, right):
        ax.set_xlabel("layer (0 = input representation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Command line: compare the layer-weight reports of several runs (see the module docstring)."""
    import argparse

    parser = argparse.ArgumentParser(description="Compare the layer-weight reports of several BSSE runs.")
    parser.add_argument("runs", nargs="+", metavar="NAME=REPORT",
                        help="a run's name and its report folder (or layer_weights.csv)")
    parser.add_argument("--output", required=True, help="folder for layer_weights_compared.{md,png}")
    args = parser.parse_args(argv)
    tables = {}
    for run in args.runs:
        name, sep, report = run.partition("=")
        if not sep or not name or not report:
            parser.error(f"expected NAME=REPORT, got {run!r}")
        try:
            tables[name] = read_layer_weight_csv(report)
        except (OSError, ValueError) as error:
            parser.error(str(error))
    paths = compare_layer_weight_reports(tables, args.output)
    with open(paths["markdown"], encoding="utf-8") as stream:
        print(stream.read().rstrip())
    print(f"written: {paths['markdown']}, {paths['plot']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
