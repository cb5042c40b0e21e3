"""Kill/resume soak, kept short: a tiny VQScore run killed with SIGKILL in training, in validation
and in the export (and, with SpeechBrain's intra-epoch checkpoints, mid-epoch) resumes to exactly
the uninterrupted run: the same kept checkpoints (every tensor, the selection metadata), the same
report numbers and the same exported tensors. The longer soak with random kill times over all
recipes is ``benchmarks/soak.py``."""

import importlib.util
import os
import signal

import pytest
from recipe_args import ROOT

_SPEC = importlib.util.spec_from_file_location("soak", os.path.join(ROOT, "benchmarks", "soak.py"))
soak = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(soak)

KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tmp_path_factory.mktemp("soak") / "data"


def _run(data, out, kill_at=None, extra=()):
    code, _ = soak.run_train(soak.recipe_command("vqscore", data, out, extra), kill_at=kill_at,
                             log=str(out) + ".log")
    return code


def _log(out):
    return open(str(out) + ".log", encoding="utf-8").read()[-3000:]


@pytest.mark.parametrize("extra, kills", [
    # Epoch-boundary checkpoints: killed after the first step of epoch 2, inside the save of epoch 2's
    # checkpoint (all its files but the completeness marker written), in the validation of epoch 3
    # and in the middle of the export (hub.partial written, not renamed).
    ((), ["train:2:1", "save:2", "valid:3:1", "export"]),
    # Intra-epoch checkpoints after every step: killed after step 2 of epoch 2 (resumes from step 1,
    # skipping the batch it trained on) and in the validation of epoch 3 (resumes after the last step).
    (("--ckpt_interval_steps=1",), ["train:2:2", "valid:3:1"]),
], ids=["epoch_boundary", "intra_epoch"])
def test_killed_run_resumes_to_the_uninterrupted_result(corpus, tmp_path, extra, kills):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _run(corpus, reference, extra=extra) == 0, _log(reference)
    for point in kills:
        assert _run(corpus, killed, kill_at=point, extra=extra) == KILLED, f"{point}: {_log(killed)}"
        if point == "export":
            # The kill left the temporary folder only: no half-written hub folder under its final name.
            assert (killed / "hub.partial").is_dir() and not (killed / "hub").exists()
    assert _run(corpus, killed, extra=extra) == 0, _log(killed)
    assert soak.compare_runs(str(reference), str(killed)) == []
    if "save:2" in kills:  # the interrupted save was set aside, not loaded
        assert len(list((killed / "save").glob("incomplete-CKPT+*"))) == 1


def test_compare_runs_sees_a_different_run(corpus, tmp_path):
    """The comparison can fail: another seed gives other checkpoints, report and export."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert _run(corpus, first, extra=("--number_of_epochs=1",)) == 0, _log(first)
    # The other seed's corpus (generated from the seed too) lives in its own folder.
    assert _run(tmp_path / "data_seed7", second, extra=("--number_of_epochs=1", "--seed=7")) == 0, _log(second)
    problems = soak.compare_runs(str(first), str(second))
    assert any("vqvae.ckpt" in line for line in problems) and any("report/" in line for line in problems)
