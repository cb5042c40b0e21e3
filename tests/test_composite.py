"""Tests of the composite measures (CSIG, CBAK, COVL) and their parts LLR, WSS and segSNR."""

import os

import numpy as np
import pytest
from speech import add_white_noise, synthesize

from speechbrain_sqe.metrics import composite as comp
from speechbrain_sqe.metrics.intrusive import MetricError


@pytest.fixture(scope="module")
def speech_path(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("composite") / "speech.wav")


@pytest.fixture(scope="module")
def speech(speech_path):
    from speechbrain_sqe.dataio.audio import load_audio

    return load_audio(speech_path, sample_rate=16000).numpy().astype(np.float64)


def test_identical_signals_give_the_top_of_the_scale(speech):
    scores = comp.composite(speech, speech)
    assert (scores["csig"], scores["cbak"], scores["covl"]) == (5.0, 5.0, 5.0)
    assert scores["pesq"] == pytest.approx(4.644, abs=0.01)
    assert abs(scores["llr"]) < 1e-6
    assert scores["wss"] == 0.0
    noise = np.random.default_rng(0).standard_normal(8000)  # no digital silence
    assert comp.segmental_snr(noise, noise) == 35.0


def test_composite_falls_with_snr_while_unclipped(speech):
    scores = {snr: comp.composite(speech, add_white_noise(speech, snr)) for snr in (40, 30, 20)}
    for name in ("csig", "cbak", "covl", "pesq", "segsnr"):
        assert scores[40][name] > scores[30][name] > scores[20][name], (name, scores)
    for name in ("llr", "wss"):
        assert scores[40][name] < scores[30][name] < scores[20][name], (name, scores)


def test_parts_are_monotonic_in_snr(speech):
    noisy = {snr: add_white_noise(speech, snr) for snr in (20, 10, 0)}
    llr = [comp.llr(speech, noisy[snr]) for snr in (20, 10, 0)]
    wss = [comp.wss(speech, noisy[snr]) for snr in (20, 10, 0)]
    seg = [comp.segmental_snr(speech, noisy[snr]) for snr in (20, 10, 0)]
    assert llr[0] < llr[1] < llr[2] and wss[0] < wss[1] < wss[2] and seg[0] > seg[1] > seg[2]
    assert all(-10.0 <= value <= 35.0 for value in seg)


def test_known_values_of_the_loizou_sample_pair(shared_real):
    """``speech.wav`` / ``speech_bab_0dB.wav`` (Loizou's sample pair, 16 kHz).

    Expected LLR, WSS and segSNR are those of Loizou's MATLAB code as reproduced by pysepm
    (its notebook gives 0.9608, 52.6579, -4.0387); CSIG/CBAK/COVL use PESQ wide band 1.0832.
    """
    from speechbrain_sqe.dataio.audio import load_audio

    folder = os.path.join(shared_real, "pairs", "pesq_reference")
    ref = load_audio(os.path.join(folder, "speech.wav")).numpy()
    deg = load_audio(os.path.join(folder, "speech_bab_0dB.wav")).numpy()
    scores = comp.composite(ref, deg)
    assert scores["pesq"] == pytest.approx(1.0832337, abs=1e-6)
    assert scores["llr"] == pytest.approx(0.96075, abs=1e-4)
    assert scores["wss"] == pytest.approx(52.6579, abs=1e-3)
    assert scores["segsnr"] == pytest.approx(-4.0387, abs=1e-3)
    assert scores["csig"] == pytest.approx(2.2837, abs=1e-3)
    assert scores["cbak"] == pytest.approx(1.5287, abs=1e-3)
    assert scores["covl"] == pytest.approx(1.6055, abs=1e-3)


def _loop_local_peaks(energy, slope):
    """Literal transcription of the local-peak search of Loizou's ``wss.m`` (0-based)."""
    num_crit = energy.shape[0]
    peaks = np.zeros(num_crit - 1)
    for i in range(num_crit - 1):
        n = i
        if slope[i] > 0:
            while n < num_crit - 1 and slope[n] > 0:
                n += 1
            peaks[i] = energy[n - 1]
        else:
            while n >= 0 and slope[n] <= 0:
                n -= 1
            peaks[i] = energy[n + 1]
    return peaks


def test_vectorised_peak_search_matches_the_reference_loop():
    rng = np.random.default_rng(5)
    energy = np.round(rng.standard_normal((200, 25)) * 3)  # rounding makes flat runs too
    energy[0] = np.arange(25)  # rising everywhere
    energy[1] = -np.arange(25)  # falling everywhere
    slope = np.diff(energy, axis=1)
    vectorised = comp._local_peaks(energy, slope)
    for frame in range(energy.shape[0]):
        np.testing.assert_array_equal(vectorised[frame], _loop_local_peaks(energy[frame], slope[frame]))


def test_levinson_matches_a_toeplitz_solve():
    from scipy.linalg import solve_toeplitz

    frames = np.random.default_rng(6).standard_normal((4, 480))
    acorr = comp._autocorrelation(frames, 16)
    lpc = comp._levinson(acorr)
    for frame in range(4):
        a = solve_toeplitz(acorr[frame, :-1], acorr[frame, 1:])
        np.testing.assert_allclose(lpc[frame], np.r_[1.0, -a], atol=1e-10)


def test_narrow_band_composite_at_8khz(speech_path):
    from speechbrain_sqe.dataio.audio import load_audio

    clean = load_audio(speech_path, sample_rate=8000).numpy().astype(np.float64)
    top = comp.composite(clean, clean, sample_rate=8000)
    noisy = comp.composite(clean, add_white_noise(clean, 30), sample_rate=8000)
    assert (top["csig"], top["cbak"], top["covl"]) == (5.0, 5.0, 5.0)
    assert noisy["covl"] < top["covl"] and noisy["cbak"] < top["cbak"]
    assert top["pesq"] > 4.4  # raw P.862 score of identical signals


def test_composite_errors(speech):
    with pytest.raises(MetricError, match="8000 or 16000"):
        comp.composite(speech, speech, sample_rate=22050)
    with pytest.raises(MetricError, match="too short"):
        comp.wss(speech[:500], speech[:500])
    with pytest.raises(MetricError, match="lengths differ"):
        comp.composite(speech, speech[:-1])
