"""The VQScore interface: hub export and loading, safe loading, batch and frame scoring."""

import os
import shutil

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vqscore_hub

from speechbrain_sqe.dataio.files import expand_audio_inputs
from speechbrain_sqe.inference.batch_scoring import score_files
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.utils.safe_load import UnsafeHyperparamsError


def _speechlike(seconds, seed, rate=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 100 + 100 * rng.random()
    voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 10))
    return (0.1 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """A hub folder exported from a model whose codebook was initialised on speech-like input."""
    torch.manual_seed(0)
    model = VQVAEQualityModel(codebook_size=64)
    wavs = torch.stack([torch.from_numpy(_speechlike(1.0, s)) for s in range(4)])
    model.train()
    model(stft_magnitude(wavs))  # k-means initialisation of the codebook
    return build_vqscore_hub(model.eval(), str(tmp_path_factory.mktemp("hub")))


def test_from_hparams_scores_files_and_batches(hub_folder, tmp_path):
    scorer = VQScore.from_hparams(source=hub_folder, savedir=str(tmp_path / "save"))
    paths = []
    for index, seconds in enumerate((1.0, 0.6, 1.3)):
        paths.append(str(tmp_path / f"u{index}.wav"))
        soundfile.write(paths[-1], _speechlike(seconds, index + 10), 16000)
    single = [scorer.score_file(p) for p in paths]
    # A file scores as its samples do, and three different files get three different scores.
    for path, score in zip(paths, single):
        wav, _ = soundfile.read(path, dtype="float32")
        assert score == pytest.approx(float(scorer.score_batch(torch.from_numpy(wav).unsqueeze(0))[0]), abs=1e-6)
    assert len({round(score, 4) for score in single}) == 3, single
    results, failures = score_files(scorer, paths, batch_size=3, num_workers=0, progress=False)
    assert not failures
    # A padded batch scores each file exactly as alone (masked normalization, per-file STFT), also
    # padded to a multiple of 16 frames (4,096 samples here: 1.3 s -> 1.536 s), with its own duration.
    assert scorer.batch_length_multiple == 16 * 256
    assert [r["path"] for r in results] == paths
    assert np.allclose([r["vqscore"] for r in results], single, atol=1e-5)
    assert [r["duration"] for r in results] == pytest.approx([1.0, 0.6, 1.3], abs=1e-9)


def test_batch_threads_give_the_serial_scores_in_order(hub_folder, tmp_path):
    """Batches side by side (``threads=3``, one torch thread each) give the rows, scores, failures and
    ``on_batch`` calls of one batch at a time, in input order; the torch thread count is restored,
    also when ``on_batch`` stops the job."""
    scorer = VQScore.from_hparams(source=hub_folder, savedir=str(tmp_path / "save"))
    paths = []
    for index, seconds in enumerate((1.0, 0.6, 1.3, 0.8, 2.0, 0.5, 1.1)):
        paths.append(str(tmp_path / f"u{index}.wav"))
        soundfile.write(paths[-1], _speechlike(seconds, index + 20), 16000)
    paths.insert(3, str(tmp_path / "corrupt.wav"))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFFxxxxWAVEjunk")
    runs, (before, restore) = {}, (2, torch.get_num_threads())
    torch.set_num_threads(before)  # (the suite runs with 1: a count the job must give back)
    for threads in (1, 3):
        calls = []
        results, failures = score_files(scorer, paths, batch_size=2, progress=False, threads=threads,
                                        on_batch=lambda batch, bad, calls=calls: calls.append(
                                            ([r["path"] for r in batch], bad)))
        runs[threads] = results, failures, calls
        assert torch.get_num_threads() == before
    (serial, serial_bad, serial_calls), (threaded, threaded_bad, threaded_calls) = runs[1], runs[3]
    assert [r["path"] for r in threaded] == [r["path"] for r in serial] == [p for p in paths if "corrupt" not in p]
    assert np.allclose([r["vqscore"] for r in threaded], [r["vqscore"] for r in serial], atol=1e-6)
    assert threaded_bad == serial_bad and "cannot read as audio" in threaded_bad[0][1]
    assert threaded_calls == serial_calls and len(serial_calls) == 4

    def stop(batch, bad):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        score_files(scorer, paths, batch_size=2, progress=False, threads=3, on_batch=stop)
    assert torch.get_num_threads() == before
    torch.set_num_threads(restore)
    with pytest.raises(ValueError, match="batch threads must be"):
        score_files(scorer, paths, progress=False, threads=0)


def test_score_frames_locates_a_noise_burst(hub_folder, tmp_path):
    """A 0.2 s noise burst at 1.0-1.2 s: the frame scores dip there, more than anywhere else."""
    scorer = VQScore.from_hparams(source=hub_folder, savedir=str(tmp_path / "save"))
    clean = _speechlike(2.0, 3)
    burst = clean.copy()
    burst[16000:19200] += 0.3 * np.random.default_rng(0).standard_normal(3200).astype(np.float32)
    times, frames = scorer.score_frames(torch.from_numpy(burst))
    _, clean_frames = scorer.score_frames(torch.from_numpy(clean))
    assert frames.shape == times.shape == (1 + 32000 // 256,)
    assert abs(float(times[1]) - 0.016) < 1e-6
    assert abs(float(frames.mean()) - float(scorer.score_batch(torch.from_numpy(burst).unsqueeze(0))[0])) < 1e-5
    inside = (times > 1.02) & (times < 1.18)
    far = (times < 0.8) | (times > 1.4)
    drop = clean_frames - frames
    assert float(frames[inside].mean()) < float(frames[far].mean()) - 0.1
    assert float(drop[inside].mean()) > float(drop[far].mean()) + 0.08
    # The lowest-scoring 0.2 s stretch is centred on the burst.
    window = 12
    smoothed = np.convolve(frames.numpy(), np.ones(window) / window, mode="valid")
    assert 0.85 < float(times[int(np.argmin(smoothed)) + window // 2]) < 1.35


def test_bad_files_are_reported_not_dropped(hub_folder, tmp_path):
    scorer = VQScore.from_hparams(source=hub_folder, savedir=str(tmp_path / "save"))
    good = tmp_path / "good.wav"
    soundfile.write(good, _speechlike(1.0, 1), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFFxxxxWAVEjunk")
    short = tmp_path / "short.wav"
    soundfile.write(short, _speechlike(0.02, 2), 16000)
    files = expand_audio_inputs([str(tmp_path)])
    results, failures = score_files(scorer, files, batch_size=2, num_workers=0, progress=False)
    assert [os.path.basename(r["path"]) for r in results] == ["good.wav"]
    reasons = dict(failures)
    assert "cannot read as audio" in reasons[str(corrupt)]
    assert "at least 0.100 s is needed" in reasons[str(short)]


def test_untrusted_hyperparams_are_refused(hub_folder, tmp_path):
    evil = tmp_path / "evil"
    shutil.copytree(hub_folder, evil)
    marker = tmp_path / "pwned"
    with open(evil / "hyperparams.yaml", "a", encoding="utf-8") as stream:
        stream.write(f"\nside_effect: !apply:pathlib.Path.touch [!new:pathlib.Path ['{marker}']]\n")
    with pytest.raises(UnsafeHyperparamsError, match="pathlib.Path.touch.*trust_hparams=True"):
        VQScore.from_hparams(source=str(evil))
    assert not marker.exists()
    VQScore.from_hparams(source=str(evil), trust_hparams=True)
    assert marker.exists()


def test_pickled_checkpoint_is_refused(hub_folder, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(hub_folder, folder)
    state = torch.load(folder / "vqvae.ckpt", weights_only=True)
    state["payload"] = os.getcwd  # a function: only plain pickle can hold it
    torch.save(state, folder / "vqvae.ckpt")
    with pytest.raises(ValueError, match="vqvae.ckpt: not loadable with weights_only=True"):
        VQScore.from_hparams(source=str(folder))
