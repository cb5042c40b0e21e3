#!/usr/bin/env python3
"""One table (and a bar chart) of several VQScore models measured by ``measure_models.py``.

    python recipes/RealSpeech/ablation_table.py --output results/vqreal/ablation \\
        shipped=results/vqreal/measure/shipped a_real=results/vqreal/measure/a_real ...

Each ``label=folder`` names a ``measure_models.py --enhancer ''`` report folder (its
``<set>_quality.csv``). Writes ``ablation.md`` (per set: clean > noisy, Spearman of VQScore with
PESQ, STOI, DNSMOS OVRL and Distill-MOS, the dry / reverberant split of the PESQ one, and the
DNSMOS OVRL and Distill-MOS agreement with PESQ of the same run), ``ablation.json`` and
``ablation.png`` (Spearman with PESQ per model and set, the DNSMOS and Distill-MOS lines for
scale).
"""

import argparse
import csv
import importlib.util
import json
import os

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
    lines = ["| model | test set | pairs | clean > noisy | VQScore ~ PESQ | ~ STOI | ~ DNSMOS OVRL | ~ Distill-MOS "
             "| ~ PESQ dry / reverberant | DNSMOS OVRL ~ PESQ | Distill-MOS ~ PESQ |",
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
    print(text)
    return results


if __name__ == "__main__":
    main()
