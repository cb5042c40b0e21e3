"""Benchmark of the embedded corpus generator: wall time with 1 and 2 workers.

Generates the corpus (default size unless told otherwise) into a fresh folder per worker count
and prints a table: seconds, minutes of audio written (every wav: speech, pairs, noise, RIRs),
and how many times faster than real time.

    python benchmarks/bench_corpus.py                      # 1 and 2 workers, temporary folders
    python benchmarks/bench_corpus.py --workers 2          # only 2 workers
    python benchmarks/bench_corpus.py --data_folder /tmp/bench --train_minutes 5
"""

import argparse
import os
import shutil
import tempfile
import time

from speechbrain_sqe.dataio.embedded import prepare_embedded_corpus
from speechbrain_sqe.dataio.manifest import audio_duration


def audio_minutes(folder):
    """Minutes of audio in every wav under ``folder``.

    Arguments
    ---------
    folder : str
        A generated corpus.

    Returns
    -------
    float
        Total minutes.
    """
    seconds = 0.0
    for root, _, files in os.walk(folder):
        seconds += sum(audio_duration(os.path.join(root, f)) or 0.0 for f in files if f.endswith(".wav"))
    return seconds / 60.0


def main():
    """Runs the benchmark and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", help="parent folder for the runs (default: a temporary folder, removed)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train_minutes", type=float, default=30.0)
    parser.add_argument("--valid_pairs", type=int, default=48)
    parser.add_argument("--test_pairs", type=int, default=96)
    parser.add_argument("--unpaired_minutes", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora")
    args = parser.parse_args()
    parent = args.data_folder or tempfile.mkdtemp(prefix="bench_corpus_")
    results = []
    for workers in args.workers:
        folder = os.path.join(parent, f"workers{workers}")
        shutil.rmtree(folder, ignore_errors=True)  # a fresh run, not a verification of an old one
        start = time.time()
        prepare_embedded_corpus(
            folder, train_minutes=args.train_minutes, valid_pairs=args.valid_pairs, test_pairs=args.test_pairs,
            unpaired_minutes=args.unpaired_minutes, num_workers=workers,
        )
        seconds = time.time() - start
        start = time.time()
        prepare_embedded_corpus(
            folder, train_minutes=args.train_minutes, valid_pairs=args.valid_pairs, test_pairs=args.test_pairs,
            unpaired_minutes=args.unpaired_minutes, num_workers=workers,
        )
        again = time.time() - start
        minutes = audio_minutes(folder)
        results.append((workers, seconds, again, minutes, minutes * 60 / seconds))
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if not args.data_folder and not args.keep:
        shutil.rmtree(parent, ignore_errors=True)
    print(f"\nembedded corpus: train {args.train_minutes} min, valid {args.valid_pairs} pairs, "
          f"test {args.test_pairs} pairs, unpaired {args.unpaired_minutes} min; {os.cpu_count()} CPUs")
    print("| workers | seconds | second call (s) | audio minutes | x real time |")
    print("|--------:|--------:|----------------:|--------------:|------------:|")
    for workers, seconds, again, minutes, speed in results:
        print(f"| {workers} | {seconds:.1f} | {again:.2f} | {minutes:.1f} | {speed:.0f} |")


if __name__ == "__main__":
    main()
