"""Preparation from folders (user's own data, ../shared/data/real) and from real corpora layouts."""

import csv
import os
import time

import numpy as np
import pytest
import soundfile

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.dataio.folders import prepare_from_folders
from speechbrain_sqe.dataio.mixing import measure_snr
from speechbrain_sqe.dataio.real_corpora import (
    dns_test_pairs,
    prepare_dns,
    prepare_librispeech,
    prepare_voicebank,
)
from speechbrain_sqe.dataio.rooms import synthetic_rir


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _read(path, rate=16000):
    wav, file_rate = soundfile.read(path, dtype="float64")
    assert file_rate == rate and wav.ndim == 1, path
    return wav


def _speechlike(seconds, rate, seed, channels=1):
    """Harmonic bursts separated by pauses: enough of a 'speech' for preparation tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 220)
    voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    wav = 0.1 * voiced * (np.sin(2 * np.pi * 2.5 * t) > -0.3)
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


def _write(path, wav, rate):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, wav, rate)


@pytest.fixture
def user_folders(tmp_path):
    """clean/ (mixed rates, stereo, nested speaker folder, a transcript), noise/ (2 files), rirs/ (1)."""
    clean, noise, rirs = tmp_path / "clean", tmp_path / "noise", tmp_path / "rirs"
    for k in range(8):
        rate, channels = [(16000, 1), (22050, 2), (44100, 1), (8000, 1)][k % 4]
        _write(str(clean / f"spk{k % 2}" / f"utt{k}.wav"), _speechlike(1.0 + 0.1 * k, rate, k, channels), rate)
    (clean / "spk0" / "utt0.txt").write_text("hello world\n")
    rng = np.random.default_rng(1)
    _write(str(noise / "fan.wav"), 0.05 * rng.standard_normal(8000 * 6), 8000)
    _write(str(noise / "street.flac"), 0.05 * rng.standard_normal(16000 * 5), 16000)
    _write(str(rirs / "room.wav"), synthetic_rir(0.5, rng, 44100), 44100)
    return str(clean), str(noise), str(rirs)


def test_prepare_from_folders(user_folders, tmp_path):
    clean, noise, rirs = user_folders
    out = str(tmp_path / "prepared")
    start = time.time()
    paths = prepare_from_folders(out, clean, noise, rirs, valid_pairs=4, test_pairs=6, unpaired_fraction=0.2, num_workers=1)
    first = time.time() - start
    train, valid, test = _rows(paths["train_clean"]), _rows(paths["valid"]), _rows(paths["test"])
    assert len(valid) == 4 and len(test) == 6 and len(_rows(paths["unpaired_noisy"])) >= 1
    assert len(train) + 1 + 2 + len(_rows(paths["unpaired_noisy"])) == 8  # 1 valid, 2 test files held out
    for row in train:  # 16 kHz mono: in place; others: resampled copies
        wav = _read(row["wav"])
        assert abs(len(wav) / 16000 - float(row["duration"])) < 1e-3
        assert row["wav"].startswith(clean) == row["ID"].endswith(("utt0", "utt4"))
        assert row["voice"] in ("spk0", "spk1")
    assert any(r["text"] == "hello world" for r in train + valid + test) or "spk0_utt0" not in {r["ID"] for r in train}
    for row in valid + test:
        c, n = _read(row["clean_wav"]), _read(row["noisy_wav"])
        assert os.path.basename(row["clean_wav"]) == os.path.basename(row["noisy_wav"]) and len(c) == len(n)
        assert row["noise_type"] in ("fan", "street")
        if row["reverb"] == "False":
            assert abs(measure_snr(c, n - c) - float(row["snr"])) < 0.5
        else:
            assert abs(float(row["t60"]) - 0.5) < 0.15  # the measured T60 of the aligned room.wav
    # two noise files: split in time (60/20/20 %), so no split shares noise samples
    durations = {s: sum(float(r["duration"]) for r in _rows(paths[f"noise_{s}"])) for s in ("train", "valid", "test")}
    assert abs(durations["train"] / (durations["valid"] + durations["train"] + durations["test"]) - 0.6) < 0.02
    assert len(_rows(paths["rirs_train"])) == 1 and _rows(paths["rirs_test"])[0]["duration"]
    rir = _read(_rows(paths["rirs_train"])[0]["wav"])
    assert np.argmax(np.abs(rir)) == 0  # aligned on the direct path
    start = time.time()
    again = prepare_from_folders(out, clean, noise, rirs, valid_pairs=4, test_pairs=6, unpaired_fraction=0.2, num_workers=1)
    assert again == paths and time.time() - start < max(0.5, first)
    os.remove(test[0]["noisy_wav"])
    prepare_from_folders(out, clean, noise, rirs, valid_pairs=4, test_pairs=6, unpaired_fraction=0.2, num_workers=1)
    assert os.path.isfile(test[0]["noisy_wav"])


def test_prepare_from_folders_synthetic_noise(user_folders, tmp_path):
    clean, _, _ = user_folders
    paths = prepare_from_folders(str(tmp_path / "p"), clean, valid_pairs=8, test_pairs=8, noise_per_family=1,
                                 noise_seconds=1.0, synthetic_rirs=2, num_workers=1)
    families = {r["noise_type"] for r in _rows(paths["test"])}
    assert len(families) == 8 and "babble" in families
    assert len(_rows(paths["noise_valid"])) == 8 and len(_rows(paths["rirs_test"])) == 2
    assert paths["unpaired_noisy"] is None


def test_prepare_from_shared_real(shared_real, tmp_path):
    paths = prepare_from_folders(
        str(tmp_path / "real"), os.path.join(shared_real, "clean"), os.path.join(shared_real, "noise"),
        os.path.join(shared_real, "rirs"), valid_pairs=4, test_pairs=8, num_workers=1,
    )
    noise_names = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(shared_real, "noise"))}
    rows = _rows(paths["test"]) + _rows(paths["valid"])
    assert len(rows) == 12 and {r["noise_type"] for r in rows} <= noise_names
    for row in rows:
        c, n = _read(row["clean_wav"]), _read(row["noisy_wav"])
        if row["reverb"] == "False":
            assert abs(measure_snr(c, n - c) - float(row["snr"])) < 0.5
    # 7 noise files -> split by file: no file in two splits
    names = [{r["ID"].split("_", 3)[3] for r in _rows(paths[f"noise_{s}"])} for s in ("train", "valid", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert sum(len(n) for n in names) == len(noise_names)
    for row in _rows(paths["train_clean"]):
        assert row["wav"].startswith(shared_real)  # 16 kHz mono: listed in place


def _voicebank_tree(root):
    """Miniature VoiceBank-DEMAND: 48 kHz pairs, logfiles and transcripts in the real layout."""
    train_utts = [f"{spk}_{k:03d}" for spk in ("p226", "p287", "p250") for k in (1, 2)]
    test_utts = [f"{spk}_{k:03d}" for spk in ("p232", "p257") for k in (1, 5)]
    logs = {"log_trainset_28spk.txt": train_utts, "log_testset.txt": test_utts}
    for kind, utts in (("trainset_28spk", train_utts), ("testset", test_utts)):
        for k, utt in enumerate(utts):
            clean = _speechlike(0.5, 48000, k)
            noise = 0.02 * np.random.default_rng(k).standard_normal(len(clean))
            _write(os.path.join(root, f"clean_{kind}_wav", utt + ".wav"), clean, 48000)
            _write(os.path.join(root, f"noisy_{kind}_wav", utt + ".wav"), clean + noise, 48000)
            txt = os.path.join(root, f"{kind}_txt", utt + ".txt")
            os.makedirs(os.path.dirname(txt), exist_ok=True)
            with open(txt, "w") as handle:
                handle.write(f"Sentence {utt}.\n")
    os.makedirs(os.path.join(root, "logfiles"))
    for name, utts in logs.items():
        with open(os.path.join(root, "logfiles", name), "w") as handle:
            handle.writelines(f"{utt} living 7.5\n" for utt in utts)


def test_prepare_voicebank(tmp_path):
    root = str(tmp_path / "VoiceBank")
    _voicebank_tree(root)
    paths = prepare_voicebank(root, str(tmp_path / "vb16k"), num_workers=1)
    train, valid, test = _rows(paths["train_clean"]), _rows(paths["valid"]), _rows(paths["test"])
    assert {r["ID"] for r in train} == {"p250_001", "p250_002"}
    assert {r["voice"] for r in valid} == {"p226", "p287"} and len(valid) == 4
    assert len(test) == 4 and {r["voice"] for r in test} == {"p232", "p257"}
    assert {r["ID"] for r in _rows(paths["unpaired_noisy"])} == {"p250_001", "p250_002"}
    for row in valid + test:
        assert row["noise_type"] == "living" and float(row["snr"]) == 7.5 and row["text"] == f"Sentence {row['ID']}."
        c, n = _read(row["clean_wav"]), _read(row["noisy_wav"])  # 48 kHz -> 16 kHz copies
        assert len(c) == len(n) == 8000 and os.path.basename(row["clean_wav"]) == os.path.basename(row["noisy_wav"])
        assert str(tmp_path / "vb16k") in row["clean_wav"]
    assert paths["noise_train"] is None and paths["rirs_test"] is None


def test_prepare_dns(tmp_path):
    root = tmp_path / "DNS-Challenge"
    rng = np.random.default_rng(0)
    for k in range(8):
        _write(str(root / "datasets" / "clean" / f"book_{k:05d}_chp_0009_reader_0670{k}_0.wav"), _speechlike(1.0, 16000, k), 16000)
    for k in range(6):
        _write(str(root / "datasets" / "noise" / f"noise_{k}.wav"), 0.05 * rng.standard_normal(16000), 16000)
    synthetic = root / "datasets" / "test_set" / "synthetic"
    for sub in ("no_reverb", "with_reverb"):
        for fileid, snr in ((0, 15), (1, 3), (12, 0)):
            clean = _speechlike(1.0, 16000, fileid)
            _write(str(synthetic / sub / "clean" / f"clean_fileid_{fileid}.wav"), clean, 16000)
            noisy_name = f"clnsp{fileid}_train_6900{fileid}_1_snr{snr}_tl-21_fileid_{fileid}.wav"
            _write(str(synthetic / sub / "noisy" / noisy_name), clean + 0.01 * rng.standard_normal(16000), 16000)
    assert len(dns_test_pairs(str(synthetic))) == 6
    paths = prepare_dns(str(root), str(tmp_path / "dns16k"), valid_pairs=3, num_workers=1)
    test = _rows(paths["test"])
    assert len(test) == 6
    by_id = {r["ID"]: r for r in test}
    assert float(by_id["no_reverb_fileid_1"]["snr"]) == 3.0 and by_id["with_reverb_fileid_12"]["reverb"] == "True"
    assert by_id["no_reverb_fileid_12"]["t60"] == "0.0" and by_id["with_reverb_fileid_0"]["t60"] == ""
    for row in test:
        assert os.path.basename(row["clean_wav"]) == os.path.basename(row["noisy_wav"]) == row["ID"] + ".wav"
    assert len(_rows(paths["valid"])) == 3 and len(_rows(paths["train_clean"])) == 7
    noise_ids = [{r["ID"] for r in _rows(paths[f"noise_{s}"])} for s in ("train", "valid", "test")]
    assert sum(len(n) for n in noise_ids) == 6 and paths["unpaired_noisy"] is None


def test_prepare_librispeech(tmp_path):
    root = tmp_path / "corpora"
    for subset, speakers in (("train-clean-100", ("19", "26")), ("dev-clean", ("84",))):
        for spk in speakers:
            chapter = root / "LibriSpeech" / subset / spk / "198"
            lines = []
            for utt in range(2):
                uid = f"{spk}-198-{utt:04d}"
                save_audio(str(chapter / f"{uid}.flac"), _speechlike(0.5, 16000, utt))
                lines.append(f"{uid} WORDS OF {spk} NUMBER {utt}\n")
            (chapter / f"{spk}-198.trans.txt").write_text("".join(lines))
    paths = prepare_librispeech(str(root), str(tmp_path / "ls"), subsets=["train-clean-100"], valid_subsets=["dev-clean"], num_workers=1)
    train, valid = _rows(paths["train_clean"]), _rows(paths["valid_clean"])
    assert [r["ID"] for r in train] == ["19-198-0000", "19-198-0001", "26-198-0000", "26-198-0001"]
    assert train[1]["text"] == "WORDS OF 19 NUMBER 1" and train[2]["voice"] == "26"
    assert train[0]["wav"].endswith(".flac") and float(train[0]["duration"]) == 0.5
    assert len(valid) == 2 and paths["valid"] is None
    with pytest.raises(FileNotFoundError):
        prepare_librispeech(str(root), str(tmp_path / "ls2"), subsets=["train-other-500"])


def test_source_files_are_never_overwritten_or_removed(tmp_path):
    """Sources inside an output sub-folder: refused when they would be overwritten, else kept."""
    clean = tmp_path / "out" / "train_clean"
    for k in range(5):
        _write(str(clean / f"utt{k}.wav"), _speechlike(0.5, 22050, k), 22050)
    with pytest.raises(ValueError, match="overwrite source files"):
        prepare_from_folders(str(tmp_path / "out"), str(clean), num_workers=1)
    for k in range(5):  # now 16 kHz mono: listed in place, nothing to overwrite
        _write(str(clean / f"utt{k}.wav"), _speechlike(0.5, 16000, k), 16000)
    for _ in range(2):  # the second call finds a stamp and cleans up stale outputs
        prepare_from_folders(str(tmp_path / "out"), str(clean), valid_pairs=2, test_pairs=2, noise_per_family=0,
                             synthetic_rirs=1, seed=3, num_workers=1)
    assert all((clean / f"utt{k}.wav").is_file() for k in range(5))
    assert soundfile.info(str(clean / "utt0.wav")).samplerate == 16000


def test_changing_noise_split_regenerates_consistent_pairs(tmp_path):
    """A setting change must regenerate the mixtures: labels always match the audio."""
    clean, noise = tmp_path / "clean", tmp_path / "noise"
    for k in range(6):
        _write(str(clean / f"utt{k}.wav"), _speechlike(1.0, 16000, k), 16000)
    rng = np.random.default_rng(3)
    for k in range(6):  # six noise files: "auto" gives whole files to each split
        _write(str(noise / f"n{k}.wav"), (0.02 + 0.02 * k) * rng.standard_normal(16000 * 4), 16000)
    out = str(tmp_path / "prepared")
    noisy_audio = {}
    for split in ("auto", "time"):
        paths = prepare_from_folders(out, str(clean), str(noise), valid_fraction=0.2, test_fraction=0.5,
                                     valid_pairs=2, test_pairs=6, reverb=False, num_workers=1, noise_split=split)
        rows = _rows(paths["test"])
        for row in rows:
            c, n = _read(row["clean_wav"]), _read(row["noisy_wav"])
            assert abs(measure_snr(c, n - c) - float(row["snr"])) < 0.5, (split, row["ID"])
        noisy_audio[split] = {row["ID"]: _read(row["noisy_wav"]) for row in rows}
    assert len({r["noise_type"] for r in rows}) > 1  # "time": every noise in test
    # The mixtures were rebuilt with the new noise sources, not left from the first call.
    changed = [uid for uid, wav in noisy_audio["time"].items()
               if uid not in noisy_audio["auto"] or not np.array_equal(wav, noisy_audio["auto"][uid])]
    assert len(changed) == len(noisy_audio["time"])


def _rewrite_manifest(path, rounds):
    from speechbrain_sqe.dataio.manifest import write_manifest

    rows = [{"ID": f"u{i}", "duration": 1.0, "clean_wav": f"/c{i}.wav"} for i in range(200)]
    for _ in range(rounds):
        write_manifest(path, rows, ["ID", "duration", "clean_wav"])


def test_two_preparations_of_one_folder_at_once_do_not_collide(tmp_path):
    """Two experiments launched together prepare the same data folder: neither may fail on the other's
    temporary file (it did, with one shared ``<manifest>.tmp`` name)."""
    import multiprocessing

    from speechbrain_sqe.dataio.manifest import read_manifest

    path = str(tmp_path / "train.csv")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_rewrite_manifest, args=(path, 150)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert len(read_manifest(path)) == 200
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
