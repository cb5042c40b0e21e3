"""VQScore scoring throughput (x real time, decoding included) and peak memory, beside DNSMOS and
Distill-MOS, with float32 convolutions by overlap-save (the CPU default) and direct (oneDNN), and
bfloat16 ones (``VQScore(precision=..., convolution=...)``).

    python benchmarks/bench_vqscore.py [--files N] [--seconds S] [--model FOLDER] [--batch-size B]
        [--dnsmos-files N] [--repeats R] [--sqa-model FOLDER] [--allocator kept|default]
        [--folder DIR ...]

The learned multi-metric predictor (``--sqa-model``, the shipped one by default) is timed on the
peers' subset, as a peer of the same job. "batch threads" is ``score_files(threads=...)``: 1 runs one
batch at a time with every torch thread inside each operator (the only way before session 17);
``auto`` (the default of ``score_files`` and ``sqe score``) runs one batch per torch thread side by
side, one thread each. Each configuration runs in a fresh subprocess so that its peak memory (max
RSS) is its own, with glibc's allocator set as ``sqe`` sets it (``--allocator default``: glibc's
defaults, see :mod:`speechbrain_sqe.utils.allocator`). Prints a markdown table: "x real time" is
the best of ``--repeats`` passes over the same files, "first pass" the first of them (after an
untimed pass over one batch that loads the model), which is what a job over new files gets.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile

#: ``--allocator``: ``kept`` = glibc keeps freed memory for reuse, as ``sqe`` sets it
#: (:func:`speechbrain_sqe.utils.allocator.keep_freed_memory`); ``default`` = glibc's own thresholds.
ALLOCATORS = ("kept", "default")
ALLOCATOR_NAMES = {"kept": "freed memory kept (as sqe)", "default": "glibc defaults"}


def allocator_description(choice):
    """The allocator setting of a run, for its header (a MALLOC_ARENA_MAX from the environment named)."""
    arenas = os.environ.get("MALLOC_ARENA_MAX")
    return ALLOCATOR_NAMES[choice] + (f"; MALLOC_ARENA_MAX={arenas} from the environment" if arenas else "")


ALLOCATOR_HELP = ("kept (default): glibc keeps freed memory for reuse, as `sqe` sets it at start "
                  "(speechbrain_sqe.utils.allocator); default: glibc's own thresholds")


def make_files(folder, count, seconds, rate=16000):
    """Writes ``count`` speech-like files (harmonic tones with noise bursts) of ``seconds`` each."""
    rng = np.random.default_rng(0)
    paths = []
    t = np.arange(int(seconds * rate)) / rate
    for index in range(count):
        pitch = 100 + 150 * rng.random()
        voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 12))
        envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t + rng.random() * 6))
        wav = 0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.shape) * rng.random()
        path = os.path.join(folder, f"utt{index:05d}.wav")
        soundfile.write(path, wav.astype(np.float32), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def run_child(script, config):
    """Runs ``script --child <file>`` in a fresh process, ``config`` passed in a JSON file (the paths
    of thousands of files exceed the command line's limit); returns the ``CompletedProcess``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(config, file)
    try:
        return subprocess.run([sys.executable, os.path.abspath(script), "--child", file.name],
                              capture_output=True, text=True, check=False)
    finally:
        os.unlink(file.name)


def read_child_config(path):
    """The configuration :func:`run_child` wrote."""
    with open(path) as file:
        return json.load(file)


def run_one(config):
    """Runs one configuration in this process and returns its measurements (best of the repeats,
    after one untimed pass over a few files that loads everything)."""
    import torch

    from speechbrain_sqe.utils.allocator import keep_freed_memory

    if config["allocator"] == "kept":  # as `sqe` does at start
        keep_freed_memory()
    torch.set_num_threads(config["threads"])
    start = time.perf_counter()
    if config["method"] in ("vqscore", "sqa"):
        from speechbrain_sqe.inference.batch_scoring import score_files
        from speechbrain_sqe.inference.quality import LearnedQualityPredictor, VQScore

        if config["method"] == "vqscore":
            scorer = VQScore.from_hparams(source=config["model"], precision=config["precision"],
                                          convolution=config["convolution"])
        else:  # every metric of the learned predictor comes from one pass
            scorer = LearnedQualityPredictor.from_hparams(source=config["sqa_model"])

        def run(paths):
            _, failures = score_files(scorer, paths, batch_size=config["batch_size"],
                                      num_workers=config["workers"], progress=False,
                                      threads=config["batch_threads"],
                                      detect_speech=config.get("detect_speech", False))
            assert not failures, failures
    else:
        from speechbrain_sqe.dataio.audio import load_audio
        from speechbrain_sqe.metrics.distillmos import distillmos
        from speechbrain_sqe.metrics.dnsmos import dnsmos

        rate = {"dnsmos": dnsmos, "distillmos": distillmos}[config["method"]]

        def run(paths):
            for path in paths:
                rate(load_audio(path).numpy(), 16000)
    run(config["paths"][: max(1, config["batch_size"])])
    load_time = time.perf_counter() - start
    passes = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        run(config["paths"])
        passes.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"elapsed": min(passes), "first": passes[0], "load": load_time, "peak_mb": peak_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--folder", nargs="+", default=None, metavar="DIR",
                        help="score the first --files audio files of these folders (e.g. real recordings of "
                             "varied lengths) instead of synthetic files of --seconds")
    parser.add_argument("--model", default=None, help="VQScore folder (default: the shipped model)")
    parser.add_argument("--sqa-model", default=None,
                        help="learned multi-metric predictor folder (default: the shipped one; '' to skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dnsmos-files", type=int, default=40, help="the peers are slow: a subset")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per configuration (best kept)")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="kept", help=ALLOCATOR_HELP)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(read_child_config(args.child))))
        return
    from speechbrain_sqe.inference.quality import DEFAULT_MODEL, LearnedQualityPredictor

    model = args.model or DEFAULT_MODEL
    sqa_model = LearnedQualityPredictor.DEFAULT_SOURCE if args.sqa_model is None else args.sqa_model
    if args.folder:
        from speechbrain_sqe.dataio.files import expand_audio_inputs

        paths = expand_audio_inputs(args.folder)[: args.files]
        if not paths:
            sys.exit(f"no audio files in {' '.join(args.folder)}")
        source = f"{len(paths)} files of {' '.join(args.folder)}"
    else:
        paths = make_files(tempfile.mkdtemp(), args.files, args.seconds)
        source = f"{args.files} files x {args.seconds:.1f} s"
    duration = {path: soundfile.info(path).duration for path in paths}
    audio_seconds = sum(duration.values())
    peers = paths[: args.dnsmos_files]
    # (name, method, torch threads, batch threads (score_files' threads; "auto" = one per torch
    # thread, the default of score_files and sqe score), decode workers, precision, convolution
    # algorithm (VQScore's convolution=; "auto", the default, is overlap_save on a CPU; bfloat16
    # convolutions always run directly), files)
    configs = [
        ("VQScore", "vqscore", 1, 1, 0, "float32", "overlap_save", paths),
        ("VQScore", "vqscore", 2, 1, 0, "float32", "overlap_save", paths),
        ("VQScore", "vqscore", 2, "auto", 0, "float32", "overlap_save", paths),
        # what `sqe score` runs: also each file checked for speech (dataio.activity.has_speech)
        ("VQScore + speech check (sqe score)", "vqscore", 2, "auto", 0, "float32", "overlap_save", paths),
        ("VQScore", "vqscore", 2, 1, 1, "float32", "overlap_save", paths),
        ("VQScore", "vqscore", 1, 1, 0, "float32", "direct", paths),
        ("VQScore", "vqscore", 2, "auto", 0, "float32", "direct", paths),
        ("VQScore", "vqscore", 1, 1, 0, "bfloat16", "direct", paths),
        ("VQScore", "vqscore", 2, 1, 0, "bfloat16", "direct", paths),
        ("VQScore", "vqscore", 2, "auto", 0, "bfloat16", "direct", paths),
        ("DNSMOS P.835", "dnsmos", 2, "-", 0, "float32", "-", peers),
        ("Distill-MOS", "distillmos", 1, "-", 0, "float32", "-", peers),
        ("Distill-MOS", "distillmos", 2, "-", 0, "float32", "-", peers),
        ("Learned predictor (6 metrics)", "sqa", 1, 1, 0, "float32", "-", peers),
        ("Learned predictor (6 metrics)", "sqa", 2, 1, 0, "float32", "-", peers),
        ("Learned predictor (6 metrics)", "sqa", 2, "auto", 0, "float32", "-", peers),
    ]
    if not sqa_model:
        configs = [config for config in configs if config[1] != "sqa"]
    print(f"{source} ({audio_seconds / 60:.1f} min), batch {args.batch_size}, "
          f"allocator: {allocator_description(args.allocator)}")
    print()
    # The first pass is what a job over new files gets: oneDNN builds convolution kernels for each
    # input shape it has not seen (later passes over the same files reuse them).
    print("| method | precision | convolution | torch threads | batch threads | decode workers | files | seconds "
          "| x real time | first pass, x real time | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, method, threads, batch_threads, workers, precision, convolution, subset in configs:
        config = {"method": method, "threads": threads, "workers": workers, "paths": subset, "model": model,
                  "batch_threads": batch_threads,
                  "batch_size": args.batch_size, "precision": precision, "convolution": convolution,
                  "repeats": args.repeats,
                  "detect_speech": "speech check" in name,
                  "sqa_model": sqa_model, "allocator": args.allocator}
        out = run_child(__file__, config)
        if out.returncode != 0:
            print(f"| {name} | {precision} | {convolution} | {threads} | {batch_threads} | {workers} | failed: "
                  f"{out.stderr.strip().splitlines()[-1]} |")
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        seconds = sum(duration[path] for path in subset)
        shown = {"vqscore": threads, "dnsmos": f"{threads} (onnxruntime: its own)"}.get(method, threads)
        print(f"| {name} | {precision if method == 'vqscore' else '-'} | {convolution} | {shown} | {batch_threads} | "
              f"{workers} | "
              f"{len(subset)} | "
              f"{result['elapsed']:.2f} | {seconds / result['elapsed']:.0f} | {seconds / result['first']:.0f} | "
              f"{result['peak_mb']:.0f} |")

if __name__ == "__main__":
    main()
