"""The degradations of the label set (dataio/degradations.py) change speech the way they say."""

import numpy as np
import pytest
from speech import pink_noise, speech_like

from speechbrain_sqe.dataio import degradations
from speechbrain_sqe.dataio.degradations import (
    CodecUnavailable,
    available_codecs,
    band_limit,
    clip,
    codec,
    degrade,
    describe,
    estimate_delay,
    packet_loss,
)
from speechbrain_sqe.dataio.mixing import measure_snr

SR = 16000


@pytest.fixture(scope="module")
def speech():
    return speech_like(2.0, SR, seed=3)


def _energy_above(wav, hz):
    spectrum = np.abs(np.fft.rfft(wav)) ** 2
    frequencies = np.fft.rfftfreq(len(wav), 1 / SR)
    return spectrum[frequencies > hz].sum() / spectrum.sum()


@pytest.mark.parametrize("cutoff", [2000, 4000])
def test_band_limit_removes_energy_above_the_cutoff(cutoff):
    wide = np.random.default_rng(0).standard_normal(SR)  # white: half of the energy above 4 kHz
    out = band_limit(wide, SR, cutoff)
    assert out.shape == wide.shape
    assert _energy_above(wide, cutoff * 1.1) > 0.3
    assert _energy_above(out, cutoff * 1.1) < 1e-3
    # below the cutoff the signal is kept (and aligned: no delay)
    assert estimate_delay(wide, out, 200) == 0
    low = band_limit(band_limit(wide, SR, cutoff * 0.8), SR, cutoff)
    assert np.corrcoef(low, band_limit(wide, SR, cutoff * 0.8))[0, 1] > 0.99


def test_clip_bounds_the_peak_and_keeps_small_samples(speech):
    out = clip(speech, 0.2)
    peak = np.max(np.abs(speech))
    assert np.max(np.abs(out)) == pytest.approx(0.2 * peak, rel=1e-5)
    small = np.abs(speech) < 0.2 * peak
    np.testing.assert_allclose(out[small], speech[small], atol=1e-6)
    assert np.mean(~small) > 0.01  # something was clipped
    with pytest.raises(ValueError, match="threshold"):
        clip(speech, 1.5)


LOSSY = [("opus", 1.0), ("vorbis", 1.0), ("mp3", 0.9), ("gsm610", None), ("ms_adpcm", None), ("ima_adpcm", None)]


@pytest.mark.parametrize("name,setting", LOSSY)
def test_codec_keeps_length_alignment_and_lowers_snr(speech, name, setting):
    if name not in available_codecs():
        pytest.skip(f"{name} not in this libsndfile")
    out = codec(speech, SR, name, setting)
    assert out.shape == speech.shape and out.dtype == np.float32
    assert estimate_delay(speech, out) == 0  # the codec's delay was removed
    assert np.corrcoef(speech, out)[0, 1] > 0.8
    snr = measure_snr(speech, out - speech)
    assert snr < 30, snr  # it did degrade the signal


def test_codec_level_orders_the_damage(speech):
    if "opus" not in available_codecs():
        pytest.skip("no opus")
    best, worst = codec(speech, SR, "opus", 0.0), codec(speech, SR, "opus", 1.0)
    assert measure_snr(speech, best - speech) > measure_snr(speech, worst - speech) + 10


def test_codec_delay_is_measured_and_removed(speech, monkeypatch):
    """A decoder that returns the signal late by 300 samples (plus padding) comes back aligned."""
    real_read = degradations.soundfile.read

    def late_read(buffer, **options):
        wav, rate = real_read(buffer, **options)
        return np.concatenate([np.zeros(300), wav, np.zeros(50)]), rate

    monkeypatch.setattr(degradations.soundfile, "read", late_read)
    out = codec(speech, SR, "ulaw")
    assert out.shape == speech.shape
    assert measure_snr(speech, out - speech) > 30  # mu-law alone, aligned


def test_codec_errors():
    x = np.zeros(1600)
    with pytest.raises(ValueError, match="unknown codec 'aac'"):
        codec(x, SR, "aac")
    with pytest.raises(ValueError, match="compression_level in"):
        codec(x, SR, "opus", 2.0)
    with pytest.raises(ValueError, match="takes no setting"):
        codec(x, SR, "gsm610", 0.3)


def test_unavailable_codec_raises_codec_unavailable(monkeypatch):
    monkeypatch.setattr(degradations.soundfile, "available_subtypes", lambda container: {})
    assert available_codecs() == []
    with pytest.raises(CodecUnavailable, match="not available"):
        codec(np.zeros(1600), SR, "opus", 0.5)


def test_packet_loss_zeroes_the_requested_fraction_of_frames(speech):
    wav = speech + 0.01  # no exact zero in the input
    out = packet_loss(wav, SR, 0.3, frame_ms=20, rng=np.random.default_rng(1))
    frames = out[: len(out) // 320 * 320].reshape(-1, 320)
    lost = np.all(frames == 0, axis=1)
    assert lost.mean() == pytest.approx(0.3, abs=0.02)
    kept = ~lost
    np.testing.assert_allclose(frames[kept], wav[: len(frames) * 320].reshape(-1, 320)[kept], atol=1e-6)


def test_same_seed_same_output_other_seed_other_output(speech):
    spec = {"kind": "chain", "steps": [{"kind": "noise", "snr": 5.0}, {"kind": "packet_loss", "loss_rate": 0.2}]}
    a = degrade(speech, spec, np.random.default_rng(7))
    b = degrade(speech, spec, np.random.default_rng(7))
    c = degrade(speech, spec, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_degrade_noise_and_room_use_the_project_mixer(speech, tmp_path):
    from speechbrain_sqe.dataio.audio import save_audio
    from speechbrain_sqe.dataio.rooms import synthetic_rir

    noise_path, rir_path = str(tmp_path / "pink.wav"), str(tmp_path / "room.wav")
    save_audio(noise_path, 0.1 * pink_noise(3 * SR), SR)
    save_audio(rir_path, synthetic_rir(0.8, np.random.default_rng(0)), SR)
    noisy = degrade(speech, {"kind": "noise", "snr": 0.0, "path": noise_path}, np.random.default_rng(0))
    assert measure_snr(speech, noisy - speech) == pytest.approx(0.0, abs=0.1)
    wet = degrade(speech, {"kind": "room", "path": rir_path})
    assert wet.shape == speech.shape and estimate_delay(speech, wet, 400) == 0
    assert measure_snr(speech, wet - speech) < 10  # reverberation is a degradation of the dry speech


def test_varied_noise_keeps_the_snr_changes_the_noise_and_is_seeded(speech, tmp_path):
    from speechbrain_sqe.dataio.audio import save_audio

    noise_path = str(tmp_path / "pink.wav")
    save_audio(noise_path, 0.1 * pink_noise(3 * SR), SR)
    plain = {"kind": "noise", "snr": 5.0, "path": noise_path}
    varied = {**plain, "vary": 11}
    noisy = degrade(speech, varied, np.random.default_rng(0))
    assert measure_snr(speech, noisy - speech) == pytest.approx(5.0, abs=0.1)
    np.testing.assert_array_equal(noisy, degrade(speech, varied, np.random.default_rng(0)))
    other = degrade(speech, {**plain, "vary": 12}, np.random.default_rng(0))
    unvaried = degrade(speech, plain, np.random.default_rng(0))
    # the noise itself differs (not only its level): its spectrum's shape moves
    def shape(wav):
        spectrum = np.abs(np.fft.rfft(wav - speech)) ** 2
        bands = np.array([band.sum() for band in np.array_split(spectrum, 16)])
        return np.log(bands / bands.sum())
    assert np.abs(shape(noisy) - shape(unvaried)).max() > 0.5
    assert np.abs(shape(noisy) - shape(other)).max() > 0.5
    assert describe(varied) == "noise_pink_varied_snr5.0" and describe(plain) == "noise_pink_snr5.0"


def test_degrade_rejects_unknown_kind_and_missing_keys(speech):
    with pytest.raises(ValueError, match="unknown degradation kind 'echo'"):
        degrade(speech, {"kind": "echo"})
    with pytest.raises(ValueError, match="needs cutoff_hz"):
        degrade(speech, {"kind": "band_limit"})
    with pytest.raises(ValueError, match="path or t60"):
        degrade(speech, {"kind": "room"})


def test_describe_names_conditions():
    assert describe({"kind": "codec", "name": "gsm610"}) == "codec_gsm610"
    assert describe({"kind": "packet_loss", "loss_rate": 0.1}) == "packet_loss_0.10"
