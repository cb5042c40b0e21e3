"""Enhancing one long recording whole or in crossfaded windows (``Enhancer.segment_seconds``,
``sqe enhance --segment-seconds``): time and peak memory per window length.

    python benchmarks/bench_long_files.py [--seconds 120] [--segments none 30 10]
        [--enhancer NAME=FOLDER ...] [--threads 2]

Writes one speech-like file (harmonic tones with noise bursts, as ``bench_vqscore.py``) of
``--seconds`` and enhances it with each enhancer (default: the shipped VQ enhancer and BSSE) once
per window length, each run in a fresh process so that its peak RSS is its own (decoding and model
loading included in the memory, not in the time). Prints a markdown table.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_ENHANCERS = ["vq=speechbrain_sqe/pretrained/vq_enhancer", "bsse=speechbrain_sqe/pretrained/bsse"]


def run_child(config):
    """Enhances the file once with the given window and returns seconds and peak RSS."""
    import torch

    torch.set_num_threads(config["threads"])
    from speechbrain_sqe.inference.hub import load_model

    enhancer = load_model(config["model"], task="enhancement")
    enhancer.segment_seconds = config["segment"]
    wav = enhancer.load_file(config["path"])
    enhancer.enhance_batch(wav[: enhancer.sample_rate * 2])  # warm-up: first calls allocate
    start = time.perf_counter()
    out = enhancer.enhance_batch(wav)
    seconds = time.perf_counter() - start
    assert out.shape == wav.shape and bool(torch.isfinite(out).all())
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the recording")
    parser.add_argument("--segments", nargs="+", default=["none", "30", "10"],
                        help="window lengths in seconds ('none': the whole file in one pass)")
    parser.add_argument("--enhancer", action="append", default=None, help="NAME=FOLDER (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    from bench_vqscore import make_files

    folder = tempfile.mkdtemp()
    path = make_files(folder, 1, args.seconds)[0]
    print(f"one file of {args.seconds:g} s; {args.threads} torch threads\n")
    print("| enhancer | window (s) | seconds | x real time | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for item in args.enhancer or DEFAULT_ENHANCERS:
        name, model = item.split("=", 1)
        for segment in args.segments:
            config = {"model": model, "path": path, "threads": args.threads,
                      "segment": None if segment == "none" else float(segment)}
            result = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                                    capture_output=True, text=True, check=False)
            if result.returncode != 0:
                print(f"| {name} | {segment} | failed: {result.stderr.strip().splitlines()[-1]} | | |")
                continue
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"| {name} | {segment} | {measured['seconds']:.1f} | {args.seconds / measured['seconds']:.0f} | "
                  f"{measured['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
