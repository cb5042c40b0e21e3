"""The manifest corpus: speaker splits, conditions per split, bad rows, one folder per configuration."""

import csv
import os

import numpy as np
import pytest

from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.folders import manifest_paths
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.dataio.manifest_corpus import (
    ManifestError,
    read_source_list,
    read_speech_manifest,
)
from speechbrain_sqe.dataio.mixing import measure_snr
from speechbrain_sqe.dataio.prepare import prepare_corpus
from speechbrain_sqe.dataio.rooms import synthetic_rir
from tests.speech import pink_noise, speech_like

SPLIT_OF = {"ann": "train", "bob": "train", "cid": "train", "dan": "valid", "eve": "test", "fay": "test"}


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six speakers (two files each, 1.5 s), noises and rooms with their own splits, in one kind-tagged list."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for k, (speaker, split) in enumerate(SPLIT_OF.items()):
        os.makedirs(root / "speech" / speaker)
        for j in range(2):
            path = root / "speech" / speaker / f"{j}.wav"
            rate = 16000 if j == 0 else 22050  # the second file needs resampling: copied, not referenced
            save_audio(str(path), speech_like(1.5, rate, seed=10 * k + j) * 0.3, rate)
            rows.append([f"{speaker}/{j}.wav", speaker, split])
    manifest = _write_csv(root / "speech" / "manifest.csv", ["path", "speaker", "split"], rows)
    os.makedirs(root / "env")
    sources = []
    for name, split in [("hum_train", "train"), ("hiss_train", "train"), ("fan_test", "test"), ("cafe_test", "test")]:
        save_audio(str(root / "env" / f"{name}.wav"), pink_noise(32000, seed=len(sources)) * 0.05, 16000)
        sources.append([f"{name}.wav", "noise", split])
    rng = np.random.default_rng(0)
    for name, split, t60 in [("small_a", "train", 0.25), ("small_b", "train", 0.3), ("hall", "test", 1.0)]:
        save_audio(str(root / "env" / f"{name}.wav"), synthetic_rir(t60, rng, 16000), 16000)
        sources.append([f"{name}.wav", "rir", split])
    lists = _write_csv(root / "env" / "splits.csv", ["path", "kind", "split"], sources)
    return {"root": root, "manifest": manifest, "lists": lists}


def _prepare(corpus, data_folder, seed=1234, **options):
    return prepare_corpus("manifest", str(data_folder), source_folder=corpus["manifest"],
                          noise_folder=corpus["lists"], rir_folder=corpus["lists"], seed=seed, valid_pairs=8,
                          test_pairs=12, num_workers=1, options=options)


def test_same_manifests_as_every_corpus_split_by_speaker_and_conditions(corpus, tmp_path):
    paths = _prepare(corpus, tmp_path / "data")
    assert set(paths) == set(manifest_paths("/x"))
    assert paths["unpaired_noisy"] is None and all(paths[k] for k in paths if k != "unpaired_noisy")
    train = read_manifest(paths["train_clean"])
    valid, test = read_manifest(paths["valid"]), read_manifest(paths["test"])
    assert {row["voice"] for row in train} == {"ann", "bob", "cid"} and len(train) == 6
    assert {row["voice"] for row in valid} == {"dan"} and len(valid) == 8
    assert {row["voice"] for row in test} == {"eve", "fay"} and len(test) == 12
    # valid: training noises and rooms; test: test noises and rooms only.
    assert {row["noise_type"] for row in valid} == {"hum_train", "hiss_train"}
    assert {row["noise_type"] for row in test} == {"fan_test", "cafe_test"}
    valid_t60 = {float(row["t60"]) for row in valid if row["reverb"] == "True"}
    test_t60 = {float(row["t60"]) for row in test if row["reverb"] == "True"}
    assert valid_t60 and test_t60 and max(valid_t60) < 0.6 < min(test_t60), (valid_t60, test_t60)
    assert {float(row["snr"]) for row in test} == {-5.0, 0.0, 5.0, 10.0, 15.0, 20.0}
    for row in test:  # a dry test pair is the clean reference plus noise at the stated SNR
        if row["reverb"] == "False":
            clean = load_audio(row["clean_wav"], 16000).numpy()
            noisy = load_audio(row["noisy_wav"], 16000).numpy()
            assert measure_snr(clean, noisy - clean) == pytest.approx(float(row["snr"]), abs=0.05)
    pools = {name: {os.path.basename(row["wav"]) for row in read_manifest(paths[name])}
             for name in ("noise_train", "noise_valid", "noise_test", "rirs_train", "rirs_test")}
    assert pools["noise_train"] == pools["noise_valid"] == {"hum_train.wav", "hiss_train.wav"}
    assert pools["noise_test"] == {"fan_test.wav", "cafe_test.wav"}
    assert all("small" in name for name in pools["rirs_train"]) and all("hall" in n for n in pools["rirs_test"])


def test_synthetic_noise_is_added_to_the_training_noise_only(corpus, tmp_path):
    plain = _prepare(corpus, tmp_path / "data")
    added = _prepare(corpus, tmp_path / "data", synthetic_train_noise=1)
    assert os.path.dirname(plain["test"]) != os.path.dirname(added["test"])  # its own configuration folder
    train = read_manifest(added["noise_train"])
    names = {os.path.basename(row["wav"]) for row in train}
    assert {"hum_train.wav", "hiss_train.wav"} < names and len(train) == 2 + 8  # + one file per family
    babble = next(row["wav"] for row in train if "babble" in row["ID"])
    assert float(load_audio(babble, 16000).pow(2).mean().sqrt()) > 0.01  # made of training speech
    for name in ("noise_valid", "noise_test", "valid", "test"):  # the conditions measured stay the same
        assert [{k: v for k, v in row.items() if not k.endswith("wav")} for row in read_manifest(added[name])] == \
            [{k: v for k, v in row.items() if not k.endswith("wav")} for row in read_manifest(plain[name])]


def test_configurations_get_their_own_folders_and_reruns_skip_work(corpus, tmp_path):
    first = _prepare(corpus, tmp_path / "data")
    stamp = os.path.join(os.path.dirname(first["test"]), "manifest_prep.json")
    mtime = os.path.getmtime(read_manifest(first["test"])[0]["noisy_wav"])
    second = _prepare(corpus, tmp_path / "data", seed=7)
    assert os.path.dirname(first["test"]) != os.path.dirname(second["test"])
    assert os.path.isfile(first["test"]) and os.path.isfile(second["test"]) and os.path.isfile(stamp)
    again = _prepare(corpus, tmp_path / "data")
    assert again == first
    assert os.path.getmtime(read_manifest(first["test"])[0]["noisy_wav"]) == mtime
    assert prepare_corpus("manifest", str(tmp_path / "data"), source_folder=corpus["manifest"],
                          noise_folder=corpus["lists"], rir_folder=corpus["lists"], valid_pairs=8, test_pairs=12,
                          skip_prep=True)["test"] == first["test"]


def test_bad_rows_are_reported_by_file_and_line(corpus, tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", ["path", "speaker", "split"], [
        [str(corpus["root"] / "speech" / "ann" / "0.wav"), "ann", "train"],
        ["missing.wav", "bob", "train"],
        [str(corpus["root"] / "speech" / "eve" / "0.wav"), "eve", "dev"],
        [str(corpus["root"] / "speech" / "ann" / "1.wav"), "ann", "test"],
        [str(corpus["root"] / "speech" / "fay" / "0.wav"), "", "test"],
    ])
    with pytest.raises(ManifestError) as error:
        read_speech_manifest(bad)
    message = str(error.value)
    assert message.startswith(f"{bad}: 4 bad speech row(s)") and "\n" not in message
    assert "line 3: file not found (missing.wav)" in message
    assert "line 4: split 'dev' is not one of train, valid, test" in message
    assert "line 5: speaker 'ann' is in test here and in train on line 2" in message
    assert "line 6: empty speaker" in message
    with pytest.raises(ManifestError, match="no usable file in split"):
        read_speech_manifest(bad, skip_bad_rows=True)  # only ann/train is left
    with pytest.raises(ManifestError, match="missing column"):
        read_speech_manifest(_write_csv(tmp_path / "cols.csv", ["file", "speaker"], [["a.wav", "a"]]))
    noise = _write_csv(tmp_path / "noise.csv", ["path", "split"], [["nowhere.wav", "train"]])
    with pytest.raises(ManifestError, match=r"noise.csv: 1 bad noise row\(s\): line 2: file not found"):
        read_source_list(noise, "noise")
    with pytest.raises(ValueError, match="needs --source_folder=<a CSV"):
        prepare_corpus("manifest", str(tmp_path / "d"), source_folder=str(tmp_path))


def test_without_split_column_speakers_are_split_here(corpus, tmp_path):
    with open(corpus["manifest"]) as handle:
        rows = [row[:2] for row in csv.reader(handle)][1:]
    manifest = _write_csv(tmp_path / "nosplit.csv", ["path", "speaker"],
                          [[str(corpus["root"] / "speech" / p), s] for p, s in rows])
    by_split = read_speech_manifest(manifest, seed=3, valid_fraction=0.2, test_fraction=0.2)
    speakers = {split: {s for _, s in items} for split, items in by_split.items()}
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["valid"] or speakers["train"] & speakers["test"]
                or speakers["valid"] & speakers["test"])


def test_shared_speech_manifest_reads(shared_real):
    manifest = os.path.join(os.path.dirname(shared_real), "speech", "manifest.csv")
    if not os.path.isfile(manifest):
        pytest.skip("../shared/data/speech is absent")
    by_split = read_speech_manifest(manifest)
    assert min(len(v) for v in by_split.values()) > 50
    lists = read_source_list(os.path.join(shared_real, "splits.csv"), "rir")
    assert lists["valid"] == lists["train"] and not set(lists["train"]) & set(lists["test"])
