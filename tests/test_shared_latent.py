"""The shared-latent SAE/MAE enhancer: lobes (shapes, gradients, padded batches), the multi-resolution
loss, the speaker split of the unpaired training data (embedded corpus and a manifest corpus), and
the recipe end to end on a tiny embedded corpus (loss down, resume, export, ``sqe enhance``)."""

import csv
import json
import os

import pytest
import torch
from brain_probe import assert_restored, probe
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.dataio.pipelines import split_by_speaker, unpaired_training_dataset
from speechbrain_sqe.dataio.prepare import prepare_corpus
from speechbrain_sqe.inference.enhancement import (
    SharedLatentEnhancer,
    shared_latent_enhance_keeping_level,
)
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.lobes.frontend import PhaseSpectralFrontEnd
from speechbrain_sqe.lobes.shared_latent import (
    MultiResolutionSpectralLoss,
    SharedLatentModel,
)
from tests.speech import pink_noise, speech_like

RECIPE = os.path.join(ROOT, "hparams", "shared_latent.yaml")
TINY = ("--batch_size=4 --sae_channels=[32,16] --mae_channels=[32,24,16] --lr=0.003 "
        "--test_metrics=[si_sdr] --metric_jobs=1 --crop_seconds=1.0")


def _speech(seconds, seed):
    return torch.tensor(speech_like(seconds, seed=seed), dtype=torch.float32)


def _noise(samples, seed):
    return torch.tensor(pink_noise(samples, seed=seed), dtype=torch.float32)


def _tiny_model(**kwargs):
    torch.manual_seed(0)
    return SharedLatentModel(n_bins=129, sae_channels=(24, 12), mae_channels=(24, 16, 12), **kwargs)


# ---------------------------------------------------------------------------- lobes
@pytest.mark.parametrize("linear_bypass", [False, True])
@pytest.mark.parametrize("shared_layer", ["none", "latent", "encoder_last"])
@pytest.mark.parametrize("phase", ["none", "cos_sin", "angle"])
def test_shapes_and_the_shared_layer_of_both_encoders(shared_layer, phase, linear_bypass):
    model = _tiny_model(shared_layer=shared_layer, phase=phase, linear_bypass=linear_bypass).eval()
    spec = torch.rand(3, 20, 129)
    z_speech, _ = model.encode_speech(spec)
    z_mixture, _ = model.encode_mixture(spec)
    assert z_speech.shape == z_mixture.shape == (3, 12, 20)
    amplitude, decoded = model.enhance(spec)
    assert amplitude.shape == (3, 20, 129) and bool((amplitude >= 0).all())
    if phase == "none":
        assert decoded is None and not model.has_phase_decoder
    else:
        assert decoded.shape == (3, 20, 129, 2)
        assert torch.allclose(decoded.pow(2).sum(-1), torch.ones(3, 20, 129), atol=1e-4)  # unit phasors
    if shared_layer == "none":
        assert model.shared is None
    else:
        # The same module makes both latents: its weights change both.
        before = model.encode_speech(spec)[0], model.encode_mixture(spec)[0]
        with torch.no_grad():
            model.shared.block.conv.bias += 0.5
        after = model.encode_speech(spec)[0], model.encode_mixture(spec)[0]
        assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])
    if shared_layer == "encoder_last":  # the MAE's own encoder ends at the SAE's penultimate width
        assert model.mae.encoder[-1].conv.out_channels == 24 and model.shared.block.conv.in_channels == 24


def test_gradients_of_the_cycle_reach_mae_shared_layer_and_speech_decoders():
    model = _tiny_model(shared_layer="latent", phase="cos_sin").train()
    spec = torch.rand(2, 16, 129)
    z, mask = model.encode_mixture(spec)
    enhanced, phase = model.decode_speech(model.sample(z, mask), mask)
    z_cycle, _ = model.encode_speech(enhanced)
    loss = (model.decode_mixture(z_cycle, mask) - spec).pow(2).mean() + (z_cycle - z).pow(2).mean()
    loss = loss + phase.sum() * 0.0 + 0.01 * model.decode_speech(z, mask)[1].pow(2).sum()
    loss.backward()
    for name in ("mae.encoder.0.conv.weight", "shared.block.conv.weight", "sae.amplitude_decoder.0.conv.weight",
                 "sae.encoder.0.conv.weight", "mae.decoder.0.conv.weight", "sae.phase_decoder.0.conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0, name


def test_linear_bypass_speeds_up_the_speech_autoencoder():
    """The same SAE with and without the linear path, the same updates on the same structured
    spectra (a low-rank speech-like set): the bypass reconstructs better, and a padded batch still
    gives each utterance its own output."""
    torch.manual_seed(1)
    basis, weights = torch.rand(6, 129), torch.rand(8, 40, 6)
    spec = (weights @ basis).pow(2)  # [batch, frames, bins], non-negative, rank 6
    losses = {}
    for bypass in (False, True):
        model = _tiny_model(shared_layer="latent", phase="none", latent_noise=0.0, linear_bypass=bypass).train()
        optimizer = torch.optim.Adam(model.sae_modules()[0].parameters(), lr=3e-3)
        optimizer.add_param_group({"params": model.shared.parameters()})
        for _ in range(60):
            z, mask = model.encode_speech(spec)
            loss = (model.decode_speech(z, mask)[0] - spec).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses[bypass] = loss.item()
    assert losses[True] < 0.5 * losses[False], losses
    model.eval()
    lengths = torch.tensor([1.0, 0.5])
    padded, _ = model.enhance(spec[:2], lengths)
    alone, _ = model.enhance(spec[1:2, :20], None)
    assert torch.allclose(alone[0], padded[1, :20], atol=1e-5) and float(padded[1, 20:].abs().sum()) == 0.0


def test_latent_noise_only_in_training():
    model = _tiny_model()
    spec = torch.rand(1, 10, 129)
    model.eval()
    assert torch.equal(model.enhance(spec)[0], model.enhance(spec)[0])
    model.train()
    torch.manual_seed(1)
    first = model.enhance(spec)[0]
    assert not torch.allclose(first, model.enhance(spec)[0])


def test_padding_does_not_change_training_outputs():
    """In training mode too (batch statistics of the valid frames only), appending padded frames to
    a batch leaves the valid frames' outputs as they were (latent noise off to compare)."""
    model = _tiny_model(shared_layer="latent", phase="cos_sin", latent_noise=0.0).train()
    spec, lengths = torch.rand(2, 16, 129), torch.tensor([1.0, 0.5])
    spec[1, 8:] = 0.0
    amplitude, phase = model.enhance(spec, lengths)
    padded = torch.cat([spec, torch.zeros(2, 8, 129)], dim=1)
    amplitude_padded, phase_padded = model.enhance(padded, lengths * 16 / 24)
    assert torch.allclose(amplitude_padded[:, :16], amplitude, atol=1e-5)
    assert torch.allclose(phase_padded[0, :16], phase[0], atol=1e-5)
    assert torch.allclose(phase_padded[1, :8], phase[1, :8], atol=1e-5)
    assert float(amplitude_padded[:, 16:].detach().abs().sum()) == 0.0


@pytest.mark.parametrize("phase", ["cos_sin", "none"])
def test_padded_batch_equals_each_utterance_alone(phase):
    model = _tiny_model(shared_layer="latent", phase=phase).eval()
    frontend = PhaseSpectralFrontEnd(n_fft=256, hop_length=64)
    wavs = torch.stack([_speech(1.0, seed=1), torch.cat([_speech(0.7, seed=2), torch.zeros(4800)])]) * 0.3
    lengths = torch.tensor([1.0, 11200 / 16000])
    with torch.no_grad():
        batch = shared_latent_enhance_keeping_level(model, frontend, wavs, lengths)
        for index, n in enumerate([16000, 11200]):
            alone = shared_latent_enhance_keeping_level(model, frontend, wavs[index : index + 1, :n])[0]
            assert (batch[index, :n] - alone).abs().max() < 1e-5
            assert float(batch[index, n:].abs().sum()) == 0.0


def test_multi_resolution_loss_zero_for_identical_and_positive_otherwise():
    loss = MultiResolutionSpectralLoss()
    assert loss.windows == (1024, 512, 256, 128) and loss.hop_length == 32
    clean = _speech(1.0, seed=3).unsqueeze(0) * 0.3
    assert float(loss(clean, clean.clone())) == 0.0
    noisy = (clean + 0.05 * _noise(16000, seed=4).unsqueeze(0)).requires_grad_(True)
    value = loss(noisy, clean, torch.ones(1))
    assert float(value.detach()) > 0
    value.backward()
    assert bool(torch.isfinite(noisy.grad).all()) and float(noisy.grad.abs().sum()) > 0
    # Every resolution has the same frames (the common frame shift).
    assert {loss.features(clean, w).shape[1] for w in loss.windows} == {1 + 16000 // 32}
    # Padded frames do not count.
    padded = torch.cat([clean, torch.zeros(1, 8000)], dim=1)
    other = torch.cat([clean, torch.randn(1, 8000)], dim=1)
    assert float(loss(padded, other, torch.tensor([0.5]))) < 0.05 * float(loss(padded, other))


# ---------------------------------------------------------------------------- unpaired data
def _assert_disjoint_halves(train_csv, folder):
    speakers = {row["voice"] for row in read_manifest(train_csv)}
    parts = split_by_speaker(train_csv, folder, seed=1234, names=("sae_clean", "mae_speech"))
    clean, noisy = set(parts["sae_clean"]["speakers"]), set(parts["mae_speech"]["speakers"])
    assert clean and noisy and not clean & noisy and clean | noisy == speakers
    for name, expected in (("sae_clean", clean), ("mae_speech", noisy)):
        assert {row["voice"] for row in read_manifest(parts[name]["csv"])} == expected
    # The same seed gives the same halves.
    again = split_by_speaker(train_csv, str(folder) + "_again", seed=1234, names=("sae_clean", "mae_speech"))
    assert again["sae_clean"]["speakers"] == parts["sae_clean"]["speakers"]
    return parts


def test_manifest_corpus_clean_and_noisy_training_sets_share_no_speaker(tmp_path):
    speakers = {f"spk{k}": "train" for k in range(6)} | {"val": "valid", "tst": "test"}
    rows = []
    for k, (speaker, split) in enumerate(speakers.items()):
        path = tmp_path / "speech" / speaker / "0.wav"
        os.makedirs(path.parent)
        save_audio(str(path), _speech(1.0, seed=k) * 0.3)
        rows.append([f"{speaker}/0.wav", speaker, split])
    manifest = tmp_path / "speech" / "manifest.csv"
    with open(manifest, "w", newline="") as stream:
        csv.writer(stream).writerows([["path", "speaker", "split"], *rows])
    paths = prepare_corpus("manifest", str(tmp_path / "data"), source_folder=str(manifest), seed=1234,
                           valid_pairs=1, test_pairs=1, num_workers=1)
    parts = _assert_disjoint_halves(paths["train_clean"], tmp_path / "split")
    assert parts["sae_clean"]["rows"] + parts["mae_speech"]["rows"] == 6
    # The training items: clean speech only from one half, mixtures only from the other's speech.
    data = unpaired_training_dataset(parts["sae_clean"]["csv"], parts["mae_speech"]["csv"], lambda wav: wav)
    clean_files = {row["wav"] for row in read_manifest(parts["sae_clean"]["csv"])}
    noisy_files = {row["wav"] for row in read_manifest(parts["mae_speech"]["csv"])}
    assert {item["clean_path"] for item in data.data.values()} == clean_files
    assert {item["speech_path"] for item in data.data.values()} == noisy_files
    assert "clean_path" not in data[0] and "speech_path" not in data[0]  # only the signals leave


# ---------------------------------------------------------------------------- the recipe
def _args(data, out, epochs, extra=""):
    args = recipe_args(RECIPE, data, out, epochs, tiny_corpus(valid_pairs=2, test_pairs=2), TINY, extra)
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}
    return [args[0], *by_name.values()]


def _log(out):
    lines = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    return [{key: value for key, value in (part.split(": ", 1) for part in line.replace(" - ", ", ").split(", "))}
            for line in lines]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Joint training: 3 epochs, then the same folder resumed to 4; the training states."""
    root = tmp_path_factory.mktemp("shared_latent")
    data, out = root / "data", root / "out"
    with probe() as first:
        train.main(_args(data, out, 3))
    with probe() as second:
        train.main(_args(data, out, 4))
    return data, out, {"fitted": first["fitted"], "restored": second["restored"]}


def test_embedded_corpus_clean_and_noisy_training_sets_share_no_speaker(runs, tmp_path):
    data, out, _ = runs
    _assert_disjoint_halves(str(data / "train_clean.csv"), tmp_path / "split")
    split = json.loads((out / "report" / "speaker_split.json").read_text())
    assert split["sae_clean"]["speakers"] and split["mae_speech"]["speakers"]
    assert not set(split["sae_clean"]["speakers"]) & set(split["mae_speech"]["speakers"])


def test_loss_goes_down_and_resume_restores_the_state(runs):
    _, out, states = runs
    log = _log(out)
    assert len(log) == 4 and all(row["mode"] == "joint" for row in log)  # epochs 1-3 were not trained again
    train_losses = [float(row["train loss"]) for row in log]
    assert min(train_losses[1:]) < train_losses[0]
    assert {"train_sae_phase", "train_cycle_recon", "train_latent", "train_sae_multires"} <= set(log[0])
    assert states["restored"]["epoch"] == 3
    assert_restored(states["fitted"], states["restored"])


def test_export_loads_enhances_like_the_recipe_and_through_the_cli(runs, tmp_path):
    data, out, _ = runs
    enhancer = load_model(str(out / "hub"), task="enhancement")
    assert isinstance(enhancer, SharedLatentEnhancer) and enhancer.mods.model.has_phase_decoder
    assert enhancer.hparams.phase == "noisy"  # the YAML's default_phase (measured: README)
    names = sorted(os.listdir(out / "enhanced" / "decoded_phase"))
    assert names
    for name in names:
        noisy_path = data / "test" / "noisy" / name
        ours = enhancer.enhance_file(str(noisy_path), phase="decoded")
        recipe_output = load_audio(str(out / "enhanced" / "decoded_phase" / name), 16000)
        assert ours.shape == recipe_output.shape
        assert (ours.clamp(-1, 1) - recipe_output).abs().max() < 2.0 / 32768
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "shared_latent decoded phase", "shared_latent noisy phase"]
    status = cli.main(["enhance", str(data / "test" / "noisy" / names[0]), "--model", str(out / "hub"),
                       "--out-dir", str(tmp_path / "cli"), "--option", "phase=noisy", "--no-progress"])
    assert status == 0
    written = load_audio(str(tmp_path / "cli" / names[0]), 16000)
    expected = enhancer.enhance_file(str(data / "test" / "noisy" / names[0]), phase="noisy")
    assert (written - expected.clamp(-1, 1)).abs().max() < 2.0 / 32768
    assert cli.main(["enhance", str(data / "test" / "noisy" / names[0]), "--model", str(out / "hub"),
                     "--out-dir", str(tmp_path / "bad"), "--option", "phase=clean", "--no-progress"]) != 0


def test_sse_baseline_by_override_staged(runs, tmp_path):
    """No shared layer, no phase decoder, SSE's losses, staged: epoch 1 trains the SAE alone (its
    checkpoint is never the best), epoch 2 (a resumed run) the MAE through the frozen SAE."""
    data, _, _ = runs
    out = tmp_path / "sse"
    sse = "--shared_layer=none --phase=none --multires_weight=0 --schedule=staged --sae_epochs=1"
    with probe() as first:
        train.main(_args(data, out, 1, sse))
    train.main(_args(data, out, 2, sse))
    log = _log(out)
    assert [row["mode"] for row in log] == ["sae", "mae"]
    assert "train_sae_recon" in log[0] and "train_cycle_recon" not in log[0]
    assert "train_cycle_recon" in log[1] and "train_sae_recon" not in log[1]
    assert "train_sae_phase" not in log[0] and "train_sae_multires" not in log[0]
    enhancer = load_model(str(out / "hub"), task="enhancement")
    model = enhancer.mods.model
    assert model.shared is None and not model.has_phase_decoder
    noisy = str(next((data / "test" / "noisy").iterdir()))
    assert torch.equal(enhancer.enhance_file(noisy), enhancer.enhance_file(noisy, phase="noisy"))  # no decoder
    after_sae_epoch = first["fitted"]
    moved = [key for key, value in model.state_dict().items()
             if not torch.equal(value, after_sae_epoch[f"modules.model.{key}"])]
    assert moved and all(key.startswith("mae.") for key in moved)  # the MAE epoch left the SAE as it was
    (kept,) = list((out / "save").glob("CKPT*"))
    assert "inf" not in (kept / "CKPT.yaml").read_text()  # the kept checkpoint is the MAE epoch's
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["systems"] == ["noisy", "shared_latent noisy phase"]
