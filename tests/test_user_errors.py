"""User errors of the recipes end in one line without a traceback; no stray warnings."""

import os
import subprocess
import sys

import pytest

from speechbrain_sqe.dataio.folders import prepare_from_folders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(tmp_path, *overrides):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SQE_DEBUG", None)
    command = [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, "hparams", "vqscore.yaml"),
               f"--output_folder={tmp_path / 'out'}", f"--data_folder={tmp_path / 'data'}", *overrides]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)


def test_train_reports_preparation_errors_in_one_line(tmp_path):
    done = _train(tmp_path, "--corpus=folders", f"--source_folder={tmp_path / 'no_such_folder'}")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: data preparation:") and "no_such_folder: source_folder does not exist" in last
    # SpeechBrain's train_logger import warns about torchvision on every run; the package drops it.
    assert "torchvision" not in done.stderr + done.stdout


def test_missing_clean_folder_is_named_not_counted(tmp_path):
    with pytest.raises(ValueError, match="missing: clean folder does not exist"):
        prepare_from_folders(str(tmp_path / "out"), str(tmp_path / "missing"), num_workers=1)
