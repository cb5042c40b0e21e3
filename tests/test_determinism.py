"""Two runs with the same seed on the same machine export the same checkpoint (--deterministic)."""

import os

import torch
from recipe_args import ROOT, recipe_args, tiny_corpus

import train

RECIPE = os.path.join(ROOT, "hparams", "vqscore.yaml")
TINY = tiny_corpus(valid_pairs=4, test_pairs=4) + (
    " --codebook_size=32 --batch_size=4 --crop_seconds=1.0 --test_metrics=[pesq_wb] --metric_jobs=1")


def _export(data, out, seed=1234):
    train.main(recipe_args(RECIPE, data, out, 2, TINY, f"--seed={seed}") + ["--deterministic"])
    return {name: torch.load(out / "hub" / name, weights_only=True) for name in sorted(os.listdir(out / "hub"))
            if name.endswith(".ckpt")}


def test_same_seed_exports_identical_tensors(tmp_path):
    data = tmp_path / "data"
    first, second = _export(data, tmp_path / "a"), _export(data, tmp_path / "b")
    assert list(first) == ["vqvae.ckpt"]
    for name, state in first.items():
        assert state.keys() == second[name].keys()
        for key, tensor in state.items():
            assert tensor.dtype == second[name][key].dtype and torch.equal(tensor, second[name][key]), key
        assert (tmp_path / "a" / "hub" / name).read_bytes() == (tmp_path / "b" / "hub" / name).read_bytes()
    # The mode is undone when the run ends (a notebook or test process keeps its settings).
    assert not torch.are_deterministic_algorithms_enabled()
    # And the comparison can fail: another seed exports other weights (its corpus, generated from
    # the seed too, lives in its own folder: a corpus folder is never regenerated with other settings).
    other = _export(tmp_path / "data_seed7", tmp_path / "c", seed=7)
    assert not all(torch.equal(t, other["vqvae.ckpt"][k]) for k, t in first["vqvae.ckpt"].items())

