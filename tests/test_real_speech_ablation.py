"""The VQScore real-speech ablation scripts: combined and filtered manifests, speech statistics,
the cached reference metrics of ``measure_models.py`` and the ablation table."""

import csv
import importlib.util
import os

import numpy as np
import pytest
import soundfile as sf

RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "RealSpeech")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(RECIPE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


def test_combined_manifest_adds_extra_speech_to_train_only(tmp_path):
    combine = _load("combine_speech_manifests")
    main = _write(tmp_path / "m.csv", "path,speaker,split,corpus,duration_s\na.wav,alice,train,c,1\n"
                                      "b.wav,bob,valid,c,2\nc.wav,carol,test,c,3\n")
    extra = _write(tmp_path / "e.csv", "ID,duration,wav,voice\nt0,2.5,/tts/t0.wav,flite_rms\nt1,1.5,/tts/t1.wav,alice\n")
    out = str(tmp_path / "out" / "combined.csv")
    combine.main(["--manifest", main, "--extra-train", extra, "--output", out])
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["split"] for r in rows] == ["train", "valid", "test", "train", "train"]
    assert rows[0]["path"] == str(tmp_path / "a.wav")  # absolute
    assert {r["speaker"] for r in rows[3:]} == {"tts_flite_rms", "tts_alice"}  # never a real speaker's name


def test_filter_keeps_valid_and_test_and_drops_low_floor_training_files(tmp_path):
    filt = _load("filter_speech_manifest")
    main = _write(tmp_path / "m.csv", "path,speaker,split\na.wav,alice,train\nb.wav,bob,train\nc.wav,carol,test\n")
    stats = _write(tmp_path / "s.csv", "path,floor_range_db\n" + "".join(
        f"{tmp_path / n},{v}\n" for n, v in (("a.wav", 20), ("b.wav", 45), ("c.wav", 10))))
    out = str(tmp_path / "f.csv")
    kept = filt.main(["--manifest", main, "--stats", stats, "--min", "30", "--output", out])
    assert [os.path.basename(r["path"]) for r in kept] == ["b.wav", "c.wav"]


def test_speech_stats_sees_a_band_limit_and_a_noise_floor():
    stats = _load("speech_stats").file_stats
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    gate = (t % 1.0) < 0.6
    speechlike = rng.standard_normal(48000) * gate
    spectrum = np.fft.rfft(speechlike)
    spectrum[np.fft.rfftfreq(48000, 1 / 16000) > 3000] = 0
    narrow = np.fft.irfft(spectrum, 48000)
    quiet, noisy = stats(speechlike + 1e-4 * rng.standard_normal(48000)), stats(speechlike + 0.1 * rng.standard_normal(48000))
    assert stats(narrow)["rolloff99_hz"] <= 3100 < quiet["rolloff99_hz"]
    assert quiet["floor_range_db"] > noisy["floor_range_db"] + 30


def test_reference_metrics_are_computed_once_and_survive_another_path(tmp_path, monkeypatch):
    measure = _load("measure_models")
    monkeypatch.setattr(measure, "QUALITY_METRICS", ["stoi"])
    rng = np.random.default_rng(1)
    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for k in range(3):
        clean = 0.1 * rng.standard_normal(16000)
        sf.write(folder / f"c{k}.wav", clean, 16000)
        sf.write(folder / f"n{k}.wav", clean + 0.05 * (k + 1) * rng.standard_normal(16000), 16000)
        rows.append({"ID": f"p{k}", "clean_wav": str(folder / f"c{k}.wav"), "noisy_wav": str(folder / f"n{k}.wav")})
    cache = str(tmp_path / "cache" / "speakers_quality_reference.csv")
    first = measure.quality_reference(rows, jobs=1, cache=cache)
    assert first["p0"]["stoi"] > first["p2"]["stoi"]
    # The same files through another path (a worktree's data link): no metric is computed again.
    os.symlink(folder, tmp_path / "link")
    linked = [{**r, "clean_wav": r["clean_wav"].replace(str(folder), str(tmp_path / "link")),
               "noisy_wav": r["noisy_wav"].replace(str(folder), str(tmp_path / "link"))} for r in rows]
    from speechbrain_sqe.analysis import quality_report

    def no_metrics(*args, **kwargs):
        raise AssertionError("recomputed a cached pair")

    monkeypatch.setattr(quality_report, "evaluate_pairs", no_metrics)
    assert measure.quality_reference(linked, jobs=1, cache=cache) == first


def test_ablation_table_rows(tmp_path):
    table = _load("ablation_table")
    report = tmp_path / "m"
    report.mkdir()
    rows = [{"vqscore_clean": 1.0, "vqscore_noisy": 0.1 * k, "pesq_wb": 1 + k, "stoi": 0.5 + 0.01 * k,
             "dnsmos_ovrl": 2 + 0.1 * k, "distillmos": 3 - 0.1 * k, "reverb": "True" if k % 2 else "False"}
            for k in range(6)]
    rows = [{**r, "ID": f"p{k}"} for k, r in enumerate(rows)]
    with open(report / "speakers_quality.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    worse = tmp_path / "w"
    worse.mkdir()
    with open(worse / "speakers_quality.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**r, "vqscore_noisy": -r["vqscore_noisy"]} for r in rows])  # ranks reversed
    results = table.main(["--output", str(tmp_path / "out"), "--reference", "m", f"m={report}", f"w={worse}"])
    assert "| w | speakers | -2.000 |" in (tmp_path / "out" / "paired.md").read_text()
    assert list(results["m"]) == ["speakers"]
    assert results["m"]["speakers"]["vqscore_spearman_pesq_wb"] == pytest.approx(1.0)
    assert "| m | speakers | 6 | 100.0% | 1.000 |" in (tmp_path / "out" / "ablation.md").read_text()
    assert os.path.getsize(tmp_path / "out" / "ablation.png") > 0
