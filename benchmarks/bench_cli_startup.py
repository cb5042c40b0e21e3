"""Start-up time of the command line: one 3 s file scored by ``sqe score``, against the floors (the
interpreter, ``import torch``, ``import speechbrain``) and the peers' own start-up (DNSMOS through
``speechmos``, Distill-MOS), each a fresh process as a user starts it.

The first run of each command is reported apart ("first", cold-ish: the files may still be in the page
cache from an earlier run; nothing is dropped), then the median and the minimum of ``--repeats`` more
("warm"). Prints a Markdown table.

Usage::

    python benchmarks/bench_cli_startup.py [--repeats 5] [--skip-peers]
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile


def speech_like(path, seconds=3.0, rate=16000, seed=0):
    """A voiced, harmonic signal with a little noise (what the speech check takes for speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(path, (0.1 * voiced + 0.003 * rng.standard_normal(t.shape)).astype(np.float32), rate)


def commands(wav):
    """(label, argv, needs, env) of every measured command; ``needs`` is a module the row needs, ``env``
    variables added to the environment."""
    python = sys.executable
    sqe = shutil.which("sqe") or os.path.join(os.path.dirname(python), "sqe")
    read = f"import soundfile; x, _ = soundfile.read({wav!r}, dtype='float32')"
    return [
        ("python -c pass (the interpreter)", [python, "-c", "pass"], None, None),
        ("python -c 'import torch' (floor)", [python, "-c", "import torch"], None, None),
        ("python -c 'import torch; os._exit(0)' (floor without teardown)",
         [python, "-c", "import os, torch; os._exit(0)"], None, None),
        ("python -c 'import torch, speechbrain'", [python, "-c", "import torch, speechbrain"], None, None),
        ("python -c 'import speechbrain.inference.interfaces' (floor of a SpeechBrain interface)",
         [python, "-c", "import speechbrain.inference.interfaces"], None, None),
        ("sqe --help", [sqe, "--help"], None, None),
        ("sqe score x.wav (shipped VQScore)", [sqe, "score", wav, "--no-progress"], None, None),
        # The same command with the interpreter's full teardown, then also with scipy.stats imported
        # at start: each step of speechbrain_sqe.cli.run / utils.deferred_imports undone.
        ("SQE_FULL_EXIT=1 sqe score x.wav", [sqe, "score", wav, "--no-progress"], None, {"SQE_FULL_EXIT": "1"}),
        ("SQE_FULL_EXIT=1 SQE_EAGER_IMPORTS=1 sqe score x.wav", [sqe, "score", wav, "--no-progress"], None,
         {"SQE_FULL_EXIT": "1", "SQE_EAGER_IMPORTS": "1"}),
        ("DNSMOS: speechmos dnsmos.run (peer)",
         [python, "-c", f"{read}; from speechmos import dnsmos; dnsmos.run(x, 16000)"], "speechmos", None),
        ("Distill-MOS: ConvTransformerSQAModel (peer)",
         [python, "-c", (f"{read}; import torch, distillmos; m = distillmos.ConvTransformerSQAModel().eval(); "
                        "torch.no_grad().__enter__(); m(torch.from_numpy(x)[None])")], "distillmos", None),
    ]


def timed(argv, env=None):
    """Wall seconds of one run (its output is discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            env={**os.environ, **env} if env else None)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench_cli_startup: {' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm runs per command (after the first)")
    parser.add_argument("--skip-peers", action="store_true", help="leave DNSMOS and Distill-MOS out")
    args = parser.parse_args(argv)
    import importlib.util

    folder = tempfile.mkdtemp(prefix="bench_cli_startup_")
    wav = os.path.join(folder, "x.wav")
    speech_like(wav)
    rows = []
    for label, command, needs, env in commands(wav):
        if needs and (args.skip_peers or importlib.util.find_spec(needs) is None):
            continue
        first = timed(command, env)
        warm = [timed(command, env) for _ in range(args.repeats)]
        rows.append((label, first, statistics.median(warm), min(warm)))
        print(f"{label}: first {first:.2f} s, warm median {statistics.median(warm):.2f} s", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {args.repeats} warm runs each; one 3.0 s 16 kHz file\n")
    print("| command | first run (s) | warm median (s) | warm min (s) |")
    print("|---|---|---|---|")
    for label, first, median, best in rows:
        print(f"| {label} | {first:.2f} | {median:.2f} | {best:.2f} |")


if __name__ == "__main__":
    main()
