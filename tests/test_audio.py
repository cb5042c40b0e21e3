"""The one audio loader: resampling, downmix, and a clear error for each kind of bad input."""

import logging

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio, save_audio


def _tone(seconds=1.0, rate=16000, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_reads_resamples_and_downmixes(tmp_path):
    path = tmp_path / "stereo_44k.wav"
    left = _tone(1.0, 44100)
    soundfile.write(path, np.stack([left, -left * 0], axis=1), 44100)
    wav = load_audio(path, sample_rate=16000)
    assert wav.shape == (16000,)
    assert wav.dtype == torch.float32
    # Downmix is the channel mean: the silent right channel halves the amplitude.
    assert abs(float(wav.abs().max()) - 0.25) < 0.02


def test_flac_and_round_trip(tmp_path):
    path = tmp_path / "a.flac"
    soundfile.write(path, _tone(0.5), 16000)
    assert load_audio(path).shape == (8000,)
    out = tmp_path / "deep" / "out.wav"
    save_audio(out, torch.from_numpy(_tone(0.25)))
    assert torch.allclose(load_audio(out), torch.from_numpy(_tone(0.25)), atol=1e-4)


@pytest.mark.parametrize("subtype, extension", [("PCM_16", "wav"), ("PCM_16", "flac"), ("PCM_24", "wav"),
                                                ("FLOAT", "wav"), ("PCM_U8", "wav")])
def test_samples_equal_speechbrains_reader_exactly(tmp_path, subtype, extension):
    """16-bit PCM is read as int16 and scaled in torch (faster): every one of the 65,536 values,
    in both channels, must equal what SpeechBrain's soundfile reader gives; other encodings too."""
    from speechbrain.dataio.audio_io import load

    from speechbrain_sqe.dataio.audio import _read_channels_first

    every_value = np.arange(-32768, 32768, dtype=np.int16)
    path = tmp_path / f"all_values_{subtype}.{extension}"
    soundfile.write(path, np.stack([every_value, every_value[::-1]], axis=1), 16000, subtype=subtype)
    ours, rate = _read_channels_first(str(path))
    theirs, their_rate = load(str(path), channels_first=True, always_2d=True)
    assert rate == their_rate == 16000
    assert ours.dtype == theirs.dtype == torch.float32 and ours.shape == theirs.shape == (2, 65536)
    assert torch.equal(ours, theirs)
    assert torch.equal(load_audio(path, sample_rate=16000), theirs.mean(dim=0))


def test_missing_file(tmp_path):
    with pytest.raises(AudioLoadError, match="nope.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(AudioLoadError, match="is a folder"):
        load_audio(tmp_path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioLoadError, match="corrupt.wav: cannot read as audio"):
        load_audio(path)


def test_unsupported_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio")
    with pytest.raises(AudioLoadError, match="notes.txt: cannot read as audio.*Readable formats"):
        load_audio(path)


def test_zero_length(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioLoadError, match="empty.wav: file holds no audio samples"):
        load_audio(path)


def test_too_short_names_the_minimum(tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, _tone(0.05), 16000)
    with pytest.raises(AudioLoadError, match=r"short.wav: audio is 0.050 s long; at least 0.100 s"):
        load_audio(path, min_duration=0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    path = tmp_path / "nan.wav"
    data = _tone(0.5)
    data[100:103] = bad
    soundfile.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="nan.wav: 3 samples are NaN or Inf"):
        load_audio(path)


def test_silence_and_clipping_warn(tmp_path, caplog):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    clipped = tmp_path / "clipped.wav"
    soundfile.write(clipped, np.clip(_tone(1.0, amplitude=3.0), -1, 1), 16000)
    with caplog.at_level(logging.WARNING):
        load_audio(silent)
        load_audio(clipped)
    assert "silent.wav: digital silence" in caplog.text
    assert "clipped.wav" in caplog.text and "clipped" in caplog.text
