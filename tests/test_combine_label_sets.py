"""recipes/SQA/combine_label_sets.py: label sets combined without ID clashes, repeated audio or a
speaker crossing splits; the result is read by the predictor's label reader."""

import csv
import importlib.util
import os

import pytest
from recipe_args import ROOT

from speechbrain_sqe.brains.sqa import label_dataset
from speechbrain_sqe.dataio.sqa_labels import (
    LABEL_COLUMNS_WITH_REFERENCE,
    read_label_manifest,
)

spec = importlib.util.spec_from_file_location("combine_label_sets",
                                              os.path.join(ROOT, "recipes", "SQA", "combine_label_sets.py"))
combine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(combine)


def _label_set(folder, rows_by_split):
    os.makedirs(folder)
    for split in ("train", "valid", "test"):
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=LABEL_COLUMNS_WITH_REFERENCE)
            writer.writeheader()
            for uid, wav, speaker in rows_by_split.get(split, []):
                writer.writerow({"ID": uid, "duration": 1.0, "wav": wav, "system": "degraded", "condition": "x",
                                 "speaker": speaker, "pesq_wb": 2.0, "stoi": 0.8, "estoi": 0.7, "si_sdr": 5.0,
                                 "dnsmos_ovrl": "", "distillmos": "", "clean_wav": "/c.wav"})


def _ids(path):
    with open(path, newline="") as stream:
        return [row["ID"] for row in csv.DictReader(stream)]


def test_sets_combine_with_prefixed_ids_and_no_repeated_audio(tmp_path):
    _label_set(tmp_path / "first", {"train": [("a_clean", "/a.wav", "a"), ("a_c0", "/a0.wav", "a")],
                                    "valid": [("v_c0", "/v0.wav", "v")], "test": [("t_c0", "/t0.wav", "t")]})
    _label_set(tmp_path / "second", {"train": [("a_clean", "/a.wav", "a"), ("b_c0", "/b0.wav", "b")],
                                     "valid": [("v_c0", "/v1.wav", "v")]})
    out = tmp_path / "both"
    counts = combine.combine_label_sets(str(out), [str(tmp_path / "first"), str(tmp_path / "second")])
    assert counts == {"train": 3, "valid": 2, "test": 1}
    assert _ids(out / "train.csv") == ["first__a_clean", "first__a_c0", "second__b_c0"]
    assert _ids(out / "valid.csv") == ["first__v_c0", "second__v_c0"]  # same ID, other audio: both kept
    read_label_manifest(str(out / "train.csv"), ["pesq_wb", "stoi"])
    assert len(label_dataset(str(out / "train.csv"), ["pesq_wb", "stoi"], {})) == 3


def test_a_speaker_in_two_splits_is_refused_before_writing(tmp_path):
    _label_set(tmp_path / "first", {"train": [("a_c0", "/a0.wav", "a")], "test": [("t_c0", "/t0.wav", "t")]})
    _label_set(tmp_path / "second", {"train": [("t_c1", "/t1.wav", "t")]})
    with pytest.raises(SystemExit, match="speaker 't' is in train here and in test"):
        combine.main([str(tmp_path / "out"), str(tmp_path / "first"), str(tmp_path / "second")])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="at least two"):
        combine.main([str(tmp_path / "out"), str(tmp_path / "first")])


def test_relative_cells_are_resolved_against_their_own_set(tmp_path):
    """Audio a set made is named relative to that set's folder; the combined CSVs name it from
    wherever they are, and two sets' equal relative cells are different files (both kept)."""
    _label_set(tmp_path / "first", {"train": [("a_c0", "train/audio/a_c0.wav", "a")]})
    _label_set(tmp_path / "second", {"train": [("a_c0", "train/audio/a_c0.wav", "a")]})
    out = tmp_path / "both"
    combine.combine_label_sets(str(out), [str(tmp_path / "first"), str(tmp_path / "second")])
    rows = read_label_manifest(str(out / "train.csv"), ["pesq_wb"])
    assert [row["wav"] for row in rows] == [str(tmp_path / name / "train" / "audio" / "a_c0.wav")
                                            for name in ("first", "second")]
