#!/usr/bin/env python3
"""Test helper run under torchrun: ``train.main`` as ``train.py`` runs it, then this rank's weights.

Writes ``<output_folder>/rank<RANK>.json`` with a checksum of every module's parameters and
buffers at the end of ``fit`` (before any best-checkpoint recovery, which would make the ranks
agree by reading the same file), so a test can check that the ranks trained the same model.
"""

import hashlib
import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # brain_probe, recipe_args (which puts the repository root on sys.path)

import recipe_args  # noqa: F401
from brain_probe import probe

import train


def checksum(state):
    """SHA-256 over the names, dtypes, shapes and values of the ``modules.*`` tensors of a snapshot."""
    digest = hashlib.sha256()
    for name in sorted(key for key in state if key.startswith("modules.")):
        # DDP wraps each module (``vqvae.module.x``): the name without it is the same on every rank.
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.replace(".module.", ".").encode())
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def main(argv):
    output_folder = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--output_folder="))
    with probe() as record:
        train.main(argv)  # destroys the process group itself after the export
    state = record["fitted"]
    rank = int(os.environ.get("RANK", "0"))
    result = {
        "rank": rank,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "epoch": state["epoch"],
        "tensors": sum(key.startswith("modules.") for key in state),
        "checksum": checksum(state),
    }
    with open(os.path.join(output_folder, f"rank{rank}.json"), "w", encoding="utf-8") as stream:
        json.dump(result, stream)


if __name__ == "__main__":
    main(sys.argv[1:])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # As train.py: skip interpreter finalization on distributed ranks (gloo teardown abort).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
