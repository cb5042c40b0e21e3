"""The TERA pretraining recipe end to end on a tiny embedded corpus: train, curve, export, resume."""

import csv
import os
import subprocess

import pytest
import torch
from brain_probe import assert_restored, probe
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe.inference.encoders import TERA

RECIPE = os.path.join(ROOT, "hparams", "tera.yaml")
TINY_CORPUS = tiny_corpus(valid_pairs=4, test_pairs=2)
TINY_MODEL = (
    "--hidden_size=32 --num_layers=2 --num_heads=2 --intermediate_size=64 --batch_size=4 "
    "--crop_seconds=1.0 --lr=0.002"
)


#: What TERA's resume must restore besides the model and optimizer (whose state holds the current
#: lr): the warm-up schedule's position (its total is refitted to the new run on purpose; its
#: ``current_lr`` attribute is not used to step and SpeechBrain does not save it) and the loss curve.
EXTRAS = {
    "lr_scheduler": lambda brain: {"current_step": brain.lr_scheduler.current_step, "lr0": brain.lr_scheduler.lr0},
    "loss_history": lambda brain: vars(brain.loss_history),
}


def _args(data, out, epochs, extra=""):
    return recipe_args(RECIPE, data, out, epochs, TINY_CORPUS, TINY_MODEL, extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny pretraining run of two epochs, shared by the tests of this module.

    Also records the training state when its fit ended (epoch 2), for the resume test.
    """
    root = tmp_path_factory.mktemp("tera")
    data, out = root / "data", root / "out"
    with probe(EXTRAS) as record:
        brain = train.main(_args(data, out, 2))
    return data, out, brain, record["fitted"]


def test_loss_goes_down_and_curve_is_written(trained):
    _, out, _, _ = trained
    with open(out / "loss_curve.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    train_loss = [float(row["train_loss"]) for row in rows]
    valid_loss = [float(row["valid_loss"]) for row in rows]
    assert train_loss[1] < train_loss[0] or valid_loss[1] < valid_loss[0]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert "valid loss" in (out / "train_log.txt").read_text()


def test_hub_folder_loads_and_matches_the_trained_model(trained):
    data, out, brain, _ = trained
    tera = TERA.from_hparams(source=str(out / "hub"))
    assert tera.layer_count == 3
    wav_path = next((data / "train_clean").rglob("*.wav"))
    states = tera.hidden_states_file(str(wav_path))
    assert len(states) == 3 and states[0].shape[0] == 1 and states[0].shape[2] == 32
    wavs, lens = torch.randn(2, 8000) * 0.1, torch.tensor([1.0, 0.6])
    model = brain.modules.tera.eval()  # the best checkpoint, recovered before the export
    with torch.no_grad():
        expected = model.hidden_states(wavs, lens)
    got = tera.hidden_states(wavs, lens)
    assert len(got) == 3 and got[-1].shape == (2, 51, 32)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-5)
    assert "| 2 |" in (out / "hub" / "README.md").read_text()


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    data, out, _, epoch2_state = trained
    resumed = tmp_path / "resumed"
    # Same run folder copied, then asked for one more epoch (with noisy inputs, to run that path: a
    # changed setting, so the resume is asked for explicitly).
    subprocess.run(["cp", "-r", str(out), str(resumed)], check=True)
    with probe(EXTRAS) as record:
        train.main(_args(data, resumed, 3, "--noise_prob=0.5") + ["--resume_with_changes"])
    # What the resumed run recovered (model, optimizer, lr schedule, epoch) is the epoch-2 state.
    assert record["restored"]["epoch"] == 2 and epoch2_state["lr_scheduler"]["current_step"] > 0
    assert_restored(epoch2_state, record["restored"])
    epochs = [line.split(",")[0] for line in (resumed / "train_log.txt").read_text().splitlines()
              if line.startswith("epoch:")]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]
    with open(resumed / "loss_curve.csv", newline="", encoding="utf-8") as stream:
        assert [row["epoch"] for row in csv.DictReader(stream)] == ["1", "2", "3"]
