"""The SSL vocoder recipe end to end on a tiny embedded corpus (cross-attention, warm-up then GAN):
the generator's loss goes down, resume restores the model, both optimizers and both schedulers,
the report, and the export through ``load_model`` and ``sqe enhance --model``."""

import json
import os

import pytest
from brain_probe import assert_restored, probe
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.inference.enhancement import SSLVocoderEnhancer
from speechbrain_sqe.inference.hub import load_model

RECIPE = os.path.join(ROOT, "hparams", "ssl_vocoder.yaml")
TINY = (
    "--batch_size=4 --epoch_updates=4 --warmup_epochs=2 --model_dim=16 --attention_heads=2 "
    "--upsample_initial_channel=16 --resblock_kernel_sizes=[3] --resblock_dilation_sizes=[[1,3]] "
    "--disc_periods=[2] --segment_seconds=0.2 --lr=0.002 --test_metrics=[stoi] --metric_jobs=1"
)


def _args(data, out, epochs, extra=""):
    args = recipe_args(RECIPE, data, out, epochs, tiny_corpus(valid_pairs=2, test_pairs=2), TINY, extra)
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}  # later ones win
    return [args[0], *by_name.values()]


def _log(out, key):
    lines = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    return [float(line.split(f"{key}: ")[1].split(" ")[0].rstrip(",")) for line in lines]


EXTRAS = {
    "optimizer_d": lambda brain: brain.optimizer_d.state_dict(),
    "scheduler_g": lambda brain: brain.scheduler_g.state_dict(),
    "scheduler_d": lambda brain: brain.scheduler_d.state_dict(),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """3 epochs (2 warm-up, 1 GAN), then the same folder resumed to 4; the states of both fits."""
    root = tmp_path_factory.mktemp("ssl_vocoder")
    data, out = root / "data", root / "out"
    with probe(EXTRAS) as first:
        train.main(_args(data, out, 3))
    with probe(EXTRAS) as second:
        train.main(_args(data, out, 4))
    return data, out, {"epoch3": first["fitted"], "restored_at_3": second["restored"]}


def test_generator_loss_goes_down_and_the_gan_starts_after_the_warm_up(runs):
    _, out, _ = runs
    log = (out / "train_log.txt").read_text().splitlines()
    assert [line.split("phase: ")[1].split(",")[0] for line in log] == ["warm-up", "warm-up", "gan", "gan"]
    valid = _log(out, "valid loss")  # the reconstruction loss on the same valid pairs every epoch
    assert valid[3] < valid[0] and valid[1] < valid[0]
    assert min(_log(out, "train reconstruction")[1:]) < _log(out, "train reconstruction")[0]
    d_losses = _log(out, "train d_loss")
    assert d_losses[:2] == [0.0, 0.0] and all(d > 0 for d in d_losses[2:])


def test_resume_restores_model_both_optimizers_and_schedulers(runs):
    _, _, states = runs
    assert states["restored_at_3"]["epoch"] == 3
    assert states["epoch3"]["optimizer_d"]["state"], "the discriminator optimizer never stepped"
    assert states["epoch3"]["scheduler_g"]["last_epoch"] == 3 and states["epoch3"]["scheduler_d"]["last_epoch"] == 1
    assert_restored(states["epoch3"], states["restored_at_3"])


def test_export_loads_and_gives_the_recipes_output(runs, tmp_path):
    data, out, _ = runs
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "ssl vocoder cross_attention all"]
    assert "Spectrum-aware SSL vocoder" in (out / "hub" / "README.md").read_text()
    enhancer = load_model(str(out / "hub"), task="enhancement")
    assert isinstance(enhancer, SSLVocoderEnhancer) and enhancer.mods.enhancer.feature == "cross_attention"
    names = sorted(os.listdir(out / "enhanced" / "bsse"))
    assert len(names) == 2
    for name in names:
        noisy_path = data / "test" / "noisy" / name
        recipe_output = load_audio(str(out / "enhanced" / "bsse" / name), 16000)
        ours = enhancer.enhance_file(str(noisy_path))
        assert ours.shape == recipe_output.shape == load_audio(str(noisy_path), 16000).shape
        assert (ours.clamp(-1, 1) - recipe_output).abs().max() < 2.0 / 32768
    # The command line loads it by the interface its folder names and writes the same output.
    assert cli.main(["enhance", str(data / "test" / "noisy" / names[0]), "--model", str(out / "hub"),
                     "--out-dir", str(tmp_path / "cli"), "--no-progress"]) == 0
    written = [p for p in (tmp_path / "cli").rglob("*.wav")]
    assert len(written) == 1
    assert (load_audio(str(written[0]), 16000) - load_audio(str(out / "enhanced" / "bsse" / names[0]), 16000)
            ).abs().max() < 2.0 / 32768
