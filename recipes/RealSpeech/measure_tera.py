#!/usr/bin/env python3
"""TERA's pretraining objective on held-out real speech: masked-reconstruction L1 of TERA models
(hub folders) on the clean speech of the real-speech test sets, with a fixed alteration.

    python recipes/RealSpeech/measure_tera.py --models speechbrain_sqe/pretrained/tera \\
        results/terareal/real/hub --testsets data/real_test --output results/terareal/measure_tera

For each model and each utterance of each set (``<testsets>/<set>.csv``, column ``clean_wav``,
the dry clean speech), the model's own front end gives the clean log-mel features; they are
altered by :class:`speechbrain_sqe.lobes.alteration.TERAAlteration` with the settings of
``hparams/tera.yaml`` (its defaults) and a ``torch.Generator`` seeded ``--seed + index`` of the
utterance, so every model sees exactly the same alteration of the same features (the front ends
must be equal: checked); the model reconstructs them and
:func:`speechbrain_sqe.lobes.alteration.masked_l1_loss` is taken on the altered positions, as the
recipe's validation loss is (one utterance at a time here, whole files, no crop).

Per set and model: the mean of the per-utterance losses (the figure compared) and the pooled loss
(all altered elements together). Each model after the first is compared with the first (the
baseline): mean paired difference (model - baseline, negative = better), a 95% bootstrap interval
of that mean (``--bootstrap`` resamples of the utterances, seeded) and the share of utterances
where the model is lower. Writes ``<output>/<set>_losses.csv`` (per utterance), ``summary.json``
and ``summary.md``; prints the markdown.

Any hub folder whose module ``tera`` has ``extract_features`` and a pretraining ``forward`` (the
reconstruction head) is measured: models of ``hparams/tera.yaml`` of any size, trained on any data.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.inference.hub import constructor_arguments, load_model
from speechbrain_sqe.lobes.alteration import TERAAlteration, masked_l1_loss

SETS = ("speakers", "cross_source")


@torch.no_grad()
def utterance_loss(model, wav, alteration, generator):
    """Masked-reconstruction L1 of one utterance.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.tera.TERAModel
        A TERA model with its front end and reconstruction head (in eval mode).
    wav : torch.Tensor
        ``[time]`` waveform at the model's rate.
    alteration : speechbrain_sqe.lobes.alteration.TERAAlteration
        The alteration policy.
    generator : torch.Generator
        Its randomness (seed it the same for every model compared).

    Returns
    -------
    tuple
        ``(loss, absolute error sum, altered element count)``.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> model = TERAModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64).eval()
    >>> wav = torch.randn(16000)
    >>> first = utterance_loss(model, wav, TERAAlteration(), torch.Generator().manual_seed(3))
    >>> again = utterance_loss(model, wav, TERAAlteration(), torch.Generator().manual_seed(3))
    >>> first == again and first[0] > 0 and first[2] > 0
    True
    """
    feats, lens = model.extract_features(wav.unsqueeze(0))
    altered, mask = alteration(feats, lens, generator=generator)
    prediction = model(altered, lens)
    loss = masked_l1_loss(prediction, feats, mask)
    abs_sum = float(((prediction - feats).abs() * mask).sum())
    return float(loss), abs_sum, int(mask.sum())


def paired_comparison(model_losses, baseline_losses, resamples=10000, seed=0):
    """Mean paired difference (model - baseline) with a percentile bootstrap 95% interval.

    Arguments
    ---------
    model_losses : sequence of float
        Per-utterance losses of the model.
    baseline_losses : sequence of float
        Those of the baseline, same utterances in the same order.
    resamples : int
        Bootstrap resamples of the utterances.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``mean_difference``, ``ci95`` ([low, high]), ``share_lower`` (utterances where the model
        is lower) and ``relative`` (mean difference / baseline mean).

    Example
    -------
    >>> out = paired_comparison([0.5, 0.6, 0.4, 0.5], [0.6, 0.7, 0.5, 0.6], resamples=200)
    >>> round(out["mean_difference"], 6), out["share_lower"], out["ci95"][1] < 0
    (-0.1, 1.0, True)
    """
    model_losses = np.asarray(model_losses, dtype=np.float64)
    baseline_losses = np.asarray(baseline_losses, dtype=np.float64)
    if model_losses.shape != baseline_losses.shape or model_losses.size == 0:
        raise ValueError("give the losses of the same utterances for both models")
    diff = model_losses - baseline_losses
    rng = np.random.default_rng(seed)
    index = rng.integers(0, diff.size, size=(resamples, diff.size))
    means = diff[index].mean(axis=1)
    return {"mean_difference": float(diff.mean()),
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "share_lower": float((diff < 0).mean()),
            "relative": float(diff.mean() / baseline_losses.mean())}


def _tera_module(interface, source):
    module = getattr(interface.mods, "tera", None)
    if module is None or not hasattr(module, "extract_features") or not hasattr(module, "head"):
        raise SystemExit(f"{source}: no TERA model with a reconstruction head (module 'tera')")
    return module.eval()


def measure(models, testsets, seed, sets=SETS, progress=True):
    """Per-utterance losses: ``{set: {model: [(ID, loss, abs_sum, count), ...]}}``."""
    alteration = TERAAlteration()  # the settings of hparams/tera.yaml (s3prl logMelBase-T-F-M)
    modules = {source: _tera_module(load_model(source, "ssl_encoder"), source) for source in models}
    front_ends = {source: constructor_arguments(module.features) for source, module in modules.items()}
    if len({json.dumps(front, sort_keys=True, default=str) for front in front_ends.values()}) > 1:
        raise SystemExit(f"the models' front ends differ, their losses are not comparable: {front_ends}")
    rate = next(iter(modules.values())).features.sample_rate  # equal front ends: one rate
    results = {}
    for name in sets:
        rows = read_manifest(os.path.join(testsets, f"{name}.csv"))
        results[name] = {source: [] for source in models}
        for index, row in enumerate(rows):
            wav = load_audio(row["clean_wav"], rate)
            for source, module in modules.items():
                generator = torch.Generator().manual_seed(seed + index)
                results[name][source].append((row["ID"],) + utterance_loss(module, wav, alteration, generator))
            if progress and (index + 1) % 24 == 0:
                print(f"{name}: {index + 1}/{len(rows)}", file=sys.stderr, flush=True)
    return results


def summarize(results, models, resamples=10000):
    """Mean and pooled loss per set and model, and each model against the first."""
    summary = {}
    for name, per_model in results.items():
        baseline = [loss for _, loss, _, _ in per_model[models[0]]]
        entry = {}
        for source in models:
            rows = per_model[source]
            losses = [loss for _, loss, _, _ in rows]
            item = {"utterances": len(rows), "mean_loss": float(np.mean(losses)),
                    "pooled_loss": sum(r[2] for r in rows) / max(sum(r[3] for r in rows), 1)}
            if source != models[0]:
                item["vs_baseline"] = paired_comparison(losses, baseline, resamples)
            entry[source] = item
        summary[name] = entry
    return summary


def to_markdown(summary, models, seed):
    """The summary as a markdown table, one row per set and model."""
    lines = [(f"Masked-reconstruction L1 on the clean speech (alteration seed {seed} + utterance index); "
              f"baseline: `{models[0]}`"), "",
             "| set | model | utterances | mean L1 | pooled L1 | vs baseline (mean diff, 95% CI) | lower on |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in summary.items():
        for source in models:
            item = entry[source]
            versus = item.get("vs_baseline")
            cells = ["", ""]
            if versus:
                low, high = versus["ci95"]
                cells = [f"{versus['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] ({100 * versus['relative']:+.1f}%)",
                         f"{100 * versus['share_lower']:.0f}%"]
            lines.append(f"| {name} | `{source}` | {item['utterances']} | {item['mean_loss']:.4f} | "
                         f"{item['pooled_loss']:.4f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="hub folders; the first is the baseline")
    parser.add_argument("--testsets", default="data/real_test", help="folder with speakers.csv, cross_source.csv")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=4321, help="alteration seed (the recipe's valid seed)")
    parser.add_argument("--bootstrap", type=int, default=10000)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    results = measure(args.models, args.testsets, args.seed, args.sets)
    os.makedirs(args.output, exist_ok=True)
    for name, per_model in results.items():
        with open(os.path.join(args.output, f"{name}_losses.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["ID", "model", "loss", "abs_sum", "altered_elements"])
            for source in args.models:
                for uid, loss, abs_sum, count in per_model[source]:
                    writer.writerow([uid, source, f"{loss:.6f}", f"{abs_sum:.4f}", count])
    summary = summarize(results, args.models, args.bootstrap)
    with open(os.path.join(args.output, "summary.json"), "w", encoding="utf-8") as stream:
        json.dump({"models": args.models, "seed": args.seed, "sets": summary}, stream, indent=2)
    markdown = to_markdown(summary, args.models, args.seed)
    with open(os.path.join(args.output, "summary.md"), "w", encoding="utf-8") as stream:
        stream.write(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
