"""Scoring and enhancement throughput on a GPU: x real time, files/s and peak GPU memory, with file
decoding (and, for enhancement, writing) included: what ``sqe score|enhance --device cuda`` runs.

    python benchmarks/bench_gpu.py --folder DIR [--files N] [--device cuda] [--batch-sizes 16 64]
        [--scorer NAME=SOURCE ...] [--enhancer NAME=SOURCE ...] [--no-shipped] [--json FILE]

Systems: the shipped models (VQScore in float32 and bfloat16, the multi-metric quality predictor;
the VQ enhancer and BSSE) unless ``--no-shipped``, plus each ``--scorer``/``--enhancer`` hub folder
(loaded by :func:`speechbrain_sqe.inference.hub.load_model` with the interface it names). Each runs
``score_files`` / ``enhance_files`` over the first N audio files of ``--folder`` (searched
recursively), once untimed on a few files (loading, CUDA kernels, cuDNN autotuning), then timed
``--repeats`` times (the best pass kept, and the first beside it: what a job over new files gets,
since kernels are built or autotuned per input shape), for each batch size. Peak GPU memory is
``torch.cuda.max_memory_allocated`` over the timed passes (the model's weights included). It runs on
the CPU too (``--device cpu``; ``benchmarks/bench_vqscore.py`` and ``bench_enhance_speed.py`` are the
CPU benchmarks, with their peers). Prints a markdown table.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_enhance_speed import named_source  # benchmarks/ is not a package

AUDIO = (".wav", ".flac")


def audio_files(folder, count):
    """The first ``count`` audio files under ``folder`` (sorted, recursive)."""
    found = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                   for name in names if name.lower().endswith(AUDIO))
    if not found:
        raise SystemExit(f"{folder}: no audio files ({', '.join(AUDIO)})")
    return found[:count]


def shipped_systems():
    """``(task, name, source, from_hparams options)`` of the shipped models."""
    systems = []
    for task, name, options in (("quality", "vqscore", {}), ("quality", "vqscore bf16", {"precision": "bfloat16"}),
                                ("enhancement", "vq enhancer", {})):
        systems.append((task, name, None, options))
    root = os.path.join(os.path.dirname(HERE), "speechbrain_sqe", "pretrained")
    for task, name, folder in (("quality", "sqa predictor", "sqa"), ("enhancement", "bsse", "bsse")):
        if os.path.isdir(os.path.join(root, folder)):
            systems.append((task, name, os.path.join(root, folder), {}))
    return systems


def measure(task, source, options, paths, device, batch_size, repeats, workers):
    """Loads one system and times it; returns ``{"elapsed", "first", "load", "audio_s", "files", "peak_mb"}``
    (``elapsed``: the best pass, ``first``: the first)."""
    from speechbrain_sqe.inference.batch_enhancement import enhance_files
    from speechbrain_sqe.inference.batch_scoring import score_files
    from speechbrain_sqe.inference.hub import load_model

    cuda = device.startswith("cuda")
    start = time.perf_counter()
    model = load_model(source, task, run_opts={"device": device}, **options)
    out_dir = tempfile.mkdtemp(prefix="bench_gpu_")

    def run(files):
        if task == "quality":
            results, failures = score_files(model, files, batch_size=batch_size, num_workers=workers,
                                            progress=False)
        else:
            results, failures = enhance_files(model, files, [os.path.join(out_dir, f"{i:06d}.wav") for i in range(len(files))],
                                              batch_size=batch_size,
                                              progress=False)
        if cuda:
            torch.cuda.synchronize()
        if failures:
            raise RuntimeError(f"{len(failures)} files failed, e.g. {failures[0]}")
        return sum(r["duration"] for r in results)

    run(paths[: max(2, batch_size)])
    load = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    passes, audio = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        audio = run(paths)
        passes.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return {"elapsed": min(passes), "first": passes[0], "load": load, "audio_s": audio, "files": len(paths),
            "peak_mb": peak}


def main(argv=None):
    """Runs the benchmark (``argv``: the command-line arguments); returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="audio files (.wav/.flac, searched recursively)")
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="decoding processes of the scoring loader")
    parser.add_argument("--scorer", type=named_source, action="append", default=[], metavar="NAME=SOURCE")
    parser.add_argument("--enhancer", type=named_source, action="append", default=[], metavar="NAME=SOURCE")
    parser.add_argument("--no-shipped", action="store_true", help="only the --scorer/--enhancer systems")
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or with --device cpu")
    paths = audio_files(args.folder, args.files)
    systems = [] if args.no_shipped else shipped_systems()
    systems += [("quality", name, source, {}) for name, source in args.scorer]
    systems += [("enhancement", name, source, {}) for name, source in args.enhancer]
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"{len(paths)} files of {args.folder}; device {args.device} ({device_name}); torch {torch.__version__}; "
          f"{os.cpu_count()} CPU cores; torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    print("\n| task | system | batch | files | audio s | wall s | x real time | first pass, x real time | files/s "
          "| load s | peak GPU MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for task, name, source, options in systems:
        for batch_size in args.batch_sizes:
            try:
                result = measure(task, source, options, paths, args.device, batch_size, args.repeats, args.workers)
            except Exception as error:  # noqa: BLE001 (one system's failure must not lose the others' rows)
                print(f"| {task} | {name} | {batch_size} | failed: {type(error).__name__}: {error} ||||||||", flush=True)
                continue
            row = {"task": task, "system": name, "batch": batch_size, **result,
                   "x_real_time": result["audio_s"] / result["elapsed"],
                   "first_x_real_time": result["audio_s"] / result["first"],
                   "files_per_s": result["files"] / result["elapsed"]}
            rows.append(row)
            print(f"| {task} | {name} | {batch_size} | {row['files']} | {row['audio_s']:.0f} | {row['elapsed']:.2f} | "
                  f"{row['x_real_time']:.0f} | {row['first_x_real_time']:.0f} | {row['files_per_s']:.1f} | "
                  f"{row['load']:.1f} | {row['peak_mb']:.0f} |",
                  flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": device_name, "folder": args.folder, "rows": rows}, handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
