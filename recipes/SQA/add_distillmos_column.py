#!/usr/bin/env python3
"""Adds a ``distillmos`` column (Distill-MOS of each row's ``path``) to a per-file table of
``benchmarks/bench_enhance_peers.py``, so ``evaluate_predictor.py`` shows Distill-MOS beside DNSMOS:

    python recipes/SQA/add_distillmos_column.py results/bsse_real/peers_s10/peers_speakers_dry.csv \\
        results/sqa_s11/tables/speakers_dry.csv

A file that cannot be read or scored gets an empty cell (and a warning naming it); the other rows
keep their values.
"""

import argparse
import csv
import logging

import torch
from tqdm import tqdm

from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio
from speechbrain_sqe.metrics.distillmos import distillmos
from speechbrain_sqe.metrics.intrusive import MetricError

logger = logging.getLogger(__name__)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="per-file CSV with a 'path' column")
    parser.add_argument("output", help="the same table with a 'distillmos' column")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    with open(args.table, newline="") as stream:
        reader = csv.DictReader(stream)
        fields, rows = list(reader.fieldnames or ()), list(reader)
    if "path" not in fields:
        raise SystemExit(f"{args.table}: no column 'path'")
    for row in tqdm(rows, desc="Distill-MOS"):
        try:
            row["distillmos"] = distillmos(load_audio(row["path"], 16000, warn=False).numpy())
        except (AudioLoadError, MetricError) as error:
            logger.warning("%s: %s (left blank)", row["path"], error)
            row["distillmos"] = ""
    with open(args.output, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*fields, *(["distillmos"] if "distillmos" not in fields else [])])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.output}: {len(rows)} rows")


if __name__ == "__main__":
    main()
