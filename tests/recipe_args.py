"""Test helper: command-line arguments of tiny recipe runs through ``train.main``."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository's train.py


def tiny_corpus(valid_pairs, test_pairs):
    """Overrides for a tiny embedded corpus (seconds to generate)."""
    return (
        f"--train_minutes=0.25 --valid_pairs={valid_pairs} --test_pairs={test_pairs} "
        "--corpus_options={unpaired_minutes: 0.1, noise_train_per_family: 1, noise_eval_per_family: 1, "
        "rirs_train: 2, rirs_eval: 2, noise_seconds: 3.0}"
    )


def split_overrides(text):
    """Splits overrides on spaces outside braces/brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "{["
        depth -= char in "}]"
        if char == " " and depth == 0:
            if current:
                parts.append(current)
            current = ""
        else:
            current += char
    return parts + ([current] if current else [])


def recipe_args(recipe, data, out, epochs, *groups):
    """``train.main`` arguments: the recipe, folders, epochs and groups of overrides."""
    args = [recipe, f"--data_folder={data}", f"--output_folder={out}", f"--number_of_epochs={epochs}"]
    for group in groups:
        args += split_overrides(group)
    return args


def free_port():
    """A TCP port free right now on localhost (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ddp(args, out, nproc=2):
    """Runs ``args`` (``train.main`` arguments) under torchrun on CPU (gloo) on a free port.

    Through ``tests/ddp_train.py``, which writes each rank's weight checksum; returns the
    completed process and the ranks' JSON records (rank order).
    """
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_train.py"),
        *args, "--distributed_backend=gloo",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
                            check=False)
    ranks = []
    for rank in range(nproc):
        path = os.path.join(str(out), f"rank{rank}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as stream:
                ranks.append(json.load(stream))
    return result, ranks


def assert_ranks_agree(ranks, nproc=2):
    """Every rank wrote its record, and all hold the same weights at the end of training."""
    assert [record["rank"] for record in ranks] == list(range(nproc)), ranks
    assert all(record["world_size"] == nproc and record["tensors"] > 0 for record in ranks), ranks
    assert len({record["checksum"] for record in ranks}) == 1, ranks
