"""Pinned behaviour of the models shipped in the package (VQScore, the VQ enhancer, TERA, BSSE, the
learned quality predictor, the SQA-guided enhancer), and their measured behaviour.

The numbers in ``tests/data/shipped_models.json`` were recorded from the code at commit e6dfa1d
(``python -c "import test_shipped_models as t; t.record()"`` from ``tests/``, once); the TERA entry
was re-recorded when the shipped TERA was replaced by the one trained on real + TTS speech
(2026-12-02, ``t.record(only=["tera"])``); the learned predictor and the SQA-guided enhancer were
recorded when they were shipped (2026-12-03, ``t.record(only=["sqa", "sqa_guided"])``), the learned
predictor again when it was replaced by the Distill-MOS-upstream one (2026-12-04, ``t.record(only=["sqa"])``) and
by the 2-layer one trained on varied noises (2026-12-05, session 24, the same call); the SQA-guided enhancer again
when it was replaced by the one adapted from the shipped BSSE with the shipped predictor (2026-12-07, session 36,
``t.record(only=["sqa_guided"])``). They must NOT change in a refactor: a refactor moves
code, the shipped weights and what they compute stay.

Pinned values use :func:`speech.speech_like` (deterministic, no TTS); the behaviour checks
(orderings, enhancement) use synthesized speech, closer to the models' training data, and skip
without flite/espeak-ng.
"""

import itertools
import json
import os
import types

import numpy as np
import pytest
import torch
from speech import add_noise, speech_like, synthesize

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.metrics import intrusive
from speechbrain_sqe.metrics.composite import segmental_snr

PINNED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "shipped_models.json")
TOLERANCE = 1e-4  # scores and statistics (float32 on CPU)
SAMPLE_TOLERANCE = 2e-6  # single output samples (about 0.005 in size)
SNRS = (20, 10, 0, -5)
KINDS = ("white", "pink")
ENHANCE_CONDITIONS = [("white", 5), ("white", 0), ("pink", 5), ("pink", 0)]
PROBE_SAMPLES = (4000, 12345, 20000, 33333, 47000)  # sample indices whose values are pinned


def interfaces():
    """The shipped-model interfaces: the ONE place to update when their modules move."""
    from speechbrain_sqe.inference.encoders import TERA
    from speechbrain_sqe.inference.enhancement import BSSEEnhancer, VQEnhancer
    from speechbrain_sqe.inference.quality import LearnedQualityPredictor, VQScore

    return types.SimpleNamespace(VQScore=VQScore, VQEnhancer=VQEnhancer, TERA=TERA, BSSEEnhancer=BSSEEnhancer,
                                 LearnedQualityPredictor=LearnedQualityPredictor)


def _tensor(wav):
    return torch.as_tensor(np.asarray(wav), dtype=torch.float32)


def _pinned_signals():
    """The deterministic clean signal and its noisy versions (the pinned values' inputs)."""
    clean = speech_like(3.0, seed=0)
    noisy = {f"{kind}_{snr}": add_noise(clean, snr, kind, seed=1) for kind in KINDS for snr in SNRS}
    return clean, noisy


# ------------------------------------------------------------------ measurements (pinned)

def measure_vqscore(scorer):
    clean, noisy = _pinned_signals()
    scores = {"clean": float(scorer.score_batch(_tensor(clean).unsqueeze(0))[0])}
    scores.update({name: float(scorer.score_batch(_tensor(wav).unsqueeze(0))[0]) for name, wav in noisy.items()})
    times, frames = scorer.score_frames(_tensor(noisy["white_10"]))
    return {
        "scores": scores,
        "frames": {
            "count": int(frames.shape[0]),
            "hop_seconds": float(times[1] - times[0]),
            "every_16th": [float(value) for value in frames[::16]],
            "mean": float(frames.mean()),
            "min": float(frames.min()),
            "max": float(frames.max()),
        },
    }


def _output_statistics(wav):
    wav = wav.double()
    return {
        "length": int(wav.shape[-1]),
        "samples": [float(wav[index]) for index in PROBE_SAMPLES],
        "rms": float(wav.pow(2).mean().sqrt()),
        "sum_abs": float(wav.abs().sum()),
    }


def measure_vq_enhancer(enhancer):
    _, noisy = _pinned_signals()
    out = {"mix": float(enhancer.hparams.mix)}
    for name in ("white_0", "pink_10"):
        wav = _tensor(noisy[name])
        out[name] = {
            "default_mix": _output_statistics(enhancer.enhance_batch(wav)),
            "mix_0": _output_statistics(enhancer.enhance_batch(wav, mix=0.0)),
        }
    return out


def measure_bsse(enhancer):
    _, noisy = _pinned_signals()
    return {name: _output_statistics(enhancer.enhance_batch(_tensor(noisy[name]))) for name in ("white_0", "pink_10")}


def measure_sqa(predictor):
    clean, noisy = _pinned_signals()
    signals = {"clean": clean, "white_10": noisy["white_10"], "pink_0": noisy["pink_0"]}
    return {
        "metric_names": list(predictor.metric_names),
        **{name: [float(value) for value in predictor.score_metrics_batch(_tensor(wav)[None])[0]]
           for name, wav in signals.items()},
    }


def measure_tera(tera):
    clean, _ = _pinned_signals()
    states = tera.hidden_states(_tensor(clean[:32000]).unsqueeze(0))
    return {
        "layer_count": int(tera.layer_count),
        "shapes": [list(state.shape) for state in states],
        "layers": [
            {
                "mean": float(state.double().mean()),
                "std": float(state.double().std()),
                "mean_abs": float(state.double().abs().mean()),
                "values": [float(state[0, frame, unit]) for frame, unit in ((0, 0), (50, 7), (100, 63), (200, 191))],
            }
            for state in states
        ],
    }


def record(only=None):
    """Writes the pinned values (never in a refactor: only when a shipped model is replaced).

    Arguments
    ---------
    only : sequence of str, optional
        Re-record these entries only (``"vqscore"``, ``"vq_enhancer"``, ``"tera"``, ``"bsse"``, ``"sqa"``,
        ``"sqa_guided"``), keeping the others as recorded; e.g. ``t.record(only=["tera"])`` after the
        shipped TERA was replaced.
    """
    api = interfaces()
    measures = {
        "vqscore": lambda: measure_vqscore(api.VQScore.from_hparams(source=api.VQScore.DEFAULT_SOURCE,
                                                                    precision="float32")),
        "vq_enhancer": lambda: measure_vq_enhancer(api.VQEnhancer.from_hparams(source=api.VQEnhancer.DEFAULT_SOURCE)),
        "tera": lambda: measure_tera(api.TERA.from_hparams(source=api.TERA.DEFAULT_SOURCE)),
        "bsse": lambda: measure_bsse(api.BSSEEnhancer.from_hparams(source=api.BSSEEnhancer.DEFAULT_SOURCE)),
        "sqa": lambda: measure_sqa(api.LearnedQualityPredictor.from_hparams(
            source=api.LearnedQualityPredictor.DEFAULT_SOURCE)),
        "sqa_guided": lambda: measure_bsse(api.BSSEEnhancer.from_hparams(source=SQA_GUIDED)),
    }
    values = {"_note": "Recorded from the code at commit e6dfa1d; must not change in a refactor."}
    if only is not None:
        with open(PINNED_PATH, encoding="utf-8") as stream:
            values = json.load(stream)
    for name, measure in measures.items():
        if only is None or name in only:
            values[name] = measure()
    os.makedirs(os.path.dirname(PINNED_PATH), exist_ok=True)
    with open(PINNED_PATH, "w", encoding="utf-8") as stream:
        json.dump(values, stream, indent=1)
        stream.write("\n")


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def pinned():
    with open(PINNED_PATH, encoding="utf-8") as stream:
        return json.load(stream)


@pytest.fixture(scope="module")
def scorer():
    """The shipped VQScore with the exact (float32) arithmetic the pinned values were recorded with."""
    api = interfaces()
    return api.VQScore.from_hparams(source=api.VQScore.DEFAULT_SOURCE, precision="float32")


@pytest.fixture(scope="module")
def enhancer():
    api = interfaces()
    return api.VQEnhancer.from_hparams(source=api.VQEnhancer.DEFAULT_SOURCE)


@pytest.fixture(scope="module")
def tera():
    api = interfaces()
    return api.TERA.from_hparams(source=api.TERA.DEFAULT_SOURCE)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """Synthesized speech (flite/espeak-ng), float64 numpy at 16 kHz."""
    path = synthesize(tmp_path_factory.mktemp("spoken") / "clean.wav")
    return load_audio(str(path), 16000, warn=False).numpy().astype(np.float64)


def test_pinned_signal_is_unchanged():
    """Every pinned value depends on the generated signal: it must be the recorded one."""
    clean, noisy = _pinned_signals()
    assert clean.shape == (48000,)
    assert float(np.abs(clean).sum()) == pytest.approx(1191.8542371343956, rel=1e-9)
    assert intrusive.si_sdr(clean, noisy["pink_0"]) == pytest.approx(-0.002016, abs=1e-4)


# ------------------------------------------------------------------ VQScore

def test_vqscore_pinned_scores_and_frames(scorer, pinned):
    """The shipped scorer's scores and frame scores on the generated signals are the recorded ones."""
    got = measure_vqscore(scorer)
    expected = pinned["vqscore"]
    assert got["scores"] == pytest.approx(expected["scores"], abs=TOLERANCE)
    assert got["frames"]["count"] == expected["frames"]["count"] == 1 + 48000 // 256
    assert got["frames"]["hop_seconds"] == pytest.approx(0.016, abs=1e-7)
    for key in ("every_16th", "mean", "min", "max"):
        assert got["frames"][key] == pytest.approx(expected["frames"][key], abs=TOLERANCE), key


def test_vqscore_bfloat16_convolutions_agree_with_float32(scorer, spoken):
    """``precision="bfloat16"`` (``sqe score --precision bfloat16``) moves scores by far less than the
    gaps between SNRs, keeps every ordering, and is refused under an unknown name."""
    api = interfaces()
    fast = api.VQScore.from_hparams(source=api.VQScore.DEFAULT_SOURCE, precision="bfloat16")
    assert (fast.precision, scorer.precision) == ("bfloat16", "float32")
    signals = [spoken] + [add_noise(spoken, snr, kind, seed=1) for kind in KINDS for snr in SNRS]
    exact = np.array([float(scorer.score_batch(_tensor(wav).unsqueeze(0))[0]) for wav in signals])
    rounded = np.array([float(fast.score_batch(_tensor(wav).unsqueeze(0))[0]) for wav in signals])
    assert np.abs(exact - rounded).max() < 1e-3, (exact, rounded)
    assert np.abs(exact - rounded).max() > 0  # really another arithmetic
    assert (np.argsort(exact) == np.argsort(rounded)).all(), (exact, rounded)
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, auto"):
        fast.set_precision("float16")


def test_vqscore_pinned_scores_fall_with_white_noise(pinned):
    """On the generated signal, the recorded white-noise scores fall with the SNR below clean."""
    scores = pinned["vqscore"]["scores"]
    values = [scores["clean"]] + [scores[f"white_{snr}"] for snr in SNRS]
    assert all(a > b + 0.004 for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("kind", KINDS)
def test_vqscore_orders_speech_by_snr(scorer, spoken, kind):
    """Synthesized speech: clean above every noisy version, and 20 > 10 > 0 > -5 dB."""
    clean = float(scorer.score_batch(_tensor(spoken).unsqueeze(0))[0])
    noisy = [float(scorer.score_batch(_tensor(add_noise(spoken, snr, kind, seed=1)).unsqueeze(0))[0])
             for snr in SNRS]
    assert clean > noisy[0] + 0.005, (clean, noisy)
    assert all(a > b + 0.01 for a, b in itertools.pairwise(noisy)), noisy


def test_vqscore_padded_batch_equals_each_file(scorer):
    """Three lengths padded into one batch score as each alone (scores and frame scores)."""
    clean, noisy = _pinned_signals()
    wavs = [_tensor(clean), _tensor(noisy["white_10"][:32000]), _tensor(noisy["pink_0"][:20800])]
    batch = torch.zeros(3, 48000)
    for row, wav in enumerate(wavs):
        batch[row, : wav.shape[0]] = wav
    lens = torch.tensor([wav.shape[0] / 48000 for wav in wavs])
    together = scorer.score_batch(batch, lens)
    alone = torch.cat([scorer.score_batch(wav.unsqueeze(0)) for wav in wavs])
    assert torch.allclose(together, alone, atol=1e-5), (together, alone)
    assert len(set(np.round(alone.numpy(), 3))) == 3  # three different inputs, three scores
    frames = scorer.score_frames_batch(batch, lens)
    for row, wav in enumerate(wavs):
        own = scorer.score_frames(wav)[1]
        assert torch.allclose(frames[row, : own.shape[0]], own, atol=1e-5)


# ------------------------------------------------------------------ VQ enhancer

def test_vq_enhancer_default_mix_and_pinned_outputs(enhancer, pinned):
    """The shipped enhancer's default mix (0.1) and output statistics are the recorded ones."""
    assert enhancer.hparams.mix == pytest.approx(0.1)
    got = measure_vq_enhancer(enhancer)
    expected = pinned["vq_enhancer"]
    assert got["mix"] == expected["mix"]
    for name in ("white_0", "pink_10"):
        for variant in ("default_mix", "mix_0"):
            g, e = got[name][variant], expected[name][variant]
            assert g["length"] == e["length"] == 48000
            assert g["samples"] == pytest.approx(e["samples"], abs=SAMPLE_TOLERANCE), (name, variant)
            assert g["rms"] == pytest.approx(e["rms"], rel=TOLERANCE), (name, variant)
            assert g["sum_abs"] == pytest.approx(e["sum_abs"], rel=TOLERANCE), (name, variant)


def test_vq_enhancer_default_mix_blends_the_input(enhancer):
    """No ``mix`` means the model's: 0.9 x enhanced + 0.1 x input."""
    _, noisy = _pinned_signals()
    wav = _tensor(noisy["white_0"])
    expected = 0.9 * enhancer.enhance_batch(wav, mix=0.0) + 0.1 * wav
    assert torch.allclose(enhancer.enhance_batch(wav), expected, atol=1e-6)


@pytest.mark.parametrize("kind,snr", ENHANCE_CONDITIONS)
def test_vq_enhancer_improves_noisy_speech(enhancer, spoken, kind, snr):
    """Synthesized speech in white/pink noise at 5 and 0 dB: SI-SDR and segmental SNR both rise."""
    noisy = add_noise(spoken, snr, kind, seed=1)
    enhanced = enhancer.enhance_batch(_tensor(noisy)).double().numpy()
    assert enhanced.shape == noisy.shape
    gain_si_sdr = intrusive.si_sdr(spoken, enhanced) - intrusive.si_sdr(spoken, noisy)
    gain_seg = segmental_snr(spoken, enhanced) - segmental_snr(spoken, noisy)
    assert gain_si_sdr > 2.0, (kind, snr, gain_si_sdr)
    assert gain_seg > 1.5, (kind, snr, gain_seg)


# ------------------------------------------------------------------ BSSE

@pytest.fixture(scope="module")
def bsse():
    api = interfaces()
    return api.BSSEEnhancer.from_hparams(source=api.BSSEEnhancer.DEFAULT_SOURCE)


def test_bsse_pinned_outputs(bsse, pinned):
    """The shipped BSSE model's output statistics are the recorded ones."""
    got, expected = measure_bsse(bsse), pinned["bsse"]
    for name in ("white_0", "pink_10"):
        g, e = got[name], expected[name]
        assert g["length"] == e["length"] == 48000
        assert g["samples"] == pytest.approx(e["samples"], abs=SAMPLE_TOLERANCE), name
        assert g["rms"] == pytest.approx(e["rms"], rel=TOLERANCE), name
        assert g["sum_abs"] == pytest.approx(e["sum_abs"], rel=TOLERANCE), name


def test_bsse_loads_as_an_enhancer_and_dereverberates():
    """The shipped folder loads through load_model as the enhancement task's BSSE interface."""
    from speechbrain_sqe.inference.hub import load_model

    api = interfaces()
    model = load_model(api.BSSEEnhancer.DEFAULT_SOURCE, task="enhancement")
    assert type(model).__name__ == "BSSEEnhancer" and model.DEREVERBERATES


@pytest.mark.parametrize("kind,snr", ENHANCE_CONDITIONS)
def test_bsse_improves_noisy_speech(bsse, spoken, kind, snr):
    """Synthesized speech (a voice it never heard: it was trained on real speech) in white/pink
    noise at 5 and 0 dB: SI-SDR and segmental SNR both rise by more than 1.5 dB (measured: SI-SDR
    +3.3 to +4.9 dB, segmental SNR +3.0 to +5.6 dB)."""
    noisy = add_noise(spoken, snr, kind, seed=1)
    enhanced = bsse.enhance_batch(_tensor(noisy)).double().numpy()
    assert enhanced.shape == noisy.shape
    gain_si_sdr = intrusive.si_sdr(spoken, enhanced) - intrusive.si_sdr(spoken, noisy)
    gain_seg = segmental_snr(spoken, enhanced) - segmental_snr(spoken, noisy)
    assert gain_si_sdr > 1.5, (kind, snr, gain_si_sdr)
    assert gain_seg > 1.5, (kind, snr, gain_seg)


# ------------------------------------------------------------------ TERA

def test_tera_layers_shapes_and_pinned_states(tera, pinned):
    """The shipped TERA: 4 hidden states (3 layers + input projection) of [1, 201, 192] for 2 s,
    with the recorded statistics."""
    got = measure_tera(tera)
    expected = pinned["tera"]
    assert got["layer_count"] == expected["layer_count"] == 4
    assert got["shapes"] == expected["shapes"] == [[1, 201, 192]] * 4
    for index, (g, e) in enumerate(zip(got["layers"], expected["layers"])):
        for key in ("mean", "std", "mean_abs", "values"):
            assert g[key] == pytest.approx(e[key], abs=TOLERANCE), (index, key)
    # The layers do transform their input (a refactor that returned one layer four times fails):
    # every two hidden states differ in their sampled values (LayerNorm keeps their stds near 1,
    # so the stds alone cannot tell them apart).
    for a, b in itertools.combinations(got["layers"], 2):
        assert max(abs(x - y) for x, y in zip(a["values"], b["values"])) > 0.05


# ------------------------------------------------------------------ learned quality predictor (sqa)

def test_sqa_predictor_loads_and_is_registered():
    """The shipped predictor loads as the quality task's multi-metric interface, and its six outputs
    are metrics of the registry computed by one pass."""
    from speechbrain_sqe.inference.hub import load_model
    from speechbrain_sqe.metrics import registry

    api = interfaces()
    model = load_model(api.LearnedQualityPredictor.DEFAULT_SOURCE, task="quality")
    assert type(model).__name__ == "LearnedQualityPredictor"
    assert model.metric_names == ("pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "distillmos")
    assert type(model.mods.ssl).__name__ == "DistillMOSEncoder" and len(model.mods.predictor.encoder.layers) == 2
    wav = speech_like(seconds=2.0, seed=3)
    values = registry.compute_metrics(None, wav, ["sqa_pesq_wb", "sqa_stoi", "sqa_si_sdr"])
    scores = model.score_metrics_batch(_tensor(wav)[None])[0]
    assert values["sqa_pesq_wb"] == pytest.approx(float(scores[0]), abs=1e-4)
    assert values["sqa_si_sdr"] == pytest.approx(float(scores[3]), abs=1e-3)


def test_sqa_predictor_pinned_scores(pinned):
    """The shipped predictor's six scores of the pinned signals are the recorded ones."""
    api = interfaces()
    got = measure_sqa(api.LearnedQualityPredictor.from_hparams(source=api.LearnedQualityPredictor.DEFAULT_SOURCE))
    expected = pinned["sqa"]
    assert got["metric_names"] == expected["metric_names"]
    for name in ("clean", "white_10", "pink_0"):
        assert got[name] == pytest.approx(expected[name], rel=TOLERANCE, abs=TOLERANCE), name


def test_sqa_predictor_orders_real_speech_by_noise(shared_real):
    """Real clean recordings (CMU ARCTIC, never in its training data), then with white noise at 10
    and 0 dB: every predicted metric falls (measured on 4 files: PESQ 4.34-4.46 -> 1.30-1.62 ->
    1.17-1.25, the session-24 model). Trained on real speech only, it rates clean synthesized speech low (a flite sentence:
    PESQ 1.84), so this check uses the real recordings."""
    import glob

    api = interfaces()
    model = api.LearnedQualityPredictor.from_hparams(source=api.LearnedQualityPredictor.DEFAULT_SOURCE)
    files = sorted(glob.glob(os.path.join(shared_real, "clean", "cmu_arctic*.wav")))[:3]
    if len(files) < 3:
        pytest.skip("fewer than 3 CMU ARCTIC files in ../shared/data/real/clean")
    for path in files:
        clean = load_audio(path, 16000, warn=False).numpy().astype(np.float64)
        scores = [model.score_metrics_batch(_tensor(x)[None])[0]
                  for x in (clean, add_noise(clean, 10, "white", seed=1), add_noise(clean, 0, "white", seed=1))]
        assert bool((scores[0] > scores[1]).all()) and bool((scores[1] > scores[2]).all()), (path, scores)


# ------------------------------------------------------------------ SQA-guided enhancer

SQA_GUIDED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "speechbrain_sqe", "pretrained", "sqa_guided")


def test_sqa_guided_pinned_outputs(pinned):
    """The shipped guided enhancer's output statistics are the recorded ones."""
    api = interfaces()
    got, expected = measure_bsse(api.BSSEEnhancer.from_hparams(source=SQA_GUIDED)), pinned["sqa_guided"]
    for name in ("white_0", "pink_10"):
        g, e = got[name], expected[name]
        assert g["length"] == e["length"] == 48000
        assert g["samples"] == pytest.approx(e["samples"], abs=SAMPLE_TOLERANCE), name
        assert g["rms"] == pytest.approx(e["rms"], rel=TOLERANCE), name
        assert g["sum_abs"] == pytest.approx(e["sum_abs"], rel=TOLERANCE), name


def test_sqa_guided_enhancer_loads_and_improves_pink_noise(spoken):
    """The shipped guided enhancer is a BSSE folder (load_model, sqe enhance --model). Measured on
    synthesized speech (session 36's model): in pink noise at 5 and 0 dB SI-SDR rises by 2.6-4.1 dB
    and segmental SNR by 2.9-3.5 dB (the session-12 model: 3.1-4.0 and 2.0-2.3 dB); white noise,
    where the session-12 model changed little, is not asserted."""
    from speechbrain_sqe.inference.hub import load_model

    model = load_model(SQA_GUIDED, task="enhancement")
    assert type(model).__name__ == "BSSEEnhancer"
    for snr in (5, 0):
        noisy = add_noise(spoken, snr, "pink", seed=1)
        enhanced = model.enhance_batch(_tensor(noisy)[None])[0].double().numpy()
        assert enhanced.shape == noisy.shape
        assert intrusive.si_sdr(spoken, enhanced) - intrusive.si_sdr(spoken, noisy) > 1.5, snr
        assert segmental_snr(spoken, enhanced) - segmental_snr(spoken, noisy) > 1.0, snr
