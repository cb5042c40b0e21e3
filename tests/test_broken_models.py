"""Broken model folders: a truncated, corrupted or empty checkpoint, a missing file, another model's
weights. Each is one line naming the file (exit 2), `sqe --debug` shows the traceback."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vq_enhancer_hub, build_vqscore_hub
from speech import speech_like

from speechbrain_sqe import cli
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
from speechbrain_sqe.utils.safe_load import (
    CheckpointError,
    load_state_dict_safely,
    safe_torch_recovery,
)


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hubs")
    return {"score": build_vqscore_hub(VQVAEQualityModel(codebook_size=16), str(root / "vqscore")),
            "enhance": build_vq_enhancer_hub(VQVAEEnhancementModel(channels=(16, 8), codebook_dim=8,
                                                                   codebook_size=8), str(root / "enhancer"))}


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech_like(1.0).astype(np.float32), 16000)
    return path


def _damage(folder, how, tmp_path):
    broken = tmp_path / f"broken_{how}"
    shutil.copytree(folder, broken)
    ckpt = broken / "vqvae.ckpt"
    data = ckpt.read_bytes()
    if how == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif how == "corrupted":
        ckpt.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8)))
    elif how == "empty":
        ckpt.write_bytes(b"")
    elif how == "missing":
        ckpt.unlink()
    return broken, ckpt


def _run(command, model, wav, tmp_path):
    if command == "score":
        return cli.main(["score", str(wav), "--model", str(model), "--no-progress"])
    return cli.main(["enhance", str(wav), "--model", str(model), "--out-dir", str(tmp_path / "out"),
                     "--no-progress"])


@pytest.mark.parametrize("command", ["score", "enhance"])
@pytest.mark.parametrize("how", ["truncated", "corrupted", "empty", "missing"])
def test_a_broken_model_folder_is_one_line_naming_the_file(command, how, hubs, wav, tmp_path, capsys):
    broken, ckpt = _damage(hubs[command], how, tmp_path)
    assert _run(command, broken, wav, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"sqe {command}: ") and str(ckpt) in err[0]
    expected = "is missing" if how == "missing" else "truncated or corrupted checkpoint"
    assert expected in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_another_models_weights_are_named(hubs, wav, tmp_path, capsys):
    broken, ckpt = _damage(hubs["score"], "intact", tmp_path)
    torch.save(VQVAEQualityModel(codebook_size=32).state_dict(), ckpt)  # the hyperparams say 16 codes
    assert _run("score", broken, wav, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ckpt) in err[0] and "does not fit VQVAEQualityModel" in err[0], err


def test_debug_shows_the_traceback(hubs, wav, tmp_path):
    broken, ckpt = _damage(hubs["score"], "truncated", tmp_path)
    command = [sys.executable, "-m", "speechbrain_sqe.cli", "score", str(wav), "--model", str(broken),
               "--no-progress"]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and str(ckpt) in plain.stderr
    debug = subprocess.run([*command[:3], "--debug", *command[3:]], capture_output=True, text=True,
                           timeout=300, check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


def test_checkpoint_errors_of_the_loaders(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit Linear"):
        safe_torch_recovery(torch.nn.Linear(4, 2), str(path))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=f"{path}: truncated or corrupted checkpoint \\(50 bytes"):
        load_state_dict_safely(str(path))
    with pytest.raises(FileNotFoundError):
        load_state_dict_safely(str(tmp_path / "absent.ckpt"))
    assert os.path.exists(path)
