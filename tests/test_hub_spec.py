"""The one hub spec: folders name their interface, carry the front end, rebuild modules from their
recorded constructor arguments, and load through the task they serve (or are refused clearly)."""

import os

import pytest
import torch
import yaml
from speech import speech_like

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.inference.encoders import TERA
from speechbrain_sqe.inference.enhancement import BSSEEnhancer, VQEnhancer
from speechbrain_sqe.inference.hub import (
    DEFAULT_SOURCES,
    HubSpec,
    InterfaceError,
    build_model_card,
    load_model,
    shipped_models,
    write_hub_folder,
)
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.frontend import STFTMagnitude
from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel


@pytest.fixture(scope="module")
def trained_vqscore():
    """A tiny VQScore model whose codebook was initialised (one training forward)."""
    torch.manual_seed(0)
    model = VQVAEQualityModel(channels=(32, 16), codebook_dim=8, codebook_size=16)
    frontend = STFTMagnitude(hop_length=128)
    model(frontend(torch.randn(2, 16000) * 0.1))
    return model.eval(), frontend


def test_folder_names_interface_and_rebuilds_the_front_end(trained_vqscore, tmp_path):
    model, frontend = trained_vqscore
    folder = VQScore.export(str(tmp_path / "hub"), {"vqvae": model}, frontend=frontend)
    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as stream:
        text = stream.read()
    assert "interface: speechbrain_sqe.inference.quality.VQScore" in text
    assert "sync_distributed: false" in text  # inference never waits for other processes
    scorer = load_model(folder, task="quality")
    assert isinstance(scorer, VQScore) and scorer.frontend.hop_length == 128  # the front end of training
    assert scorer.frame_hop_seconds == 128 / 16000
    wav = torch.from_numpy(speech_like(1.0)).float()
    with torch.no_grad():
        expected = model.score(frontend(wav.unsqueeze(0)))
    assert torch.allclose(scorer.score_batch(wav), expected, atol=1e-6)


def test_constructor_arguments_are_recorded_not_hand_kept(tmp_path):
    model = VQVAEEnhancementModel(channels=(24, 12), codebook_dim=8, codebook_size=4, heads=2)
    folder = VQEnhancer.export(str(tmp_path / "hub"), {"vqvae": model}, mix=0.25)
    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as stream:
        entries = yaml.compose(stream, Loader=yaml.SafeLoader)
    vqvae = {key.value: value for key, value in entries.value}["vqvae"]
    args = {key.value: value.value for key, value in vqvae.value if isinstance(value, yaml.ScalarNode)}
    assert args["codebook_size"] == "4" and args["heads"] == "2" and args["sync_distributed"] == "false"
    enhancer = VQEnhancer.from_hparams(source=folder)
    assert enhancer.hparams.mix == 0.25
    assert enhancer.mods.vqvae.init_args["channels"] == [24, 12]
    for name, tensor in model.state_dict().items():
        assert torch.equal(enhancer.mods.vqvae.state_dict()[name], tensor), name


def test_a_folder_of_another_task_is_refused_with_both_tasks_named():
    with pytest.raises(InterfaceError, match="holds a speech enhancer .* needs a quality predictor"):
        load_model(DEFAULT_SOURCES["enhancement"], task="quality")
    with pytest.raises(InterfaceError, match="holds a self-supervised speech encoder"):
        load_model(DEFAULT_SOURCES["ssl_encoder"], task="enhancement")


def test_interfaces_outside_the_package_are_never_imported(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text("interface: os.system\nsample_rate: 16000\n")
    with pytest.raises(InterfaceError, match="not one of the package's interfaces"):
        load_model(str(folder), task="quality")
    (folder / "hyperparams.yaml").write_text("interface: speechbrain_sqe.inference.hub.HubSpec\n")
    with pytest.raises(InterfaceError, match="not a task interface"):
        load_model(str(folder), task="quality")


def test_missing_folder_and_folder_without_hyperparams(tmp_path):
    with pytest.raises(InterfaceError, match="no such model folder"):
        load_model(str(tmp_path / "nowhere"), task="quality")
    with pytest.raises(InterfaceError, match="not a model folder"):
        load_model(str(tmp_path), task="quality")


def test_legacy_folder_without_interface_loads_by_its_task(trained_vqscore, tmp_path):
    model, frontend = trained_vqscore
    spec = VQScore.hub_spec({"vqvae": model}, frontend=frontend)
    text = spec.hyperparams_text().replace(f"interface: {spec.interface_path}\n", "")
    folder = write_hub_folder(spec, str(tmp_path / "hub"), "# card")
    with open(os.path.join(folder, "hyperparams.yaml"), "w", encoding="utf-8") as stream:
        stream.write(text)
    assert isinstance(load_model(folder, task="quality"), VQScore)


def test_every_shipped_model_loads_by_its_task():
    # Enhancement: BSSE since 2026-12-07 (trained on real speech); the VQ enhancer by its name.
    for task, cls in (("quality", VQScore), ("enhancement", BSSEEnhancer), ("ssl_encoder", TERA)):
        assert type(load_model(task=task)) is cls
    assert type(load_model("vq_enhancer", task="enhancement")) is VQEnhancer
    assert VQEnhancer.DEFAULT_SOURCE.endswith("vq_enhancer") and BSSEEnhancer.DEFAULT_SOURCE.endswith("bsse")


def test_hyperparams_text_of_an_ssl_encoder_has_no_front_end():
    spec = TERA.hub_spec({"tera": TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)})
    text = spec.hyperparams_text()
    assert "frontend:" not in text and "min_seconds: 0.05" in text and "tera: !ref <tera>" in text


def test_model_card_has_the_shared_sections():
    card = build_model_card("X", "Does x.", VQScore, 'model.score_file("a.wav")', "clean speech",
                            "python train.py hparams/x.yaml", {"seed": 7}, "| a |\n|---|", "CC BY 4.0",
                            {"Limits": "Not for music."})
    for heading in ("## Use", "## Training data", "## Training", "## Measured results", "## Limits"):
        assert heading in card
    assert "License / origin: CC BY 4.0" in card and "`python train.py hparams/x.yaml`" in card


def test_sqe_score_refuses_an_enhancer_in_one_line(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    save_audio(str(wav), torch.from_numpy(speech_like(1.0)).float())
    assert cli.main(["score", str(wav), "--model", DEFAULT_SOURCES["enhancement"]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a speech enhancer" in err


def test_shipped_models_load_by_bare_name_from_any_working_directory(tmp_path, monkeypatch, capsys):
    """`--model bsse` works wherever the package is installed; a user's own folder of that name wins."""
    monkeypatch.chdir(tmp_path)
    assert load_model("bsse", task="enhancement").__class__.__name__ == "BSSEEnhancer"
    wav = tmp_path / "a.wav"
    save_audio(str(wav), torch.from_numpy(speech_like(1.0)).float())
    assert cli.main(["enhance", str(wav), "--out-dir", str(tmp_path / "out"), "--model", "bsse",
                     "--no-progress"]) == 0
    assert (tmp_path / "out" / "a.wav").is_file()
    assert cli.main(["score", str(wav), "--model", "vq_enhancer"]) == 2  # still checked for its task
    assert "holds a speech enhancer" in capsys.readouterr().err
    (tmp_path / "bsse").mkdir()  # a local folder of the same name is what the user means
    with pytest.raises(InterfaceError, match="not a model folder"):
        load_model("bsse", task="enhancement")
    with pytest.raises(InterfaceError, match="nor a shipped model: .*bsse.*vqscore"):
        load_model("bssse", task="enhancement")


def test_the_help_names_every_shipped_model(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["enhance", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    names = text.split("shipped with the package by name (")[1].split(";")[0]
    assert sorted(name.strip() for name in names.split(",")) == shipped_models()


def test_hub_spec_refuses_a_module_that_cannot_be_rebuilt():
    class Opaque(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.linear = torch.nn.Linear(width, width)

    with pytest.raises(TypeError, match="cannot rebuild it"):
        HubSpec("speechbrain_sqe.inference.quality.VQScore", {"net": Opaque(2)}).hyperparams_text()
