"""The embedded corpus generator: manifests, levels, SNR, T60, noise families, determinism, idempotency."""

import collections
import csv
import hashlib
import os
import shutil
import time

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.dataio import embedded
from speechbrain_sqe.dataio.embedded import (
    CorpusConflictError,
    default_config,
    plan_embedded_corpus,
    prepare_embedded_corpus,
)
from speechbrain_sqe.dataio.levels import active_level_db, add_noise_floor
from speechbrain_sqe.dataio.mixing import measure_snr
from speechbrain_sqe.dataio.noise import NOISE_FAMILIES, make_noise
from speechbrain_sqe.dataio.rooms import estimate_t60, synthetic_rir
from speechbrain_sqe.dataio.tts import HELDOUT_VOICES, TRAIN_VOICES, MissingToolError

pytestmark = pytest.mark.skipif(
    shutil.which("flite") is None or shutil.which("espeak-ng") is None,
    reason="flite/espeak-ng not installed (apt-get install flite espeak-ng)",
)

TINY = {
    "seed": 7, "train_minutes": 0.3, "valid_pairs": 6, "test_pairs": 6, "unpaired_minutes": 0.1,
    "noise_train_per_family": 1, "noise_eval_per_family": 1, "noise_seconds": 2.0, "rirs_train": 4, "rirs_eval": 2,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny corpus generated once in this process; yields (folder, manifest paths, seconds)."""
    folder = str(tmp_path_factory.mktemp("embedded"))
    start = time.time()
    paths = prepare_embedded_corpus(folder, num_workers=1, **TINY)
    return folder, paths, time.time() - start


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _read(path):
    wav, rate = soundfile.read(path, dtype="float64")
    assert rate == 16000 and wav.ndim == 1
    return wav


def _digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".wav"):
                path = os.path.join(root, name)
                with open(path, "rb") as handle:
                    out[os.path.relpath(path, folder)] = hashlib.md5(handle.read()).hexdigest()
    return out


def test_manifests_columns_and_speechbrain_loading(corpus):
    import speechbrain as sb

    folder, paths, _ = corpus
    expected = {
        "train_clean": ["ID", "duration", "wav", "voice", "text"],
        "valid": ["ID", "duration", "clean_wav", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text"],
        "test": ["ID", "duration", "clean_wav", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text"],
        "unpaired_noisy": ["ID", "duration", "noisy_wav", "snr", "noise_type", "t60", "reverb", "voice", "text"],
    }
    for name in ["noise_train", "noise_valid", "noise_test", "rirs_train", "rirs_valid", "rirs_test"]:
        expected[name] = ["ID", "duration", "wav", "wav_format", "wav_opts"]
    assert set(expected) <= set(paths)
    for name, columns in expected.items():
        with open(paths[name]) as handle:
            assert handle.readline().strip().split(",") == columns, name
        data = sb.dataio.dataset.DynamicItemDataset.from_csv(paths[name])
        assert len(data) > 0, name
        for row in _rows(paths[name]):
            for key in ("wav", "clean_wav", "noisy_wav"):
                if key in row:
                    assert os.path.isabs(row[key]) and os.path.isfile(row[key])
    assert len(_rows(paths["valid"])) == 6 and len(_rows(paths["test"])) == 6
    train_seconds = sum(float(r["duration"]) for r in _rows(paths["train_clean"]))
    assert 0.6 * 18 < train_seconds < 1.6 * 18  # about train_minutes = 0.3
    # the folder layout: pairs share the file name
    for row in _rows(paths["test"]):
        assert os.path.basename(row["clean_wav"]) == os.path.basename(row["noisy_wav"])
        assert row["clean_wav"].startswith(os.path.join(folder, "test", "clean"))
        assert row["noisy_wav"].startswith(os.path.join(folder, "test", "noisy"))


def test_durations_levels_and_noise_floor(corpus):
    _, paths, _ = corpus
    for row in _rows(paths["train_clean"]):
        wav = _read(row["wav"])
        assert abs(len(wav) / 16000 - float(row["duration"])) < 1e-3
        assert abs(active_level_db(wav) + 26.0) < 0.5
        # edges trimmed to natural pauses, and the pauses are not digital zeros
        assert float(np.mean(wav == 0)) < 0.1
        edge_db = 10 * np.log10(np.mean(wav[:1280] ** 2))  # first 80 ms: the kept edge pause
        assert -26 - 75 < edge_db < -26 - 50, edge_db
    for row in _rows(paths["valid"]) + _rows(paths["test"]):
        clean, noisy = _read(row["clean_wav"]), _read(row["noisy_wav"])
        assert len(clean) == len(noisy)
        assert abs(len(clean) / 16000 - float(row["duration"])) < 1e-3
        assert np.max(np.abs(noisy)) <= 0.991


def test_voices_held_out(corpus):
    _, paths, _ = corpus
    train_ids, heldout_ids = {v.id for v in TRAIN_VOICES}, {v.id for v in HELDOUT_VOICES}
    assert not train_ids & heldout_ids
    assert {r["voice"] for r in _rows(paths["train_clean"])} <= train_ids
    assert {r["voice"] for r in _rows(paths["unpaired_noisy"])} <= train_ids
    assert {r["voice"] for r in _rows(paths["valid"]) + _rows(paths["test"])} <= heldout_ids
    texts = [r["text"] for name in ("train_clean", "valid", "test", "unpaired_noisy") for r in _rows(paths[name])]
    assert len(texts) == len(set(texts))  # no sentence repeats across splits


def test_snr_of_dry_mixtures(corpus):
    _, paths, _ = corpus
    dry = [r for r in _rows(paths["valid"]) + _rows(paths["test"]) if r["reverb"] == "False"]
    assert len(dry) >= 4
    for row in dry:
        assert float(row["t60"]) == 0.0
        clean, noisy = _read(row["clean_wav"]), _read(row["noisy_wav"])
        assert abs(measure_snr(clean, noisy - clean) - float(row["snr"])) < 0.5, row["ID"]
    wet = [r for r in _rows(paths["test"]) + _rows(paths["valid"]) if r["reverb"] == "True"]
    assert wet and all(0.2 <= float(r["t60"]) <= 1.2 for r in wet)


def test_t60_of_synthetic_rirs(corpus):
    folder, paths, _ = corpus
    for t60 in (0.2, 0.4, 0.7, 1.0, 1.2):
        for seed in range(2):
            estimate = estimate_t60(synthetic_rir(t60, np.random.default_rng(seed)))
            assert abs(estimate / t60 - 1) < 0.25, (t60, estimate)
    planned = {job["outputs"][0]: job["t60"] for job in plan_embedded_corpus(folder, default_config(**TINY))
               if job["kind"] == "rir"}
    rows = _rows(paths["rirs_train"]) + _rows(paths["rirs_test"])
    assert len(rows) == 6
    for row in rows:  # the written (16-bit) files
        assert abs(estimate_t60(_read(row["wav"])) / planned[row["wav"]] - 1) < 0.25


def _slope(noise):
    """Log-log slope of the power spectrum between 100 Hz and 4 kHz (0 white, -1 pink, -2 brown)."""
    from scipy.signal import welch

    freqs, psd = welch(noise, fs=16000, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 4000)
    return np.polyfit(np.log10(freqs[band]), np.log10(psd[band]), 1)[0]


def test_noise_families_differ(corpus):
    rng = np.random.default_rng(0)
    slopes = {f: _slope(make_noise(f, 64000, rng)) for f in ("white", "pink", "brown")}
    assert abs(slopes["white"]) < 0.2 and abs(slopes["pink"] + 1) < 0.2 and abs(slopes["brown"] + 2) < 0.3
    _, paths, _ = corpus
    files = {r["ID"]: r["wav"] for r in _rows(paths["noise_train"])}
    assert {name.split("_")[2] for name in files} == set(NOISE_FAMILIES)
    written = {f: _slope(_read(files[f"noise_train_{f}_000"])) for f in ("white", "pink", "brown")}
    assert written["white"] > written["pink"] + 0.6 > written["brown"] + 1.2
    hum = _read(files["noise_train_hum_000"])
    spectrum = np.abs(np.fft.rfft(hum))
    peak_hz = np.argmax(spectrum) * 16000 / len(hum)
    assert min(peak_hz % 50, 50 - peak_hz % 50) < 2 or min(peak_hz % 60, 60 - peak_hz % 60) < 2
    clicks = _read(files["noise_train_clicks_000"])
    assert np.max(np.abs(clicks)) / np.sqrt(np.mean(clicks**2)) > 6  # impulsive


def test_noise_disjoint_between_splits(corpus):
    _, paths, _ = corpus
    by_split = {s: {r["ID"].split("_", 2)[2]: _read(r["wav"]) for r in _rows(paths[f"noise_{s}"])}
                for s in ("train", "valid", "test")}
    for family in ("white", "pink", "modulated", "babble"):
        a, b, c = (by_split[s][f"{family}_000"] for s in ("train", "valid", "test"))
        for x, y in ((a, b), (a, c), (b, c)):
            corr = np.abs(np.fft.irfft(np.fft.rfft(x, 2 * len(x)) * np.conj(np.fft.rfft(y, 2 * len(x)))))
            assert corr.max() / (np.linalg.norm(x) * np.linalg.norm(y)) < 0.5, family


def test_plan_is_balanced_and_babble_excludes_target():
    jobs = plan_embedded_corpus("/tmp/unused", default_config())
    test = [job for job in jobs if job["split"] == "test"]
    combos = collections.Counter((j["snr"], j["reverb"], j["noise_type"]) for j in test)
    assert len(test) == 96 and len(combos) == 96  # SNR x reverb x family, each once
    valid = [job for job in jobs if job["split"] == "valid"]
    assert set(collections.Counter(j["snr"] for j in valid).values()) == {8}
    for job in jobs:
        if job.get("noise_type") == "babble" and job["kind"] in ("pair", "noisy"):
            assert 3 <= len(job["talkers"]) <= 6
            assert all(t["voice"] != job["voice"] for t in job["talkers"])
            assert job["text"] not in {text for t in job["talkers"] for text in t["texts"]}
    minutes = sum(1 for j in jobs if j["split"] == "train_clean") * 3.3 / 60
    assert 20 < minutes < 45
    other = plan_embedded_corpus("/tmp/unused", default_config(seed=99))
    assert [j.get("text") for j in other[:20]] != [j.get("text") for j in jobs[:20]]  # the seed matters


def test_deterministic_and_worker_independent(corpus, tmp_path):
    folder, _, _ = corpus
    prepare_embedded_corpus(str(tmp_path), num_workers=2, **TINY)
    first, second = _digest(folder), _digest(str(tmp_path))
    assert first == second and len(first) > 30
    with open(os.path.join(folder, "test.csv")) as a, open(tmp_path / "test.csv") as b:
        assert a.read().replace(folder, "X") == b.read().replace(str(tmp_path), "X")


def test_idempotent_and_repairs(corpus):
    folder, paths, first_seconds = corpus
    before = _digest(folder)
    start = time.time()
    prepare_embedded_corpus(folder, num_workers=1, **TINY)
    assert time.time() - start < max(1.0, first_seconds / 4)
    victim = _rows(paths["test"])[2]["noisy_wav"]
    broken = _rows(paths["train_clean"])[1]["wav"]
    os.remove(victim)
    with open(broken, "wb") as handle:
        handle.write(b"not audio")
    prepare_embedded_corpus(folder, num_workers=1, **TINY)
    assert _digest(folder) == before


def test_noise_floor_option():
    rng = np.random.default_rng(0)
    speech = np.concatenate([np.zeros(1600), 0.05 * np.sin(np.arange(16000) / 3.0), np.zeros(1600)])
    assert add_noise_floor(speech, rng, None)[:1600].max() == 0  # disabled: digital zeros remain
    with_floor = add_noise_floor(speech, rng, (-70.0, -60.0))
    floor_db = 10 * np.log10(np.mean(with_floor[:1600] ** 2)) - active_level_db(speech)
    assert -71 < floor_db < -59


def test_missing_tools_error(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingToolError, match="apt-get install flite espeak-ng"):
        prepare_embedded_corpus(str(tmp_path / "corpus"), num_workers=1, **TINY)


def test_speechbrain_addnoise_addreverb(corpus):
    from speechbrain.augment.time_domain import AddNoise, AddReverb

    _, paths, _ = corpus
    rows = _rows(paths["train_clean"])[:2]
    length = min(int(float(r["duration"]) * 16000) for r in rows)
    clean = torch.tensor(np.stack([_read(r["wav"])[:length] for r in rows]), dtype=torch.float32)
    add_noise = AddNoise(csv_file=paths["noise_train"], snr_low=0, snr_high=0, pad_noise=True, sorting="original")
    noisy = add_noise(clean, torch.ones(2))
    assert noisy.shape == clean.shape and not torch.allclose(noisy, clean)
    reverb = AddReverb(csv_file=paths["rirs_train"], sorting="original")
    wet = reverb(clean)
    assert wet.shape == clean.shape and torch.isfinite(wet).all() and not torch.allclose(wet, clean)


def test_cli_skip_prep(tmp_path):
    paths = embedded.main(["--data_folder", str(tmp_path), "--skip_prep"])
    assert paths["test"] == os.path.join(str(tmp_path), "test.csv")


def test_other_settings_refused_not_overwritten(corpus):
    """A folder of one configuration is never regenerated in place by another (recipes differ in
    train_minutes): the call fails in one line naming the change, and the audio is untouched."""
    folder, _, _ = corpus
    before = _digest(folder)
    other = dict(TINY, train_minutes=TINY["train_minutes"] * 2)
    with pytest.raises(CorpusConflictError, match=r"other settings \(train_minutes .* -> "):
        prepare_embedded_corpus(folder, num_workers=1, **other)
    assert _digest(folder) == before


def test_recipes_of_other_sizes_use_other_folders():
    """The shipped recipes name their corpus folder after the configuration."""
    from hyperpyyaml import load_hyperpyyaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = {}
    for name in ("vqscore", "vq_enhance", "tera"):
        with open(os.path.join(root, "hparams", f"{name}.yaml"), encoding="utf-8") as stream:
            hparams = load_hyperpyyaml(stream)
        folders[name] = hparams["data_folder"]
    assert folders["vqscore"] == "data/embedded/train60min_seed1234"
    assert folders["vq_enhance"] == folders["tera"] == "data/embedded/train30min_seed1234"


def test_overwrite_regenerates_with_the_new_settings(tmp_path):
    small = {"train_minutes": 0.05, "valid_pairs": 1, "test_pairs": 1, "unpaired_minutes": 0.0,
             "noise_train_per_family": 0, "noise_eval_per_family": 0, "rirs_train": 1, "rirs_eval": 0}
    prepare_embedded_corpus(str(tmp_path), num_workers=1, **small)
    paths = prepare_embedded_corpus(str(tmp_path), num_workers=1, overwrite=True, **dict(small, test_pairs=2))
    assert len(_rows(paths["test"])) == 2
    assert embedded.read_stamp(os.path.join(tmp_path, embedded.STAMP_NAME))["config"]["test_pairs"] == 2
