"""VQ enhancer throughput (x real time, decoding and writing included) and peak memory.

    python benchmarks/bench_enhance_speed.py [--files N] [--folder DIR | --synthetic] [--seconds S]
                                             [--model SOURCE] [--threads 1 2] [--batch-sizes 1 8]

Enhances the first N files of --folder (default data/embedded/train30min_seed1234/test/noisy when present; otherwise N
synthetic speech-like files of S seconds) with ``enhance_files`` (what ``sqe enhance`` runs),
once per (torch threads, batch size). Each configuration runs in a fresh subprocess so that its
peak memory (max RSS) is its own; the model load is timed apart. Prints a markdown table.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench_vqscore import make_files

#: The test noisy speech of the embedded corpus, used when it exists.
DEFAULT_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "data", "embedded", "train30min_seed1234", "test", "noisy")


def run_one(config):
    """Runs one configuration in this process and returns its measurements."""
    import torch

    torch.set_num_threads(config["threads"])
    from speechbrain_sqe.inference.batch_enhancement import enhance_files
    from speechbrain_sqe.inference.enhancement import VQEnhancer

    start = time.perf_counter()
    enhancer = VQEnhancer.from_hparams(source=config["model"])
    load_time = time.perf_counter() - start
    out_dir = tempfile.mkdtemp()
    outputs = [os.path.join(out_dir, f"{index:05d}.wav") for index in range(len(config["paths"]))]
    start = time.perf_counter()
    written, failures = enhance_files(enhancer, config["paths"], outputs,
                                      batch_size=config["batch_size"], progress=False)
    elapsed = time.perf_counter() - start
    assert not failures, failures
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audio = sum(item["duration"] for item in written)
    return {"elapsed": elapsed, "load": load_time, "audio": audio, "peak_mb": peak_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--folder", default=None,
                        help="audio folder (default data/embedded/train30min_seed1234/test/noisy when present, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic files even if the folder exists")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the synthetic files")
    parser.add_argument("--model", default=None, help="VQ enhancer folder or hub id (default: the shipped model)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(json.loads(args.child))))
        return
    from speechbrain_sqe.dataio.files import expand_audio_inputs
    from speechbrain_sqe.inference.enhancement import VQEnhancer

    model = args.model or VQEnhancer.DEFAULT_SOURCE
    if not args.model and not os.path.isfile(os.path.join(model, "hyperparams.yaml")):
        sys.exit(f"no model is shipped at {model}; pass --model FOLDER_OR_HUB_ID")
    folder = args.folder or (DEFAULT_FOLDER if os.path.isdir(DEFAULT_FOLDER) else None)
    if args.synthetic:
        folder = None
    if folder:
        paths = expand_audio_inputs([folder])[: args.files]
        source = f"{len(paths)} files of {folder}"
    else:
        paths = make_files(tempfile.mkdtemp(), args.files, args.seconds)
        source = f"{len(paths)} synthetic files x {args.seconds:.1f} s"
    if not paths:
        sys.exit(f"no audio files in {folder}")
    print(f"{source}, model {model}")
    print()
    print("| torch threads | batch size | files | audio (s) | model load (s) | seconds | x real time "
          "| peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        for batch_size in args.batch_sizes:
            config = {"threads": threads, "batch_size": batch_size, "paths": paths, "model": model}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines() or ["no output"]
                print(f"| {threads} | {batch_size} | failed: {lines[-1]} |")
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {threads} | {batch_size} | {len(paths)} | {result['audio']:.1f} | "
                  f"{result['load']:.2f} | {result['elapsed']:.2f} | "
                  f"{result['audio'] / result['elapsed']:.0f} | {result['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
