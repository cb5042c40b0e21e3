"""The learned quality predictor's recipe end to end on a tiny embedded label set: the labels (made,
resumable), the loss goes down, resume restores the model and optimizer, the test report, the export
through ``load_model`` and ``sqe score --model``, and bad label CSVs stopped with the file and column."""

import csv
import json
import math
import os
import shutil

import pytest
import torch
from brain_probe import assert_restored, probe
from recipe_args import ROOT, recipe_args, tiny_corpus

import train
from speechbrain_sqe import cli
from speechbrain_sqe.dataio.sqa_labels import (
    LABEL_COLUMNS,
    LABEL_COLUMNS_WITH_REFERENCE,
    resolve_label_path,
)
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.inference.quality import LearnedQualityPredictor

RECIPE = os.path.join(ROOT, "hparams", "sqa.yaml")
LABELLED = ["pesq_wb", "stoi", "estoi", "si_sdr"]
TINY = (
    "--batch_size=4 --d_model=16 --num_layers=1 --num_heads=2 --ffn_size=32 --dropout=0.0 --lr=0.003 "
    "--warmup_steps=2 --crop_seconds=2.0 --degraded_per_file=2 --metric_jobs=1 "
    f"--label_metrics=[{','.join(LABELLED)}]"
)


def _args(data, out, epochs, extra=""):
    args = recipe_args(RECIPE, data, out, epochs, tiny_corpus(valid_pairs=3, test_pairs=3), TINY,
                       f"--label_folder={data}_labels {extra}")
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}  # later ones win
    return [args[0], *by_name.values()]


def _losses(out, key):
    lines = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    return [float(line.split(f"{key}: ")[1].split(" ")[0].rstrip(",")) for line in lines]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """3 epochs, then the same folder resumed to 4; the training states of both fits."""
    root = tmp_path_factory.mktemp("sqa")
    data, out = root / "data", root / "out"
    with probe() as first:
        train.main(_args(data, out, 3))
    with probe() as second:
        train.main(_args(data, out, 4))
    return data, out, {"epoch3": first["fitted"], "restored_at_3": second["restored"]}


def test_label_set_has_the_manifest_columns_and_labels(runs):
    data, _, _ = runs
    labels = f"{data}_labels"
    for split in ("train", "valid", "test"):
        columns, rows = _rows(os.path.join(labels, f"{split}.csv"))
        assert columns == list(LABEL_COLUMNS_WITH_REFERENCE)  # the label columns + clean_wav
        assert {row["system"] for row in rows} >= {"clean", "noisy"}
        for row in rows:
            wav = resolve_label_path(row["wav"], labels)
            assert os.path.isfile(wav) and os.path.isfile(row["clean_wav"])
            assert row["system"] != "clean" or wav == row["clean_wav"]
            assert all(row[name] != "" for name in LABELLED), row
            assert row["dnsmos_ovrl"] == "" and row["distillmos"] == ""  # not asked for: missing labels
    _, test = _rows(os.path.join(labels, "test.csv"))
    assert len(test) == 3 * 4  # clean, the corpus's mixture, two new mixtures per pair
    noisy = [float(r["pesq_wb"]) for r in test if r["system"] == "noisy"]
    clean = [float(r["pesq_wb"]) for r in test if r["system"] == "clean"]
    assert min(clean) > max(noisy)


def test_labels_are_resumed_not_recomputed(runs, monkeypatch, tmp_path):
    from speechbrain_sqe.dataio import sqa_labels
    from speechbrain_sqe.metrics import runner

    data, _, _ = runs
    labels = tmp_path / "labels"
    shutil.copytree(f"{data}_labels", labels)
    path = labels / "valid.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:15])  # two rows lost, one cut by a kill
    asked = []
    real = runner.evaluate_pairs

    def counting(pairs, *args, **kwargs):
        asked.extend(pair.file for pair in pairs)
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_pairs", counting)
    options = {"train_minutes": 0.25, "valid_pairs": 3, "test_pairs": 3, "seed": 1234, "degraded_per_file": 2,
                   "max_train_files": 200, "label_metrics": LABELLED, "metric_jobs": 1,
                   "corpus_options": {"unpaired_minutes": 0.1, "noise_train_per_family": 1, "noise_eval_per_family": 1,
                                   "rirs_train": 2, "rirs_eval": 2, "noise_seconds": 3.0}}
    sqa_labels.prepare_embedded_sqa_labels(str(labels), str(data), **options)
    assert asked == [line.split(",")[0] for line in lines[-2:]]
    def same_place(line):  # the copied rows keep their first folder's paths, the remade ones name this one
        return line.replace(str(labels), "LABELS").replace(f"{data}_labels", "LABELS")

    remade, before = path.read_text().splitlines(), lines
    assert remade[:-2] == before[:-2]  # the rows already labelled are kept as they were, byte for byte
    for new, old in zip(remade[-2:], before[-2:], strict=True):
        # the two remade rows: the same text, and the same numbers up to the last bit or so (a metric's
        # BLAS reductions may sum in another order in another process; 1e-16 apart was seen on CI)
        new_fields, old_fields = same_place(new).split(","), same_place(old).split(",")
        assert len(new_fields) == len(old_fields)
        for a, b in zip(new_fields, old_fields):
            assert a == b or math.isclose(float(a), float(b), rel_tol=1e-9), (a, b)
    assert len(remade) == len(before)
    with pytest.raises(ValueError, match="other settings .*degraded_per_file"):
        sqa_labels.prepare_embedded_sqa_labels(str(labels), str(data), **{**options, "degraded_per_file": 3})


def test_loss_goes_down(runs):
    _, out, _ = runs
    train_losses, valid_losses = _losses(out, "train loss"), _losses(out, "valid loss")
    assert len(train_losses) == 4  # epochs 1-3 were not trained again
    assert valid_losses[2] < valid_losses[0] and min(valid_losses[1:]) < valid_losses[0]
    assert train_losses[-1] < train_losses[0]
    # The per-metric statistics are logged beside the loss (labelled metrics only).
    log = (out / "train_log.txt").read_text()
    assert "valid pesq_wb_srcc:" in log and "valid si_sdr_mse:" in log and "dnsmos_ovrl_mse" not in log


def test_resume_restores_model_and_optimizer(runs):
    _, _, states = runs
    assert states["restored_at_3"]["epoch"] == 3
    assert_restored(states["epoch3"], states["restored_at_3"])


def test_ssl_stayed_frozen(runs):
    _, out, _ = runs
    shipped = torch.load(os.path.join(ROOT, "speechbrain_sqe", "pretrained", "tera", "tera.ckpt"),
                         map_location="cpu", weights_only=True)
    exported = torch.load(out / "hub" / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.equal(shipped[key], exported[key]) for key in shipped)


def test_report_has_lcc_srcc_mse_per_metric(runs):
    _, out, _ = runs
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["files"] == 12
    for name in LABELLED:
        stats = summary["metrics"][name]
        assert stats["n"] == 12 and math.isfinite(stats["mse"]) and math.isfinite(stats["srcc"])
        assert -1 <= stats["lcc"] <= 1
    assert summary["metrics"]["dnsmos_ovrl"]["n"] == 0
    report = (out / "report" / "report.md").read_text()
    assert "| metric | n | LCC | SRCC | MSE |" in report and "| pesq_wb | 12 |" in report
    assert "| pesq_wb | 12 |" in (out / "hub" / "README.md").read_text()


def test_export_loads_and_gives_the_recipes_predictions(runs, capsys):
    _, out, _ = runs
    scorer = load_model(str(out / "hub"), task="quality")
    assert isinstance(scorer, LearnedQualityPredictor)
    metrics = list(scorer.metric_names)
    assert metrics == ["pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "distillmos"]
    _, rows = _rows(out / "report" / "predictions.csv")
    for row in rows[:4]:
        ours = scorer.score_file_metrics(row["wav"])
        assert [ours[name] for name in metrics] == pytest.approx(
            [float(row[f"{name}_predicted"]) for name in metrics], abs=1e-4)
    # sqe score --model prints and writes every metric.
    files = [row["wav"] for row in rows[:3]]
    csv_path = out / "scores.csv"
    assert cli.main(["score", *files, "--model", str(out / "hub"), "--csv", str(csv_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == [*metrics, "path"]
    columns, scored = _rows(csv_path)
    assert columns == ["path", *metrics, "duration", "speech"] and len(scored) == 3


def _rename_stoi(text):
    return text.replace(",stoi,", ",stoy,", 1)


def _word_in_a_cell(text):
    lines = text.splitlines()
    cells = lines[1].split(",")
    cells[LABEL_COLUMNS.index("stoi")] = "good"
    return "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"


@pytest.mark.parametrize("damage, message", [
    (_rename_stoi, r"valid\.csv: no column 'stoi'"),
    (_word_in_a_cell, r"valid\.csv: row 2: column 'stoi' holds 'good', not a number"),
])
def test_bad_label_csv_is_refused_naming_file_and_column(runs, tmp_path, damage, message):
    data, _, _ = runs
    labels = tmp_path / "labels"
    shutil.copytree(f"{data}_labels", labels)
    path = labels / "valid.csv"
    path.write_text(damage(path.read_text()))
    with pytest.raises(SystemExit, match=message):
        train.main(_args(data, tmp_path / "out", 1, f"--label_source=folder --label_folder={labels}"))


def test_distillmos_upstream_with_cached_states_trains_and_exports(runs, tmp_path, monkeypatch):
    """--ssl_upstream=distillmos --cache_states=True: the upstream runs once per file, the loss goes
    down, the hub folder holds no copy of Distill-MOS's weights and scores as the report did."""
    pytest.importorskip("distillmos")
    from speechbrain_sqe.brains.state_cache import UpstreamStateCache

    data, _, _ = runs
    out = tmp_path / "distillmos"
    seen = []
    fill = UpstreamStateCache._fill

    def counting_fill(self, ids, wavs, lengths):
        seen.extend(key for key in ids if key not in self.states)
        return fill(self, ids, wavs, lengths)

    monkeypatch.setattr(UpstreamStateCache, "_fill", counting_fill)
    train.main(_args(data, out, 3, f"--label_source=folder --label_folder={data}_labels "
                                   "--ssl_upstream=distillmos --cache_states=True"))
    assert len(seen) == len(set(seen)) > 0  # each file through the upstream once over 3 epochs
    losses = _losses(out, "train loss")
    assert losses[-1] < losses[0]
    hub = out / "hub"
    assert os.path.getsize(hub / "ssl.ckpt") < 10_000  # a fingerprint, not the 16 MB weights
    assert "DistillMOSEncoder" in (hub / "hyperparams.yaml").read_text()
    scorer = load_model(str(hub), task="quality")
    metrics = list(scorer.metric_names)
    _, rows = _rows(out / "report" / "predictions.csv")
    for row in rows[:3]:
        ours = scorer.score_file_metrics(row["wav"])
        assert [ours[name] for name in metrics] == pytest.approx(
            [float(row[f"{name}_predicted"]) for name in metrics], abs=1e-4)
