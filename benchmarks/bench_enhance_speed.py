"""Enhancer throughput (x real time, file decoding and writing included) and peak memory, any enhancer.

    python benchmarks/bench_enhance_speed.py [--files N] [--folder DIR | --synthetic] [--seconds S]
        [--enhancer NAME=SOURCE ...] [--model SOURCE] [--peers [NAME ...]] [--threads 1 2] [--batch-sizes 1 8]
        [--batch-threads auto 1] [--allocator kept|default]

Systems, measured in the same run: one per ``--enhancer NAME=SOURCE`` (any enhancer hub folder or
hub id, loaded with :func:`speechbrain_sqe.inference.hub.load_model` by the interface it names: the
VQ enhancer, BSSE...; its default options), ``--model SOURCE`` (the same, named after its folder;
kept for the single-model use), by default the enhancer of ``sqe enhance`` (BSSE since 2026-12-07); and the
peers of ``benchmarks/peer_enhancers.py`` (default ``noisereduce rnnoise``, those installed;
``--peers`` with no name for none).

Enhances the first N files of --folder (default data/embedded/train30min_seed1234/test/noisy when
present; otherwise N synthetic speech-like files of S seconds). An enhancer runs ``enhance_files``
(what ``sqe enhance`` runs: decoding, padded length-sorted batches, writing 16-bit wav), once per
(torch threads, batch size, batch threads: ``enhance_files(threads=...)``, ``auto`` by default,
one batch per torch thread side by side; 1: one batch at a time); a peer reads each file with the project's loader, enhances it and
writes it, one file at a time, once per thread count (torch and BLAS threads). Each configuration
runs in a fresh subprocess so that its peak memory (max RSS) is its own; the model load is timed
apart. Prints a markdown table, with the load average before and after (the CPU may be shared):
``x real time`` is audio seconds per wall-clock second; ``audio s per CPU s`` per second of CPU
time of the process (all its threads), which other jobs on the CPU disturb less (with one thread
it estimates the wall-clock figure of an idle core; with more, threads spinning while they wait
for a busy core count too).
"""

import argparse
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_vqscore import (  # benchmarks/ is not a package
    ALLOCATOR_HELP,
    ALLOCATORS,
    allocator_description,
    make_files,
    read_child_config,
    run_child,
)

#: The test noisy speech of the embedded corpus, used when it exists.
DEFAULT_FOLDER = os.path.join(os.path.dirname(HERE), "data", "embedded", "train30min_seed1234", "test", "noisy")
#: Peers measured by default (where their packages are installed).
DEFAULT_PEERS = ("noisereduce", "rnnoise")


def named_source(value):
    """``NAME=SOURCE`` of ``--enhancer``, as a ``(name, source)`` pair.

    Example
    -------
    >>> named_source("bsse=results/bsse/hub")
    ('bsse', 'results/bsse/hub')
    """
    name, sep, source = value.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE (a hub folder or id), got {value!r}")
    return name, source


def load_peers():
    """Imports ``benchmarks/peer_enhancers.py`` (``benchmarks`` is not a package)."""
    module = sys.modules.get("peer_enhancers")
    if module is None:
        spec = importlib.util.spec_from_file_location("peer_enhancers", os.path.join(HERE, "peer_enhancers.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["peer_enhancers"] = module
        spec.loader.exec_module(module)
    return module


def run_one(config):
    """Runs one configuration in this process and returns its measurements.

    Arguments
    ---------
    config : dict
        ``threads``, ``paths``, and either ``source`` and ``batch_size`` (an enhancer hub folder)
        or ``peer`` (a name of ``peer_enhancers.PEERS``).

    Returns
    -------
    dict
        ``elapsed`` (s, enhancing the files with reading and writing), ``cpu`` (s of CPU time of
        this process, user and system, over the same span), ``load`` (s, the model or the peer's
        package), ``audio`` (s of audio), ``peak_mb`` (max RSS of this process).
    """
    import torch

    from speechbrain_sqe.metrics.runner import limit_blas_threads
    from speechbrain_sqe.utils.allocator import keep_freed_memory

    if config["allocator"] == "kept":  # as `sqe` does at start (the peers get it too)
        keep_freed_memory()
    torch.set_num_threads(config["threads"])
    limit_blas_threads(config["threads"])
    out_dir = tempfile.mkdtemp()
    outputs = [os.path.join(out_dir, f"{index:05d}.wav") for index in range(len(config["paths"]))]
    if config.get("peer"):
        from speechbrain_sqe.dataio.audio import load_audio, save_audio

        start = time.perf_counter()
        function = load_peers().PEERS[config["peer"]]
        function(torch.zeros(1600))  # imports the peer's package (its load time)
        load_time = time.perf_counter() - start
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        audio = 0.0
        for path, output in zip(config["paths"], outputs):
            wav = load_audio(path, 16000)
            save_audio(output, function(wav), 16000)
            audio += wav.shape[0] / 16000
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
    else:
        from speechbrain_sqe.inference.batch_enhancement import enhance_files
        from speechbrain_sqe.inference.hub import load_model

        start = time.perf_counter()
        enhancer = load_model(config["source"], task="enhancement")
        if config.get("convolution", "auto") != "auto":
            if not hasattr(enhancer, "set_convolution"):
                raise SystemExit(f"{type(enhancer).__name__} has no convolution choice")
            enhancer.set_convolution(config["convolution"])
        load_time = time.perf_counter() - start
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        written, failures = enhance_files(enhancer, config["paths"], outputs, batch_size=config["batch_size"],
                                          progress=False, threads=config["batch_threads"])
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
        assert not failures, failures
        audio = sum(item["duration"] for item in written)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"elapsed": elapsed, "cpu": cpu, "load": load_time, "audio": audio, "peak_mb": peak_mb}


def _cpu_seconds():
    """User and system CPU time of this process (all its threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan_systems(args, log=print):
    """The systems of the run, in table order: ``[(name, {"source": ...} or {"peer": ...})]``.

    Arguments
    ---------
    args : argparse.Namespace
        The command line.
    log : callable
        Where messages go (skipped peers).

    Returns
    -------
    list of tuple
        ``(name, spec)`` pairs.
    """
    from speechbrain_sqe.inference.hub import DEFAULT_SOURCES

    systems = []
    if args.model:
        systems.append((os.path.basename(os.path.normpath(args.model)), {"source": args.model}))
    systems += [(name, {"source": source}) for name, source in args.enhancer]
    if not systems:
        source = DEFAULT_SOURCES["enhancement"]
        if not os.path.isfile(os.path.join(source, "hyperparams.yaml")):
            sys.exit(f"no model is shipped at {source}; pass --model or --enhancer NAME=FOLDER_OR_HUB_ID")
        systems.append((os.path.basename(source), {"source": source}))  # the default of sqe enhance
    peers = load_peers()
    names = DEFAULT_PEERS if args.peers is None else args.peers
    unknown = [name for name in names if name not in peers.PEERS]
    if unknown:
        sys.exit(f"unknown peers {unknown}; known: {', '.join(peers.PEERS)}")
    status = peers.check_peers(list(names)) if names else {}
    for name in names:
        if status[name]:
            log(f"skipping peer {name}: {status[name]}")
        else:
            systems.append((name, {"peer": name}))
    taken = [name for name, _ in systems]
    clash = sorted({name for name in taken if taken.count(name) > 1})
    if clash:
        sys.exit(f"system names {clash} given twice (--model is named after its folder)")
    return systems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--folder", default=None,
                        help="audio folder (default data/embedded/train30min_seed1234/test/noisy when present, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic files even if the folder exists")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the synthetic files")
    parser.add_argument("--model", default=None,
                        help="an enhancer folder or hub id (any enhancer), named after its folder in the table")
    parser.add_argument("--enhancer", type=named_source, action="append", default=[], metavar="NAME=SOURCE",
                        help="an enhancer folder or hub id (any enhancer, loaded with load_model) as row NAME "
                             "(repeatable; default, with no --model: vq=the shipped VQ enhancer)")
    parser.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                        help=f"peer enhancers of benchmarks/peer_enhancers.py (default: {' '.join(DEFAULT_PEERS)}, "
                             "those installed; none when given without names)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8],
                        help="files per batch of the enhancers (the peers take one file at a time)")
    parser.add_argument("--batch-threads", nargs="+", default=["auto"], metavar="N",
                        type=lambda text: text if text == "auto" else int(text),
                        help="enhance_files' batch threads of the enhancers (auto: one per torch thread)")
    parser.add_argument("--convolution", nargs="+", default=["auto"], choices=("auto", "direct", "overlap_save"),
                        help="convolution algorithms of the enhancers that have the choice (the VQ enhancer; "
                             "auto: overlap_save on a CPU), each a row; the others run once")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="kept", help=ALLOCATOR_HELP)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(read_child_config(args.child))))
        return None
    from speechbrain_sqe.dataio.files import expand_audio_inputs

    systems = plan_systems(args)
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
    print(f"{source}; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} (1 min) at the start; "
          f"allocator: {allocator_description(args.allocator)}")
    for name, spec in systems:
        print(f"- {name}: " + (f"enhancer {spec['source']} (load_model, enhance_files)" if "source" in spec
                               else f"peer {spec['peer']} (benchmarks/peer_enhancers.py), one file at a time"))
    print()
    print("| system | torch threads | batch size | batch threads | files | audio (s) | model load (s) | seconds "
          "| x real time | CPU s | audio s per CPU s | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, spec in systems:
        for convolution in (args.convolution if "source" in spec and _has_convolution(spec["source"]) else ["auto"]):
            shown = f"{name} ({convolution})" if len(args.convolution) > 1 and convolution != "auto" else name
            for threads in args.threads:
                for batch_size in (args.batch_sizes if "source" in spec else [None]):
                    for batch_threads in (args.batch_threads if "source" in spec else [None]):
                        rows.append(_measure(shown, {**spec, "allocator": args.allocator, "convolution": convolution},
                                             paths, threads, batch_size, batch_threads))
    print()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    return rows


def _has_convolution(source):
    """Whether the enhancer of hub folder ``source`` has a convolution choice (its interface's
    ``set_convolution``), read from the folder without loading the model."""
    from speechbrain_sqe.inference.hub import (
        read_interface_name,
        resolve_interface,
        resolve_shipped_name,
    )

    try:
        hparams = os.path.join(resolve_shipped_name(source), "hyperparams.yaml")
        return hasattr(resolve_interface(read_interface_name(hparams), "enhancement", source), "set_convolution")
    except (OSError, ValueError):  # a hub id or an unreadable folder: its run reports the problem
        return False


def _measure(name, spec, paths, threads, batch_size, batch_threads):
    """Runs one configuration in a fresh process, prints its table row and returns it as a dict."""
    config = {**spec, "threads": threads, "batch_size": batch_size, "batch_threads": batch_threads, "paths": paths}
    out = run_child(__file__, config)
    batch = "-" if batch_size is None else batch_size
    shown = "-" if batch_threads is None else batch_threads
    row = {"system": name, "threads": threads, "batch_size": batch_size, "batch_threads": batch_threads}
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no output"]
        print(f"| {name} | {threads} | {batch} | {shown} | failed: {lines[-1]} |", flush=True)
        return {**row, "error": lines[-1]}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    speed = result["audio"] / result["elapsed"]
    print(f"| {name} | {threads} | {batch} | {shown} | {len(paths)} | {result['audio']:.1f} | "
          f"{result['load']:.2f} | {result['elapsed']:.2f} | {speed:.0f} | {result['cpu']:.2f} | "
          f"{result['audio'] / max(result['cpu'], 1e-9):.0f} | {result['peak_mb']:.0f} |", flush=True)
    return {**row, "x_real_time": speed, **result}


if __name__ == "__main__":
    main()
