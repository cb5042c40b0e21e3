"""Fuzz: the audio loader and the three batch commands (`score`, `enhance`, `evaluate`, each run as
`python -m speechbrain_sqe.cli`) over seeded bad files: random bytes, cut and mutated headers, odd
rates and channel counts, NaN/Inf, 0 and 1 samples, a long sparse file. No traceback, no native
crash, every good file still gets its result."""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vq_enhancer_hub, build_vqscore_hub
from speech import add_noise, speech_like

from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel

SEED = 20261202


def _wav_bytes(data, rate, subtype="PCM_16", fmt="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def _fuzz_files(folder):
    """Writes good and bad files; returns the names of the good ones (each must get its result)."""
    rng = np.random.default_rng(SEED)
    speech = speech_like(1.5, seed=9).astype(np.float32)
    good = {
        "good_16k.wav": _wav_bytes(speech, 16000),
        "good_8k_stereo.flac": _wav_bytes(np.stack([speech[::2], speech[::2]], axis=1), 8000, "PCM_16", "FLAC"),
        "good_noisy_44k.wav": _wav_bytes(
            np.repeat(add_noise(speech, 5, seed=1).astype(np.float32), 3)[: int(1.5 * 44100)] * 0.5, 44100),
        "good_6ch_22k.wav": _wav_bytes(np.tile(speech[::1][: 33075, None], (1, 6)) * 0.3, 22050),
        "good_float_odd_rate_11025.wav": _wav_bytes(speech[: 16538] * 0.8, 11025, "FLOAT"),
        "good_long_sparse.wav": None,  # filled below
    }
    long_sparse = np.zeros(30 * 8000, np.float32)  # 30 s, one short utterance in it
    long_sparse[200000 : 200000 + 12000] = speech[::2]
    good["good_long_sparse.wav"] = _wav_bytes(long_sparse, 8000)
    valid = good["good_16k.wav"]
    nan_audio = speech.copy()
    nan_audio[100:200] = np.nan
    inf_audio = speech.copy()
    inf_audio[5] = np.inf
    bad = {
        "random_bytes.wav": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty.wav": b"",
        "riff_only.wav": valid[:12],
        "header_cut.wav": valid[:30],
        "header_no_data.wav": valid[:44],
        "data_cut_odd.wav": valid[:45],  # half a sample
        "zero_samples.wav": _wav_bytes(np.zeros(0, np.float32), 16000),
        "one_sample.wav": _wav_bytes(np.zeros(1, np.float32), 16000),
        "nan.wav": _wav_bytes(nan_audio, 16000, "FLOAT"),
        "inf.wav": _wav_bytes(inf_audio, 16000, "FLOAT"),
        "rate_1hz.wav": _wav_bytes(speech[:50], 1),
        "rate_100hz_2ch.wav": _wav_bytes(np.stack([speech[:400]] * 2, axis=1), 100),
        "text.flac": b"this is not a flac file\n" * 40,
    }
    for index in range(8):  # mutated headers: seeded byte flips in the first 44 bytes
        data = bytearray(valid)
        for position in rng.choice(44, size=3, replace=False):
            data[position] = int(rng.integers(0, 256))
        bad[f"mutated_header_{index}.wav"] = bytes(data)
    for name, data in {**good, **bad}.items():
        (folder / name).write_bytes(data)
    return sorted(good), sorted(bad)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "inputs"
    folder.mkdir()
    good, bad = _fuzz_files(folder)
    torch.manual_seed(0)
    hubs = tmp_path_factory.mktemp("hubs")
    warm = torch.from_numpy(speech_like(1.0, seed=3)).float()[None]
    quality = VQVAEQualityModel(codebook_size=16)
    quality.train()
    quality(stft_magnitude(warm))
    enhancer = VQVAEEnhancementModel(channels=(16, 8), codebook_dim=8, codebook_size=8)
    enhancer.train()
    enhancer(stft_magnitude(warm, 512, 128, 512, log1p=True))
    return {"folder": folder, "good": good, "bad": bad,
            "vqscore": build_vqscore_hub(quality.eval(), str(hubs / "vqscore")),
            "enhancer": build_vq_enhancer_hub(enhancer.eval(), str(hubs / "enhancer"))}


def test_the_loader_gives_audio_or_a_one_line_error(fuzz):
    for name in fuzz["good"] + fuzz["bad"]:
        path = fuzz["folder"] / name
        try:
            wav = load_audio(path, 16000, min_duration=0.1, warn=False)
        except AudioLoadError as error:
            assert name in fuzz["bad"], f"{name}: {error}"
            message = str(error)
            assert message.startswith(str(path)) and "\n" not in message, message
            continue
        assert name in fuzz["good"], f"{name} was read as audio"
        assert wav.dim() == 1 and wav.shape[0] >= 1600 and bool(torch.isfinite(wav).all())


def _cli(*args):
    result = subprocess.run([sys.executable, "-m", "speechbrain_sqe.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode in (0, 1), (result.returncode, result.stderr[-3000:])  # < 0: a signal
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _base(path):
    return os.path.basename(path)


def test_score(fuzz, tmp_path):
    out = tmp_path / "scores.csv"
    result = _cli("score", fuzz["folder"], "--model", fuzz["vqscore"], "--csv", out, "--no-progress")
    assert result.returncode == 1
    rows = {_base(r["path"]): r for r in _csv(out)}
    assert set(rows) == set(fuzz["good"])
    for name in fuzz["good"]:
        assert rows[name]["speech"] == "yes" and -1 <= float(rows[name]["vqscore"]) <= 1, rows[name]
    for name in fuzz["bad"]:
        assert f"FAILED {fuzz['folder'] / name}:" in result.stderr


def test_enhance(fuzz, tmp_path):
    out = tmp_path / "enhanced"
    result = _cli("enhance", fuzz["folder"], "--model", fuzz["enhancer"], "--out-dir", out, "--no-progress")
    assert result.returncode == 1
    written = sorted(os.listdir(out))
    assert written == sorted(os.path.splitext(name)[0] + ".wav" for name in fuzz["good"])
    for name in written:
        data, rate = soundfile.read(out / name)
        assert rate == 16000 and data.shape[0] > 0 and np.isfinite(data).all()
    for name in fuzz["bad"]:
        assert f"FAILED {fuzz['folder'] / name}:" in result.stderr


def test_evaluate(fuzz, tmp_path):
    out = tmp_path / "metrics.csv"
    result = _cli("evaluate", "--ref", fuzz["folder"], "--deg", fuzz["folder"], "--metrics", "si_sdr", "stoi",
                  "--csv", out, "--no-progress")
    assert result.returncode == 1
    rows = _csv(out)
    names = {_base(value) for row in rows for value in row.values() if isinstance(value, str)}
    for name in fuzz["good"]:
        assert name in names or os.path.splitext(name)[0] in names, (name, rows[:2])
    for row in rows:
        assert float(row["stoi"]) > 0.99, row  # each file against itself
    for name in fuzz["bad"]:
        assert name in result.stdout + result.stderr
