"""The learned multi-metric quality predictor, trained from a label manifest.

Data: ``train.csv``, ``valid.csv``, ``test.csv`` in ``label_folder`` (columns
:data:`~speechbrain_sqe.dataio.sqa_labels.LABEL_COLUMNS`; an empty cell is a missing label), checked
by :func:`~speechbrain_sqe.dataio.sqa_labels.read_label_manifest` (a bad file stops the run naming
the file and the column). The YAML's default makes a small label set from the embedded corpus
(:func:`~speechbrain_sqe.dataio.sqa_labels.prepare_embedded_sqa_labels`); ``--prepare_labels=False``
uses the CSVs already in ``label_folder`` (another recipe's labels) as they are.

Labels are limited before training: a bounded metric to its range (the wide-band PESQ of a clean
file against itself is 4.64, above the head's 4.5), an unbounded one to ``label_limits`` (SI-SDR of a
clean file against itself is over 150 dB; [-30, 50] dB by default). Training: random crops of at
most ``crop_seconds`` (whole files below), the SSL upstream frozen (no gradient, eval mode), the
masked scaled MSE of :func:`~speechbrain_sqe.lobes.sqa_predictor.masked_metric_mse`, AdamW with a
linear warm-up over ``warmup_steps`` updates, gradients clipped to ``max_grad_norm`` (1.0).

``cache_states: True`` keeps each file's upstream states in memory after its first pass
(:class:`~speechbrain_sqe.brains.state_cache.UpstreamStateCache`): training then reads whole files and
cuts the random crop from their states (and the matching samples), not from the waveform.

Checkpoint selection: the lowest validation loss (the same masked scaled MSE on whole valid files).
Why not a correlation such as the mean utterance SRCC: the loss is what the model optimises, covers
every metric by its own scale, and stays defined on a tiny valid set where a correlation over a few
files is mostly noise; the per-metric LCC/SRCC/MSE are logged each epoch beside it.

Test report (``report/``): the kept model scores each test file alone (the exported interface's
chain); per metric, utterance-level LCC (Pearson), SRCC (Spearman) and MSE against the labels, over
the files that have that label (``predictions.csv``, ``summary.json``, ``report.md``). The export is a
hub folder :class:`~speechbrain_sqe.inference.quality.LearnedQualityPredictor` loads
(``sqe score --model``).
"""

import csv
import json
import logging
import math
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.brains.state_cache import UpstreamStateCache
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.pipelines import random_crop_and_gain
from speechbrain_sqe.dataio.sqa_labels import read_label_manifest
from speechbrain_sqe.inference.quality import LearnedQualityPredictor
from speechbrain_sqe.lobes.bsse import configure_ssl_finetuning, upstream_hop_samples
from speechbrain_sqe.lobes.sqa_predictor import sqa_forward
from speechbrain_sqe.metrics.correlation import correlation
from speechbrain_sqe.utils.safe_load import safe_torch_recovery

logger = logging.getLogger(__name__)


def label_limits(metrics, ranges, limits=None):
    """The interval each metric's labels are clipped to: its range, or ``limits`` for unbounded sides.

    Arguments
    ---------
    metrics : list of str
        The predicted metrics.
    ranges : list of [low, high]
        The model's ranges (``None``: unbounded).
    limits : dict, optional
        ``{metric: [low, high]}`` for the unbounded sides.

    Returns
    -------
    list of tuple
        ``(low, high)`` per metric (``None``: not clipped).

    Example
    -------
    >>> label_limits(["pesq_wb", "si_sdr"], [[1.0, 4.5], [None, None]], {"si_sdr": [-30, 50]})
    [(1.0, 4.5), (-30.0, 50.0)]
    """
    limits = dict(limits or {})
    out = []
    for name, (low, high) in zip(metrics, ranges):
        given = limits.get(name) or [None, None]
        low = low if low is not None else (None if given[0] is None else float(given[0]))
        high = high if high is not None else (None if given[1] is None else float(given[1]))
        out.append((low, high))
    return out


def label_dataset(path, metrics, limits, sample_rate=16000, crop_seconds=None):
    """A dataset of a label manifest: ``id``, ``sig`` (``[time]``) and ``labels`` (``[metrics]``, NaN
    where missing, clipped to ``limits``).

    Arguments
    ---------
    path : str
        The label manifest (checked by :func:`~speechbrain_sqe.dataio.sqa_labels.read_label_manifest`).
    metrics : list of str
        The label columns, in the model's output order.
    limits : list of tuple
        From :func:`label_limits`.
    sample_rate : int
        The model's rate.
    crop_seconds : float, optional
        Random crop of longer files (training); None: whole files.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        The dataset.
    """
    rows = read_label_manifest(path, metrics)
    data = {}
    for row in rows:
        values = []
        for name, (low, high) in zip(metrics, limits):
            value = row[name]
            if not math.isnan(value):
                value = value if low is None else max(value, low)
                value = value if high is None else min(value, high)
            values.append(value)
        data[row["ID"]] = {"wav": row["wav"], "duration": row["duration"], "label_values": values}
    dataset = sb.dataio.dataset.DynamicItemDataset(data)
    crop = None if crop_seconds is None else int(crop_seconds * sample_rate)

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav_path):
        return random_crop_and_gain(load_audio(wav_path, sample_rate, warn=False), crop)

    @sb.utils.data_pipeline.takes("label_values")
    @sb.utils.data_pipeline.provides("labels")
    def label_pipeline(values):
        return torch.tensor(values, dtype=torch.float32)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(label_pipeline)
    dataset.set_output_keys(["id", "sig", "labels"])
    return dataset


def metric_statistics(predictions, labels, metrics):
    """Per metric: utterance-level ``n``, ``lcc`` (Pearson), ``srcc`` (Spearman) and ``mse`` over the
    utterances that have the label.

    Arguments
    ---------
    predictions, labels : torch.Tensor
        ``[utterances, metrics]`` (labels NaN where missing).
    metrics : list of str
        The names.

    Returns
    -------
    dict
        ``{metric: {"n", "lcc", "srcc", "mse"}}`` (NaN where undefined).

    Example
    -------
    >>> pred = torch.tensor([[1.0, 0.1], [2.0, 0.2], [3.0, 0.3], [4.0, 0.4]])
    >>> lab = torch.tensor([[1.5, float("nan")], [2.0, 0.1], [3.5, 0.2], [4.0, 0.3]])
    >>> stats = metric_statistics(pred, lab, ["pesq_wb", "stoi"])
    >>> stats["pesq_wb"]["n"], round(stats["pesq_wb"]["srcc"], 3), round(stats["stoi"]["mse"], 4)
    (4, 1.0, 0.01)
    """
    out = {}
    for column, name in enumerate(metrics):
        x, y = predictions[:, column].double(), labels[:, column].double()
        keep = ~torch.isnan(y)
        x, y = x[keep], y[keep]
        stats = correlation(x.tolist(), y.tolist())
        out[name] = {"n": int(keep.sum()), "lcc": stats["pearson"], "srcc": stats["spearman"],
                     "mse": float(((x - y) ** 2).mean()) if keep.any() else math.nan}
    return out


class SQABrain(RecipeBrain):
    """Trains the learned quality predictor from a label manifest (see the module docstring).

    Expected ``modules``: ``predictor`` (:class:`speechbrain_sqe.lobes.sqa_predictor.SQAPredictor`)
    and ``ssl`` (the frozen upstream, e.g. :class:`speechbrain_sqe.lobes.tera.TERAModel`).
    ``hparams``: ``ssl_pretrainer`` (or null), ``lr``, ``warmup_steps``, ``crop_seconds``,
    ``label_limits``, the dataloader options and the folders.
    """

    SELECTION_KEY, SELECTION_MODE = "loss", "min"

    @property
    def metrics(self):
        """The predicted metrics, in output order."""
        return list(self.module("predictor").metrics)

    def limits(self):
        """The label limits of each metric (:func:`label_limits`)."""
        predictor = self.module("predictor")
        return label_limits(predictor.metrics, predictor.ranges, getattr(self.hparams, "label_limits", None))

    def datasets(self, manifests):
        """Training crops and whole valid/test files with their labels."""
        hp = self.hparams
        limits = self.limits()
        # With cached states, training reads whole files and crops their states (compute_forward).
        crop = None if self.state_cache is not None else hp.crop_seconds
        return {
            "train": label_dataset(manifests["train"], self.metrics, limits, hp.sample_rate, crop),
            "valid": label_dataset(manifests["valid"], self.metrics, limits, hp.sample_rate),
            "test": label_dataset(manifests["test"], self.metrics, limits, hp.sample_rate),
        }

    def prepare(self, manifests, data):
        """The pretrained upstream, frozen."""
        pretrainer = getattr(self.hparams, "ssl_pretrainer", None)
        if pretrainer is not None:
            run_on_main(pretrainer.collect_files)
            pretrainer.add_custom_hooks({name: safe_torch_recovery for name in pretrainer.loadables})
            pretrainer.load_collected()
        configure_ssl_finetuning(self.module("ssl"), "frozen")

    @property
    def state_cache(self):
        """The cache of upstream states (``cache_states: True``), else None; built on first use."""
        if not getattr(self.hparams, "cache_states", False):
            return None
        if getattr(self, "_state_cache", None) is None:
            upstream = self.module("ssl")
            hop = upstream_hop_samples(upstream, self.hparams.sample_rate)
            if hop is None:
                raise ValueError(f"cache_states needs the upstream's frame hop; {type(upstream).__name__} "
                                 "gives neither frame_hop_seconds nor features.hop_length")
            self._state_cache = UpstreamStateCache(upstream, hop)
        return self._state_cache

    def init_optimizers(self):
        """The optimizer over the predictor only (the upstream is frozen)."""
        opt_class = self.opt_class
        self.opt_class = lambda _params: opt_class(self.modules["predictor"].parameters())
        try:
            super().init_optimizers()
        finally:
            self.opt_class = opt_class

    def on_fit_batch_start(self, batch, should_step):
        """Linear warm-up of the learning rate over ``warmup_steps`` updates (then constant)."""
        warmup = int(getattr(self.hparams, "warmup_steps", 0) or 0)
        factor = min(1.0, (self.optimizer_step + 1) / warmup) if warmup > 0 else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.hparams.lr * factor

    def on_stage_start(self, stage, epoch=None):
        """Starts collecting the predictions of a validation or test stage."""
        self.collected = {"predictions": [], "labels": []}

    def compute_forward(self, batch, stage):
        """Predicted metrics ``[batch, metrics]`` of the batch's waveforms."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        self.module("ssl").eval()  # frozen: SpeechBrain sets every module to train mode each epoch
        cache = self.state_cache
        if cache is None:
            return sqa_forward(self.modules["predictor"], self.modules["ssl"], wavs, lens)
        crop = None
        if stage == sb.Stage.TRAIN and self.hparams.crop_seconds:
            crop = max(1, round(self.hparams.crop_seconds * self.hparams.sample_rate / cache.hop_samples))
        states, counts, wavs, lens = cache.batch(list(batch.id), wavs, lens, crop)
        return self.modules["predictor"](states, counts, wavs, lens)

    def compute_objectives(self, predictions, batch, stage):
        """The masked scaled MSE; validation and test keep the predictions for the statistics."""
        labels = batch.labels.data.to(predictions.device)
        loss, _ = self.module("predictor").loss(predictions, labels)
        if stage != sb.Stage.TRAIN:
            self.collected["predictions"].append(predictions.detach().cpu())
            self.collected["labels"].append(labels.detach().cpu())
        return loss

    def stage_statistics(self, stage):
        """Per metric utterance-level LCC, SRCC and MSE of the stage (``<metric>_lcc``...)."""
        if not self.collected["predictions"]:
            return {}
        stats = metric_statistics(torch.cat(self.collected["predictions"]), torch.cat(self.collected["labels"]),
                                  self.metrics)
        return {f"{name}_{key}": round(value, 4) for name, values in stats.items()
                for key, value in values.items() if key != "n" and not math.isnan(value)}

    def test_best(self, test_set):
        """Recovers the checkpoint of lowest validation loss and runs the test stage on it."""
        super().test_best(test_set)

    def predict_file(self, path):
        """The kept model's metrics of one file alone (the exported interface's chain)."""
        wav = load_audio(path, self.hparams.sample_rate, warn=False).unsqueeze(0).to(self.device)
        self.modules.eval()
        with torch.no_grad():
            return sqa_forward(self.module("predictor"), self.module("ssl"), wav)[0].cpu()

    def test_report(self, manifests):
        """Scores each test file alone; per metric LCC, SRCC and MSE; ``report/``."""
        hp = self.hparams
        rows = read_label_manifest(manifests["test"], self.metrics)
        limits = dict(zip(self.metrics, self.limits()))
        predictions, labels = [], []
        for row in rows:
            predictions.append(self.predict_file(row["wav"]))
            clipped = []
            for name in self.metrics:
                low, high = limits[name]
                value = row[name]
                if not math.isnan(value):
                    value = min(max(value, -math.inf if low is None else low), math.inf if high is None else high)
                clipped.append(value)
            labels.append(torch.tensor(clipped))
        predictions, labels = torch.stack(predictions), torch.stack(labels)
        stats = metric_statistics(predictions, labels, self.metrics)
        os.makedirs(hp.report_folder, exist_ok=True)
        with open(os.path.join(hp.report_folder, "predictions.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["ID", "wav", *(f"{n}_label" for n in self.metrics), *(f"{n}_predicted" for n in self.metrics)])
            for row, label, pred in zip(rows, labels.tolist(), predictions.tolist()):
                writer.writerow([row["ID"], row["wav"], *("" if math.isnan(v) else v for v in label), *pred])
        summary = {"test_manifest": manifests["test"], "files": len(rows), "metrics": stats,
                   "layer_weights": self.module("predictor").layer_weights().detach().cpu().tolist()}
        with open(os.path.join(hp.report_folder, "summary.json"), "w", encoding="utf-8") as stream:
            json.dump(summary, stream, indent=2, allow_nan=True)
        markdown = format_metric_markdown(stats)
        with open(os.path.join(hp.report_folder, "report.md"), "w", encoding="utf-8") as stream:
            stream.write(f"Test split ({manifests['test']}, {len(rows)} files), utterance level:\n\n{markdown}\n")
        logger.info("Test report (%s):\n%s", hp.report_folder, markdown)
        return summary

    def hub_spec(self, report):
        """The predictor and its upstream."""
        upstream = self.module("ssl")
        if getattr(upstream, "init_args", None) is None:
            logger.warning("The SSL upstream %s records no constructor arguments, so a hub folder cannot "
                           "rebuild it: no export (the checkpoints hold the model)", type(upstream).__name__)
            return None
        return LearnedQualityPredictor.hub_spec({"predictor": self.module("predictor"), "ssl": upstream},
                                                sample_rate=self.hparams.sample_rate)

    def model_card(self, report, manifests):
        """Card with the measured per-metric test table."""
        hp = self.hparams
        results = "No test report." if not report else (
            f"Test split ({manifests['test']}, {report['files']} files), utterance level:\n\n"
            + format_metric_markdown(report["metrics"]))
        return self.build_card(
            "Learned multi-metric quality predictor", LearnedQualityPredictor,
            "Predicts " + ", ".join(self.metrics) + " of speech without a reference: a Transformer over\n"
            "softmax-weighted layers of a frozen SSL encoder, one range-activated output per metric\n"
            "(URGENT 2026 track 2 baseline layout), trained on a label manifest.",
            'model.score_file_metrics("speech.wav")   # {metric: value}',
            {**manifests, "train_clean": manifests.get("train")}, results,
            {"label manifest": manifests.get("train"),
             "epochs": f"{hp.number_of_epochs} (lowest validation loss kept)",
             "optimizer": f"AdamW lr {hp.lr}, {hp.warmup_steps} warm-up updates, gradient norm clipped to "
                          f"{getattr(self, 'max_grad_norm', None)}"},
            # A label set made from real speech or taken from a folder is not the embedded corpus.
            **({} if getattr(hp, "label_source", "embedded") == "embedded" else {
                "data": f"label set '{hp.label_source}' in {hp.label_folder}",
                "data_license": "the speech, noise and room files the label set was made from (their licenses apply)"}),
        )


def format_metric_markdown(stats):
    """A Markdown table: one row per metric with ``n``, LCC, SRCC and MSE.

    Arguments
    ---------
    stats : dict
        From :func:`metric_statistics`.

    Returns
    -------
    str
        The table.

    Example
    -------
    >>> print(format_metric_markdown({"stoi": {"n": 3, "lcc": 0.5, "srcc": float("nan"), "mse": 0.01}}))
    | metric | n | LCC | SRCC | MSE |
    |---|---|---|---|---|
    | stoi | 3 | 0.500 | - | 0.0100 |
    """
    def cell(value, digits):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = ["| metric | n | LCC | SRCC | MSE |", "|---|---|---|---|---|"]
    for name, values in stats.items():
        lines.append(f"| {name} | {values['n']} | {cell(values['lcc'], 3)} | {cell(values['srcc'], 3)} | "
                     f"{cell(values['mse'], 4)} |")
    return "\n".join(lines)
