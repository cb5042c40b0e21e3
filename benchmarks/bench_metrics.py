"""Metric throughput: pairs per second of the evaluation runner, with 1 and 2 worker processes.

Synthesizes N pairs of about 3 s of speech (espeak-ng, or flite) plus white noise at 5 dB SNR
into a temporary folder, then times :func:`speechbrain_sqe.metrics.runner.evaluate_pairs`
(loading included, synthesis excluded; the pool start is included in the multi-process times)
for the default metric set, and the single-process cost of each metric group on one pair.
Prints Markdown tables.

Usage::

    python benchmarks/bench_metrics.py [--pairs 24] [--jobs 1 2] [--metrics default] [--repeats 1]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SENTENCES = [
    "The birch canoe slid on the smooth planks of the old wooden dock.",
    "Glue the sheet to the dark blue background and let it dry overnight.",
    "It is easy to tell the depth of a well when you drop a small stone.",
    "These days a chicken leg is a rare dish on the table of the poor.",
    "Rice is often served in round bowls with a little fresh green tea.",
    "The juice of lemons makes fine punch for a party on a hot day.",
    "The box was thrown beside the parked truck near the red barn door.",
    "The hogs were fed chopped corn and garbage every single morning.",
    "Four hours of steady work faced us before the sun went down.",
    "A large size in stockings is hard to sell in the small village shop.",
    "The boy was there when the sun rose over the quiet grey harbour.",
    "A rod is used to catch pink salmon in the cold northern rivers.",
]


def synthesize(path, text):
    """Speaks ``text`` into ``path`` (espeak-ng, else flite)."""
    if shutil.which("espeak-ng"):
        command = ["espeak-ng", "-w", path, text]
    elif shutil.which("flite"):
        command = ["flite", "-t", text, "-o", path]
    else:
        sys.exit("bench_metrics: install espeak-ng or flite to synthesize speech")
    subprocess.run(command, check=True, capture_output=True)


def make_pairs(folder, count, seconds=3.0, snr_db=5.0, sample_rate=16000):
    """Writes ``count`` clean/noisy pairs of ``seconds`` each; returns the runner's pairs."""
    from speechbrain_sqe.dataio.audio import load_audio, save_audio
    from speechbrain_sqe.metrics.runner import pair_files

    rng = np.random.default_rng(0)
    length = int(seconds * sample_rate)
    for index in range(count):
        raw = os.path.join(folder, "raw", f"{index:04d}.wav")
        os.makedirs(os.path.dirname(raw), exist_ok=True)
        text = f"{SENTENCES[index % len(SENTENCES)]} {SENTENCES[(index + 5) % len(SENTENCES)]}"
        synthesize(raw, text)
        clean = load_audio(raw, sample_rate=sample_rate, warn=False).numpy()[:length]
        clean = np.pad(clean, (0, length - clean.shape[0]))
        noise = rng.standard_normal(length) * np.sqrt(np.mean(clean**2) / 10 ** (snr_db / 10))
        save_audio(os.path.join(folder, "clean", f"{index:04d}.wav"), clean, sample_rate)
        save_audio(os.path.join(folder, "noisy", f"{index:04d}.wav"), clean + noise, sample_rate)
    pairs, unpaired = pair_files(os.path.join(folder, "clean"), os.path.join(folder, "noisy"))
    assert not unpaired and len(pairs) == count
    return pairs


def time_runner(pairs, metrics, jobs, repeats):
    """Best wall time of ``repeats`` runs of the runner; returns (seconds, rows)."""
    from speechbrain_sqe.metrics.runner import evaluate_pairs

    best, rows = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        rows, failures = evaluate_pairs(pairs, metrics, jobs=jobs, progress=False)
        best = min(best, time.perf_counter() - start)
        assert not failures, failures
    return best, rows


def time_groups(pair, metrics, repeats=5):
    """Milliseconds per pair of each metric group, in this process."""
    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.metrics.registry import METRICS, compute_metrics

    ref = load_audio(pair.ref).numpy()
    deg = load_audio(pair.deg).numpy()
    groups = {}
    for name in metrics:
        groups.setdefault(METRICS[name].group, []).append(name)
    timings = {}
    for group, names in groups.items():
        compute_metrics(ref, deg, names)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            compute_metrics(ref, deg, names)
        timings[group] = (names, 1000 * (time.perf_counter() - start) / repeats)
    return timings


def main(argv=None):
    """Runs the benchmark and prints the tables.

    Arguments
    ---------
    argv : list of str, optional
        Command line arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--metrics", nargs="+", default=["default"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from speechbrain_sqe.metrics.registry import resolve_metrics

    torch.set_num_threads(1)
    metrics = resolve_metrics(args.metrics)
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as folder:
        pairs = make_pairs(folder, args.pairs)
        time_runner(pairs[:1], metrics, 1, 1)  # warm-up: imports, PESQ/STOI first calls
        results = {jobs: time_runner(pairs, metrics, jobs, args.repeats) for jobs in args.jobs}
        groups = time_groups(pairs[0], metrics)

    reference_rows = results[args.jobs[0]][1]
    for jobs, (_, rows) in results.items():
        for row, reference in zip(rows, reference_rows):
            assert row["file"] == reference["file"]
            assert np.allclose([row[m] for m in metrics], [reference[m] for m in metrics],
                               rtol=1e-12, atol=1e-12), f"--jobs {jobs} gave different numbers"

    print(f"Metric throughput: {args.pairs} pairs of 3.0 s synthesized speech + white noise "
          f"(5 dB), 16 kHz; metrics: {', '.join(metrics)}")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"Python {platform.python_version()}, torch threads per worker 1\n")
    print("| processes | wall time (s) | pairs/s | speed-up |")
    print("|-----------|---------------|---------|----------|")
    base = results[args.jobs[0]][0]
    for jobs, (seconds, _) in results.items():
        print(f"| {jobs} | {seconds:.2f} | {args.pairs / seconds:.2f} | {base / seconds:.2f}x |")
    print("\n| metric group | metrics | ms per pair (1 process) |")
    print("|--------------|---------|-------------------------|")
    for group, (names, milliseconds) in groups.items():
        print(f"| {group} | {', '.join(names)} | {milliseconds:.1f} |")
    if "composite" in groups:
        print("\nThe composite group, timed alone, includes its own PESQ; in a run that also asks "
              "for pesq_wb it reuses that value.")


if __name__ == "__main__":
    main()
