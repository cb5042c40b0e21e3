"""The VQ enhancement recipe end to end on a tiny embedded corpus: both steps in one run, the phase
switch and the teacher in the checkpoint, resume in either step, the ablation report and the export."""

import csv
import json
import os
import shutil

import pytest
import torch
import yaml
from brain_probe import assert_restored, probe
from recipe_args import ROOT, assert_ranks_agree, recipe_args, run_ddp, tiny_corpus

import train
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.embedded import manifest_paths
from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.metrics.registry import compute_metrics

RECIPE = os.path.join(ROOT, "hparams", "vq_enhance.yaml")
TINY_CORPUS = tiny_corpus(valid_pairs=4, test_pairs=4)
TINY_MODEL = (
    "--channels=[32,16] --codebook_dim=16 --codebook_size=32 --batch_size=4 --crop_seconds=1.0 "
    "--test_metrics=[pesq_wb,stoi] --metric_jobs=1 --test_mix_ratios=[0.3]"
)


#: What the enhancer's resume must restore besides the student and its optimizer: the training
#: phase (step 1 or 2) and the frozen teacher.
EXTRAS = {
    "phase": lambda brain: brain.hparams.phase.current,
    "teacher": lambda brain: brain.hparams.teacher.state_dict(),
}


def _args(data, out, epochs, extra="", step1_epochs=2):
    """Recipe arguments; the overrides of ``extra`` replace the tiny defaults of the same name."""
    args = recipe_args(RECIPE, data, out, epochs, TINY_CORPUS, TINY_MODEL, f"--step1_epochs={step1_epochs}", extra)
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}  # later ones win
    return [args[0], *by_name.values()]


def _log_lines(out):
    return [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Step 1 only (2 epochs), then the same folder resumed to 3 epochs (the switch to step 2).

    Also records the training states: at the end of each fit, and what the resumed run restored.
    """
    root = tmp_path_factory.mktemp("vq_enhance")
    data, out = root / "data", root / "out"
    with probe(EXTRAS) as first:
        train.main(_args(data, out, 2))
    step1_only = root / "step1_only"
    shutil.copytree(out, step1_only)
    with probe(EXTRAS) as second:
        train.main(_args(data, out, 3))
    states = {"epoch2": first["fitted"], "restored_at_2": second["restored"], "epoch3": second["fitted"]}
    return data, step1_only, out, states


def test_step1_only_run_reports_and_exports(runs):
    _, step1_only, _, _ = runs
    summary = json.loads((step1_only / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "step1", "step1 mix 0.3"]
    assert [line.split(",")[1].strip() for line in _log_lines(step1_only)] == ["step: 1", "step: 1"]
    assert (step1_only / "hub" / "vqvae.ckpt").exists()


def test_switch_to_step2_after_resume(runs):
    data, _, out, _ = runs
    steps = [line.split(",")[1].strip() for line in _log_lines(out)]
    assert steps == ["step: 1", "step: 1", "step: 2"]  # epochs 1-2 were not trained again
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "step1", "step1+2", "step1+2 mix 0.3"]
    assert set(summary["per_condition"]) == {"snr", "noise_type"}
    assert summary["n"]["step1+2"] == 4
    # Each system's PESQ is the mean over the test pairs of PESQ(clean, that system's output file).
    with open(manifest_paths(str(data))["test"], newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    folders = {"noisy": None, "step1": "step1", "step1+2": "step1+2", "step1+2 mix 0.3": "step1+2_mix0.3"}
    for system, folder in folders.items():
        pesq = []
        for row in rows:
            degraded = row["noisy_wav"] if folder is None else str(out / "enhanced" / folder / f"{row['ID']}.wav")
            pesq.append(compute_metrics(load_audio(row["clean_wav"], 16000), load_audio(degraded, 16000),
                                        ["pesq_wb"])["pesq_wb"])
        assert summary["overall"][system]["pesq_wb"] == pytest.approx(sum(pesq) / len(pesq), abs=1e-4), system
    assert (out / "report" / "metrics_by_snr.png").stat().st_size > 1000
    assert "step1+2" in (out / "hub" / "README.md").read_text()


def test_phase_and_teacher_are_checkpointed(runs):
    _, step1_only, out, _ = runs
    # The teacher is the best step-1 model; the student kept its (frozen) codebook.
    step1 = [(yaml.safe_load((path / "CKPT.yaml").read_text()), path) for path in (step1_only / "save").iterdir()]
    # The best by validation PESQ, the newest among equals (as the Checkpointer ranks them).
    best_step1 = [max(step1, key=lambda item: (item[0]["step1_pesq"], item[0]["unixtime"]))[1]]
    latest = max((out / "save").iterdir(), key=lambda path: path.stat().st_mtime)
    assert json.loads((latest / "phase.ckpt").read_text()) == {"phase": 2}
    teacher = _state(latest / "teacher.ckpt")
    student = _state(latest / "vqvae.ckpt")
    step1_weights = _state(best_step1[0] / "vqvae.ckpt")
    for key, value in step1_weights.items():
        assert torch.equal(teacher[key], value), key
    codebook_keys = [key for key in student if key.startswith("quantizer.") and student[key].is_floating_point()]
    assert codebook_keys
    for key in codebook_keys:
        assert torch.equal(student[key], teacher[key]), key
    # ... while the encoder and decoder did move in step 2.
    moved = [key for key in student if key.startswith(("encoder.", "decoder.")) and not torch.equal(student[key], teacher[key])]
    assert moved


def test_resume_in_step1_restores_the_epoch2_state(runs):
    """The run resumed at epoch 2 (still step 1) started from the uninterrupted epoch-2 state."""
    states = runs[3]
    assert states["restored_at_2"]["epoch"] == 2 and states["restored_at_2"]["phase"] == 1
    assert_restored(states["epoch2"], states["restored_at_2"])


def test_resume_within_step2_keeps_the_teacher(runs, tmp_path):
    """A run resumed in step 2 restores the phase, the teacher, the student and its optimizer."""
    data, _, out, states = runs
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    latest = max((resumed / "save").iterdir(), key=lambda path: path.stat().st_mtime)
    teacher_before = _state(latest / "teacher.ckpt")
    with probe(EXTRAS) as record:
        train.main(_args(data, resumed, 4))
    restored = record["restored"]
    assert restored["epoch"] == 3 and restored["phase"] == 2
    # The step-1 teacher is not the student's initialisation: dropping it would show.
    assert any(not torch.equal(value, states["epoch2"]["teacher"][key])
               for key, value in states["epoch3"]["teacher"].items())
    assert_restored(states["epoch3"], restored)
    steps = [line.split(",")[1].strip() for line in _log_lines(resumed)]
    assert steps == ["step: 1", "step: 1", "step: 2", "step: 2"]
    latest = max((resumed / "save").iterdir(), key=lambda path: path.stat().st_mtime)
    teacher_after = _state(latest / "teacher.ckpt")
    for key, value in teacher_before.items():
        assert torch.equal(teacher_after[key], value), key


def test_step1_training_loss_goes_down_with_local_attention(tmp_path):
    """Trained, evaluated and exported with local attention (0.5 s chunks, 0.25 s on each side,
    every 4th frame)."""
    data, out = tmp_path / "data", tmp_path / "out"
    local = "--attention_seconds=0.5 --attention_halo_seconds=0.25 --attention_stride=4"
    train.main(_args(data, out, 3, f"--test_mix_ratios=[] --lr=0.003 {local}", step1_epochs=3))
    losses = [float(line.split("train loss: ")[1].split(" ")[0]) for line in _log_lines(out)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    lines = (out / "hub" / "hyperparams.yaml").read_text().splitlines()
    assert {"attention_seconds: 0.5", "attention_halo_seconds: 0.25", "attention_stride: 4"} <= set(lines)
    enhancer = VQEnhancer.from_hparams(source=str(out / "hub"))
    enhancer.enhance_batch(torch.randn(1, 16000))
    stack = enhancer.mods.vqvae.encoder
    assert (stack.attention_context, stack.attention_halo, stack.attention_stride) == (62, 31, 4)  # 8 ms frames


def test_exported_enhancer_matches_the_recipe(runs):
    data, _, out, _ = runs
    enhancer = VQEnhancer.from_hparams(source=str(out / "hub"))
    enhanced_dir = out / "enhanced" / "step1+2"
    name = min(os.listdir(enhanced_dir))
    noisy = data / "test" / "noisy" / name
    recipe_output = load_audio(str(enhanced_dir / name), 16000)
    ours = enhancer.enhance_file(str(noisy))
    assert ours.shape == recipe_output.shape
    assert (ours.clamp(-1, 1) - recipe_output).abs().max() < 2.0 / 32768


def test_ddp_two_processes_on_cpu(runs, tmp_path):
    """Two gloo ranks run both steps on a free port, end with the same weights, and export."""
    data, _, _, _ = runs
    out = tmp_path / "ddp"
    result, ranks = run_ddp(_args(data, out, 2, "--test_mix_ratios=[]", step1_epochs=1), out)
    assert result.returncode == 0, result.stderr[-12000:]
    assert_ranks_agree(ranks)
    assert ranks[0]["epoch"] == 2
    assert (out / "hub" / "vqvae.ckpt").exists()
    assert "step: 2" in (out / "train_log.txt").read_text()
