"""The real-speech test sets: test speakers / other sources only, test noises and rooms only, two references."""

import csv
import json
import os

import numpy as np
import pytest

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.dataio.mixing import measure_snr
from speechbrain_sqe.dataio.real_testsets import main, prepare_real_testsets


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from tests.conftest import SHARED_REAL

    data = os.path.dirname(os.path.abspath(SHARED_REAL))
    if not os.path.isfile(os.path.join(data, "speech", "manifest.csv")):
        pytest.skip("../shared/data/speech is absent (real recordings are only beside the repository)")
    return data


@pytest.fixture(scope="module")
def sets(shared, tmp_path_factory):
    output = tmp_path_factory.mktemp("real_test")
    return output, prepare_real_testsets(shared, str(output), pairs=48, num_workers=1)


def _column(path, name, value):
    with open(path, newline="") as handle:
        return {row[name] for row in csv.DictReader(handle) if not value or row.get("split") == value}


def test_only_test_speakers_noises_and_rooms(shared, sets):
    _, paths = sets
    with open(os.path.join(shared, "speech", "manifest.csv"), newline="") as handle:
        split_of = {row["speaker"]: row["split"] for row in csv.DictReader(handle)}
    with open(os.path.join(shared, "real", "splits.csv"), newline="") as handle:
        kinds = list(csv.DictReader(handle))
    test_noises = {os.path.splitext(os.path.basename(r["path"]))[0] for r in kinds if r["kind"] == "noise" and r["split"] == "test"}
    speakers, cross = read_manifest(paths["speakers"]), read_manifest(paths["cross_source"])
    assert len(speakers) == len(cross) == 48
    assert {split_of[row["voice"]] for row in speakers} == {"test"}
    assert not {row["voice"] for row in cross} & set(split_of)  # no training corpus speaker
    assert {row["source"] for row in cross} == {"real/clean", "real/pairs"}
    for rows in (speakers, cross):
        assert {row["noise_type"] for row in rows} == test_noises
        assert {float(row["snr"]) for row in rows} == {-5.0, 0.0, 5.0, 10.0, 15.0, 20.0}
        assert sum(row["reverb"] == "True" for row in rows) == 24
        assert min(float(row["t60"]) for row in rows if row["reverb"] == "True") > 0.2


def test_references_dry_and_reverberant(sets):
    _, paths = sets
    for row in read_manifest(paths["cross_source"])[:12]:
        dry, wet, noisy = (load_audio(row[key], 16000).numpy() for key in ("clean_wav", "clean_reverb_wav", "noisy_wav"))
        assert len(dry) == len(wet) == len(noisy)
        # The mixture is the reverberant reference plus noise at the stated SNR.
        assert measure_snr(wet, noisy - wet) == pytest.approx(float(row["snr"]), abs=0.1)
        if row["reverb"] == "False":
            assert np.array_equal(dry, wet)
        else:
            assert np.corrcoef(dry, wet)[0, 1] < 0.95  # a different signal: the room is in it


def test_deterministic_and_resumable(shared, sets, tmp_path):
    output, paths = sets
    first = read_manifest(paths["speakers"])[5]
    again = prepare_real_testsets(shared, str(output), pairs=48, num_workers=1, sets=["speakers"])
    with open(output / "speakers_prep.json") as handle:
        assert json.load(handle)["counts"] == {"pairs": 48, "generated": 0}  # nothing redone
    assert read_manifest(again["speakers"])[5] == first
    other = tmp_path / "other"
    assert main(["--shared", shared, "--output", str(other), "--pairs", "6", "--sets", "speakers",
                 "--num_workers", "1"]) == 0
    row = read_manifest(str(other / "speakers.csv"))[5]
    if row["clean_wav"].endswith(os.path.basename(first["clean_wav"])) and row["voice"] == first["voice"]:
        assert np.array_equal(load_audio(row["noisy_wav"], 16000).numpy(), load_audio(first["noisy_wav"], 16000).numpy())
    assert main(["--shared", str(tmp_path), "--output", str(other)]) == 2
