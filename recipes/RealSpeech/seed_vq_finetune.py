#!/usr/bin/env python3
"""Starts a VQ-enhancer run from trained weights (fine-tuning), by seeding its save folder.

    python recipes/RealSpeech/seed_vq_finetune.py \\
        --template results/enhreal/real_realism/save/CKPT+2026-12-02+13-47-43+00 \\
        --weights speechbrain_sqe/pretrained/vq_enhancer/vqvae.ckpt \\
        --save_folder results/enhreal/tts_then_real/save
    python train.py hparams/vq_enhance.yaml --corpus=manifest ... \\
        --output_folder=results/enhreal/tts_then_real --step1_epochs=2 --number_of_epochs=3

``hparams/vq_enhance.yaml`` has no initialisation option; ``train.py`` resumes the newest
checkpoint of ``<output_folder>/save``. This writes one there, before epoch 1: a copy of
``--template`` (any end-of-epoch checkpoint of a run of the same model configuration, for the
file set SpeechBrain expects) whose student and teacher are ``--weights``, with a fresh optimizer
(no Adam moments), the epoch counter at 0, step 1 and no validation score (so the first saved
epoch replaces it, and the best-checkpoint selection never picks it). The run then trains both
steps from those weights and picks its checkpoints on validation as any run.
"""

import argparse
import json
import os
import shutil
import time

import torch
import yaml


def seed(template, weights, save_folder):
    """Writes the seeded checkpoint folder and returns its path.

    Arguments
    ---------
    template : str
        An end-of-epoch checkpoint folder (``CKPT+...``) of a run of the same configuration.
    weights : str
        The state dict of the ``VQVAEEnhancementModel`` to start from (a hub ``vqvae.ckpt``).
    save_folder : str
        The new run's ``save_folder`` (must hold no checkpoint yet).

    Returns
    -------
    str
        The checkpoint folder written.
    """
    if os.path.isdir(save_folder) and any(name.startswith("CKPT+") for name in os.listdir(save_folder)):
        raise SystemExit(f"{save_folder} already holds checkpoints")
    state = torch.load(weights, map_location="cpu")
    reference = torch.load(os.path.join(template, "vqvae.ckpt"), map_location="cpu")
    if set(state) != set(reference) or any(state[k].shape != reference[k].shape for k in state):
        raise SystemExit(f"{weights} is not a model of the template's configuration")
    target = os.path.join(save_folder, "CKPT+" + time.strftime("%Y-%m-%d+%H-%M-%S+00", time.gmtime(0)))
    shutil.copytree(template, target)
    for name in ("vqvae.ckpt", "teacher.ckpt"):
        torch.save(state, os.path.join(target, name))
    optimizer = torch.load(os.path.join(template, "optimizer.ckpt"), map_location="cpu")
    optimizer["state"] = {}
    torch.save(optimizer, os.path.join(target, "optimizer.ckpt"))
    with open(os.path.join(target, "counter.ckpt"), "w") as handle:
        handle.write("0")
    with open(os.path.join(target, "phase.ckpt"), "w") as handle:
        json.dump({"phase": 1}, handle)
    with open(os.path.join(target, "brain.ckpt"), "w") as handle:
        yaml.dump({"avg_train_loss": 0.0, "optimizer_step": 0, "step": 0}, handle)
    with open(os.path.join(target, "CKPT.yaml"), "w") as handle:
        handle.write("# yamllint disable\n")
        yaml.dump({"end-of-epoch": True, "phase": 1, "unixtime": 0.0, "seeded_from": os.path.abspath(weights)},
                  handle)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", required=True, help="an end-of-epoch CKPT+ folder of the same configuration")
    parser.add_argument("--weights", required=True, help="vqvae.ckpt to start from")
    parser.add_argument("--save_folder", required=True, help="the new run's save folder")
    args = parser.parse_args(argv)
    print(seed(args.template, args.weights, args.save_folder))


if __name__ == "__main__":
    main()
