"""The real-speech label set (``label_source=manifest``) on a tiny generated manifest: planned without
any test speaker, noise or room; labelled; resumed without recomputing; refused with other settings."""

import csv
import os

import numpy as np
import pytest
import yaml
from speech import pink_noise, speech_like

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.dataio.manifest_corpus import ManifestError
from speechbrain_sqe.dataio.real_sqa_labels import (
    PlanError,
    check_plan_excludes,
    plan_real_sqa_labels,
)
from speechbrain_sqe.dataio.rooms import synthetic_rir
from speechbrain_sqe.dataio.sqa_labels import (
    LABEL_COLUMNS_WITH_REFERENCE,
    prepare_sqa_labels,
    read_label_manifest,
    resolve_label_path,
)

SR = 16000
SPEAKERS = {"tr_a": "train", "tr_b": "train", "va_c": "valid", "va_d": "valid", "te_e": "test"}
METRICS = ["stoi", "si_sdr"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("realsqa")
    lines = ["id,path,corpus,speaker,gender,split,duration_s"]
    for index, (speaker, split) in enumerate(SPEAKERS.items()):
        path = f"speech/{speaker}/{speaker}_000.wav"
        save_audio(str(root / path), speech_like(1.5, SR, seed=index), SR)
        lines.append(f"{speaker}_000,{path},tiny,{speaker},f,{split},1.5")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    rows = ["path,kind,split"]
    for name, split in [("n_train1", "train"), ("n_train2", "train"), ("n_test", "test")]:
        save_audio(str(root / "noise" / f"{name}.wav"), 0.05 * pink_noise(2 * SR, seed=len(rows)), SR)
        rows.append(f"noise/{name}.wav,noise,{split}")
    for name, split in [("r_train", "train"), ("r_test", "test")]:
        save_audio(str(root / "rirs" / f"{name}.wav"), synthetic_rir(0.6, np.random.default_rng(len(rows))), SR)
        rows.append(f"rirs/{name}.wav,rir,{split}")
    (root / "splits.csv").write_text("\n".join(rows) + "\n")
    return root


def _lines(path):
    with open(path, encoding="utf-8") as stream:
        return stream.read().splitlines()


def _options(corpus, **more):
    splits = str(corpus / "splits.csv")
    return {"source_folder": str(corpus / "manifest.csv"), "noise_folder": splits, "rir_folder": splits,
            "conditions_per_file": 2, "label_metrics": METRICS, "metric_jobs": 1, "progress": False,
            # options of the embedded source, as the recipe passes them: left out here
            "corpus_folder": "unused", "train_minutes": 30, **more}


def test_plan_never_uses_test_speakers_noises_or_rooms(corpus):
    items, excluded = plan_real_sqa_labels(str(corpus / "manifest.csv"), str(corpus / "splits.csv"),
                                           str(corpus / "splits.csv"), conditions_per_file=40)
    assert excluded["speakers"] == {"te_e"}
    assert {os.path.basename(p) for p in excluded["paths"]} == {"te_e_000.wav", "n_test.wav", "r_test.wav"}
    used = set()
    for split_items in items.values():
        for row, clean, spec in split_items:
            assert row["speaker"] != "te_e" and "te_e" not in clean
            used.update(_paths(spec))
    # 40 draws per file reach every training noise and room, and nothing else
    assert {os.path.basename(p) for p in used} == {"n_train1.wav", "n_train2.wav", "r_train.wav"}
    speakers = {split: {row["speaker"] for row, _, _ in split_items} for split, split_items in items.items()}
    assert speakers == {"train": {"tr_a", "tr_b"}, "valid": {"va_c"}, "test": {"va_d"}}
    kinds = {row["condition"].split("_")[0] for row, _, _ in items["train"]}
    assert {"noise", "room", "band", "clip", "codec", "packet", "clean"} <= kinds
    check_plan_excludes(items, excluded)
    # the check can fail: a plan naming a test noise, or a test speaker, is refused
    spec = {"kind": "noise", "snr": 0.0, "path": min(excluded["paths"])}
    bad = {"train": [({"ID": "x_c0", "speaker": "tr_a"}, items["train"][0][1], spec)]}
    with pytest.raises(PlanError, match="x_c0"):
        check_plan_excludes(bad, excluded)
    with pytest.raises(PlanError, match="test speaker 'te_e'"):
        check_plan_excludes({"valid": [({"ID": "y", "speaker": "te_e"}, "y.wav", None)]}, excluded)


def _paths(spec):
    if spec is None:
        return []
    if spec["kind"] == "chain":
        return [p for step in spec["steps"] for p in _paths(step)]
    return [spec["path"]] if "path" in spec else []


def test_plan_is_seeded(corpus):
    args = (str(corpus / "manifest.csv"), str(corpus / "splits.csv"), str(corpus / "splits.csv"))
    a, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=3)
    b, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=3)
    c, _ = plan_real_sqa_labels(*args, seed=2, conditions_per_file=3)
    assert a == b and a != c


def test_condition_weights_and_snr_range_shape_the_plan(corpus):
    args = (str(corpus / "manifest.csv"), str(corpus / "splits.csv"), str(corpus / "splits.csv"))
    items, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=20,
                                    condition_weights={"noise": 1, "room_noise": 1}, snr_range=(-5.0, 20.0))
    specs = [spec for split in items.values() for _, _, spec in split if spec is not None]
    kinds = {spec["kind"] for spec in specs}
    assert kinds == {"noise", "chain"}  # both kinds drawn, nothing else
    snrs = [step["snr"] for spec in specs for step in spec.get("steps", [spec]) if step["kind"] == "noise"]
    assert len(snrs) == len(specs) and all(-5.0 <= snr <= 20.0 for snr in snrs)
    assert max(snrs) > 10.0 and min(snrs) < 5.0
    with pytest.raises(ValueError, match="not kinds of the plan"):
        plan_real_sqa_labels(*args, condition_weights={"thunder": 1})
    with pytest.raises(ValueError, match="no usable kind"):
        plan_real_sqa_labels(*args, condition_weights={"noise": 0})


def test_noise_variation_varies_drawn_noises_and_leaves_the_default_plan_as_it_was(corpus):
    args = (str(corpus / "manifest.csv"), str(corpus / "splits.csv"), str(corpus / "splits.csv"))
    weights = {"noise": 1, "room_noise": 1}
    plain, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=20, condition_weights=weights)
    varied, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=20, condition_weights=weights,
                                     noise_variation=0.5)
    again, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=20, condition_weights=weights)
    assert plain == again  # without the option the draws are those of the earlier label sets

    def noises(items):
        return [step for split in items.values() for _, _, spec in split if spec is not None
                for step in spec.get("steps", [spec]) if step["kind"] == "noise"]
    assert not any("vary" in step for step in noises(plain))
    flags = ["vary" in step for step in noises(varied)]
    assert 0.25 < sum(flags) / len(flags) < 0.75  # about half of the noises at 0.5
    conditions = [row["condition"] for split in varied.values() for row, _, _ in split]
    assert any("_varied_" in condition for condition in conditions)


@pytest.fixture(scope="module")
def labels(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels") / "set"
    manifests = prepare_sqa_labels(str(folder), "manifest", metrics=METRICS, **_options(corpus))
    return folder, manifests


def test_rows_are_labelled_against_the_dry_clean_file(labels):
    folder, manifests = labels
    counts = {}
    for split, path in manifests.items():
        with open(path, newline="") as stream:
            reader = csv.DictReader(stream)
            assert tuple(reader.fieldnames) == LABEL_COLUMNS_WITH_REFERENCE
            rows = list(reader)
        counts[split] = len(rows)
        read_label_manifest(path, METRICS)  # the trainer's reader accepts it
        for row in rows:
            wav, clean = resolve_label_path(row["wav"], str(folder)), row["clean_wav"]
            assert os.path.isfile(wav) and os.path.isabs(clean) and os.path.isfile(clean)
            assert row["stoi"] != "" and row["si_sdr"] != "" and row["pesq_wb"] == ""
            if row["system"] == "clean":
                assert row["wav"] == clean and float(row["stoi"]) > 0.99  # a source file: absolute
            else:
                # Audio made for the set: relative to its folder, so the folder can move.
                assert not os.path.isabs(row["wav"]) and wav.startswith(str(folder))
                # Noise and rooms always degrade; a band limit or clipping can leave a synthetic
                # signal almost intact (its draw depends on the absolute path: it varies by run).
                if "noise" in row["condition"] or "room" in row["condition"]:
                    assert float(row["si_sdr"]) < 60, row
    assert counts == {"train": 2 * 3, "valid": 3, "test": 3}


def test_resume_recomputes_only_missing_rows_and_refuses_other_settings(labels, corpus, monkeypatch):
    from speechbrain_sqe.metrics import runner

    folder, manifests = labels
    path = manifests["train"]
    lines = _lines(path)
    with open(path, "w") as stream:
        stream.write("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # last row cut by a kill
    lost = lines[-1].split(",")[0]
    asked = []
    real = runner.evaluate_pairs

    def counting(pairs, *args, **kwargs):
        asked.extend(pair.file for pair in pairs)
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_pairs", counting)
    prepare_sqa_labels(str(folder), "manifest", metrics=METRICS, **_options(corpus))
    assert asked == [lost]
    assert _lines(path) == lines
    with pytest.raises(ValueError, match="other settings .*conditions_per_file"):
        prepare_sqa_labels(str(folder), "manifest", metrics=METRICS, **_options(corpus, conditions_per_file=3))


def test_bad_manifest_row_is_reported_by_file_and_line(corpus, tmp_path):
    bad = corpus / "bad.csv"  # beside the audio: its paths are relative to it
    text = (corpus / "manifest.csv").read_text().replace("speech/tr_b/tr_b_000.wav", "speech/tr_b/missing.wav")
    bad.write_text(text)
    with pytest.raises(ManifestError, match=r"bad\.csv: 1 bad speech row\(s\): line 3: file not found"):
        prepare_sqa_labels(str(tmp_path / "out"), "manifest", metrics=METRICS,
                           **_options(corpus, source_folder=str(bad)))


def _add_outputs_module():
    import importlib.util

    from recipe_args import ROOT

    spec = importlib.util.spec_from_file_location("add_enhancer_outputs",
                                                  os.path.join(ROOT, "recipes", "SQA", "add_enhancer_outputs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_moved_label_set_reads_its_own_audio(labels, tmp_path):
    """The CSVs name the set's audio relative to its folder: a copy (or a moved folder) is read from
    where it is now, and its source files by their absolute paths."""
    import shutil

    folder, manifests = labels
    moved = tmp_path / "elsewhere" / "set"
    shutil.copytree(folder, moved)
    rows = read_label_manifest(str(moved / "train.csv"), METRICS)
    original = {row["ID"]: row["wav"] for row in read_label_manifest(manifests["train"], METRICS)}
    made = [row for row in rows if not row["ID"].endswith("_clean")]
    assert made and all(row["wav"].startswith(str(moved)) and os.path.isfile(row["wav"]) for row in made)
    assert all(original[row["ID"]] == row["wav"] for row in rows if row["ID"].endswith("_clean"))


def test_enhancer_outputs_are_added_as_systems_resumably(labels, tmp_path, monkeypatch):
    import shutil

    from recipe_args import ROOT

    from speechbrain_sqe.metrics import runner

    module = _add_outputs_module()
    folder = tmp_path / "labels"
    shutil.copytree(labels[0], folder)
    before = {split: _lines(folder / f"{split}.csv") for split in ("train", "valid", "test")}
    vq = os.path.join(ROOT, "speechbrain_sqe", "pretrained", "vq_enhancer")
    argv = [str(folder), "--enhancer", f"vq={vq}", "--peers", "noisereduce", "--max_rows", "2",
            "--metrics", *METRICS, "--splits", "train", "valid"]
    added = module.main(argv)
    assert added == {"train": 2 * 2, "valid": 2 * 2}
    with open(folder / "train.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert _lines(folder / "train.csv")[: len(before["train"])] == before["train"]
    by_id = {row["ID"]: row for row in rows}
    new = [row for row in rows if row["system"] in ("vq", "noisereduce")]
    assert len(new) == 4 and {row["system"] for row in new} == {"vq", "noisereduce"}
    for row in new:
        source = by_id[row["ID"].rsplit("__", 1)[0]]
        assert source["system"] == "degraded"
        assert (row["speaker"], row["condition"], row["clean_wav"]) == (source["speaker"], source["condition"],
                                                                       source["clean_wav"])
        assert not os.path.isabs(row["wav"]) and row["wav"].startswith(os.path.join("train", "enhanced"))
        assert os.path.isfile(folder / row["wav"]) and row["stoi"] != "" and row["si_sdr"] != ""
    assert _lines(folder / "test.csv") == before["test"]  # not asked for
    asked = []
    monkeypatch.setattr(runner, "evaluate_pairs", lambda pairs, *a, **k: asked.extend(pairs) or ([], []))
    assert module.main(argv) == {"train": 0, "valid": 0}  # resumed: nothing recomputed
    assert asked == []


def test_enhancer_outputs_need_the_clean_reference_column(tmp_path):
    module = _add_outputs_module()
    (tmp_path / "train.csv").write_text("ID,duration,wav,system,condition,speaker,pesq_wb,stoi,estoi,si_sdr,"
                                        "dnsmos_ovrl,distillmos\na,1.0,a.wav,noisy,n,s,,,,,,\n")
    with pytest.raises(ValueError, match="no 'clean_wav' column"):
        module.add_enhancer_outputs(str(tmp_path), {"x": lambda wav: wav}, metrics=METRICS, splits=["train"])


def test_sqa_yaml_label_source_manifest_reaches_the_real_preparation(corpus, tmp_path):
    from hyperpyyaml import load_hyperpyyaml
    from recipe_args import ROOT

    splits = str(corpus / "splits.csv")
    overrides = {"label_source": "manifest", "source_folder": str(corpus / "manifest.csv"), "noise_folder": splits,
                 "rir_folder": splits, "label_folder": str(tmp_path / "labels"), "max_train_files": 1,
                 "max_valid_files": 2, "conditions_per_file": 1, "label_metrics": ["si_sdr"], "metric_jobs": 1,
                 "metrics": ["si_sdr"], "output_folder": str(tmp_path / "out"),
                 "noise_variation": 1.0}
    # a mapping on the command line (--condition_weights="{noise: 1}") merges into the YAML's default
    overrides = yaml.safe_dump(overrides) + "condition_weights: {noise: 1}\n"
    with open(os.path.join(ROOT, "hparams", "sqa.yaml"), encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, overrides)
    manifests = hparams["prepare_data"]()
    rows = {split: read_label_manifest(path, ["si_sdr"]) for split, path in manifests.items()}
    assert [len(rows[split]) for split in ("train", "valid", "test")] == [2, 2, 2]
    assert all(row["ID"].startswith(("tr_", "va_")) for split_rows in rows.values() for row in split_rows)
    conditions = []
    for path in manifests.values():
        with open(path, newline="") as stream:
            conditions += [row["condition"] for row in csv.DictReader(stream)]
    degraded = [condition for condition in conditions if condition != "clean"]
    assert len(degraded) == 3 and all("_varied_snr" in condition for condition in degraded)


def test_a_label_csv_without_clean_wav_is_resumed_in_its_own_format(tmp_path):
    from speechbrain_sqe.dataio.sqa_labels import (
        LABEL_COLUMNS,
        label_columns,
        label_items,
    )

    path = tmp_path / "train.csv"
    path.write_text(",".join(LABEL_COLUMNS) + "\nold,1.0,a.wav,clean,clean,s,,,,,,\n")
    assert label_columns(str(path)) == LABEL_COLUMNS
    assert label_columns(str(tmp_path / "valid.csv"))[-1] == "clean_wav"
    items = [({"ID": "old", "wav": "a.wav"}, "a.wav", None),
             ({"ID": "new", "duration": 1.0, "wav": "b.wav", "system": "clean", "condition": "clean",
               "speaker": "s"}, "b.wav", None)]
    label_items(str(tmp_path), "train", items, [], 1, None)
    # A source file given relative to the working directory is written absolute (outside the set).
    assert _lines(path) == [",".join(LABEL_COLUMNS), "old,1.0,a.wav,clean,clean,s,,,,,,",
                            f"new,1.0,{os.path.abspath('b.wav')},clean,clean,s,,,,,,"]


#: A small embedded corpus (TTS; seconds to make) for the embedded source of the label set.
EMBEDDED = {"train_minutes": 0.1, "valid_pairs": 1, "test_pairs": 1,
            "corpus_options": {"unpaired_minutes": 0.0, "noise_train_per_family": 0, "noise_eval_per_family": 0,
                               "rirs_train": 1, "rirs_eval": 0}}


@pytest.fixture(scope="module")
def embedded_corpus(tmp_path_factory):
    import shutil

    from speechbrain_sqe.dataio.embedded import prepare_embedded_corpus

    if not (shutil.which("flite") and shutil.which("espeak-ng")):
        pytest.skip("flite/espeak-ng not installed (apt-get install flite espeak-ng)")
    folder = tmp_path_factory.mktemp("embedded") / "corpus"
    paths = prepare_embedded_corpus(str(folder), seed=1234, num_workers=1, train_minutes=EMBEDDED["train_minutes"],
                                    valid_pairs=1, test_pairs=1, **EMBEDDED["corpus_options"])
    return folder, paths


def _voices(path, column):
    with open(path, newline="") as stream:
        return {row["voice"]: row[column] for row in csv.DictReader(stream)}


def test_embedded_training_speech_joins_the_train_split_only(corpus, embedded_corpus):
    folder, paths = embedded_corpus
    args = (str(corpus / "manifest.csv"), str(corpus / "splits.csv"), str(corpus / "splits.csv"))
    # Only the kinds that read a noise or a room: each added row must then draw from the sources
    # (with every kind, 4 draws miss them all 1 time in 16, and the draws are seeded by the paths,
    # which lie in a temporary folder).
    weights = {"noise": 1.0, "room": 1.0, "room_noise": 1.0, "noise_codec": 1.0}
    real, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=2, condition_weights=weights)
    mixed, excluded = plan_real_sqa_labels(*args, seed=1, conditions_per_file=2, condition_weights=weights,
                                           embedded_speech=paths["train_clean"], embedded_train_files=2)
    assert mixed["valid"] == real["valid"] and mixed["test"] == real["test"]
    assert mixed["train"][: len(real["train"])] == real["train"]  # the real rows as they were
    added = mixed["train"][len(real["train"]):]
    train_voices = set(_voices(paths["train_clean"], "wav"))
    held_out = set(_voices(paths["valid"], "clean_wav")) | set(_voices(paths["test"], "clean_wav"))
    assert len(added) == 2 * 3 and {row["speaker"] for row, _, _ in added} <= train_voices
    assert not {row["speaker"] for row, _, _ in added} & held_out
    assert all(clean.startswith(str(folder)) for _, clean, _ in added)
    # degraded with the real training noises and rooms only
    degraded = [spec for _, _, spec in added if spec is not None]
    assert len(degraded) == 2 * 2 and all(_paths(spec) for spec in degraded)
    used = {os.path.basename(p) for spec in degraded for p in _paths(spec)}
    assert used <= {"n_train1.wav", "n_train2.wav", "r_train.wav"}
    check_plan_excludes(mixed, excluded)
    everything, _ = plan_real_sqa_labels(*args, seed=1, conditions_per_file=0,
                                         embedded_speech=paths["train_clean"], embedded_train_files=None)
    assert len(everything["train"]) - 2 == len(_lines(paths["train_clean"])) - 1  # 2 real files + every TTS file


def test_embedded_speech_is_refused_where_a_voice_is_a_manifest_speaker_or_a_file_is_missing(corpus, embedded_corpus,
                                                                                            tmp_path):
    _, paths = embedded_corpus
    args = (str(corpus / "manifest.csv"), str(corpus / "splits.csv"), str(corpus / "splits.csv"))
    lines = _lines(paths["train_clean"])
    voice = lines[1].split(",")[3]
    clash = tmp_path / "train_clean.csv"
    clash.write_text("\n".join([lines[0], lines[1].replace(voice, "va_c")]) + "\n")
    with pytest.raises(ValueError, match=r"voice\(s\) \['va_c'\] are also speakers"):
        plan_real_sqa_labels(*args, embedded_speech=str(clash))
    missing = tmp_path / "missing.csv"
    missing.write_text(lines[0] + "\nx,1.0,gone.wav,flite_rms,text\n")
    with pytest.raises(ManifestError, match=r"missing.csv: 1 bad embedded speech row\(s\): line 2: file not found"):
        plan_real_sqa_labels(*args, embedded_speech=str(missing))


def test_sqa_yaml_adds_embedded_training_speech_to_the_real_label_set(corpus, embedded_corpus, tmp_path):
    from hyperpyyaml import load_hyperpyyaml
    from recipe_args import ROOT

    folder, paths = embedded_corpus
    splits = str(corpus / "splits.csv")
    overrides = {"label_source": "manifest", "source_folder": str(corpus / "manifest.csv"), "noise_folder": splits,
                 "rir_folder": splits, "label_folder": str(tmp_path / "labels"), "max_train_files": 1,
                 "max_valid_files": 2, "conditions_per_file": 1, "label_metrics": ["si_sdr"], "metric_jobs": 1,
                 "metrics": ["si_sdr"], "output_folder": str(tmp_path / "out"), "data_folder": str(folder),
                 "embedded_train_files": 2, **EMBEDDED}
    with open(os.path.join(ROOT, "hparams", "sqa.yaml"), encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, yaml.safe_dump(overrides))
    manifests = hparams["prepare_data"]()  # the corpus made by the fixture is reused (same settings)

    def rows(split):
        read_label_manifest(manifests[split], ["si_sdr"])  # the trainer's reader accepts it
        with open(manifests[split], newline="") as stream:
            return list(csv.DictReader(stream))
    voices = set(_voices(paths["train_clean"], "wav"))
    tts = [row for row in rows("train") if row["speaker"] in voices]
    assert len(rows("train")) == 2 + 2 * 2 and len(tts) == 2 * 2
    assert all(float(row["si_sdr"]) > -30 for row in tts)  # labelled
    assert {row["system"] for row in tts} == {"clean", "degraded"}
    assert not any(row["speaker"] in voices for split in ("valid", "test") for row in rows(split))
    with open(tmp_path / "labels" / "sqa_labels.json") as stream:
        assert '"train_files": 2' in stream.read()
    for other in (1, "all"):  # "all" reads as every file: another setting too
        with pytest.raises(ValueError, match="other settings .*embedded"):
            hparams["prepare_data"](embedded_train_files=other)
    with pytest.raises(ValueError, match="number of files >= 0 or 'all'"):
        hparams["prepare_data"](embedded_train_files=-1)


def test_synthetic_noise_joins_the_training_noises_with_babble_of_training_speakers_only(corpus, tmp_path,
                                                                                         monkeypatch):
    from speechbrain_sqe.dataio import audio, real_sqa_labels
    from speechbrain_sqe.dataio.manifest_corpus import read_source_list
    from speechbrain_sqe.dataio.noise import NOISE_FAMILIES

    loaded = []  # the babble talkers (write_synthetic_noise_list imports load_audio when it runs)
    original = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda path, *a, **k: loaded.append(str(path)) or original(path, *a, **k))
    folder = tmp_path / "set"
    listed = real_sqa_labels.write_synthetic_noise_list(str(folder), str(corpus / "splits.csv"),
                                                        str(corpus / "manifest.csv"), seed=3, per_family=2,
                                                        seconds=0.5)
    noises = read_source_list(listed, "noise")
    synthetic = sorted(os.listdir(folder / "noise_synthetic"))
    assert len(synthetic) == 2 * len(NOISE_FAMILIES) + 1  # the files and the list
    assert len(noises["train"]) == 2 + 2 * len(NOISE_FAMILIES)
    assert [os.path.basename(p) for p in noises["test"]] == ["n_test.wav"]  # the test noise stays a test noise
    assert loaded and all(os.path.basename(os.path.dirname(p)) in ("tr_a", "tr_b") for p in loaded)
    wav = original(str(folder / "noise_synthetic" / "babble_0.wav"), warn=False)
    assert wav.shape[0] == SR // 2 and 0.03 < float(wav.pow(2).mean().sqrt()) < 0.07  # -26 dBFS
    before = (folder / "noise_synthetic" / "hum_1.wav").stat().st_mtime_ns
    real_sqa_labels.write_synthetic_noise_list(str(folder), str(corpus / "splits.csv"), str(corpus / "manifest.csv"),
                                               seed=3, per_family=2, seconds=0.5)
    assert (folder / "noise_synthetic" / "hum_1.wav").stat().st_mtime_ns == before  # a rerun writes nothing

    # through the label preparation: synthetic noise in the plan, recorded in the stamp
    manifests = prepare_sqa_labels(str(tmp_path / "labels"), "manifest", metrics=["si_sdr"],
                                   **_options(corpus, label_metrics=["si_sdr"], conditions_per_file=8,
                                              condition_weights={"noise": 1}, synthetic_noise_per_family=1))
    conditions = []
    for path in manifests.values():
        with open(path, newline="") as stream:
            conditions += [row["condition"] for row in csv.DictReader(stream)]
    assert any(family in condition for condition in conditions for family in NOISE_FAMILIES)
    assert not any("n_test" in condition for condition in conditions)
    with open(tmp_path / "labels" / "sqa_labels.json") as stream:
        assert '"synthetic_noise_per_family": 1' in stream.read()
