"""Peak memory against folder size: scoring and enhancing folders of 0.5 to 10 hours.

    python benchmarks/bench_memory_flat.py [--hours 0.5 2 10] [--enhancer NAME=FOLDER ...]
        [--no-scoring] [--file-minutes M] [--allocator kept|default] [--batch-threads auto|1]
        [--trace [--plot PNG]]

Makes 60 distinct speech-like files of 60 s (one hour; harmonic tones with noise bursts; of M
minutes each with ``--file-minutes``, e.g. 60 for hour-long recordings) and folders
of the requested sizes from hard links to them (no extra disk for the inputs), then runs, each in a
fresh process so its peak RSS is its own, with glibc's allocator set as ``sqe`` sets it
(``--allocator default``: glibc's defaults): ``score_files`` with the shipped VQScore (as ``sqe score``)
and ``enhance_files`` with each enhancer (as ``sqe enhance``; outputs written, then deleted).
Prints a markdown table: hours, files, seconds, x real time, peak RSS (MB). Flat memory means the
peak RSS does not grow with the hours.

``--trace`` runs each task once, over the largest ``--hours``, and samples the process's resident
size every 0.25 s against the hours processed so far: the table then gives, at each of ``--hours``,
the peak so far (what a folder of that size would have needed in this run) and the resident size
then, and ``--plot`` draws both curves (PNG). Separate runs per size add run-to-run differences
(where two batch threads' peaks happen to meet); one traced run shows whether the peak still rises
after the first hours.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from bench_vqscore import (  # benchmarks/ is not a package
    ALLOCATOR_HELP,
    ALLOCATORS,
    allocator_description,
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
    scored = [0]  # files scored so far (the trace's count for scoring)

    def count_scored(batch, failed):
        scored[0] += len(batch)

    sampler = _Sampler(lambda: scored[0] if config["task"] == "score" else _outputs_written(config["out"]))
    if config.get("trace"):
        sampler.start()
    if config["task"] == "score":
        from speechbrain_sqe.inference.batch_scoring import score_files

        model = load_model(config["model"], task="quality")
        rows, failures = score_files(model, config["paths"], batch_size=16, progress=False,
                                     threads=config["batch_threads"],
                                     on_batch=count_scored)
        done = len(rows)
    else:
        from speechbrain_sqe.inference.batch_enhancement import enhance_files

        model = load_model(config["model"], task="enhancement")
        outs = [os.path.join(config["out"], f"{n:06d}.wav") for n in range(len(config["paths"]))]
        written, failures = enhance_files(model, config["paths"], outs, batch_size=8, progress=False,
                                          threads=config["batch_threads"])
        done = len(written)
    sampler.stop()
    assert not failures, failures[:3]
    return {"seconds": time.perf_counter() - start, "done": done,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "trace": sampler.samples}


def _resident_mb():
    """This process's resident size now (MB), from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _outputs_written(folder):
    """Enhanced files written so far (partial files excluded)."""
    try:
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(".wav") and not entry.name.startswith("."))
    except OSError:
        return 0


class _Sampler(threading.Thread):
    """Samples (files done, resident MB, peak MB so far) every 0.25 s until stopped."""

    def __init__(self, files_done):
        super().__init__(daemon=True)
        self.files_done, self.samples, self.done = files_done, [], threading.Event()

    def run(self):
        while not self.done.wait(0.25):
            self.sample()

    def sample(self):
        self.samples.append((self.files_done(), _resident_mb(),
                             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    def stop(self):
        self.done.set()
        if self.is_alive():
            self.join()
            self.sample()  # the end: every file done


def _print_trace(task, name, trace, file_hours, checkpoints):
    """The peak so far and the resident size at each checkpoint (hours processed) of one traced run."""
    for hours in checkpoints:
        reached = [sample for sample in trace if sample[0] * file_hours >= hours - 1e-9]
        if not reached:
            print(f"| {task} | {name} | {hours:g} | not reached | | |")
            continue
        files, resident, peak = reached[0]
        print(f"| {task} | {name} | {hours:g} | {files} | {peak:.0f} | {resident:.0f} |")


def _plot_traces(traces, file_hours, path):
    """Resident size and peak so far against the hours processed, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(traces), figsize=(5.5 * len(traces), 3.8), squeeze=False)
    for axis, (label, trace) in zip(axes[0], traces):
        hours = [files * file_hours for files, _, _ in trace]
        axis.plot(hours, [resident for _, resident, _ in trace], lw=0.8, label="resident now")
        axis.plot(hours, [peak for _, _, peak in trace], lw=1.6, label="peak so far")
        axis.set_xlabel("hours of audio processed")
        axis.set_ylabel("MB")
        axis.set_title(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"\nplot: {path}")


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
    parser.add_argument("--trace", action="store_true",
                        help="one run per task over the largest --hours, the peak read at each of --hours")
    parser.add_argument("--plot", help="with --trace: write the resident size and peak against hours to this PNG")
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
              f"{args.file_minutes:g} min; allocator: {allocator_description(args.allocator)}\n")
        if args.trace:
            print("| task | model | hours processed | files | peak RSS so far (MB) | resident then (MB) |")
            print("|---|---|---|---|---|---|")
        else:
            print("| task | model | hours | files | seconds | x real time | peak RSS (MB) |")
            print("|---|---|---|---|---|---|---|")
        jobs = [] if args.no_scoring else [("score", "VQScore", args.scorer)]
        jobs += [("enhance", name, folder) for name, folder in enhancers]
        traces, summaries = [], []
        for task, name, model in jobs:
            for hours in [max(args.hours)] if args.trace else args.hours:
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
                          "allocator": args.allocator, "trace": args.trace,
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
                if args.trace:
                    _print_trace(task, name, measured["trace"], args.file_minutes / 60, sorted(args.hours))
                    traces.append((f"{task} ({name})", measured["trace"]))
                    summaries.append(f"{task} ({name}): {audio_hours:g} h in {measured['seconds']:.1f} s, "
                                     f"{audio_hours * 3600 / measured['seconds']:.0f} x real time, "
                                     f"{len(measured['trace'])} samples")
                    continue
                print(f"| {task} | {name} | {audio_hours:g} | {measured['done']} | {measured['seconds']:.1f} | "
                      f"{audio_hours * 3600 / measured['seconds']:.0f} | {measured['peak_mb']:.0f} |", flush=True)
        if summaries:
            print()
            print("\n".join(summaries))
        if traces and args.plot:
            _plot_traces(traces, args.file_minutes / 60, args.plot)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
