"""A resumed run trains with the settings its command line says: a checkpointed run folder asked to
resume with other settings refuses (naming them), unless --new_run or --resume_with_changes; more
epochs and a moved folder stay allowed."""

import logging
import os
import shutil
import subprocess
import sys

import pytest
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe.utils.run_settings import (
    RunSettingsChanged,
    check_resume,
    differences,
    overrides_dict,
)

RECIPE = os.path.join(ROOT, "hparams", "vqscore.yaml")
TINY = tiny_corpus(valid_pairs=4, test_pairs=4) + (
    " --codebook_size=32 --batch_size=4 --crop_seconds=1.0 --test_metrics=[pesq_wb] --metric_jobs=1")


def _args(data, out, epochs, extra=""):
    return recipe_args(RECIPE, data, out, epochs, TINY, extra)


def _overrides(args):
    """The overrides text SpeechBrain makes of ``train.main`` arguments."""
    return {key: value for key, value in overrides_dict(
        "\n".join(arg[2:].replace("=", ": ", 1) for arg in args[1:])).items()}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A checkpointed tiny run (one epoch) at the default learning rate (1e-4)."""
    root = tmp_path_factory.mktemp("run_settings")
    data, out = root / "data", root / "out"
    train.main(_args(data, out, 1))
    return data, out


def test_changed_learning_rate_is_refused_and_named(run_folder):
    data, out = run_folder
    saved = (out / "hyperparams.yaml").read_text()
    checkpoints = sorted(os.listdir(out / "save"))
    with pytest.raises(RunSettingsChanged) as error:
        train.main(_args(data, out, 1, "--lr=0.0005"))
    message = str(error.value)
    assert "lr: 0.0001 in the checkpointed run, 0.0005 now" in message
    assert str(out / "hyperparams.yaml") in message and "--new_run" in message and "--resume_with_changes" in message
    assert "\n" not in message
    # Nothing was written: the checkpointed run's settings and checkpoints are as they were.
    assert (out / "hyperparams.yaml").read_text() == saved and sorted(os.listdir(out / "save")) == checkpoints


def test_command_line_refusal_is_one_line_and_non_zero(run_folder):
    data, out = run_folder
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *_args(data, out, 1, "--seed=99")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("train.py: ")
    assert "seed: 1234 in the checkpointed run, 99 now" in result.stderr and "Traceback" not in result.stderr


def test_more_epochs_and_a_moved_folder_are_allowed(run_folder, tmp_path):
    data, out = run_folder
    args = _args(data, out, 5)
    assert check_resume(args[0], _overrides(args)) == _overrides(args)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    args = _args(data, moved, 1)
    assert check_resume(args[0], _overrides(args)) == _overrides(args)
    # Fewer epochs than the checkpointed run asked for is a change.
    with pytest.raises(RunSettingsChanged, match="number_of_epochs: 1 in the checkpointed run, 0 now"):
        args = _args(data, out, 0)
        check_resume(args[0], _overrides(args))


def test_new_run_and_resume_with_changes(run_folder, caplog):
    data, out = run_folder
    args = _args(data, out, 1, "--lr=0.0005")
    moved = check_resume(args[0], _overrides(args), new_run=True)
    assert moved["output_folder"] == f"{out}_run2" and not os.path.exists(f"{out}_run2")
    with caplog.at_level(logging.WARNING):
        assert check_resume(args[0], _overrides(args), accept_changes=True)["lr"] == 0.0005
    assert "lr: 0.0001 in the checkpointed run, 0.0005 now" in caplog.text


def test_differences_name_plain_settings_and_derived_objects():
    old = {"lr": 0.0001, "opt_class": {"!name:torch.optim.Adam": {"lr": 0.0001}}, "__set_seed": 1, "x": [1, 2]}
    new = {"lr": 0.0005, "opt_class": {"!name:torch.optim.Adam": {"lr": 0.0005}}, "__set_seed": 2, "x": [1, 2]}
    assert differences(old, new) == ["lr: 0.0001 in the checkpointed run, 0.0005 now",
                                     "built from them: opt_class differ"]
    assert differences(old, old) == []
    assert differences({"a": 1}, {"b": 2}) == ["a: 1 in the checkpointed run, absent now",
                                               "b: absent in the checkpointed run, 2 now"]


def test_tagged_override_reaches_the_recipe(tmp_path):
    """``--clean_augment='!new:...'`` (a tagged override) is kept through the resume check and
    builds the object it names (it once failed in the plain YAML parse of the overrides)."""
    from hyperpyyaml import load_hyperpyyaml

    text = ("clean_augment: !new:speechbrain_sqe.dataio.realism.CleanRealism\n"
            "    sample_rate: 16000\n    reverb_prob: 0.0\n"
            f"output_folder: {tmp_path / 'out'}\n")
    overrides = check_resume(os.path.join(ROOT, "hparams", "vqscore.yaml"), text)
    with open(os.path.join(ROOT, "hparams", "vqscore.yaml"), encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, overrides)
    assert type(hparams["clean_augment"]).__name__ == "CleanRealism"
    assert hparams["clean_augment"].reverb_prob == 0.0


def test_time_budget_stops_training_and_the_same_command_resumes(run_folder, tmp_path):
    """max_train_minutes=0: training stops after the first epoch (its checkpoint, test and export
    done as after a full run); the same command again trains one more epoch; the budget may change
    on resume without --resume_with_changes."""
    data, _ = run_folder
    out = tmp_path / "budget"
    args = _args(data, out, 3, "--max_train_minutes=0")
    brain = train.main(args)
    assert brain.hparams.epoch_counter.current == 1 and brain.stopped_by_budget == 1
    log = (out / "log.txt").read_text()  # SpeechBrain's experiment log
    assert "max_train_minutes=0 reached" in log and "after epoch 1 of 3" in log
    assert (out / "hub" / "hyperparams.yaml").exists()
    assert "stopped by max_train_minutes=0 after epoch 1" in (out / "hub" / "README.md").read_text()
    brain = train.main(args)
    assert brain.hparams.epoch_counter.current == 2
    # Another budget is not a change of the run; the unlimited default trains to number_of_epochs.
    brain = train.main(_args(data, out, 3))
    assert brain.hparams.epoch_counter.current == 3 and not getattr(brain, "stopped_by_budget", False)
