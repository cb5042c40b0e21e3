"""Peak memory against folder size: scoring and enhancing folders of 0.5 to 10 hours.

    python benchmarks/bench_memory_flat.py [--hours 0.5 2 10] [--enhancer NAME=FOLDER ...]
        [--no-scoring] [--file-minutes M] [--allocator kept|default] [--batch-threads auto|1]

Makes 60 distinct speech-like files of 60 s (one hour; harmonic tones with noise bursts; of M
minutes each with ``--file-minutes``, e.g. 60 for hour-long recordings) and folders
of the requested sizes from hard links to them (no extra disk for the inputs), then runs, each in a
fresh process so its peak RSS is its own, with glibc's allocator set as ``sqe`` sets it
(``--allocator default``: glibc's defaults): ``score_files`` with the shipped VQScore (as ``sqe score``)
and ``enhance_files`` with each enhancer (as ``sqe enhance``; outputs written, then deleted).
Prints a markdown table: hours, files, seconds, x real time, peak RSS (MB). Flat memory means the
peak RSS does not grow with the hours.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from bench_vqscore import (  # benchmarks/ is not a package
    ALLOCATOR_HELP,
    ALLOCATOR_NAMES,
    ALLOCATORS,
    make_files,
)


def run_child(config):
    import torch

    from speechbrain_sqe.utils.allocator import keep_freed_memory

    if config["allocator"] == "kept":  # as `sqe` does at start
        keep_freed_memory()
    torch.set_num_threads(config["threads"])
    from speechbrain_sqe.inference.hub import load_model

    start = time.perf_counter()
    if config["task"] == "score":
        from speechbrain_sqe.inference.batch_scoring import score_files

        model = load_model(config["model"], task="quality")
        rows, failures = score_files(model, config["paths"], batch_size=16, progress=False,
                                     threads=config["batch_threads"])
        done = len(rows)
    else:
        from speechbrain_sqe.inference.batch_enhancement import enhance_files

        model = load_model(config["model"], task="enhancement")
        outs = [os.path.join(config["out"], f"{n:06d}.wav") for n in range(len(config["paths"]))]
        written, failures = enhance_files(model, config["paths"], outs, batch_size=8, progress=False,
                                          threads=config["batch_threads"])
        done = len(written)
    assert not failures, failures[:3]
    return {"seconds": time.perf_counter() - start, "done": done,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[0.5, 2.0, 10.0])
    parser.add_argument("--scorer", default="speechbrain_sqe/pretrained/vqscore")
    parser.add_argument("--enhancer", action="append", default=None,
                        help="NAME=FOLDER (repeatable; default bsse=speechbrain_sqe/pretrained/bsse)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-threads", default="auto",
                        help="whole batches side by side (auto: one per torch thread, as sqe) or 1: one at a time")
    parser.add_argument("--no-scoring", action="store_true", help="enhancement only")
    parser.add_argument("--file-minutes", type=float, default=1.0, help="length of each input file")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="kept", help=ALLOCATOR_HELP)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    enhancers = [item.split("=", 1) for item in (args.enhancer or ["bsse=speechbrain_sqe/pretrained/bsse"])]
    work = tempfile.mkdtemp()
    try:
        os.makedirs(os.path.join(work, "src"))
        per_hour = max(1, round(60 / args.file_minutes))
        sources = make_files(os.path.join(work, "src"), min(60, per_hour * int(max(1, max(args.hours)))),
                             60.0 * args.file_minutes)
        print(f"{args.threads} torch threads, batch threads {args.batch_threads}; inputs: hard links to {len(sources)} files of "
              f"{args.file_minutes:g} min; allocator: {ALLOCATOR_NAMES[args.allocator]}\n")
        print("| task | model | hours | files | seconds | x real time | peak RSS (MB) |")
        print("|---|---|---|---|---|---|---|")
        jobs = [] if args.no_scoring else [("score", "VQScore", args.scorer)]
        jobs += [("enhance", name, folder) for name, folder in enhancers]
        for task, name, model in jobs:
            for hours in args.hours:
                count = max(1, round(hours * per_hour))
                folder = os.path.join(work, f"in_{hours}")
                os.makedirs(folder, exist_ok=True)
                paths = []
                for number in range(count):
                    path = os.path.join(folder, f"{number:06d}.wav")
                    if not os.path.exists(path):
                        os.link(sources[number % len(sources)], path)
                    paths.append(path)
                out = os.path.join(work, "out")
                config = {"task": task, "model": model, "paths": paths, "out": out, "threads": args.threads,
                          "allocator": args.allocator,
                          "batch_threads": args.batch_threads if args.batch_threads == "auto" else int(args.batch_threads)}
                result = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                                        capture_output=True, text=True, check=False)
                shutil.rmtree(out, ignore_errors=True)
                if result.returncode != 0:
                    print(f"| {task} | {name} | {hours:g} | {count} | failed: "
                          f"{result.stderr.strip().splitlines()[-1]} | | |")
                    continue
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                audio_hours = count * args.file_minutes / 60
                print(f"| {task} | {name} | {audio_hours:g} | {measured['done']} | {measured['seconds']:.1f} | "
                      f"{audio_hours * 3600 / measured['seconds']:.0f} | {measured['peak_mb']:.0f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
