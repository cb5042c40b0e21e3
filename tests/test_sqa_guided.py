"""SQA-guided enhancement (hparams/sqa_guided_se.yaml): the guidance loss trains the enhancer through
a frozen predictor, each guidance mode lowers its loss on a tiny overfit, the adapt stage reads no
clean file, tiny end-to-end runs (predictor guidance with resume, then adapting its export on a
folder of noisy files) and clear errors for a bad ``predictor_source``."""

import json
import os
import shutil

import pytest
import speechbrain as sb
import torch
from brain_probe import probe
from recipe_args import ROOT, recipe_args, tiny_corpus
from speechbrain.dataio.batch import PaddedBatch

import train
from speechbrain_sqe import cli
from speechbrain_sqe.brains.sqa_guided import (
    SQAGuidedBrain,
    load_guidance_predictor,
    true_metric_labels,
)
from speechbrain_sqe.dataio import pipelines
from speechbrain_sqe.dataio.manifest import read_manifest
from speechbrain_sqe.inference.enhancement import BSSEEnhancer
from speechbrain_sqe.inference.hub import DEFAULT_SOURCES, load_model
from speechbrain_sqe.inference.quality import LearnedQualityPredictor
from speechbrain_sqe.lobes.bsse import BSSEModel
from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
from speechbrain_sqe.lobes.quality_guidance import (
    PredictorRefresh,
    QualityGuidanceLoss,
    si_snr_loss,
)
from speechbrain_sqe.lobes.sqa_predictor import DEFAULT_METRICS, SQAPredictor
from speechbrain_sqe.lobes.tera import TERAModel

RECIPE = os.path.join(ROOT, "hparams", "sqa_guided_se.yaml")
TINY = ("--batch_size=4 --proj_size=16 --hidden_size=16 --lr=0.003 --feature=spectrum --ssl_pretrainer=null "
        "--test_metrics=[stoi] --metric_jobs=1 --monitor_metric=null")


def _tiny_predictor(seed=0):
    torch.manual_seed(seed)
    tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, dropout=0.0)
    predictor = SQAPredictor(list(DEFAULT_METRICS), ssl_layers=2, ssl_size=16, d_model=16, num_layers=1,
                             num_heads=2, ffn_size=32, dropout=0.0)
    return predictor, tera


def _export_predictor(folder):
    """A freshly initialised predictor exported as the SQA brain exports it."""
    predictor, tera = _tiny_predictor()
    return LearnedQualityPredictor.export(str(folder), {"predictor": predictor, "ssl": tera})


def _frontend():
    return SpectralFrontEnd(n_fft=400, hop_length=160, log1p=True, window="hamming")


def _pairs(seed=0, batch=2, samples=8000):
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000.0
    clean = torch.stack([0.3 * torch.sin(2 * torch.pi * (200 + 100 * i) * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
                         for i in range(batch)])
    noisy = clean + 0.1 * torch.randn(batch, samples, generator=generator)
    return noisy, clean


# ---------------------------------------------------------------------------------- the lobe
def test_gradient_reaches_the_waveform_through_the_frozen_predictor_and_its_tera():
    predictor, tera = _tiny_predictor()
    guidance = QualityGuidanceLoss(predictor, tera)
    wavs = (0.1 * torch.randn(2, 6400)).requires_grad_(True)
    loss, predictions = guidance(wavs, torch.tensor([1.0, 0.7]))
    loss.backward()
    assert predictions.shape == (2, len(DEFAULT_METRICS)) and not predictions.requires_grad
    grad = wavs.grad
    assert torch.isfinite(grad).all() and grad[0].abs().sum() > 0 and grad[1, :4480].abs().sum() > 0
    assert grad[1, 4480:].abs().sum() == 0  # padding is never read
    assert all(p.grad is None and not p.requires_grad for p in [*predictor.parameters(), *tera.parameters()])


def test_gradient_reaches_the_waveform_through_a_distillmos_upstream():
    """The Distill-MOS encoder (``--ssl_upstream=distillmos``) can drive guidance: a finite gradient,
    although its 7.68 s windows are mostly zero padding (the wheel's own STFT would give NaN)."""
    pytest.importorskip("distillmos")
    from speechbrain_sqe.lobes.distillmos_encoder import DistillMOSEncoder

    upstream = DistillMOSEncoder()
    torch.manual_seed(0)
    predictor = SQAPredictor(list(DEFAULT_METRICS), ssl_layers=upstream.layer_count, ssl_size=upstream.hidden_size,
                             d_model=16, num_layers=1, num_heads=2, ffn_size=32, dropout=0.0)
    wavs = (0.1 * torch.randn(2, 16000)).requires_grad_(True)
    loss, _ = QualityGuidanceLoss(predictor, upstream)(wavs, torch.tensor([1.0, 0.6]))
    loss.backward()
    grad = wavs.grad
    assert torch.isfinite(grad).all() and grad[0].abs().sum() > 0 and grad[1, :9600].abs().sum() > 0
    assert grad[1, 9600:].abs().sum() == 0  # padding is never read


def test_guidance_trains_the_enhancer_and_leaves_the_predictor_unchanged():
    predictor, tera = _tiny_predictor()
    guidance = QualityGuidanceLoss(predictor, tera, weights={"pesq_wb": 1.0, "si_sdr": 2.0})
    before = {k: v.clone() for k, v in guidance.state_dict().items()}
    frontend = _frontend()
    torch.manual_seed(1)
    enhancer = BSSEModel("spectrum", proj_size=16, hidden_size=16)
    # Even an optimizer given every parameter must not move the frozen ones.
    optimizer = torch.optim.Adam([*enhancer.parameters(), *guidance.parameters()], lr=0.01)
    noisy, _ = _pairs()
    guidance.train()  # what SpeechBrain does each epoch: it stays in eval mode
    assert not guidance.training and not predictor.training and not tera.training
    for _ in range(3):
        optimizer.zero_grad()
        enhanced, _ = enhancer(frontend(noisy))
        loss, _ = guidance(frontend.resynthesize(enhanced, noisy))
        loss.backward()
        grads = [p.grad for p in enhancer.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        optimizer.step()
    after = guidance.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_guidance_weights_and_distances():
    predictor, tera = _tiny_predictor()
    with pytest.raises(ValueError, match="does not predict"):
        QualityGuidanceLoss(predictor, tera, weights={"mos": 1.0})
    with pytest.raises(ValueError, match="at least one > 0"):
        QualityGuidanceLoss(predictor, tera, weights={"stoi": 0.0})
    guidance = QualityGuidanceLoss(predictor, tera)
    best = torch.tensor([[4.5, 1.0, 1.0, 30.0, 5.0, 5.0], [1.0, 0.0, 0.5, 45.0, 3.0, 1.0]])
    distances = guidance.distances(best)
    assert torch.allclose(distances[0], torch.zeros(6))
    assert torch.allclose(distances[1], torch.tensor([1.0, 1.0, 0.5, 0.0, 0.5, 1.0]))  # SI-SDR: no reward > 30 dB


def test_refresh_pulls_a_fooled_predictor_to_the_true_metrics_and_touches_nothing_else():
    """Guard (iv): outputs the predictor over-rates (here: noisy sines, true STOI and SI-SDR far below
    its predictions after the head is biased up) get their true labels; refreshing moves the
    predictions toward them, changes the predictor only, and leaves it frozen between refreshes."""
    predictor, tera = _tiny_predictor()
    with torch.no_grad():
        predictor.head.bias.add_(3.0)  # a predictor that rates everything near the top: "fooled"
    guidance = QualityGuidanceLoss(predictor, tera, weights={"stoi": 1.0, "si_sdr": 1.0})
    upstream_before = {k: v.clone() for k, v in tera.state_dict().items()}
    noisy, clean = _pairs(batch=4, samples=16000)
    noisy = clean + 1.5 * (noisy - clean)
    metrics = guidance.metrics
    limits = [(low, high) for low, high in predictor.ranges]
    limits[metrics.index("si_sdr")] = (-30.0, 50.0)
    labels = true_metric_labels(noisy, clean, torch.ones(4), metrics, ["stoi", "si_sdr"], limits)
    refreshed = [metrics.index("stoi"), metrics.index("si_sdr")]
    assert labels[:, refreshed].isfinite().all() and labels[:, [metrics.index("pesq_wb")]].isnan().all()

    def error():
        with torch.no_grad():
            predicted = guidance.predict(noisy)
        return float(((predicted - labels)[:, refreshed] / torch.tensor(predictor.scales)[refreshed]).abs().mean())

    refresh = PredictorRefresh(guidance, lr=0.003)
    start = error()
    losses = [refresh.step(noisy, labels) for _ in range(30)]
    assert error() < 0.5 * start, (start, error())
    assert losses[-1] < losses[0] and refresh.steps == 30
    assert all(torch.equal(upstream_before[k], v) for k, v in tera.state_dict().items())
    assert not any(p.requires_grad for p in guidance.parameters())  # frozen again for the enhancer's step


# ---------------------------------------------------------------------------------- the Brain's losses
def _brain(guidance_mode, predictor=True, stage="train"):
    torch.manual_seed(2)
    enhancer = BSSEModel("spectrum", proj_size=16, hidden_size=16)
    hparams = {"stage": stage, "guidance": guidance_mode, "frontend": _frontend(), "sisnr_weight": 1.0,
               "sisnr_scale": 30.0, "predictor_weight": 1.0, "anchor_weight": 1.0, "monitor_metric": None,
               "sample_rate": 16000, "ssl_finetune": "frozen", "selection_key": "auto"}
    brain = SQAGuidedBrain(modules={"enhancer": enhancer, "ssl": torch.nn.Identity()},
                           opt_class=lambda params: torch.optim.Adam(params, lr=0.01), hparams=hparams,
                           run_opts={"device": "cpu"}, checkpointer=None)
    brain.anchor = None
    brain.guidance = QualityGuidanceLoss(*_tiny_predictor()) if predictor else None
    return brain, enhancer


def _batch(noisy, clean=None):
    items = [{"id": f"u{i}", "noisy_sig": noisy[i], **({} if clean is None else {"clean_sig": clean[i]})}
             for i in range(noisy.shape[0])]
    return PaddedBatch(items)


@pytest.mark.parametrize("mode", ["sisnr", "predictor", "both"])
def test_each_guidance_mode_lowers_its_loss_on_a_tiny_overfit(mode):
    brain, enhancer = _brain(mode)
    noisy, clean = _pairs()
    batch = _batch(noisy, clean)
    optimizer = torch.optim.Adam(enhancer.parameters(), lr=0.01)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        terms, _ = brain.loss_terms(brain.compute_forward(batch, sb.Stage.VALID))
        assert set(terms) == {"sisnr": {"si_snr"}, "predictor": {"predictor"}, "both": {"si_snr", "predictor"}}[mode]
        loss = sum(terms.values())
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert min(losses[-5:]) < losses[0] - 0.01, losses


def test_sisnr_term_is_the_negative_si_snr_over_its_scale():
    brain, _ = _brain("sisnr", predictor=False)
    noisy, clean = _pairs()
    out = brain.compute_forward(_batch(noisy, clean), sb.Stage.VALID)
    terms, predictions = brain.loss_terms(out)
    assert predictions is None
    expected = float(si_snr_loss(out["wav"].detach(), clean)) / 30.0
    assert float(terms["si_snr"].detach()) == pytest.approx(expected, rel=1e-5)


def test_adapt_stage_refuses_a_batch_with_a_clean_signal():
    brain, _ = _brain("predictor", stage="adapt")
    noisy, clean = _pairs()
    with pytest.raises(RuntimeError, match="clean signal"):
        brain.compute_forward(_batch(noisy, clean), sb.Stage.TRAIN)
    out = brain.compute_forward(_batch(noisy), sb.Stage.TRAIN)  # noisy only: fine
    assert out["clean"] is None and set(brain.loss_terms(out)[0]) == {"predictor"}


def test_bad_predictor_sources_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        load_guidance_predictor(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a model folder"):
        load_guidance_predictor(str(tmp_path))
    with pytest.raises(ValueError, match="holds a VQScore, not a learned multi-metric quality predictor"):
        load_guidance_predictor(DEFAULT_SOURCES["quality"])
    with pytest.raises(ValueError, match="speech enhancer"):
        load_guidance_predictor(BSSEEnhancer.DEFAULT_SOURCE)
    folder = _export_predictor(tmp_path / "ok")
    assert isinstance(load_guidance_predictor(folder), LearnedQualityPredictor)


# ---------------------------------------------------------------------------------- end to end
def _args(data, out, epochs, extra=""):
    args = recipe_args(RECIPE, data, out, epochs, tiny_corpus(valid_pairs=2, test_pairs=2), TINY, extra)
    by_name = {arg.split("=", 1)[0]: arg for arg in args[1:]}  # later ones win
    return [args[0], *by_name.values()]


def _log(out, key):
    lines = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    return [float(line.split(f"{key}: ")[1].split(" ")[0].rstrip(",")) for line in lines]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(b) predictor guidance: 1 epoch, then resumed to 2; then (d) adapting its export on a folder
    of noisy files, every audio file the adapt fit reads recorded."""
    root = tmp_path_factory.mktemp("sqa_guided")
    data, out, adapted = root / "data", root / "out", root / "adapted"
    predictor = _export_predictor(root / "predictor")
    extra = f"--guidance=predictor --predictor_source={predictor}"
    train.main(_args(data, out, 1, extra))
    brain = train.main(_args(data, out, 2, extra))
    noisy_folder = root / "noisy"
    noisy_folder.mkdir()
    for row in read_manifest(str(data / "unpaired_noisy.csv")):
        shutil.copy(row["noisy_wav"], noisy_folder / os.path.basename(row["noisy_wav"]))
    read = []
    load = pipelines.load_audio

    def recording(path, *args, **kwargs):
        read.append(os.path.abspath(path))
        return load(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, probe() as adapt:
        patch.setattr(pipelines, "load_audio", recording)
        patch.setattr(SQAGuidedBrain, "test_report", lambda self, manifests: {})  # the fit's reads only
        patch.setattr(SQAGuidedBrain, "export", lambda self, report, manifests: None)
        train.main(_args(data, adapted, 1, f"--stage=adapt --guidance=predictor --predictor_source={predictor} "
                                           f"--init_from={out / 'hub'} --adapt_data={noisy_folder} "
                                           "--adapt_valid_files=1 --monitor_metric=vqscore"))
    return {"data": data, "out": out, "adapted": adapted, "brain": brain, "read": read, "noisy": noisy_folder,
            "predictor": predictor, "adapt_start": adapt["restored"]}


REFRESH = "--predictor_refresh=True --guidance_weights={dnsmos_ovrl: 0.0, distillmos: 0.0} --refresh_batch_size=2"


def test_refreshed_adaptation_resumes_with_its_refreshed_predictor_and_reports_with_the_loaded_one(runs):
    """Guard (iv) end to end, adapt stage: 1 epoch, then resumed to 2: the refresh's predictor and
    optimizer come back from the checkpoint (its update count continues), the log has the refresh
    loss each epoch, and the gaming check is made by the predictor as loaded, not the refreshed one."""
    data, predictor = runs["data"], runs["predictor"]
    out = runs["adapted"].parent / "refreshed"
    args = (f"--stage=adapt --guidance=predictor --predictor_source={predictor} --init_from={runs['out'] / 'hub'} "
            f"--adapt_data={runs['noisy']} --adapt_valid_files=1 {REFRESH}")
    first = train.main(_args(data, out, 1, args))
    steps = first.refresh.steps
    assert steps >= 1
    brain = train.main(_args(data, out, 2, args))
    assert len(_log(out, "refresh_loss")) == 2 and len(_log(out, "train loss")) == 2
    assert brain.refresh.steps > steps  # continued from the checkpoint's count, not from 0
    loaded = load_guidance_predictor(predictor).mods.predictor.state_dict()
    refreshed = brain.guidance.predictor.state_dict()
    assert any(not torch.equal(loaded[k], refreshed[k]) for k in loaded)  # the refresh changed it
    judged = brain.judge.predictor.state_dict()
    assert all(torch.equal(loaded[k], judged[k]) for k in loaded)  # the report's judge did not
    assert "predictor refresh" in (out / "hub" / "README.md").read_text()
    with pytest.raises(ValueError, match="distillmos a weight > 0 but predictor_refresh does not refresh"):
        train.main(_args(data, out.parent / "gameable", 1,
                         f"{args} --guidance_weights={{dnsmos_ovrl: 0.0, distillmos: 1.0}}"))


def test_predictor_guided_run_resumes_reports_predicted_vs_true_and_exports(runs, tmp_path):
    out, brain = runs["out"], runs["brain"]
    assert len(_log(out, "train loss")) == 2  # epoch 1 was not trained again
    assert brain.selection() == ("si_snr", "max")
    assert len(_log(out, "valid si_snr")) == 2 and len(_log(out, "pred_pesq_wb")) == 2
    assert len(_log(out, "loss_predictor")) == 2 and "loss_si_snr" not in (out / "train_log.txt").read_text()
    summary = json.loads((out / "report" / "predicted_vs_true.json").read_text())["systems"]
    assert set(summary) == {"noisy", "sqa-guided predictor"}
    stoi = summary["sqa-guided predictor"]["stoi"]
    assert stoi["n"] == 2 and 0 <= stoi["true"] <= 1 and 0 <= stoi["predicted"] <= 1
    assert summary["noisy"]["pesq_wb"]["n"] == 0  # not among the test metrics: predicted only
    assert "predicted - true" in (out / "report" / "report.md").read_text()
    enhancer = load_model(str(out / "hub"), task="enhancement")
    assert isinstance(enhancer, BSSEEnhancer) and enhancer.mods.enhancer.feature == "spectrum"
    noisy = next((runs["data"] / "test" / "noisy").iterdir())
    assert cli.main(["enhance", str(noisy), "--model", str(out / "hub"), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / noisy.name).is_file()
    card = (out / "hub" / "README.md").read_text()
    assert "SQA-guided BSSE enhancer" in card and "predicted - true" in card


def test_adapt_stage_reads_noisy_files_only_and_starts_from_init_from(runs):
    data, adapted = runs["data"], runs["adapted"]
    clean = set()
    for name in ("train_clean", "valid", "test"):
        for row in read_manifest(str(data / f"{name}.csv")):
            clean.update(os.path.abspath(row[c]) for c in ("wav", "clean_wav") if c in row)
    read = set(runs["read"])
    assert read and not read & clean
    assert read <= {os.path.abspath(str(p)) for p in runs["noisy"].iterdir()}
    train_rows = read_manifest(str(adapted / "adapt_data" / "adapt_train.csv"))
    valid_rows = read_manifest(str(adapted / "adapt_data" / "adapt_valid.csv"))
    files = len(list(runs["noisy"].iterdir()))
    assert files >= 2 and len(train_rows) == files - 1 and len(valid_rows) == 1
    assert list(train_rows[0]) == ["ID", "duration", "noisy_wav"]
    # The fit started from init_from's enhancer (no checkpoint of its own yet).
    start = torch.load(runs["out"] / "hub" / "enhancer.ckpt", map_location="cpu", weights_only=True)
    restored = runs["adapt_start"]
    assert all(torch.equal(restored[f"modules.enhancer.{key}"], value) for key, value in start.items())
    log = (adapted / "train_log.txt").read_text()
    assert "monitor_vqscore" in log and "si_snr" not in log  # no reference: no SI-SNR
    assert "valid loss_predictor" in log and "valid loss_anchor" in log


def test_adapt_needs_predictor_guidance_and_a_real_predictor(runs):
    data, predictor = runs["data"], runs["predictor"]
    out = runs["adapted"].parent / "refused"
    with pytest.raises(ValueError, match="no clean reference"):
        train.main(_args(data, out, 1, f"--stage=adapt --guidance=both --predictor_source={predictor}"))
    with pytest.raises(ValueError, match="predictor_source .*no such folder"):
        train.main(_args(data, out, 1, f"--guidance=predictor --predictor_source={out / 'nothing'}"))


def test_sisnr_guidance_runs_without_a_predictor(runs):
    """(a) SI-SNR alone needs no predictor: no predicted-vs-true columns then, the same selection."""
    out = runs["adapted"].parent / "sisnr"
    brain = train.main(_args(runs["data"], out, 1, "--guidance=sisnr --predictor_source=null"))
    assert brain.guidance is None and brain.selection() == ("si_snr", "max")
    assert len(_log(out, "loss_si_snr")) == 1 and "pred_" not in (out / "train_log.txt").read_text()
    assert not (out / "report" / "predicted_vs_true.json").exists()
    assert isinstance(load_model(str(out / "hub"), task="enhancement"), BSSEEnhancer)


def test_adapt_starts_from_the_shipped_bsse_by_default_and_refuses_other_sizes(runs):
    out = runs["adapted"].parent / "other_sizes"
    with pytest.raises(ValueError, match=r"init_from .*pretrained.*bsse.*'proj_size': 128"):
        train.main(_args(runs["data"], out, 1, f"--stage=adapt --guidance=predictor --predictor_source={runs['predictor']} "
                                               f"--adapt_data={runs['noisy']} --adapt_valid_files=1"))
