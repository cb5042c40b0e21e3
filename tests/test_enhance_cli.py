"""`sqe enhance`: output names and formats, bad files in the exit code, overwrite and collision
refusals, method options (--option mix=R), and padded batches equal to single files (a tiny untrained model)."""

import os

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from hub_folders import build_vq_enhancer_hub
from speech import add_white_noise, synthesize

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.inference.enhancement import DEFAULT_MODEL
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel

#: Good inputs of the folder fixture and the outputs they must give (relative to --out-dir).
GOOD = {"a.wav": "a.wav", "sub/a.wav": "sub/a.wav", "sub/b.flac": "sub/b.wav",
        "c_stereo_44k.wav": "c_stereo_44k.wav"}
LSB = 1 / 32768


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Synthesized speech at 16 kHz (numpy)."""
    raw = synthesize(tmp_path_factory.mktemp("raw") / "speech.wav", "Noise hides the quiet words.")
    return load_audio(raw, sample_rate=16000).numpy()


@pytest.fixture(scope="module")
def model_folder(speech, tmp_path_factory):
    torch.manual_seed(0)
    model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    model.train()
    model(stft_magnitude(torch.from_numpy(speech)[None], 512, 128, 512, log1p=True))  # k-means init
    return build_vq_enhancer_hub(model.eval(), str(tmp_path_factory.mktemp("hub")))


@pytest.fixture
def audio_folder(speech, tmp_path):
    """audio/ with files of different lengths, two ``a.wav``, a flac and a 44.1 kHz stereo file."""
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    noisy = [0.5 * add_white_noise(speech, 5, seed=seed) for seed in range(4)]
    save_audio(str(folder / "a.wav"), noisy[0], 16000)
    save_audio(str(folder / "sub" / "a.wav"), noisy[1][: int(0.7 * len(speech))], 16000)
    soundfile.write(folder / "sub" / "b.flac", noisy[2][: int(0.4 * len(speech))], 16000)
    wav_44k = to_44k(noisy[3][:19744])  # 1.234 s
    soundfile.write(folder / "c_stereo_44k.wav", np.stack([wav_44k, 0.5 * wav_44k], axis=1), 44100)
    return folder


def to_44k(wav):
    return torchaudio.functional.resample(torch.from_numpy(wav).float(), 16000, 44100).numpy()


def enhance(*args, model):
    return cli.main(["enhance", *map(str, args), "--model", model])


def read(path):
    return soundfile.read(path, dtype="float32")[0]


def test_writes_16k_mono_wavs_under_their_relative_names(model_folder, audio_folder, tmp_path, capsys):
    single = tmp_path / "single.flac"
    soundfile.write(single, read(audio_folder / "a.wav")[:12000], 16000)
    out = tmp_path / "out"
    assert enhance(audio_folder, single, "--out-dir", out, "--no-progress", model=model_folder) == 0
    written = sorted(os.path.relpath(os.path.join(root, name), out)
                     for root, _, names in os.walk(out) for name in names)
    assert written == sorted([*GOOD.values(), "single.wav"])
    for name, output in [*GOOD.items(), (str(single), "single.wav")]:
        info = soundfile.info(out / output)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == load_audio(audio_folder / name, 16000).shape[0]  # duration kept
    assert soundfile.info(out / "c_stereo_44k.wav").duration == pytest.approx(1.234, abs=1e-3)
    assert "enhanced 5 files (" in capsys.readouterr().out


def test_padded_batches_equal_single_files(model_folder, audio_folder, tmp_path):
    for batch in ("8", "1"):
        assert enhance(audio_folder, "--out-dir", tmp_path / batch, "--batch-size", batch,
                       "--no-progress", model=model_folder) == 0
    for output in GOOD.values():
        batched, alone = read(tmp_path / "8" / output), read(tmp_path / "1" / output)
        assert batched.shape == alone.shape
        assert np.abs(batched - alone).max() <= LSB  # float noise may flip one 16-bit rounding


def test_batch_threads_write_what_one_batch_at_a_time_writes(model_folder, audio_folder, tmp_path):
    """``--batch-threads 3`` (batches side by side, one torch thread each, batch size 1: four
    batches) writes the same files as ``--batch-threads 1``; a bad value is refused."""
    (audio_folder / "broken.wav").write_bytes(b"RIFFxxxxWAVEjunk")
    before, restore = 2, torch.get_num_threads()
    torch.set_num_threads(before)  # (the suite runs with 1: a count the job must give back)
    for threads in ("1", "3"):
        assert enhance(audio_folder, "--out-dir", tmp_path / threads, "--batch-size", "1", "--batch-threads",
                       threads, "--no-progress", model=model_folder) == 1  # the broken file fails the exit code
    assert torch.get_num_threads() == before
    torch.set_num_threads(restore)
    for output in GOOD.values():
        assert np.abs(read(tmp_path / "3" / output) - read(tmp_path / "1" / output)).max() <= LSB
    assert not (tmp_path / "3" / "broken.wav").exists()
    with pytest.raises(SystemExit):
        enhance(audio_folder, "--out-dir", tmp_path / "0", "--batch-threads", "0", model=model_folder)


def test_mix_one_gives_the_input_back(model_folder, audio_folder, tmp_path):
    assert enhance(audio_folder, "--out-dir", tmp_path / "mix1", "--option", "mix=1.0", "--no-progress",
                   model=model_folder) == 0
    assert enhance(audio_folder, "--out-dir", tmp_path / "mix0", "--no-progress", model=model_folder) == 0
    for name, output in GOOD.items():
        noisy = load_audio(audio_folder / name, 16000).numpy()  # resampled and downmixed
        assert np.abs(read(tmp_path / "mix1" / output) - noisy).max() <= LSB
        assert np.abs(read(tmp_path / "mix0" / output) - noisy).max() > 0.05  # the model's own output


def test_bad_files_are_reported_and_fail_the_exit_code(model_folder, audio_folder, tmp_path, capsys):
    (audio_folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    save_audio(str(audio_folder / "sub" / "short.wav"), np.zeros(400) + 0.01, 16000)  # 25 ms
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    out = tmp_path / "out"
    status = enhance(audio_folder, notes, tmp_path / "missing.wav", "--out-dir", out,
                     "--batch-size", "2", "--no-progress", model=model_folder)
    assert status == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 4
    for name, why in [("broken.wav", "cannot read as audio"), ("short.wav", "at least"),
                      ("notes.txt", "cannot read as audio"), ("missing.wav", "file not found")]:
        assert any(name in line and why in line for line in failed), (name, failed)
    assert "4 of 8 files could not be enhanced" in captured.err
    assert "enhanced 4 files" in captured.out
    assert all((out / output).exists() for output in GOOD.values())
    left = {name for _, _, names in os.walk(out) for name in names}
    assert left == {os.path.basename(output) for output in GOOD.values()}  # no partial files


def test_refuses_to_overwrite_unless_asked(model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(audio_folder / "a.wav", "--out-dir", out, model=model_folder) == 0
    assert "enhancing" in capsys.readouterr().err  # the progress bar
    before = (out / "a.wav").stat().st_mtime_ns
    assert enhance(audio_folder / "a.wav", "--out-dir", out, "--option", "mix=0.5", "--no-progress",
                   model=model_folder) == 2
    err = capsys.readouterr().err
    assert str(out / "a.wav") in err and "--overwrite" in err
    assert (out / "a.wav").stat().st_mtime_ns == before
    assert enhance(audio_folder / "a.wav", "--out-dir", out, "--option", "mix=0.5", "--no-progress",
                   "--overwrite", model=model_folder) == 0
    assert (out / "a.wav").stat().st_mtime_ns != before


def test_colliding_outputs_are_refused_before_enhancing(model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "out"
    first, second = audio_folder / "a.wav", audio_folder / "sub" / "a.wav"
    assert enhance(first, second, "--out-dir", out, "--no-progress", model=model_folder) == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err
    assert not out.exists()


def test_out_dir_must_not_be_an_input_folder(model_folder, audio_folder, capsys):
    assert enhance(audio_folder, "--out-dir", audio_folder, "--overwrite", model=model_folder) == 2
    assert "input folder" in capsys.readouterr().err


@pytest.mark.parametrize("mix", ["1.5", "-0.1", "nan", "half"])
def test_mix_outside_zero_one_is_rejected(mix, model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(audio_folder, "--out-dir", out, "--option", f"mix={mix}", model=model_folder) == 2
    assert "option mix" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_unknown_option_lists_the_models_options(model_folder, audio_folder, tmp_path, capsys):
    assert enhance(audio_folder, "--out-dir", tmp_path / "out", "--option", "strength=2", model=model_folder) == 2
    err = capsys.readouterr().err
    assert "no option 'strength=2'" in err and "mix (" in err


def test_a_quality_model_is_refused_by_enhance(audio_folder, tmp_path, capsys):
    from speechbrain_sqe.inference.hub import DEFAULT_SOURCES

    assert enhance(audio_folder, "--out-dir", tmp_path / "out", model=DEFAULT_SOURCES["quality"]) == 2
    err = capsys.readouterr().err
    assert "holds a quality predictor" in err and "Traceback" not in err


def test_no_audio_found(model_folder, tmp_path, capsys):
    assert enhance(tmp_path, "--out-dir", tmp_path / "out", model=model_folder) == 1
    assert "no audio files found" in capsys.readouterr().err


@pytest.mark.skipif(os.path.exists(os.path.join(DEFAULT_MODEL, "hyperparams.yaml")),
                    reason="a model is shipped in this checkout")
def test_without_a_shipped_model_asks_for_one(audio_folder, tmp_path, capsys):
    assert cli.main(["enhance", str(audio_folder), "--out-dir", str(tmp_path / "out")]) == 2
    assert "--model" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:VectorQuantizer used before")
def test_a_file_the_model_cannot_take_does_not_fail_its_batch(speech, tmp_path):
    """A model accepting 5 ms files: a 100-sample file breaks the padded batch (STFT padding), the
    batch is retried file by file and only that file fails."""
    from speechbrain_sqe.inference.batch_enhancement import enhance_files
    from speechbrain_sqe.inference.enhancement import VQEnhancer

    model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8).eval()
    enhancer = VQEnhancer.from_hparams(
        source=build_vq_enhancer_hub(model, str(tmp_path / "hub"), min_seconds=0.005))
    files = [tmp_path / "long.wav", tmp_path / "tiny.wav"]
    save_audio(str(files[0]), speech, 16000)
    save_audio(str(files[1]), speech[:100], 16000)
    outputs = [str(tmp_path / "out" / path.name) for path in files]
    written, failures = enhance_files(enhancer, [str(f) for f in files], outputs, progress=False)
    assert [item["output"] for item in written] == outputs[:1]
    assert failures == [(str(files[1]), failures[0][1])] and "cannot enhance" in failures[0][1]
    alone = enhancer.enhance_file(str(files[0])).numpy()
    assert np.abs(read(outputs[0]) - alone).max() <= LSB


def test_out_dir_inside_an_input_folder_is_refused(model_folder, audio_folder, capsys):
    """`sqe enhance noisy/ --out-dir noisy/enh` would make the next run on noisy/ enhance its outputs."""
    assert enhance(audio_folder, "--out-dir", audio_folder / "enh", "--no-progress", model=model_folder) == 2
    err = capsys.readouterr().err
    assert "inside the input folder" in err and str(audio_folder / "enh") in err
    assert not (audio_folder / "enh").exists()


def test_resume_skips_complete_outputs_and_redoes_cut_ones(model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(audio_folder, "--out-dir", out, "--no-progress", model=model_folder) == 0
    reference = {name: read(out / name) for name in GOOD.values()}
    # An interrupted run: one output cut short (as by a crash while the system wrote it), one missing.
    cut, gone = out / "sub" / "a.wav", out / "c_stereo_44k.wav"
    with open(cut, "r+b") as stream:
        stream.truncate(cut.stat().st_size // 2)
    gone.unlink()
    kept = out / "a.wav"
    before = kept.stat().st_mtime_ns
    capsys.readouterr()
    assert enhance(audio_folder, "--out-dir", out, "--no-progress", "--resume", model=model_folder) == 0
    printed = capsys.readouterr().out
    assert "2 outputs already complete" in printed and "enhanced 2 files" in printed
    assert kept.stat().st_mtime_ns == before  # a complete output is not written again
    for name, wav in reference.items():
        # A redone file is enhanced alone, not in its first batch: float rounding may move a
        # 16-bit sample by one step (the level gain amplifies it), never more.
        np.testing.assert_allclose(read(out / name), wav, rtol=0, atol=1.01 / 32768)
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_resume_and_overwrite_exclude_each_other(model_folder, audio_folder, tmp_path, capsys):
    assert enhance(audio_folder, "--out-dir", tmp_path / "out", "--resume", "--overwrite",
                   model=model_folder) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_read_only_output_folder_is_one_line(model_folder, audio_folder, capsys):
    if not os.path.isdir("/sys/fs"):
        pytest.skip("needs Linux's read-only /sys")
    out = "/sys/fs/sqe_enhanced"
    assert enhance(audio_folder, "--out-dir", out, "--no-progress", model=model_folder) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and out in err[0] and "cannot write into the output folder" in err[0]


def test_full_output_folder_stops_with_one_line_and_keeps_complete_files(
        model_folder, audio_folder, tiny_disk, capsys):
    out = tiny_disk / "out"
    status = enhance(audio_folder, "--out-dir", out, "--no-progress", "--batch-size", "1",
                     model=model_folder)
    err = capsys.readouterr().err
    assert status == 2, err
    message = [line for line in err.splitlines() if line.startswith("sqe enhance:")]
    assert len(message) == 1 and "No space left on device" in message[0] and str(out) in message[0]
    assert "Traceback" not in err
    written = [p for p in out.rglob("*.wav")]
    assert written, "files before the disk filled up are kept"
    for path in written:  # every output under a final name is complete
        assert read(path).shape[0] > 0
    assert not [p for p in out.rglob(".*")]
