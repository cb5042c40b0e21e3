"""The BSSE recipe end to end on a tiny embedded corpus (cross features, TERA fine-tuned entirely):
the loss goes down, resume restores the model and both optimizer groups, the report (with the
layer-weight analysis before/after fine-tuning), and the export through ``load_model``."""

import csv
import json
import os
import shutil

import pytest
import torch
from brain_probe import assert_restored, probe
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.inference.enhancement import BSSEEnhancer, speech_energy
from speechbrain_sqe.inference.hub import load_model

RECIPE = os.path.join(ROOT, "hparams", "bsse.yaml")
TINY = (
    "--batch_size=4 --proj_size=16 --hidden_size=16 --lr=0.003 --ssl_lr=0.0003 --ssl_finetune=ef "
    "--feature=cross --test_metrics=[pesq_wb] --metric_jobs=1"
)


def _args(data, out, epochs, extra=""):
    args = recipe_args(RECIPE, data, out, epochs, tiny_corpus(valid_pairs=2, test_pairs=2), TINY, extra)
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}  # later ones win
    return [args[0], *by_name.values()]


def _losses(out, key):
    lines = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    return [float(line.split(f"{key}: ")[1].split(" ")[0]) for line in lines]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """2 epochs, then the same folder resumed to 3; the training states of both fits."""
    root = tmp_path_factory.mktemp("bsse")
    data, out = root / "data", root / "out"
    with probe() as first:
        brain = train.main(_args(data, out, 2))
    lrs = [group["lr"] for group in brain.optimizer.param_groups]
    with probe() as second:
        train.main(_args(data, out, 3))
    return data, out, {"epoch2": first["fitted"], "restored_at_2": second["restored"], "lrs": lrs}


def test_loss_goes_down(runs):
    _, out, _ = runs
    train_losses, valid_losses = _losses(out, "train loss"), _losses(out, "valid loss")
    assert len(train_losses) == 3  # epochs 1-2 were not trained again
    # The valid pairs are the same every epoch: their loss falls at each epoch. The training
    # mixtures are drawn anew (other SNRs, rooms), so only the first epoch must be beaten.
    assert valid_losses[2] < valid_losses[1] < valid_losses[0]
    assert min(train_losses[1:]) < train_losses[0]


def test_resume_restores_model_and_both_optimizer_groups(runs):
    _, _, states = runs
    assert states["lrs"] == [0.003, 0.0003]  # the mask network, then the fine-tuned TERA
    assert states["restored_at_2"]["epoch"] == 2
    assert_restored(states["epoch2"], states["restored_at_2"])


def test_fine_tuned_upstream_moved_but_not_its_head(runs):
    _, out, _ = runs
    shipped = torch.load(os.path.join(ROOT, "speechbrain_sqe", "pretrained", "tera", "tera.ckpt"),
                         map_location="cpu", weights_only=True)
    exported = torch.load(out / "hub" / "ssl.ckpt", map_location="cpu", weights_only=True)
    moved = {key for key in shipped if not torch.equal(shipped[key], exported[key])}
    assert any(key.startswith("encoder.input_proj") for key in moved)  # ef: the front end trains too
    assert any(key.startswith("encoder.layers.") for key in moved)
    assert not any(key.startswith("head.") for key in moved)
    # ... and exported as an SSL-encoder folder (sqe analyze-ssl --model), the same weights.
    tera = load_model(str(out / "hub_ssl"), task="ssl_encoder")
    for key, value in tera.mods.tera.state_dict().items():
        assert torch.equal(value, exported[key]), key


def test_report_and_layer_analysis_before_and_after(runs):
    _, out, _ = runs
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "bsse cross ef"] and summary["n"]["bsse cross ef"] == 2
    with open(out / "report" / "layer_weights.csv", newline="", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [row["layer"] for row in table] == ["0", "1", "2", "3"]
    assert {"cn_distance (pretrained)", "cn_distance (fine-tuned)"} <= set(table[0])
    assert sum(float(row["weight"]) for row in table) == pytest.approx(1.0, abs=1e-5)
    assert (out / "hub" / "layer_weights.png").stat().st_size > 1000
    assert "bsse cross ef" in (out / "hub" / "README.md").read_text()


def test_layer_weight_reports_of_runs_compared(runs, tmp_path, capsys):
    """``python -m speechbrain_sqe.analysis.layer_weights`` reads the recipe's report back and
    compares runs; a folder without a report is refused by name."""
    from speechbrain_sqe.analysis import layer_weights

    _, out, _ = runs
    report = out / "report"
    assert layer_weights.main([f"ef={report}", f"again={report / 'layer_weights.csv'}",
                               "--output", str(tmp_path / "compared")]) == 0
    markdown = (tmp_path / "compared" / "layer_weights_compared.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith(("| ef ", "| again "))]
    assert len(rows) == 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:]
    weights = [float(w) for w in rows[0].split("|")[2].split("/")]
    assert len(weights) == 4 and sum(weights) == pytest.approx(1.0, abs=2e-3)
    assert "fine-tuned" in markdown.splitlines()[0]  # ef: the CN distance after fine-tuning too
    assert (tmp_path / "compared" / "layer_weights_compared.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        layer_weights.main([f"none={tmp_path}", "--output", str(tmp_path / "x")])
    assert "layer_weights.csv" in capsys.readouterr().err


def test_export_loads_and_gives_the_recipes_output_at_the_speech_level(runs):
    data, out, _ = runs
    enhancer = load_model(str(out / "hub"), task="enhancement")
    assert isinstance(enhancer, BSSEEnhancer) and enhancer.mods.enhancer.feature == "cross"
    for name in sorted(os.listdir(out / "enhanced" / "bsse")):
        noisy_path = data / "test" / "noisy" / name
        recipe_output = load_audio(str(out / "enhanced" / "bsse" / name), 16000)
        ours = enhancer.enhance_file(str(noisy_path))
        assert ours.shape == recipe_output.shape
        assert (ours.clamp(-1, 1) - recipe_output).abs().max() < 2.0 / 32768
        noisy = load_audio(str(noisy_path), 16000)
        if float(ours.abs().max()) < 0.98:  # not held back by the peak limit
            # The output's whole energy is the energy the speech brings to the input (keep_speech_level).
            assert float(speech_energy(ours, noise_quantile=0.0)) == pytest.approx(float(speech_energy(noisy)),
                                                                                  rel=0.02)


def test_spectrum_mode_runs_and_exports_without_an_upstream(runs, tmp_path):
    data, _, _ = runs
    out = tmp_path / "spectrum"
    # epoch_updates (the template's, any recipe): the epoch is 5 updates, not one pass of the corpus;
    # the residual-noise and gain terms and the asymmetric L1 train from the mixtures; the noise-aware input rides along.
    brain = train.main(_args(data, out, 1, "--feature=spectrum --ssl_pretrainer=null --layer_analysis=True "
                                           "--epoch_updates=5 --residual_noise_weight=0.5 --gain_loss_weight=0.5 --noise_floor_frames=21 "
                                           "--overestimate_weight=2.0"))
    steps = {int(state["step"]) for state in brain.optimizer.state.values()}
    assert steps == {5}
    assert sorted(p.name for p in (out / "hub").glob("*.ckpt")) == ["enhancer.ckpt"]
    assert load_model(str(out / "hub"), task="enhancement").mods.enhancer.noise_floor_frames == 21
    assert not (out / "hub_ssl").exists()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "bsse spectrum"]
    assert not (out / "report" / "layer_weights.csv").exists()  # no SSL layers to weigh
    shutil.rmtree(out)


def test_init_from_starts_from_a_hub_folder_and_refuses_other_sizes(runs, tmp_path):
    """``init_from``: a run starts from a trained hub's enhancer and SSL upstream (fine-tuning it on
    other data), its own checkpoints win on resume, and a hub of other sizes is refused by name."""
    data, out, _ = runs
    hub = out / "hub"
    with probe() as record:
        train.main(_args(data, tmp_path / "from_hub", 1, f"--init_from={hub}"))
    restored = record["restored"]  # after on_fit_start: no checkpoint of its own yet
    for name in ("enhancer", "ssl"):
        start = torch.load(hub / f"{name}.ckpt", map_location="cpu", weights_only=True)
        assert all(torch.equal(restored[f"modules.{name}.{key}"], value) for key, value in start.items())
    with probe() as again:  # the same command resumed: its own epoch-1 checkpoint, not init_from's weights
        train.main(_args(data, tmp_path / "from_hub", 2, f"--init_from={hub}"))
    assert_restored(record["fitted"], again["restored"])
    with pytest.raises(ValueError, match=r"init_from .*'proj_size': 16"):
        train.main(_args(data, tmp_path / "other", 1, f"--init_from={hub} --proj_size=32"))
