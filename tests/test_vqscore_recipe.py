"""The VQScore recipe end to end on a tiny embedded corpus: train, report, export, resume, DDP."""

import csv
import json
import os
import subprocess

import pytest
from brain_probe import assert_restored, probe
from recipe_args import ROOT, assert_ranks_agree, recipe_args, run_ddp, tiny_corpus
from scipy import stats

import train
from speechbrain_sqe.inference.quality import VQScore

RECIPE = os.path.join(ROOT, "hparams", "vqscore.yaml")
TINY_CORPUS = tiny_corpus(valid_pairs=6, test_pairs=6)
TINY_MODEL = "--codebook_size=32 --batch_size=4 --crop_seconds=1.0 --test_metrics=[pesq_wb] --metric_jobs=1"


def _args(data, out, epochs, extra=""):
    return recipe_args(RECIPE, data, out, epochs, TINY_CORPUS, TINY_MODEL, extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run of two epochs, shared by the tests of this module.

    Also records the training state when its fit ended (epoch 2), for the resume test.
    """
    root = tmp_path_factory.mktemp("vqscore")
    data, out = root / "data", root / "out"
    with probe() as record:
        train.main(_args(data, out, 2))
    return data, out, record["fitted"]


def test_recipe_reports_and_exports(trained):
    _, out, _ = trained
    report = out / "report"
    with open(report / "correlations.json", encoding="utf-8") as stream:
        summary = json.load(stream)
    assert summary["n"] == 6
    assert set(summary["per_condition"]) == {"snr", "noise_type", "reverb"}
    with open(report / "scores.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6 and {"vqscore_noisy", "vqscore_clean", "pesq_wb", "snr"} <= set(rows[0])
    # The reported correlation is the Spearman of the per-file noisy scores with PESQ (not another pair).
    expected = stats.spearmanr([float(r["vqscore_noisy"]) for r in rows], [float(r["pesq_wb"]) for r in rows])[0]
    assert summary["overall"]["pesq_wb"]["spearman"] == pytest.approx(expected, abs=1e-9)
    assert (report / "scatter.png").stat().st_size > 1000
    # The exported folder loads and scores like the recipe's last evaluation.
    scorer = VQScore.from_hparams(source=str(out / "hub"))
    first = rows[0]
    assert abs(scorer.score_file(first["noisy_wav"]) - float(first["vqscore_noisy"])) < 1e-4
    assert "Spearman" in (out / "hub" / "README.md").read_text()


def test_training_loss_goes_down(trained):
    _, out, _ = trained
    losses = [float(line.split("train loss: ")[1].split(" ")[0])
              for line in (out / "train_log.txt").read_text().splitlines() if "train loss" in line]
    assert len(losses) == 2 and losses[1] < losses[0]


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    data, out, epoch2_state = trained
    resumed = tmp_path / "resumed"
    # Same run folder copied, then asked for one more epoch: epochs 1-2 are not trained again.
    subprocess.run(["cp", "-r", str(out), str(resumed)], check=True)
    with probe() as record:
        train.main(_args(data, resumed, 3))
    # What the resumed run recovered (model, optimizer, epoch) is the uninterrupted epoch-2 state.
    assert record["restored"]["epoch"] == 2
    assert_restored(epoch2_state, record["restored"])
    epochs = [line.split(",")[0] for line in (resumed / "train_log.txt").read_text().splitlines()
              if line.startswith("epoch:")]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]


def test_ddp_two_processes_on_cpu(trained, tmp_path):
    """Two gloo ranks train one epoch on a free port, end with the same weights, and export."""
    data, _, _ = trained
    out = tmp_path / "ddp"
    result, ranks = run_ddp(_args(data, out, 1), out)
    assert result.returncode == 0, result.stderr[-12000:]
    assert_ranks_agree(ranks)
    assert ranks[0]["epoch"] == 1
    assert (out / "hub" / "vqvae.ckpt").exists()
    assert "epoch: 1" in (out / "train_log.txt").read_text()


def test_untrusted_recipe_is_refused(tmp_path):
    recipe = tmp_path / "evil.yaml"
    with open(RECIPE, encoding="utf-8") as stream:
        recipe.write_text(stream.read() + "\nboom: !apply:os.getcwd []\n")
    with pytest.raises(ValueError, match="os.getcwd.*--trust_hparams"):
        train.main([str(recipe), f"--output_folder={tmp_path}/out"])
