#!/usr/bin/env python3
"""One entry point for every recipe of speechbrain-sqe.

    python train.py hparams/vqscore.yaml [SpeechBrain flags] [--key=value overrides]
    torchrun --nproc_per_node=2 train.py hparams/vqscore.yaml --distributed_backend=gloo

The recipe YAML names its Brain class (``brain_class``, a ``!name:`` tag) and its data preparation
(``prepare_data``, a ``!name:`` partial); the Brain's ``run_recipe`` does the rest (fit, evaluate,
export). The YAML and the command-line overrides are checked before loading against the recipe
policy of ``speechbrain_sqe.utils.safe_load`` (``RECIPE_POLICY``): anything else is refused unless
``--trust_hparams`` is given.

An output folder that holds a checkpointed run is resumed only with that run's settings (more
epochs and a moved folder allowed): otherwise the run stops naming the differing keys, unless
``--new_run`` (train from scratch in ``<output_folder>_run<n>``) or ``--resume_with_changes`` is
given (``speechbrain_sqe.utils.run_settings``). ``--deterministic`` (or ``deterministic: True`` in
the YAML) turns on torch's deterministic algorithms (``speechbrain_sqe.utils.determinism``).
"""

import logging
import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_sqe.dataio.tts import MissingToolError
from speechbrain_sqe.utils.allocator import keep_freed_memory
from speechbrain_sqe.utils.determinism import deterministic_mode
from speechbrain_sqe.utils.run_settings import RunSettingsChanged, check_resume
from speechbrain_sqe.utils.safe_load import RECIPE_POLICY, check_hyperparams_file

TRUST_FLAG = "--trust_hparams"
#: train.py's own switches (not hyperparameters): removed before SpeechBrain parses the rest.
FLAGS = (TRUST_FLAG, "--new_run", "--resume_with_changes", "--deterministic")
#: Errors of data preparation caused by the user's input (missing folder, unknown corpus, a corpus
#: folder of other settings, missing flite/espeak-ng): reported in one line, without a traceback.
PREPARATION_ERRORS = (ValueError, FileNotFoundError, MissingToolError)


def main(argv=None):
    """Runs the recipe named on the command line; returns the Brain."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {flag for flag in FLAGS if flag in argv}
    argv = [arg for arg in argv if arg not in FLAGS]
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Batches reuse freed memory instead of page-faulting it back in (speechbrain_sqe.utils.allocator).
    keep_freed_memory()
    # The overrides are checked with the file: they are merged into it before anything is built.
    check_hyperparams_file(hparams_file, trust_hparams=TRUST_FLAG in flags, policy=RECIPE_POLICY,
                           overrides=overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    # Every rank compares with the checkpointed run before the main process overwrites its
    # hyperparams.yaml (the barrier), so all ranks decide alike.
    overrides = check_resume(hparams_file, overrides, new_run="--new_run" in flags,
                             accept_changes="--resume_with_changes" in flags)
    sb.utils.distributed.ddp_barrier()
    with open(hparams_file, encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, overrides)
    with deterministic_mode("--deterministic" in flags or bool(hparams.get("deterministic", False))):
        return _run(hparams_file, hparams, run_opts, overrides)


def _run(hparams_file, hparams, run_opts, overrides):
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    # Prepare on the main process only; then every rank only asks for the manifest paths
    # (skip_prep), so no two processes write the same files.
    try:
        run_on_main(hparams["prepare_data"])
    except PREPARATION_ERRORS as error:  # a user's input (folder, corpus name, tools): one line
        if os.environ.get("SQE_DEBUG"):
            raise
        sys.exit(f"train.py: data preparation: {error} (SQE_DEBUG=1 shows the traceback)")
    manifests = hparams["prepare_data"](skip_prep=True)
    brain = hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.run_recipe(manifests)
    if torch.distributed.is_initialized():
        # Wait for the main process's export, then shut gloo/nccl down cleanly: a rank leaving
        # with its process group alive aborts ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return brain


if __name__ == "__main__":
    try:
        main()
    except RunSettingsChanged as error:
        sys.exit(f"train.py: {error}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Everything is written and the process group destroyed. Skip interpreter finalization:
        # Gloo's C++ worker threads can still hold objects whose destruction then aborts the
        # process ("terminate called without an active exception", SIGABRT) after a successful
        # run (pytorch/pytorch#179291 describes the teardown race); seen here once in five suite runs.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
