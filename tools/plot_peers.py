"""Plots a metric against SNR for every system of ``bench_enhance_peers.py`` tables, one panel per
table and metric: the curves behind a peers table's means.

    python tools/plot_peers.py speakers=results/enh_default_s26/peers_speakers_dry.csv \
        cross_source=results/enh_default_s26/peers_cross_source_dry.csv \
        --metrics pesq_wb dnsmos_ovrl --out recipes/RealSpeech/shipped_enhancers.png

Reads the per-file CSVs the benchmark writes (``system``, ``snr`` and one column per metric); a
system's point at an SNR is the mean over its files at that SNR (empty cells skipped).
"""

import argparse
import csv
import math
from collections import defaultdict


def means_by(rows, metric, by="snr"):
    """Mean of ``metric`` per system and value of ``by``.

    Arguments
    ---------
    rows : list of dict
        Rows of a peers CSV (strings, as ``csv.DictReader`` gives them).
    metric : str
        The metric column.
    by : str
        The column to group by (numeric).

    Returns
    -------
    dict
        ``{system: [(by_value, mean), ...]}``, sorted by ``by_value``; systems in first-seen order.

    Example
    -------
    >>> rows = [{"system": "a", "snr": "0", "m": "1"}, {"system": "a", "snr": "0", "m": "3"},
    ...         {"system": "a", "snr": "5", "m": ""}, {"system": "b", "snr": "5", "m": "2"}]
    >>> means_by(rows, "m")
    {'a': [(0.0, 2.0)], 'b': [(5.0, 2.0)]}
    """
    sums = defaultdict(lambda: defaultdict(list))
    for row in rows:
        value = row.get(metric, "")
        if value in ("", None) or math.isnan(float(value)):
            continue
        sums[row["system"]][float(row[by])].append(float(value))
    return {system: [(key, sum(values) / len(values)) for key, values in sorted(groups.items())]
            for system, groups in sums.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+", metavar="NAME=CSV", help="a peers CSV and its panel title")
    parser.add_argument("--metrics", nargs="+", default=["pesq_wb", "dnsmos_ovrl"])
    parser.add_argument("--by", default="snr")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [item.split("=", 1) for item in args.tables]
    figure, axes = plt.subplots(len(args.metrics), len(tables), figsize=(5 * len(tables), 3.6 * len(args.metrics)),
                                squeeze=False)
    for column, (name, path) in enumerate(tables):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for line, metric in enumerate(args.metrics):
            axis = axes[line][column]
            for system, points in means_by(rows, metric, args.by).items():
                style = "--" if system == "noisy" else "-"
                axis.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=system)
            axis.set_title(f"{name}: {metric}")
            axis.set_xlabel(f"{args.by} (dB)" if args.by == "snr" else args.by)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
