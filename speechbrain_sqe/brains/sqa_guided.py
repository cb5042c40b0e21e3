"""SQA-guided enhancement: the BSSE enhancer trained (or adapted) by a frozen learned quality predictor.

The enhancer, its front end, its SSL upstream, the on-the-fly mixtures (AddNoise/AddReverb on the
corpus's training manifests), the test-set enhancement and the export are BSSE's
(:class:`~speechbrain_sqe.brains.bsse.BSSEBrain`, subclassed); what changes is the loss, which needs
the enhanced WAVEFORM: the masked log1p magnitude is resynthesised with the noisy phase by the
front end (``torch.istft``, differentiable), then scored.

``stage: train`` (paired data mixed on the fly, exactly as BSSE trains), ``guidance``:

- ``sisnr`` (a): ``sisnr_weight * (-SI-SNR / sisnr_scale)`` against the dry clean crop;
- ``predictor`` (b): ``predictor_weight * guidance``, the frozen predictor's distance to each
  metric's best value (:class:`~speechbrain_sqe.lobes.quality_guidance.QualityGuidanceLoss`, weights
  per metric in ``guidance_weights``); no reference is used by the loss;
- ``both`` (c): the sum of the two.

``stage: adapt`` (d): starts from a trained BSSE hub folder (``init_from``; by default the BSSE
shipped in the package) and trains on noisy
recordings WITHOUT a clean reference (``adapt_data``: the corpus's ``unpaired_noisy`` split, a folder
of noisy files or a CSV with a ``noisy_wav`` column; ``adapt_valid_files`` of them, the last by ID,
are held out for validation) with the predictor loss only. Guards against the enhancer gaming the
predictor, each a YAML option so it can be ablated:

- (i) ``anchor_weight``: L1 between the adapted model's enhanced log1p magnitudes and those of the
  frozen starting model on the same input (0 turns it off);
- (ii) the mask stays in [0, 1] (BSSE's sigmoid mask: the enhancer can only remove energy, never
  synthesise any);
- (iii) ``monitor_metric``: a second quality signal independent of the predictor (a non-intrusive
  metric of the registry: ``vqscore``, ``dnsmos_ovrl``...; null: none), measured on the validation
  outputs and used for checkpoint selection and logging only, never as a training loss;
- (iv) ``predictor_refresh`` (off by default; both stages): MetricGAN's guard. Before each enhancer
  update the predictor is fine-tuned (:class:`~speechbrain_sqe.lobes.quality_guidance.PredictorRefresh`)
  on the enhancer's current outputs, and the noisy inputs, of ``refresh_batch_size`` paired TRAINING
  mixtures (the corpus's ``train_clean`` crops mixed on the fly as stage ``train`` mixes them),
  labelled with their true ``refresh_metrics`` against the dry clean crop: an output that fools the
  predictor becomes an example that corrects it. Only the cheap intrusive metrics are refreshed
  (DNSMOS and Distill-MOS cost about 0.2 s a crop on the CPU), and a guided metric that is not
  refreshed stays gameable, so it is refused: give it guidance weight 0. In the adapt stage the
  ENHANCER's loss still uses no reference; the refresh is the one part that reads clean training
  speech (the predictor's own kind of training data). The report's predicted-vs-true check uses
  the predictor as loaded (the refreshed one would grade its own corrections).

Checkpoint selection (``selection_key``; ``auto`` by default): in ``train``, the highest true SI-SNR
of the validation pairs (the corpus's valid split, never trained on; the same key for (a), (b) and
(c) so the three are picked alike, and (b) is not picked by the predictor it optimises); in
``adapt``, the best ``monitor_metric`` on the held-out noisy files when one is set, else the lowest
validation loss (predictor loss plus anchor on the held-out noisy files: the predictor grading its
own pupil, so the monitor is the recommended choice). The adapt stage never reads a clean file:
its datasets yield ``noisy_sig`` only (the manifests written for it have no clean column) and
:meth:`SQAGuidedBrain.compute_forward` refuses a batch that carries a clean signal (with
``predictor_refresh`` the refresh, and only it, reads the corpus's clean training speech).

Test report: the corpus's noisy test split (paired; not the adaptation data) enhanced by the kept
model and scored by the metric runner with ``test_metrics`` (true PESQ/STOI/ESTOI/SI-SDR against the
references, DNSMOS, Distill-MOS: none produced by the predictor), as BSSE's report, plus the
predictor's own predictions on the same noisy and enhanced files: ``report/predicted_vs_true.{csv,md,json}``
has, per system and metric, the mean true value, the mean prediction and their gap (the gaming
check: a gap that grows from noisy to enhanced means the enhancer learned what the predictor
likes rather than what the metric measures). The export is a BSSE hub folder
(:class:`~speechbrain_sqe.inference.enhancement.BSSEEnhancer`, ``sqe enhance --model``).
"""

import copy
import csv
import json
import logging
import math
import os

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.distributed import run_on_main

from speechbrain_sqe.analysis.enhancement_report import format_enhancement_markdown
from speechbrain_sqe.analysis.quality_report import rows_by_id
from speechbrain_sqe.brains.bsse import BSSEBrain
from speechbrain_sqe.brains.sqa import label_limits
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.files import find_audio_files
from speechbrain_sqe.dataio.manifest import (
    audio_duration,
    read_manifest,
    write_manifest,
)
from speechbrain_sqe.dataio.pipelines import (
    clean_speech_dataset,
    unpaired_noisy_dataset,
)
from speechbrain_sqe.inference.enhancement import BSSEEnhancer, keep_speech_level
from speechbrain_sqe.inference.hub import InterfaceError, load_model
from speechbrain_sqe.inference.quality import LearnedQualityPredictor
from speechbrain_sqe.lobes.bsse import bsse_forward, log1p_l1_loss
from speechbrain_sqe.lobes.quality_guidance import (
    PredictorRefresh,
    QualityGuidanceLoss,
    freeze,
    si_snr_loss,
    si_snr_values,
)
from speechbrain_sqe.metrics.registry import METRICS, try_compute_metrics

logger = logging.getLogger(__name__)

GUIDANCE_MODES = ("sisnr", "predictor", "both")
STAGES = ("train", "adapt")
SELECTION_KEYS = ("auto", "loss", "si_snr", "monitor")
#: Columns of the manifests the adapt stage writes: noisy files only.
ADAPT_COLUMNS = ("ID", "duration", "noisy_wav")


def load_guidance_predictor(source):
    """The learned quality predictor of a hub folder (loaded as ``LearnedQualityPredictor`` loads it).

    Arguments
    ---------
    source : str
        A hub folder written by ``hparams/sqa.yaml`` (``results/sqa/<seed>/hub``).

    Returns
    -------
    speechbrain_sqe.inference.quality.LearnedQualityPredictor
        The loaded interface.

    Raises
    ------
    ValueError
        When ``source`` is missing, is not a hub folder, or holds another kind of model
        (:class:`~speechbrain_sqe.inference.hub.InterfaceError`, a ``ValueError``).

    Example
    -------
    >>> load_guidance_predictor("no/such/folder")
    Traceback (most recent call last):
    ...
    ValueError: predictor_source 'no/such/folder': no such folder (a learned quality predictor's hub folder, e.g. results/sqa/1234/hub from python train.py hparams/sqa.yaml)
    """
    hint = "a learned quality predictor's hub folder, e.g. results/sqa/1234/hub from python train.py hparams/sqa.yaml"
    if not source or not os.path.isdir(str(source)):
        raise ValueError(f"predictor_source {source!r}: no such folder ({hint})")
    try:
        model = load_model(str(source), task="quality")
    except ValueError as error:  # InterfaceError: no hyperparams, another task, a broken checkpoint
        raise ValueError(f"predictor_source {source!r}: {error} ({hint})") from None
    if not isinstance(model, LearnedQualityPredictor):
        raise InterfaceError(f"predictor_source {source!r}: holds a {type(model).__name__}, not a learned multi-metric "
                         f"quality predictor (LearnedQualityPredictor; {hint})")
    return model


def noisy_file_list(adapt_data, manifests):
    """The noisy files of the adapt stage: ``[(ID, path)]`` sorted by ID, no clean file named.

    Arguments
    ---------
    adapt_data : str
        ``unpaired`` (the corpus's ``unpaired_noisy`` manifest), a folder of audio files, or a CSV
        with an ``ID`` and a ``noisy_wav`` (or ``wav``) column (any other column is ignored).
    manifests : dict
        The corpus's manifests.

    Returns
    -------
    list of tuple
        ``(ID, path)``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.wav", "a.flac"):
    ...     open(os.path.join(folder, name), "w").close()
    >>> [uid for uid, _ in noisy_file_list(folder, {})]
    ['a', 'b']
    """
    if adapt_data == "unpaired":
        path = manifests.get("unpaired_noisy")
        if not path or not os.path.isfile(path):
            raise ValueError("the corpus has no unpaired_noisy split: give --adapt_data=<a folder or CSV of noisy files>")
        adapt_data = path
    if os.path.isdir(adapt_data):
        files = [(os.path.splitext(name)[0].replace("/", "__"), path)
                 for name, path in find_audio_files(adapt_data).items()]
    elif os.path.isfile(adapt_data):
        rows = read_manifest(adapt_data)
        column = next((c for c in ("noisy_wav", "wav") if rows and c in rows[0]), None)
        if column is None:
            raise ValueError(f"adapt_data {adapt_data}: needs a noisy_wav (or wav) column")
        files = [(row.get("ID") or os.path.splitext(os.path.basename(row[column]))[0], row[column]) for row in rows]
    else:
        raise ValueError(f"adapt_data {adapt_data!r}: neither 'unpaired' nor a folder or CSV of noisy files")
    return sorted(files)


def write_adapt_manifests(files, folder, valid_count):
    """Writes ``adapt_train.csv`` and ``adapt_valid.csv`` (``ID, duration, noisy_wav``): the last
    ``valid_count`` files by ID are held out for validation.

    Arguments
    ---------
    files : list of tuple
        ``(ID, path)`` from :func:`noisy_file_list`.
    folder : str
        Output folder.
    valid_count : int
        Files held out.

    Returns
    -------
    tuple of str
        The train and valid manifest paths.
    """
    valid_count = int(valid_count)
    if valid_count < 1 or len(files) < valid_count + 1:
        raise ValueError(f"the adapt stage needs more than adapt_valid_files={valid_count} noisy files "
                         f"(one or more to train on), got {len(files)}")
    rows = [{"ID": uid, "duration": audio_duration(path), "noisy_wav": os.path.abspath(path)} for uid, path in files]
    train = write_manifest(os.path.join(folder, "adapt_train.csv"), rows[:-valid_count], ADAPT_COLUMNS)
    valid = write_manifest(os.path.join(folder, "adapt_valid.csv"), rows[-valid_count:], ADAPT_COLUMNS)
    return train, valid


def true_metric_labels(estimates, references, lengths, metrics, refreshed, limits, sample_rate=16000):
    """True metric values of a padded batch as predictor labels ``[batch, metrics]``: the
    ``refreshed`` metrics computed by the metric registry against ``references`` on each utterance's
    valid samples and clipped to ``limits``; NaN for the other metrics and where a metric fails
    (e.g. PESQ on a crop without speech).

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor
        Relative lengths ``[batch]``.
    metrics : list of str
        The predictor's metrics, in its output order.
    refreshed : list of str
        The metrics to compute (a subset of ``metrics``).
    limits : list of tuple
        ``(low, high)`` per metric (None: not clipped), as :func:`~speechbrain_sqe.brains.sqa.label_limits`.
    sample_rate : int
        Their rate.

    Returns
    -------
    torch.Tensor
        ``[batch, metrics]`` float32 on the CPU.

    Example
    -------
    >>> clean = torch.sin(torch.arange(16000) / 5.0).repeat(2, 1)
    >>> noisy = clean + 0.5 * torch.randn(2, 16000)
    >>> labels = true_metric_labels(noisy, clean, torch.ones(2), ["pesq_wb", "si_sdr"], ["si_sdr"],
    ...                             [(1.0, 4.5), (-30.0, 50.0)])
    >>> labels.shape, bool(labels[:, 0].isnan().all()), bool((labels[:, 1] > 0).all())
    (torch.Size([2, 2]), True, True)
    """
    estimates, references = estimates.detach().float().cpu(), references.detach().float().cpu()
    counts = torch.round(lengths.float().cpu() * estimates.shape[1]).long().tolist()
    labels = torch.full((estimates.shape[0], len(metrics)), math.nan)
    for row, count in enumerate(counts):
        values, _ = try_compute_metrics(references[row, :count], estimates[row, :count], list(refreshed), sample_rate)
        for column, name in enumerate(metrics):
            value = values.get(name)
            if value is None or not math.isfinite(float(value)):
                continue
            low, high = limits[column]
            value = float(value) if low is None else max(float(value), low)
            labels[row, column] = value if high is None else min(value, high)
    return labels


class SQAGuidedBrain(BSSEBrain):
    """BSSE trained or adapted by a learned quality predictor (see the module docstring).

    ``hparams`` besides BSSE's: ``stage``, ``guidance``, ``sisnr_weight``, ``sisnr_scale``,
    ``predictor_weight``, ``predictor_source``, ``guidance_weights``, ``guidance_targets``,
    ``init_from``, ``adapt_data``, ``adapt_valid_files``, ``adapt_folder``, ``anchor_weight``,
    ``monitor_metric``, ``selection_key``, ``predictor_refresh``, ``refresh_metrics``, ``refresh_lr``,
    ``refresh_every``, ``refresh_batch_size``, ``refresh_noisy``, ``refresh_label_limits``.
    """

    # ------------------------------------------------------------------ settings
    @property
    def adapting(self):
        """Whether this is the adapt stage (no clean reference anywhere in training or validation)."""
        return self.hparams.stage == "adapt"

    @property
    def mode(self):
        """The guidance mode (``sisnr``, ``predictor`` or ``both``)."""
        return self.hparams.guidance

    def check_settings(self):
        """Refuses settings that cannot work together, before anything is trained."""
        hp = self.hparams
        if hp.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {hp.stage!r}")
        if hp.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {GUIDANCE_MODES}, got {hp.guidance!r}")
        if hp.selection_key not in SELECTION_KEYS:
            raise ValueError(f"selection_key must be one of {SELECTION_KEYS}, got {hp.selection_key!r}")
        if self.adapting:
            if hp.guidance != "predictor":
                raise ValueError("stage adapt has no clean reference: it trains with the predictor loss only "
                                 "(--guidance=predictor)")
            if hp.selection_key == "si_snr":
                raise ValueError("stage adapt has no clean reference to measure SI-SNR: selection_key loss or monitor")
        if hp.selection_key == "monitor" and not hp.monitor_metric:
            raise ValueError("selection_key monitor needs a monitor_metric")
        metric = hp.monitor_metric
        if metric and (metric not in METRICS or METRICS[metric].needs_reference):
            raise ValueError(f"monitor_metric {metric!r} must be a non-intrusive metric of the registry "
                             "(vqscore, dnsmos_ovrl, distillmos...)")
        if self.refreshing:
            if hp.guidance == "sisnr":
                raise ValueError("predictor_refresh refreshes the guiding predictor: it needs --guidance=predictor or both")
            unknown = [name for name in hp.refresh_metrics if name not in METRICS]
            if unknown or not hp.refresh_metrics:
                raise ValueError(f"refresh_metrics must name metrics of the registry, got {list(hp.refresh_metrics)}")
            if torch.distributed.is_initialized():
                raise NotImplementedError("predictor_refresh under DDP is not supported yet (each rank would "
                                          "refresh its own copy of the predictor): one process")

    @property
    def refreshing(self):
        """Whether the guiding predictor is refreshed on the enhancer's outputs (guard iv)."""
        return bool(getattr(self.hparams, "predictor_refresh", False))

    def selection(self):
        """The validation statistic that picks the checkpoint (see the module docstring)."""
        hp = self.hparams
        key = hp.selection_key
        if key == "auto":
            key = "monitor" if self.adapting and hp.monitor_metric else ("loss" if self.adapting else "si_snr")
        if key == "monitor":
            spec = METRICS[hp.monitor_metric]
            return f"monitor_{hp.monitor_metric}", "max" if spec.direction == "higher" else "min"
        return ("si_snr", "max") if key == "si_snr" else ("loss", "min")

    # ------------------------------------------------------------------ data and set-up
    def datasets(self, manifests):
        """BSSE's (clean crops mixed on the fly, valid pairs), or, to adapt, noisy files only."""
        self.check_settings()  # the template's first call: refuse bad settings before anything is made
        if not self.adapting:
            return super().datasets(manifests)
        hp = self.hparams
        files = noisy_file_list(hp.adapt_data, manifests)
        run_on_main(write_adapt_manifests, args=[files, hp.adapt_folder, hp.adapt_valid_files])
        train = os.path.join(hp.adapt_folder, "adapt_train.csv")
        valid = os.path.join(hp.adapt_folder, "adapt_valid.csv")
        self.adapt_manifests = {"train": train, "valid": valid}
        return {"train": unpaired_noisy_dataset(train, hp.sample_rate, hp.crop_seconds),
                "valid": unpaired_noisy_dataset(valid, hp.sample_rate)}

    def prepare(self, manifests, data):
        """BSSE's set-up, then the starting model (``init_from``), the frozen anchor and the
        frozen predictor."""
        super().prepare(manifests, data)  # loads the starting model (:meth:`starting_source`)
        hp = self.hparams
        # The anchor is the model as it starts (before any checkpoint of this run is recovered).
        self.anchor = None
        if self.adapting and hp.anchor_weight > 0:
            enhancer = freeze(copy.deepcopy(self.module("enhancer")))
            upstream = self.module("ssl")
            if self.uses_ssl and self.trains_ssl:
                upstream = freeze(copy.deepcopy(upstream))
            self.anchor = (enhancer.to(self.device), upstream)
        self.guidance = None
        if hp.predictor_source or self.mode != "sisnr":
            predictor = load_guidance_predictor(hp.predictor_source)
            self.guidance = QualityGuidanceLoss(predictor.mods.predictor, predictor.mods.ssl,
                                                weights=hp.guidance_weights, targets=hp.guidance_targets
                                                ).to(self.device)
            self.predictor_source = hp.predictor_source
        # The predictor as loaded judges the report; a refreshed one is a copy that learns.
        self.judge = self.guidance
        self.refresh = None
        if self.refreshing:
            self.prepare_refresh(manifests)

    def prepare_refresh(self, manifests):
        """Guard (iv): the refreshed copy of the predictor, its optimizer (a checkpoint recoverable)
        and the stream of paired training crops it learns from."""
        hp = self.hparams
        metrics = self.guidance.metrics
        missing = [name for name in hp.refresh_metrics if name not in metrics]
        if missing:
            raise ValueError(f"refresh_metrics {missing}: the predictor does not predict them (it predicts "
                             f"{', '.join(metrics)})")
        weights = dict(zip(metrics, self.guidance.weights.tolist()))
        gameable = [name for name, weight in weights.items() if weight > 0 and name not in hp.refresh_metrics]
        if gameable:
            raise ValueError(f"guidance_weights give {', '.join(gameable)} a weight > 0 but predictor_refresh does "
                             f"not refresh them (refresh_metrics: {list(hp.refresh_metrics)}), so the enhancer could "
                             "still game them: give them weight 0 or refresh them")
        self.guidance = QualityGuidanceLoss(copy.deepcopy(self.judge.predictor), self.judge.upstream,
                                            weights=hp.guidance_weights, targets=hp.guidance_targets
                                            ).to(self.device)
        self.refresh = PredictorRefresh(self.guidance, lr=hp.refresh_lr)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("predictor_refresh", self.refresh)
        predictor = self.guidance.predictor
        self.refresh_limits = label_limits(metrics, predictor.ranges, hp.refresh_label_limits)
        # SpeechBrain's loader (PaddedBatch) over its seeded sampler, a new order each pass. After a
        # resume the stream starts again from its first pass (random crops either way); the
        # predictor and its optimizer come back from the checkpoint.
        dataset = clean_speech_dataset(manifests["train_clean"], hp.sample_rate, hp.crop_seconds, hp.gain_range)
        sampler = ReproducibleRandomSampler(dataset, seed=int(hp.seed) + 7919)
        self.refresh_stream = self._passes(
            make_dataloader(dataset, batch_size=int(hp.refresh_batch_size), sampler=sampler), sampler)
        self.refresh_losses = []
        logger.info("Predictor refresh: %s on %s training crops before every %s update(s), lr %s",
                    ", ".join(hp.refresh_metrics), hp.refresh_batch_size, hp.refresh_every, hp.refresh_lr)

    @staticmethod
    def _passes(loader, sampler):
        """The loader's batches, pass after pass (the sampler's order of each pass its own)."""
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    def refresh_predictor(self):
        """One refresh (guard iv): the enhancer's outputs of fresh paired training crops, and their
        noisy inputs, labelled with their true metrics; one predictor update. Returns its loss."""
        hp = self.hparams
        batch = next(self.refresh_stream).to(self.device)
        clean, lens = batch.sig
        frontend = hp.frontend
        with torch.no_grad():
            noisy = self.corrupt(clean, lens)
            if not self.trains_ssl:
                self.module("ssl").eval()
            _, enhanced, _ = bsse_forward(self.modules["enhancer"], frontend, noisy, lens, self.modules["ssl"])
            wavs = frontend.resynthesize(enhanced, noisy, lens)
        references, lengths = clean, lens
        if hp.refresh_noisy:
            wavs, references, lengths = torch.cat([wavs, noisy]), torch.cat([clean, clean]), torch.cat([lens, lens])
        labels = true_metric_labels(wavs, references, lengths, self.guidance.metrics, hp.refresh_metrics,
                                    self.refresh_limits, hp.sample_rate)
        loss = self.refresh.step(wavs, labels, lengths)
        self.refresh_losses.append(loss)
        return loss

    def fit_batch(self, batch):
        """The predictor's refresh (guard iv, every ``refresh_every`` updates), then SpeechBrain's
        update of the enhancer against the refreshed predictor (MetricGAN's alternation)."""
        if self.refresh is not None and (self.step - 1) % max(1, int(self.hparams.refresh_every)) == 0:
            self.refresh_predictor()
        return super().fit_batch(batch)

    def starting_source(self):
        """``init_from``; in the adapt stage without it, the BSSE shipped in the package."""
        return self.hparams.init_from or (BSSEEnhancer.DEFAULT_SOURCE if self.adapting else None)

    # ------------------------------------------------------------------ training
    def on_stage_start(self, stage, epoch=None):
        """Starts collecting the validation statistics (and, training, the refresh losses)."""
        self.collected = {"si_snr": [], "monitor": [], "predictions": [], "terms": {}}
        if stage == sb.Stage.TRAIN and getattr(self, "refresh", None) is not None:
            self.refresh_losses = []

    def compute_forward(self, batch, stage):
        """The enhanced log1p magnitudes and waveform (and the anchor's, and the clean target)."""
        batch = batch.to(self.device)
        clean = None
        if self.adapting:
            # The data-path guard: the adapt stage's batches carry noisy audio only.
            if hasattr(batch, "clean_sig") or hasattr(batch, "sig"):
                raise RuntimeError("the adapt stage got a batch with a clean signal: it must read noisy files only")
            noisy, lens = batch.noisy_sig
        elif stage == sb.Stage.TRAIN:
            clean, lens = batch.sig
            with torch.no_grad():
                noisy = self.corrupt(clean, lens)
        else:
            noisy, lens = batch.noisy_sig
            clean, _ = batch.clean_sig
        if not self.trains_ssl:
            self.module("ssl").eval()  # SpeechBrain sets every module to train mode each epoch
        frontend = self.hparams.frontend
        _, enhanced, frame_lens = bsse_forward(
            self.modules["enhancer"], frontend, noisy, lens, self.modules["ssl"],
            train_ssl=stage == sb.Stage.TRAIN and self.trains_ssl,
        )
        wav = frontend.resynthesize(enhanced, noisy, lens)  # istft: differentiable, noisy phase
        anchor = None
        if self.anchor is not None:
            with torch.no_grad():
                _, anchor, _ = bsse_forward(self.anchor[0], frontend, noisy, lens,
                                            self.anchor[1] if self.uses_ssl else None)
        return {"enhanced": enhanced, "wav": wav, "noisy": noisy, "clean": clean, "lens": lens,
                "frame_lens": frame_lens, "anchor": anchor}

    def loss_terms(self, out):
        """The weighted loss terms of a forward pass (``si_snr``, ``predictor``, ``anchor``) and the
        predictor's predictions (None without a predictor)."""
        hp = self.hparams
        terms, predictions = {}, None
        if self.mode in ("sisnr", "both"):
            terms["si_snr"] = hp.sisnr_weight * si_snr_loss(out["wav"], out["clean"], out["lens"]) / hp.sisnr_scale
        if self.mode in ("predictor", "both"):
            guidance, predictions = self.guidance(out["wav"], out["lens"])
            terms["predictor"] = hp.predictor_weight * guidance
        if out["anchor"] is not None:
            terms["anchor"] = hp.anchor_weight * log1p_l1_loss(out["enhanced"], out["anchor"], out["frame_lens"])
        return terms, predictions

    def compute_objectives(self, out, batch, stage):
        """The sum of the loss terms; validation also collects SI-SNR, predictions and the monitor."""
        terms, predictions = self.loss_terms(out)
        loss = sum(terms.values())
        if stage != sb.Stage.TRAIN:
            for name, value in terms.items():
                self.collected["terms"].setdefault(name, []).append(float(value))
            self.collect(out, predictions)
        return loss

    def collect(self, out, predictions):
        """Validation statistics of a batch: true SI-SNR (paired data only), the predictor's
        predictions, the monitor metric (on the outputs at the input's speech level)."""
        hp = self.hparams
        wav, lens = out["wav"].detach(), out["lens"]
        if out["clean"] is not None:
            self.collected["si_snr"].extend(si_snr_values(wav, out["clean"], lens).cpu().tolist())
        if self.guidance is not None:
            if predictions is None:
                predictions = self.guidance.predict(wav, lens).detach()
            self.collected["predictions"].append(predictions.cpu())
        if hp.monitor_metric:
            leveled = keep_speech_level(wav, out["noisy"], lens).cpu()
            counts = torch.round(lens.float() * wav.shape[1]).long().tolist()
            for row, count in zip(leveled, counts):
                values, _ = try_compute_metrics(None, row[:count], [hp.monitor_metric], hp.sample_rate)
                self.collected["monitor"].append(values.get(hp.monitor_metric, math.nan))

    def stage_statistics(self, stage):
        """Each weighted loss term (``loss_<term>``, batch means), the mean true SI-SNR, the monitor
        metric and the mean prediction of each metric."""
        stats = {f"loss_{name}": round(sum(values) / len(values), 5)
                 for name, values in self.collected["terms"].items() if values}
        finite = [v for v in self.collected["si_snr"] if math.isfinite(v)]
        if finite:
            stats["si_snr"] = round(sum(finite) / len(finite), 4)
        if self.hparams.monitor_metric:
            finite = [v for v in self.collected["monitor"] if v is not None and math.isfinite(v)]
            stats[f"monitor_{self.hparams.monitor_metric}"] = round(sum(finite) / len(finite), 4) if finite else math.nan
        if self.collected["predictions"]:
            means = torch.cat(self.collected["predictions"]).mean(dim=0).tolist()
            stats.update({f"pred_{name}": round(value, 4) for name, value in zip(self.guidance.metrics, means)})
        if stage == sb.Stage.VALID and getattr(self, "refresh", None) is not None and self.refresh_losses:
            # The refresh's mean loss over the epoch's updates (before each update): how far the
            # enhancer's latest outputs had moved from what the predictor knew.
            stats["refresh_loss"] = round(sum(self.refresh_losses) / len(self.refresh_losses), 5)
        return stats

    def test_best(self, test_set):
        """Recovers the checkpoint picked by :meth:`selection`."""
        key, mode = self.selection()
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible(**{f"{mode}_key": key})

    # ------------------------------------------------------------------ report and export
    def system_name(self):
        """``sqa-guided <guidance>`` or ``sqa-adapted`` in the report."""
        return "sqa-adapted" if self.adapting else f"sqa-guided {self.mode}"

    def test_report(self, manifests):
        """BSSE's report (true metrics of the noisy and enhanced test split), then the predictor's
        predictions on the same files beside the true values (``predicted_vs_true.*``)."""
        summary = super().test_report(manifests)
        if self.guidance is not None:
            summary["predicted_vs_true"] = self.predicted_vs_true(manifests["test"])
        return summary

    @torch.no_grad()
    def predicted_vs_true(self, manifest):
        """Per system and predicted metric: mean true value, mean prediction, gap; written to
        ``report/predicted_vs_true.{csv,json,md}`` and appended to ``report.md``."""
        hp = self.hparams
        rows = rows_by_id(manifest)
        with open(os.path.join(hp.report_folder, "per_file.csv"), newline="", encoding="utf-8") as stream:
            true = {(row["system"], row["id"]): row for row in csv.DictReader(stream)}
        system = self.system_name()
        folders = {"noisy": None, system: os.path.join(hp.enhanced_folder, "bsse")}
        metrics = self.guidance.metrics
        table = []
        for name, folder in folders.items():
            for uid, row in rows.items():
                path = row["noisy_wav"] if folder is None else os.path.join(folder, f"{uid}.wav")
                wav = load_audio(path, hp.sample_rate).unsqueeze(0).to(self.device)
                predicted = self.judge.predict(wav)[0].cpu().tolist()
                entry = {"system": name, "id": uid}
                for metric, value in zip(metrics, predicted):
                    cell = true.get((name, uid), {}).get(metric, "")
                    entry[f"{metric}_true"] = float(cell) if cell not in ("", None) else math.nan
                    entry[f"{metric}_predicted"] = value
                table.append(entry)
        with open(os.path.join(hp.report_folder, "predicted_vs_true.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        summary = {}
        for name in folders:
            entries = [entry for entry in table if entry["system"] == name]
            summary[name] = {}
            for metric in metrics:
                pairs = [(e[f"{metric}_true"], e[f"{metric}_predicted"]) for e in entries
                         if math.isfinite(e[f"{metric}_true"])]
                predicted = [e[f"{metric}_predicted"] for e in entries]
                mean_true = sum(t for t, _ in pairs) / len(pairs) if pairs else math.nan
                mean_pred = sum(predicted) / len(predicted) if predicted else math.nan
                gap = sum(p - t for t, p in pairs) / len(pairs) if pairs else math.nan
                summary[name][metric] = {"true": mean_true, "predicted": mean_pred, "gap": gap, "n": len(pairs)}
        with open(os.path.join(hp.report_folder, "predicted_vs_true.json"), "w", encoding="utf-8") as stream:
            json.dump({"predictor": str(hp.predictor_source), "systems": summary}, stream, indent=1)
        markdown = format_predicted_vs_true(summary)
        for name in ("predicted_vs_true.md", "report.md"):
            with open(os.path.join(hp.report_folder, name), "a" if name == "report.md" else "w",
                      encoding="utf-8") as stream:
                stream.write(("\n\n" if name == "report.md" else "")
                             + f"Predicted (by {hp.predictor_source}) vs true, test split means:\n\n{markdown}\n")
        logger.info("Predicted vs true:\n%s", markdown)
        return summary

    def model_card(self, report, manifests):
        """Card with the measured test table and the predicted-vs-true table."""
        hp = self.hparams
        results = f"Noisy test split ({manifests['test']}):\n\n{format_enhancement_markdown(report)}"
        if report.get("predicted_vs_true"):
            judge = ("The guiding predictor as loaded (the refresh trained a copy of it)" if self.refresh is not None
                     else "The guiding predictor")
            results += (f"\n\n{judge}: its predictions vs the true metrics (test split means):\n\n"
                        + format_predicted_vs_true(report["predicted_vs_true"]))
        facts = {"stage": hp.stage, "guidance": self.mode,
                 "predictor": str(hp.predictor_source) if self.guidance is not None else "none",
                 "started from": str(self.start_source or "scratch"),
                 "checkpoint selection": "{} ({})".format(*self.selection()),
                 "epochs": str(hp.number_of_epochs)}
        if self.mode != "sisnr":
            facts["guidance weights"] = str(dict(hp.guidance_weights or {}))
        if self.refresh is not None:
            facts["predictor refresh"] = (f"{', '.join(hp.refresh_metrics)} on {hp.refresh_batch_size} paired training "
                                          f"crops every {hp.refresh_every} update(s), lr {hp.refresh_lr}"
                                          + (", noisy inputs too" if hp.refresh_noisy else ""))
        if self.adapting:
            facts["adaptation data"] = f"{hp.adapt_data} (noisy only; {hp.adapt_valid_files} held out for validation)"
            facts["anchor weight"] = str(hp.anchor_weight)
        else:
            facts["training mixtures"] = (f"SNR U[{hp.snr_low}, {hp.snr_high}] dB, reverberation p={hp.reverb_prob}, "
                                          f"{hp.crop_seconds} s crops, gain U{list(hp.gain_range)}")
        return self.build_card(
            "SQA-guided BSSE enhancer", BSSEEnhancer,
            "Speech enhancement by BSSE's BLSTM mask over the log1p spectrum (and weighted SSL layers), trained\n"
            f"with guidance '{self.mode}' (stage '{hp.stage}'): SI-SNR and/or the distance of a learned quality\n"
            "predictor's predictions to each metric's best value (the predictor "
            + ("refreshed on the enhancer's outputs with their true metrics as it trains"
               if self.refresh is not None else "frozen") + "); resynthesis with the noisy phase.",
            'model.enhance_file("noisy.wav", output_path="enhanced.wav")',
            manifests, results, facts,
        )


def format_predicted_vs_true(summary):
    """A Markdown table: per system and metric, the mean true value, the mean prediction and the gap.

    Arguments
    ---------
    summary : dict
        ``{system: {metric: {"true", "predicted", "gap", "n"}}}``.

    Returns
    -------
    str
        The table.

    Example
    -------
    >>> print(format_predicted_vs_true({"noisy": {"stoi": {"true": 0.8, "predicted": 0.9, "gap": 0.1, "n": 2}}}))
    | system | metric | true | predicted | predicted - true | n |
    |---|---|---|---|---|---|
    | noisy | stoi | 0.800 | 0.900 | +0.100 | 2 |
    """
    def cell(value, sign=""):
        return "-" if value is None or not math.isfinite(value) else f"{value:{sign}.3f}"

    lines = ["| system | metric | true | predicted | predicted - true | n |", "|---|---|---|---|---|---|"]
    for system, metrics in summary.items():
        for metric, values in metrics.items():
            lines.append(f"| {system} | {metric} | {cell(values['true'])} | {cell(values['predicted'])} | "
                         f"{cell(values['gap'], '+')} | {values['n']} |")
    return "\n".join(lines)
