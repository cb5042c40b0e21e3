#!/usr/bin/env python3
"""One table (and a bar chart) of several VQScore models measured by ``measure_models.py``.

    python recipes/RealSpeech/ablation_table.py --output results/vqreal/ablation \\
        shipped=results/vqreal/measure/shipped a_real=results/vqreal/measure/a_real ...

Each ``label=folder`` names a ``measure_models.py --enhancer ''`` report folder (its
``<set>_quality.csv``). Writes ``ablation.md`` (per set: clean > noisy, Spearman of VQScore with
PESQ, STOI, DNSMOS OVRL and Distill-MOS, the dry / reverberant split of the PESQ one, and the
DNSMOS OVRL and Distill-MOS agreement with PESQ of the same run), ``ablation.json`` and
``ablation.png`` (Spearman with PESQ per model and set, the DNSMOS and Distill-MOS lines for
scale). With ``--reference LABEL``, also the paired bootstrap of each model's Spearman with PESQ
minus the reference model's on the same resampled pairs (``paired.md``: the difference and its
90% interval; an interval that contains 0 is a difference the 96 pairs cannot tell).
"""

import argparse
import csv
import importlib.util
import json
import os

import numpy as np

SETS = ("speakers", "cross_source")


def _summarize_quality():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "summarize_quality.py")
    spec = importlib.util.spec_from_file_location("summarize_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.summarize


def collect(folders):
    """``{label: {set: summary}}`` from ``{label: report folder}`` (sets without a CSV are left out).

    Arguments
    ---------
    folders : dict
        ``label -> measure_models.py output folder``.

    Returns
    -------
    dict
        The summaries of ``summarize_quality.summarize``.
    """
    summarize = _summarize_quality()
    results = {}
    for label, folder in folders.items():
        results[label] = {}
        for name in SETS:
            path = os.path.join(folder, f"{name}_quality.csv")
            if os.path.isfile(path):
                with open(path, newline="") as handle:
                    results[label][name] = summarize(list(csv.DictReader(handle)))
    return results


def _ranks(values):
    order = np.argsort(values, axis=-1, kind="stable")
    ranks = np.empty_like(order, dtype=float)
    np.put_along_axis(ranks, order, np.arange(values.shape[-1], dtype=float)[None].repeat(len(values), 0), axis=-1)
    return ranks


def _spearman_rows(x, y):
    """Spearman of each row of ``x`` with the same row of ``y`` (ties broken by order: continuous scores)."""
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean(-1, keepdims=True)
    ry -= ry.mean(-1, keepdims=True)
    return (rx * ry).sum(-1) / np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))


def paired_difference(model, reference, pesq, rounds=2000, seed=0):
    """Spearman(model, PESQ) minus Spearman(reference, PESQ): the value and a 90% paired bootstrap interval.

    Arguments
    ---------
    model, reference, pesq : sequence of float
        The two models' scores of the same noisy files and their PESQ.
    rounds : int
        Bootstrap resamples of the pairs.
    seed : int
        Of the resampling.

    Returns
    -------
    tuple
        ``(difference, low, high)``.

    Example
    -------
    >>> pesq = np.arange(50.0)
    >>> d, low, high = paired_difference(pesq, pesq[::-1], pesq, rounds=100)
    >>> round(d, 3), low > 1.9
    (2.0, True)
    """
    model, reference, pesq = (np.asarray(v, dtype=float) for v in (model, reference, pesq))
    index = np.random.default_rng(seed).integers(0, len(pesq), (rounds, len(pesq)))
    diffs = _spearman_rows(model[index], pesq[index]) - _spearman_rows(reference[index], pesq[index])
    full = (_spearman_rows(model[None], pesq[None]) - _spearman_rows(reference[None], pesq[None]))[0]
    return float(full), float(np.percentile(diffs, 5)), float(np.percentile(diffs, 95))


def paired_markdown(folders, reference):
    """Per set, each model's paired difference to ``reference`` (``folders``: label -> report folder)."""
    def column(folder, name, key):
        with open(os.path.join(folder, f"{name}_quality.csv"), newline="") as handle:
            return {row["ID"]: float(row[key]) for row in csv.DictReader(handle)}

    lines = [f"| model | test set | VQScore ~ PESQ minus {reference}'s | 90% interval (paired bootstrap) |",
             "|---|---|---|---|"]
    for label, folder in folders.items():
        if label == reference:
            continue
        for name in SETS:
            if not os.path.isfile(os.path.join(folder, f"{name}_quality.csv")):
                continue
            mine, theirs = column(folder, name, "vqscore_noisy"), column(folders[reference], name, "vqscore_noisy")
            pesq = column(folder, name, "pesq_wb")
            ids = sorted(mine)
            d, low, high = paired_difference([mine[i] for i in ids], [theirs[i] for i in ids], [pesq[i] for i in ids])
            lines.append(f"| {label} | {name} | {d:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    return "\n".join(lines) + "\n"


def markdown(results):
    """The ablation table, one row per (model, set).

    Example
    -------
    >>> s = {"pairs": 4, "clean_above_noisy": 1.0, "vqscore_spearman_pesq_wb": 0.5,
    ...      "vqscore_spearman_stoi": 0.4, "vqscore_spearman_dnsmos_ovrl": 0.3,
    ...      "vqscore_spearman_distillmos": 0.2, "dnsmos_ovrl_spearman_pesq_wb": 0.6,
    ...      "distillmos_spearman_pesq_wb": 0.7, "dry": {"vqscore_spearman_pesq_wb": 0.55},
    ...      "reverberant": {"vqscore_spearman_pesq_wb": 0.45}}
    >>> print(markdown({"m": {"speakers": s}}).splitlines()[2])
    | m | speakers | 4 | 100.0% | 0.500 | 0.400 | 0.300 | 0.200 | 0.550 / 0.450 | 0.600 | 0.700 |
    """
    lines = [("| model | test set | pairs | clean > noisy | VQScore ~ PESQ | ~ STOI | ~ DNSMOS OVRL | ~ Distill-MOS "
              "| ~ PESQ dry / reverberant | DNSMOS OVRL ~ PESQ | Distill-MOS ~ PESQ |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, sets in results.items():
        for name, s in sets.items():
            lines.append(
                f"| {label} | {name} | {s['pairs']} | {100 * s['clean_above_noisy']:.1f}% | "
                f"{s['vqscore_spearman_pesq_wb']:.3f} | {s['vqscore_spearman_stoi']:.3f} | "
                f"{s['vqscore_spearman_dnsmos_ovrl']:.3f} | {s['vqscore_spearman_distillmos']:.3f} | "
                f"{s['dry']['vqscore_spearman_pesq_wb']:.3f} / {s['reverberant']['vqscore_spearman_pesq_wb']:.3f} | "
                f"{s['dnsmos_ovrl_spearman_pesq_wb']:.3f} | {s['distillmos_spearman_pesq_wb']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """Bar chart of VQScore ~ PESQ per model and set, DNSMOS / Distill-MOS ~ PESQ as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig, axes = plt.subplots(1, len(SETS), figsize=(4 + 0.7 * len(labels), 3.4), sharey=True)
    for axis, name in zip(axes, SETS):
        values = [results[label].get(name, {}).get("vqscore_spearman_pesq_wb", float("nan")) for label in labels]
        axis.bar(range(len(labels)), values, color="tab:blue")
        any_set = next((results[label][name] for label in labels if name in results[label]), None)
        if any_set:
            axis.axhline(any_set["dnsmos_ovrl_spearman_pesq_wb"], color="tab:orange", ls="--", label="DNSMOS OVRL")
            axis.axhline(any_set["distillmos_spearman_pesq_wb"], color="tab:green", ls=":", label="Distill-MOS")
        axis.set_xticks(range(len(labels)))
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.set_ylim(0, 1)
    axes[0].set_ylabel("Spearman with PESQ (noisy files)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="label=measure_models.py output folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--reference", default=None, help="label of the model the others are compared with")
    args = parser.parse_args(argv)
    folders = dict(item.split("=", 1) for item in args.models)
    results = collect(folders)
    os.makedirs(args.output, exist_ok=True)
    text = markdown(results)
    with open(os.path.join(args.output, "ablation.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(args.output, "ablation.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    plot(results, os.path.join(args.output, "ablation.png"))
    if args.reference:
        paired = paired_markdown(folders, args.reference)
        with open(os.path.join(args.output, "paired.md"), "w") as handle:
            handle.write(paired)
        text += "\n" + paired
    print(text)
    return results


if __name__ == "__main__":
    main()
