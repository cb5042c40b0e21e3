"""Tests of the intrusive metrics, the registry, DNSMOS's optional import and the correlations."""

import importlib.util
import math
import sys
import time

import numpy as np
import pytest
from scipy.signal import lfilter
from speech import add_noise, add_white_noise, speech_like, synthesize

from speechbrain_sqe.metrics import correlation as corr
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import intrusive, registry
from speechbrain_sqe.metrics.intrusive import MetricError

SENTENCE = "Speech quality estimation needs a clean reference signal."




@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from speechbrain_sqe.dataio.audio import load_audio

    path = synthesize(tmp_path_factory.mktemp("speech") / "speech.wav")
    return load_audio(path, sample_rate=16000).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def scores_by_snr(speech):
    names = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_snr", "csig", "cbak", "covl"]
    return {snr: registry.compute_metrics(speech, add_white_noise(speech, snr), names)
            for snr in (20, 10, 0)}


# --- SI-SDR / SI-SNR -----------------------------------------------------------------------

def test_si_sdr_known_snr_with_orthogonal_noise():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    noise -= noise.dot(ref) / ref.dot(ref) * ref  # exactly orthogonal to ref
    for snr in (-5.0, 0.0, 12.5, 30.0):
        scaled = noise * np.sqrt(ref.dot(ref) / noise.dot(noise) / 10 ** (snr / 10))
        assert intrusive.si_sdr(ref, ref + scaled) == pytest.approx(snr, abs=1e-9)


def test_si_sdr_scale_invariance_and_perfect_estimate():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal(4000)
    deg = ref + 0.3 * rng.standard_normal(4000)
    base = intrusive.si_sdr(ref, deg)
    for gain in (1e-3, 0.5, 7.0, -2.0):
        assert intrusive.si_sdr(ref, gain * deg) == pytest.approx(base, abs=1e-9)
        assert intrusive.si_sdr(gain * ref, deg) == pytest.approx(base, abs=1e-9)
    assert intrusive.si_sdr(ref, 0.25 * ref) > 150  # noise floored at eps: finite, huge
    assert math.isfinite(intrusive.si_sdr(ref, ref))


def test_si_snr_removes_the_mean_and_si_sdr_does_not():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(4000)
    assert intrusive.si_snr(ref, ref + 5.0) > 150
    assert intrusive.si_sdr(ref, ref + 5.0) < 20
    import torch

    assert intrusive.si_sdr(torch.from_numpy(ref), torch.from_numpy(2 * ref)) > 150


def test_si_sdr_errors():
    with pytest.raises(MetricError, match="all zeros"):
        intrusive.si_sdr(np.zeros(100), np.ones(100))
    with pytest.raises(MetricError, match="lengths differ"):
        intrusive.si_sdr(np.ones(100), np.ones(99))


# --- PESQ / STOI ---------------------------------------------------------------------------

def test_identical_signals_reach_the_top_of_the_scales(speech):
    scores = registry.compute_metrics(speech, speech, list(registry.INTRUSIVE_METRICS))
    assert scores["pesq_wb"] == pytest.approx(4.644, abs=0.01)
    assert scores["pesq_nb"] == pytest.approx(4.549, abs=0.01)
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["si_sdr"] > 150
    assert (scores["csig"], scores["cbak"], scores["covl"]) == (5.0, 5.0, 5.0)


@pytest.mark.parametrize("name", ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_snr", "cbak"])
def test_scores_fall_with_snr(scores_by_snr, name):
    values = [scores_by_snr[snr][name] for snr in (20, 10, 0)]
    assert values[0] > values[1] > values[2], values


@pytest.mark.parametrize("name", ["csig", "covl"])
def test_composite_never_rises_as_snr_falls(scores_by_snr, name):
    # CSIG and COVL reach the bottom of the scale (1) on white noise at 10 dB already.
    values = [scores_by_snr[snr][name] for snr in (20, 10, 0)]
    assert values[0] >= values[1] >= values[2] >= 1.0, values


def test_si_sdr_matches_the_mixing_snr(scores_by_snr):
    for snr in (20, 10, 0):
        assert scores_by_snr[snr]["si_sdr"] == pytest.approx(snr, abs=0.2)


def test_pesq_errors_are_clear(speech):
    with pytest.raises(MetricError, match="pesq_wb: the reference is digital silence"):
        intrusive.pesq(np.zeros(16000), speech[:16000])
    with pytest.raises(MetricError, match="degraded signal is digital silence"):
        intrusive.pesq(speech, np.zeros_like(speech))
    impulse = np.r_[1.0, np.zeros(15999)]
    with pytest.raises(MetricError, match="pesq_nb: PESQ detected no utterance"):
        intrusive.pesq(impulse, impulse, 16000, "nb")
    with pytest.raises(MetricError, match="too short"):
        intrusive.pesq(speech[:2000], speech[:2000])
    with pytest.raises(MetricError, match="wide band needs 16000 Hz"):
        intrusive.pesq(speech, speech, 8000, "wb")


def test_stoi_too_short_is_an_error(speech):
    with pytest.raises(MetricError, match=r"stoi: signal too short for STOI \(0.188 s; it needs at least 0.40 s"):
        intrusive.stoi(speech[:3000], speech[:3000], 16000)
    mostly_silent = np.r_[speech[:3000], np.zeros(13000)]  # long enough, too little speech
    with pytest.raises(MetricError, match="estoi: fewer than 30 speech frames"):
        intrusive.stoi(mostly_silent, mostly_silent, 16000, extended=True)


@pytest.fixture
def pesq_segments():
    yield intrusive.set_pesq_segments
    intrusive.set_pesq_segments(None)


def test_long_pesq_is_refused_before_the_native_call_or_measured_in_segments(speech, pesq_segments):
    tile = np.r_[speech, np.zeros(8000)]
    long_ref = np.tile(tile, 61 * 16000 // tile.shape[0] + 1)[: 61 * 16000]  # 61 s
    long_deg = add_white_noise(long_ref, 15)
    start = time.monotonic()
    with pytest.raises(MetricError, match=r"pesq_wb: 61.0 s is longer than the 60 s PESQ can measure in one piece"):
        intrusive.pesq(long_ref, long_deg)
    assert time.monotonic() - start < 1.0  # refused up front, not after minutes in native code
    assert intrusive.pop_notes() == {}
    pesq_segments(30)
    silence = np.zeros(30 * 16000)  # 60 s of speech, then a third segment without speech
    segmented = intrusive.pesq(np.r_[long_ref[:960000], silence], np.r_[long_deg[:960000], silence])
    assert intrusive.pop_notes() == {"pesq_wb": "pesq_wb: mean of 2 segments of 30 s (1 without speech left out)"}
    one_piece = intrusive.pesq(long_ref[: 30 * 16000], long_deg[: 30 * 16000])
    assert segmented == pytest.approx(one_piece, abs=0.15)
    assert intrusive.pop_notes() == {}  # measured whole: no note
    with pytest.raises(ValueError, match="PESQ segments must last 1 to 60 s, not 90"):
        pesq_segments(90)


# --- pinned values on generated audio (no TTS, no ../shared) ----------------------------------
# Recorded from the code at commit e6dfa1d; they must not change in a refactor. "forward" is
# compute_metrics(clean, degraded), "swapped" compute_metrics(degraded, clean): a refactor that swaps
# the reference and the degraded signal anywhere (or STOI with ESTOI, SI-SDR with SI-SNR...) lands
# on the other row.
PINNED_NAMES = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_snr", "csig", "cbak", "covl"]
PINNED = {
    "white_5db": {
        "forward": {"pesq_wb": 1.116246, "pesq_nb": 1.459932, "stoi": 0.900299, "estoi": 0.628512, "si_sdr": 4.997959, "si_snr": 4.9983, "csig": 1.0, "cbak": 1.784916, "covl": 1.0},
        "swapped": {"pesq_wb": 1.046464, "pesq_nb": 1.035146, "stoi": 0.780864, "estoi": 0.300124, "si_sdr": 4.997959, "si_snr": 4.9983, "csig": 1.386958, "cbak": 2.124632, "covl": 1.190181},
    },
    "pink_25db": {
        "forward": {"pesq_wb": 2.276101, "pesq_nb": 2.663581, "stoi": 0.997026, "estoi": 0.978907, "si_sdr": 24.999887, "si_snr": 25.813353, "csig": 1.0, "cbak": 3.178514, "covl": 1.0},
        "swapped": {"pesq_wb": 1.326204, "pesq_nb": 2.650662, "stoi": 0.991239, "estoi": 0.78186, "si_sdr": 24.999887, "si_snr": 25.813353, "csig": 2.384041, "cbak": 2.987931, "covl": 1.864576},
    },
    "lowpass": {
        "forward": {"pesq_wb": 4.637543, "pesq_nb": 4.547843, "stoi": 0.999967, "estoi": 0.9999, "si_sdr": 10.442219, "si_snr": 10.442219, "csig": 4.626699, "cbak": 4.143786, "covl": 4.69889},
        "swapped": {"pesq_wb": 4.625965, "pesq_nb": 4.547843, "stoi": 0.999967, "estoi": 0.9999, "si_sdr": 10.442219, "si_snr": 10.442219, "csig": 5.0, "cbak": 4.118266, "covl": 5.0},
    },
}
PINNED_TOLERANCE = 1e-4


def _degraded(condition, clean):
    if condition == "white_5db":
        return add_noise(clean, 5, "white", seed=1)
    if condition == "pink_25db":
        return add_noise(clean, 25, "pink", seed=1)
    return lfilter([0.5, 0.5], [1.0], clean)  # "lowpass": a gentle two-tap low-pass, no noise


@pytest.fixture(scope="module")
def generated_pairs():
    clean = speech_like(3.0, seed=0)
    # The generator itself is pinned: every value below depends on it.
    assert float(np.abs(clean).sum()) == pytest.approx(1191.8542371343956, rel=1e-9)
    return {condition: (clean, _degraded(condition, clean)) for condition in PINNED}


@pytest.mark.parametrize("condition", list(PINNED))
def test_pinned_metric_values(generated_pairs, condition):
    """compute_metrics and try_compute_metrics give the recorded values in both argument orders."""
    clean, degraded = generated_pairs[condition]
    forward = registry.compute_metrics(clean, degraded, PINNED_NAMES)
    swapped = registry.compute_metrics(degraded, clean, PINNED_NAMES)
    assert forward == pytest.approx(PINNED[condition]["forward"], abs=PINNED_TOLERANCE)
    assert swapped == pytest.approx(PINNED[condition]["swapped"], abs=PINNED_TOLERANCE)
    tried, errors = registry.try_compute_metrics(clean, degraded, PINNED_NAMES)
    assert not errors and tried == pytest.approx(forward, abs=1e-9)
    # The torch path (1-D tensors, float32) and the per-metric functions agree with the registry.
    single = {
        "pesq_wb": intrusive.pesq(clean, degraded, 16000, "wb"),
        "pesq_nb": intrusive.pesq(clean, degraded, 16000, "nb"),
        "stoi": intrusive.stoi(clean, degraded, 16000),
        "estoi": intrusive.stoi(clean, degraded, 16000, extended=True),
        "si_sdr": intrusive.si_sdr(clean, degraded),
        "si_snr": intrusive.si_snr(clean, degraded),
    }
    assert single == pytest.approx({name: forward[name] for name in single}, abs=PINNED_TOLERANCE)


def test_pinned_conditions_separate_the_easily_confused_metrics():
    """The recorded conditions would expose a swap: each confusable pair differs by a clear margin."""
    pink, white, lowpass = PINNED["pink_25db"], PINNED["white_5db"], PINNED["lowpass"]
    assert pink["forward"]["pesq_wb"] - pink["swapped"]["pesq_wb"] > 0.9  # reference <-> degraded
    assert white["forward"]["pesq_nb"] - white["swapped"]["pesq_nb"] > 0.4
    assert white["forward"]["stoi"] - white["forward"]["estoi"] > 0.25  # STOI <-> ESTOI
    assert white["forward"]["estoi"] - white["swapped"]["estoi"] > 0.3
    assert pink["forward"]["si_snr"] - pink["forward"]["si_sdr"] > 0.8  # the pink noise has a mean
    assert pink["forward"]["pesq_nb"] - pink["forward"]["pesq_wb"] > 0.3  # wide <-> narrow band
    assert pink["swapped"]["csig"] - pink["forward"]["csig"] > 1.0  # composite inputs swapped
    assert lowpass["swapped"]["covl"] - lowpass["forward"]["covl"] > 0.3
    assert lowpass["forward"]["cbak"] - lowpass["forward"]["csig"] < -0.4  # CSIG <-> CBAK


# --- registry -------------------------------------------------------------------------------

#: The shipped learned predictor's metrics (one model pass gives all six).
SQA = ("sqa_pesq_wb", "sqa_stoi", "sqa_estoi", "sqa_si_sdr", "sqa_dnsmos_ovrl", "sqa_distillmos")


def test_registry_names_and_intrusiveness():
    assert set(registry.METRICS) == {
        "pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "si_snr", "csig", "cbak", "covl",
        "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "distillmos", "vqscore", *SQA,
    }
    assert set(registry.NONINTRUSIVE_METRICS) == {
        "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "distillmos", "vqscore", *SQA,
    }
    assert all(registry.METRICS[name].intrusive for name in registry.DEFAULT_METRICS)
    assert registry.resolve_metrics(["all"]) == list(registry.METRICS)
    with pytest.raises(ValueError, match="unknown metric 'pesq'"):
        registry.resolve_metrics(["pesq"])


def test_compute_metrics_trims_to_the_shorter_signal(speech):
    longer = np.concatenate([speech, np.random.default_rng(0).standard_normal(8000)])
    trimmed = registry.compute_metrics(speech, longer, ["si_sdr", "stoi"])
    assert trimmed["si_sdr"] > 150 and trimmed["stoi"] == pytest.approx(1.0, abs=1e-6)
    # the same either way round
    assert registry.compute_metrics(longer, speech, ["si_sdr"])["si_sdr"] > 150


def test_errors_are_collected_per_metric(speech):
    values, errors = registry.try_compute_metrics(speech, np.zeros_like(speech), ["pesq_wb", "csig", "si_sdr"])
    assert math.isnan(values["pesq_wb"]) and math.isnan(values["csig"])
    assert "digital silence" in errors["pesq_wb"] and "digital silence" in errors["csig"]
    assert "si_sdr" in errors  # all-zero estimate is orthogonal: -inf, reported
    with pytest.raises(MetricError, match="pesq_wb"):
        registry.compute_metrics(speech, np.zeros_like(speech), ["pesq_wb"])


def test_nonintrusive_refuses_intrusive_metrics(speech):
    with pytest.raises(ValueError, match="need a reference"):
        registry.compute_nonintrusive_metrics(speech, ["stoi"])


# --- DNSMOS ---------------------------------------------------------------------------------

def test_dnsmos_unavailable_gives_the_install_hint(monkeypatch, speech):
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", None)  # import now fails
    monkeypatch.setitem(sys.modules, "speechmos", None)
    ok, why = dnsmos_module.dnsmos_available()
    assert not ok and "pip install speechbrain-sqe[eval]" in why
    with pytest.raises(dnsmos_module.DnsmosUnavailableError, match=r"speechbrain-sqe\[eval\]"):
        registry.compute_nonintrusive_metrics(speech)
    assert issubclass(dnsmos_module.DnsmosUnavailableError, ImportError)


def test_shipped_learned_predictor_without_distillmos_is_unavailable_with_the_hint(monkeypatch):
    """The shipped learned predictor is built on the Distill-MOS encoder: without the distillmos
    package its metrics are reported unavailable, naming the package, before any file is read."""
    if importlib.util.find_spec("distillmos") is not None:
        assert registry.split_available(["sqa_pesq_wb"]) == (["sqa_pesq_wb"], {})
    monkeypatch.setitem(sys.modules, "distillmos", None)  # import now fails
    names, reasons = registry.split_available(["si_sdr", *SQA])
    assert names == ["si_sdr"] and set(reasons) == set(SQA)
    assert "Distill-MOS encoder" in reasons["sqa_stoi"] and "speechbrain-sqe[eval]" in reasons["sqa_stoi"]


def test_dnsmos_scores_when_available(speech):
    ok, why = dnsmos_module.dnsmos_available()
    if not ok:
        pytest.skip(why)
    scores = registry.compute_nonintrusive_metrics(speech)
    assert set(scores) == set(registry.NONINTRUSIVE_METRICS)
    # Heavy white noise lowers the background and overall ratings clearly (and the outputs are
    # not swapped: the background rating falls the most).
    noisy = registry.compute_nonintrusive_metrics(add_white_noise(speech, 0))
    assert scores["dnsmos_bak"] - noisy["dnsmos_bak"] > 1.0, (scores, noisy)
    assert scores["dnsmos_ovrl"] - noisy["dnsmos_ovrl"] > 0.5, (scores, noisy)
    assert scores["dnsmos_bak"] - noisy["dnsmos_bak"] > scores["dnsmos_sig"] - noisy["dnsmos_sig"]


def test_dnsmos_single_thread_sessions_give_the_same_scores(speech, monkeypatch):
    ok, why = dnsmos_module.dnsmos_available()
    if not ok:
        pytest.skip(why)
    import speechmos.dnsmos as speechmos_dnsmos

    default = dnsmos_module.dnsmos(speech)
    monkeypatch.setattr(speechmos_dnsmos, "dnsmos", None)  # the next call builds the scorer
    monkeypatch.setattr(dnsmos_module, "_SESSION_THREADS", None)
    dnsmos_module.set_session_threads(1)
    limited = dnsmos_module.dnsmos(speech)
    assert speechmos_dnsmos.dnsmos.onnx_sess.get_session_options().intra_op_num_threads == 1
    assert limited == pytest.approx(default, abs=1e-5)


# --- correlation ----------------------------------------------------------------------------

def test_correlation_matches_scipy_and_counts_pairs():
    from scipy import stats

    rng = np.random.default_rng(4)
    x = rng.standard_normal(50)
    y = x**3 + 0.1 * rng.standard_normal(50)
    result = corr.correlation(list(x) + [float("nan"), ""], list(y) + [1.0, 2.0])
    assert result["n"] == 50
    assert result["pearson"] == pytest.approx(stats.pearsonr(x, y)[0])
    assert result["pearson_p"] == pytest.approx(stats.pearsonr(x, y)[1])
    assert result["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert result["kendall_p"] == pytest.approx(stats.kendalltau(x, y)[1])
    assert result["spearman"] > result["pearson"]  # monotone but not linear


def test_correlation_degenerate_inputs_are_nan():
    assert math.isnan(corr.correlation([1, 2], [1, 2])["pearson"])
    assert math.isnan(corr.correlation([1, 1, 1], [1, 2, 3])["spearman"])
    with pytest.raises(ValueError, match="differ in length"):
        corr.correlation([1, 2, 3], [1, 2])


def test_correlation_table_per_condition_and_overall():
    rows = []
    for condition, sign in (("clean", 1), ("noisy", -1)):
        for i in range(6):
            rows.append({"cond": condition, "pred": str(i), "mos": sign * i + 0.01 * i**2})
    table = corr.correlation_table(rows, "pred", "mos", group_by="cond")
    assert [entry["group"] for entry in table] == ["clean", "noisy", "overall"]
    assert table[0]["spearman"] == pytest.approx(1.0) and table[1]["spearman"] == pytest.approx(-1.0)
    assert table[2]["n"] == 12
    means = corr.condition_means(rows, ["pred", "mos"], "cond")
    assert [m["n"] for m in means] == [6, 6] and means[0]["pred"] == pytest.approx(2.5)
