"""Distill-MOS as a registered learned metric: real model (weights in the distillmos wheel), generated speech."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.metrics import distillmos as distillmos_module
from speechbrain_sqe.metrics import registry
from tests.speech import add_noise

pytest.importorskip("distillmos", reason="the eval extra (distillmos) is not installed")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    # flite's slt voice: Distill-MOS rates espeak-ng's formant voice as poor (about 1.9) even when
    # clean, below the same voice with 10 dB of white noise, so it cannot order clean and noisy.
    if not shutil.which("flite"):
        pytest.skip("flite is not installed")
    path = tmp_path_factory.mktemp("distillmos") / "tts.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", ("The quality of this sentence is judged without any "
                    "reference at all."), "-o", str(path)], check=True, capture_output=True)
    clean = load_audio(str(path), 16000).numpy().astype(np.float64)
    return clean / np.max(np.abs(clean)) * 0.5


def test_clean_speech_scores_above_its_noisy_versions(speech):
    clean = distillmos_module.distillmos(speech)
    noisy = {snr: distillmos_module.distillmos(add_noise(speech, snr, "white", seed=1)) for snr in (0, 10, 20)}
    assert 1.0 <= noisy[0] < noisy[10] < noisy[20] < clean <= 5.0, (clean, noisy)


def test_real_clean_recording_scores_high(shared_real):
    wav = load_audio(f"{shared_real}/clean/spk1_snt1.wav", 16000).numpy()
    assert distillmos_module.distillmos(wav) > 4.0


def test_level_and_rate_do_not_change_the_score_much(speech):
    import torch
    import torchaudio

    base = distillmos_module.distillmos(speech)
    assert distillmos_module.distillmos(speech * 0.1) == pytest.approx(base, abs=1e-3)  # peak-normalized input
    at_48k = torchaudio.functional.resample(torch.from_numpy(speech).float(), 16000, 48000).numpy()
    assert distillmos_module.distillmos(at_48k, 48000) == pytest.approx(base, abs=0.1)


def test_bad_signals_raise_metric_errors():
    with pytest.raises(distillmos_module.MetricError, match="distillmos: the signal is empty or digital silence"):
        distillmos_module.distillmos(np.zeros(16000))
    with pytest.raises(distillmos_module.MetricError, match="NaN or Inf"):
        distillmos_module.distillmos(np.full(16000, np.nan))


def test_registered_as_a_learned_nonintrusive_metric(speech):
    spec = registry.METRICS["distillmos"]
    assert (spec.needs_reference, spec.range, spec.direction, spec.learned) == (False, (1.0, 5.0), "higher", True)
    assert "distillmos" in registry.resolve_metrics("learned")
    assert "distillmos" in registry.resolve_metrics("nonintrusive")
    scores = registry.compute_nonintrusive_metrics(speech, ["distillmos"])
    assert scores["distillmos"] == pytest.approx(distillmos_module.distillmos(speech), abs=1e-6)


def test_missing_package_is_reported_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "distillmos", None)  # makes `import distillmos` fail
    with pytest.raises(distillmos_module.DistillMosUnavailableError, match=r"speechbrain-sqe\[eval\]"):
        distillmos_module.require_distillmos()


def test_sqe_evaluate_distillmos(speech, tmp_path):
    save_audio(str(tmp_path / "clean.wav"), speech, 16000)
    save_audio(str(tmp_path / "noisy.wav"), add_noise(speech, 0, "pink", seed=2), 16000)
    csv = tmp_path / "scores.csv"
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_sqe.cli", "evaluate", "--deg", str(tmp_path / "clean.wav"),
         str(tmp_path / "noisy.wav"), "--metrics", "distillmos", "--csv", str(csv), "--jobs", "1"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    import csv as csv_module

    with open(csv) as handle:
        rows = list(csv_module.DictReader(handle))
    values = {next(v for v in row.values() if v.endswith(".wav")).split("/")[-1]: float(row["distillmos"])
              for row in rows}
    assert values["clean.wav"] > values["noisy.wav"], values
