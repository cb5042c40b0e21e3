"""TERA speed: pretraining steps per second and hidden-state extraction throughput (x real time).

    python benchmarks/bench_tera.py [--model FOLDER] [--steps 10] [--files 64]

Pretraining steps use the recipe's step (features, alteration, forward, masked L1, backward,
AdamW) on batches of 16 random 3 s crops of speech-like audio, for the small (CPU default) and
base sizes. Extraction runs ``TERA.hidden_states`` on 5 s files in batches of 8, decoding
included. Each configuration runs with 1 and 2 torch threads. Prints markdown tables.
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_vqscore import make_files

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.lobes.alteration import TERAAlteration, masked_l1_loss
from speechbrain_sqe.lobes.tera import TERA_BASE_CONFIG, TERA_SMALL_CONFIG, TERAModel


def pretraining_steps_per_second(config, steps, batch=16, seconds=3.0):
    """Times ``steps`` full training steps of a model built from ``config``."""
    model = TERAModel(**config)
    alteration = TERAAlteration()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    wavs = torch.randn(batch, int(seconds * 16000)) * 0.1
    lens = torch.ones(batch)

    def step():
        feats, flens = model.extract_features(wavs, lens)
        altered, mask = alteration(feats, flens)
        loss = masked_l1_loss(model(altered, flens), feats, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def extraction_speed(model_folder, paths, seconds, batch=8):
    """Times hidden-state extraction over ``paths`` (decoding included); returns x real time."""
    from speechbrain_sqe.inference.encoders import TERA

    tera = TERA.from_hparams(source=model_folder, savedir=tempfile.mkdtemp())
    start = time.perf_counter()
    for first in range(0, len(paths), batch):
        wavs = torch.stack([load_audio(p) for p in paths[first : first + batch]])
        tera.hidden_states(wavs)
    return len(paths) * seconds / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="TERA hub folder (default: the shipped model)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--files", type=int, default=64)
    args = parser.parse_args()
    model = args.model or os.path.join(os.path.dirname(__file__), "..", "speechbrain_sqe", "pretrained", "tera")
    paths = make_files(tempfile.mkdtemp(), args.files, 5.0)
    print("| what | size | torch threads | result |")
    print("|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, config in (("small", TERA_SMALL_CONFIG), ("base", TERA_BASE_CONFIG)):
            rate = pretraining_steps_per_second(config, args.steps if name == "small" else max(2, args.steps // 4))
            print(f"| pretraining (batch 16 x 3 s) | {name} | {threads} | {rate:.2f} steps/s |")
        speed = extraction_speed(model, paths, 5.0)
        print(f"| hidden states (5 s files, batch 8) | shipped | {threads} | {speed:.0f} x real time |")


if __name__ == "__main__":
    main()
