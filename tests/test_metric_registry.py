"""Tests of the metric registry: custom metrics, learned predictors (a real tiny VQScore model),
the runner with one and two worker processes, ``sqe evaluate`` and ``--list-metrics``."""

import csv
import math

import numpy as np
import pytest
from hub_folders import build_vqscore_hub
from speech import synthesize

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import registry, runner
from speechbrain_sqe.metrics.intrusive import MetricUnavailableError

TINY = "tiny_vq"


def peak_error(ref, deg, sample_rate, cache):
    """A custom intrusive metric, lower is better (module level: importable by path)."""
    return float(np.max(np.abs(ref - deg)))


class TwoScores(VQScore):
    """A multi-output learned predictor: ``score_batch`` gives a dict of ``[batch]`` tensors."""

    def score_batch(self, wavs, wav_lens=None):
        scores = super().score_batch(wavs, wav_lens)
        return {"vq": scores, "neg": -scores}


def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture
def registered():
    """Names registered by a test, removed after it."""
    names = []
    yield names
    for name in names:
        registry.METRICS.pop(name, None)


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory):
    """A hub folder of an untrained tiny VQScore model (16 codes)."""
    return build_vqscore_hub(VQVAEQualityModel(codebook_size=16), str(tmp_path_factory.mktemp("hub")))


@pytest.fixture(scope="module")
def tiny(tiny_hub):
    """The tiny model registered as the learned predictor ``tiny_vq``, for the module's tests."""
    registry.register_predictor(TINY, source=tiny_hub, range=(-1, 1), description="tiny test model")
    yield tiny_hub
    registry.METRICS.pop(TINY, None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """clean/ and enhanced/ with two pairs of synthesized speech (enhanced: 10 dB white noise)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for name, text in {"a.wav": "The birch canoe slid on the smooth planks.",
                       "b.wav": "Glue the sheet to the dark blue background."}.items():
        synthesize(root / f"raw_{name}", text)
        clean = load_audio(root / f"raw_{name}", sample_rate=16000).numpy()
        noise = rng.standard_normal(clean.shape[0]) * np.sqrt(np.mean(clean**2) / 10)
        save_audio(str(root / "clean" / name), clean, 16000)
        save_audio(str(root / "enhanced" / name), clean + noise, 16000)
    return root


def paths(corpus, side):
    return [str(corpus / side / name) for name in ("a.wav", "b.wav")]


# --- registering --------------------------------------------------------------------------------

def test_custom_metric_registers_computes_and_duplicates_are_refused(registered):
    spec = registry.register_metric("peak_error", peak_error, needs_reference=True, range=(0, None),
                                    direction="lower", description="largest sample error")
    registered.append("peak_error")
    assert registry.METRICS["peak_error"] is spec
    assert "peak_error" in registry.INTRUSIVE_METRICS  # the views follow the registry
    assert "peak_error" in registry.resolve_metrics("all")
    ref = np.linspace(-0.5, 0.5, 16000)
    scores = registry.compute_metrics(ref, ref * 0.5, ["peak_error", "si_sdr"])
    assert scores["peak_error"] == pytest.approx(0.25) and scores["si_sdr"] > 100
    with pytest.raises(ValueError, match="'peak_error' is already registered"):
        registry.register_metric("peak_error", peak_error, needs_reference=True)
    with pytest.raises(ValueError, match="'vqscore' is already registered"):
        registry.register_predictor("vqscore")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_group("stats", peak_error, ["peak_error", "other"], True)
    assert "other" not in registry.METRICS  # a refused group registers none of its metrics
    replaced = registry.register_metric("peak_error", peak_error, True, direction="lower", replace=True)
    assert registry.METRICS["peak_error"] is replaced


def test_invalid_specs_are_refused(registered):
    with pytest.raises(ValueError, match="direction must be 'higher' or 'lower'"):
        registry.register_metric("bad_direction", peak_error, True, direction="up")
    with pytest.raises(ValueError, match="low < high"):
        registry.register_metric("bad_range", peak_error, True, range=(5, 1))
    with pytest.raises(ValueError, match="not an alias"):
        registry.register_metric("all", peak_error, True)
    with pytest.raises(ValueError, match="group 'composite' is already computed by"):
        registry.register_metric("my_csig", peak_error, True, group="composite")
    assert not {"bad_direction", "bad_range", "my_csig"} & set(registry.METRICS)


def test_lazy_import_path_is_resolved_at_first_use(registered):
    registry.register_metric("lazy_peak", "test_metric_registry:peak_error", True, direction="lower")
    registry.register_metric("lazy_missing", "no_such_package.metrics:score", False)
    registered.extend(["lazy_peak", "lazy_missing"])
    ref = np.linspace(-0.5, 0.5, 16000)
    assert registry.compute_metrics(ref, ref * 0.5, ["lazy_peak"])["lazy_peak"] == pytest.approx(0.25)
    names, reasons = registry.split_available(["lazy_peak", "lazy_missing"])
    assert names == ["lazy_peak"] and "cannot import no_such_package.metrics:score" in reasons["lazy_missing"]
    with pytest.raises(MetricUnavailableError, match="no_such_package"):
        registry.compute_nonintrusive_metrics(ref, ["lazy_missing"])


def test_unknown_names_are_refused_with_the_list(capsys):
    with pytest.raises(ValueError, match="unknown metric 'pesq'") as error:
        registry.resolve_metrics(["stoi", "pesq"])
    for known in ("pesq_wb", "dnsmos_ovrl", "vqscore", "default", "nonintrusive", "learned"):
        assert known in str(error.value)
    assert cli.main(["evaluate", "--deg", "x.wav", "--metrics", "vq_score"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'vq_score'" in err and "vqscore" in err


def test_ranges_directions_and_aliases_are_exposed():
    metrics = registry.METRICS
    assert metrics["pesq_wb"].range == (1.04, 4.64) and metrics["pesq_wb"].needs_reference
    assert metrics["si_sdr"].range == (None, None) and metrics["si_sdr"].range_text == "(-inf, inf)"
    assert metrics["csig"].range == (1.0, 5.0) and metrics["csig"].group == "composite"
    vq = metrics["vqscore"]
    assert (vq.needs_reference, vq.range, vq.direction, vq.learned) == (False, (-1.0, 1.0), "higher", True)
    assert vq.compute.interface == registry.VQSCORE_INTERFACE
    assert all(spec.direction in registry.DIRECTIONS for spec in metrics.values())
    assert all(spec.intrusive == spec.needs_reference for spec in metrics.values())
    assert {metrics[name].group for name in registry.resolve_metrics("learned")} >= {"dnsmos", "vqscore"}
    assert "vqscore" in registry.resolve_metrics("nonintrusive") and "vqscore" in registry.resolve_metrics("all")
    assert "vqscore" not in registry.resolve_metrics("intrusive") + registry.resolve_metrics("default")
    assert registry.needs_reference(["vqscore", "dnsmos_ovrl"]) is False


# --- learned predictors ---------------------------------------------------------------------------

def test_multi_output_predictor_gives_several_names_from_one_pass(tiny_hub, registered):
    specs = registry.register_predictor(
        "two_scores", interface=TwoScores, source=tiny_hub, output={"two_vq": "vq", "two_neg": "neg"},
        range=(-1, 1), direction={"two_neg": "lower"},
    )
    registered.extend(["two_vq", "two_neg"])
    assert [spec.name for spec in specs] == ["two_vq", "two_neg"]
    assert {spec.group for spec in specs} == {"two_scores"}
    assert [spec.direction for spec in specs] == ["higher", "lower"]
    wav = np.random.default_rng(0).standard_normal(16000) * 0.1
    scores = registry.compute_nonintrusive_metrics(wav, ["two_vq", "two_neg"])
    assert scores["two_neg"] == pytest.approx(-scores["two_vq"]) and -1 <= scores["two_vq"] <= 1


def test_predictor_resamples_to_the_model_rate(tiny):
    wav16 = np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * 0.3
    at16 = registry.compute_nonintrusive_metrics(wav16, [TINY])[TINY]
    wav8 = wav16[::2]  # the same tone at 8 kHz (200 Hz is far below Nyquist)
    at8 = registry.compute_nonintrusive_metrics(wav8, [TINY], sample_rate=8000)[TINY]
    assert math.isfinite(at8) and at8 == pytest.approx(at16, abs=0.05)


@pytest.mark.parametrize("jobs", [1, 2])
def test_predictor_through_the_runner(tiny, corpus, jobs):
    pairs, _ = runner.pair_files(paths(corpus, "clean"), paths(corpus, "enhanced"))
    rows, failures = runner.evaluate_pairs(pairs, ["pesq_wb", TINY], 16000, jobs=jobs, progress=False)
    assert failures == [] and [row["file"] for row in rows] == ["a.wav", "b.wav"]
    scorer = VQScore.from_hparams(source=tiny)
    for row in rows:
        assert 1.0 < row["pesq_wb"] < 4.64
        assert row[TINY] == pytest.approx(scorer.score_file(row["deg"]), abs=1e-6)


def test_predictor_reaches_spawned_workers(tiny, corpus):
    # a spawned worker imports a fresh registry: the runner sends it the specs asked for
    degs = paths(corpus, "enhanced")
    result = runner.evaluate(None, degs, [TINY], jobs=2, progress=False, start_method="spawn")
    scorer = VQScore.from_hparams(source=tiny)
    assert result.ok and len(result.rows) == 2
    for row, path in zip(result.rows, degs):
        assert row[TINY] == pytest.approx(scorer.score_file(path), abs=1e-6)


def test_registered_vqscore_equals_the_interface_score_file(corpus):
    degs = paths(corpus, "enhanced")
    result = runner.evaluate(None, degs, ["vqscore"], progress=False)
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE)
    assert result.ok
    for row, path in zip(result.rows, degs):
        assert row["vqscore"] == scorer.score_file(path)


def test_missing_model_folder_is_unavailable_with_the_reason(tmp_path, registered, corpus, capsys):
    registry.register_predictor("lost_vq", source=str(tmp_path / "gone"))
    registered.append("lost_vq")
    names, reasons = registry.split_available(["si_sdr", "lost_vq"])
    assert names == ["si_sdr"] and "model folder" in reasons["lost_vq"] and "does not exist" in reasons["lost_vq"]
    with pytest.raises(MetricUnavailableError, match="does not exist"):
        runner.evaluate(None, paths(corpus, "enhanced"), ["lost_vq"], progress=False)
    status = cli.main(["evaluate", "--ref", *paths(corpus, "clean"), "--deg", *paths(corpus, "enhanced"),
                       "--metrics", "si_sdr", "lost_vq", "--no-progress"])
    assert status == 0
    assert "skipping lost_vq: lost_vq: model folder" in capsys.readouterr().err


def test_model_that_cannot_load_stops_the_evaluation(tmp_path, registered, corpus, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hyperparams.yaml").write_text("sample_rate: [unclosed\n")
    registry.register_predictor("broken_vq", source=str(broken))
    registered.append("broken_vq")
    assert registry.split_available(["broken_vq"])[0] == ["broken_vq"]  # checks never load a model
    with pytest.raises(MetricUnavailableError, match="broken_vq: cannot load .*VQScore from"):
        registry.compute_nonintrusive_metrics(np.ones(16000) * 0.1, ["broken_vq"])
    assert cli.main(["evaluate", "--deg", *paths(corpus, "enhanced"), "--metrics", "broken_vq",
                     "--jobs", "2", "--no-progress"]) == 2
    assert "broken_vq: cannot load" in capsys.readouterr().err


# --- sqe evaluate -------------------------------------------------------------------------------

def test_cli_learned_only_without_reference(tiny, corpus, tmp_path):
    out = tmp_path / "scores.csv"
    status = cli.main(["evaluate", "--deg", str(corpus / "enhanced"), "--metrics", TINY, "vqscore",
                       "--csv", str(out), "--no-progress"])
    assert status == 0
    columns, rows = read_csv(out)
    assert columns == ["file", "ref", "deg", "duration_s", TINY, "vqscore"]
    assert [row["file"] for row in rows] == ["a.wav", "b.wav"] and all(row["ref"] == "" for row in rows)
    assert all(-1 <= float(row[TINY]) <= 1 and -1 <= float(row["vqscore"]) <= 1 for row in rows)


def test_cli_mixed_intrusive_and_learned_with_two_jobs(tiny, corpus, tmp_path):
    out = tmp_path / "scores.csv"
    status = cli.main(["evaluate", "--ref", str(corpus / "clean"), "--deg", str(corpus / "enhanced"),
                       "--metrics", "pesq_wb", "stoi", TINY, "--jobs", "2", "--csv", str(out),
                       "--no-progress"])
    assert status == 0
    columns, rows = read_csv(out)
    assert columns[4:] == ["pesq_wb", "stoi", TINY] and len(rows) == 2
    scorer = VQScore.from_hparams(source=tiny)
    for row in rows:
        assert float(row[TINY]) == pytest.approx(scorer.score_file(row["deg"]), abs=1e-6)
        assert 0.5 < float(row["stoi"]) <= 1.0


def test_cli_help_and_list_metrics(tiny, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--list-metrics" in help_text
    assert "vqscore (no reference, [-1, 1], higher is better, learned)" in help_text
    assert "pesq_wb (needs --ref, [1.04, 4.64], higher is better)" in help_text
    assert "all (every registered metric, the learned predictors DNSMOS, Distill-MOS and VQScore included)" in help_text

    def unavailable():
        raise dnsmos_module.DnsmosUnavailableError(f"DNSMOS needs speechmos: {dnsmos_module.INSTALL_HINT}")

    monkeypatch.setattr(dnsmos_module, "_load_speechmos", unavailable)
    assert cli.main(["evaluate", "--list-metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "reference", "range", "better", "available"]
    table = {line.split()[0]: line.split(None, 4) for line in lines[1:]}
    assert list(table) == list(registry.METRICS)
    assert table["pesq_wb"][1:] == ["yes", "[1.04,", "4.64]", "higher yes"]
    assert table["vqscore"][1:4] == ["no", "[-1,", "1]"] and table["vqscore"][4] == "higher yes"
    assert table[TINY][4] == "higher yes"
    assert "no: DNSMOS needs speechmos: pip install speechbrain-sqe[eval]" in table["dnsmos_ovrl"][4]


def test_dnsmos_is_computed_or_reported_unavailable(corpus):
    names, reasons = registry.split_available(["dnsmos_ovrl", "dnsmos_p808"])
    if reasons:
        assert names == [] and all("speechbrain-sqe[eval]" in why for why in reasons.values())
        with pytest.raises(dnsmos_module.DnsmosUnavailableError):
            runner.evaluate(None, paths(corpus, "enhanced"), ["dnsmos_ovrl"], progress=False)
        return
    result = runner.evaluate(None, paths(corpus, "enhanced")[:1], ["dnsmos_ovrl", "dnsmos_p808"],
                             progress=False)
    assert result.ok
    for name in ("dnsmos_ovrl", "dnsmos_p808"):
        low, high = registry.METRICS[name].range
        assert low <= result.rows[0][name] <= high
