"""BSSE: a BLSTM mask over the log1p spectrum and weighted SSL layers, trained on pairs mixed on the fly.

Training: random 1.28 s crops of the corpus's clean speech at a random gain U[1, 2.5] (lowered when
it would clip); with probability ``reverb_prob`` the crop is reverberated with a training room
(SpeechBrain's :class:`~speechbrain.augment.time_domain.AddReverb` on the corpus's ``rirs_train``
manifest), then a training noise is added at an SNR in [``snr_low``, ``snr_high``] dB
(:class:`~speechbrain.augment.time_domain.AddNoise` on ``noise_train``). The target is the DRY
clean crop (as the corpus's valid/test pairs: the enhancer also dereverberates). Loss: L1 between
the masked noisy log1p magnitudes and the clean ones (:func:`~speechbrain_sqe.lobes.bsse.log1p_l1_loss`;
asymmetric in training with ``overestimate_weight`` != 1, ours: noise left in costs that many times
speech taken away), plus, with ``log_magnitude_weight`` > 0 (not the reference's), the L1 of their log magnitudes
(:func:`~speechbrain_sqe.lobes.bsse.log_magnitude_l1_loss`), which counts noise left in pauses, and,
with ``residual_noise_weight`` > 0 (not the reference's either), the noise the mask lets through in
every bin (:func:`~speechbrain_sqe.lobes.bsse.residual_noise_loss`; the mixtures' noise is known in
training), and, with ``gain_loss_weight`` > 0 (ours, after RNNoise), the distance of the mask's gain
to the ideal ratio mask, the same in every bin whatever its level
(:func:`~speechbrain_sqe.lobes.bsse.ratio_mask_loss`).

Validation: the same loss on the corpus's noisy/clean valid pairs (whole files); the checkpoint of
lowest validation loss is kept, as in the reference. Why not PESQ: the loss is what the model
optimises and costs nothing more, while PESQ of every valid file each epoch costs seconds of CPU
per epoch on the 2-core machine; the test report measures PESQ and the rest on the kept model.

Fine-tuning (``ssl_finetune``): ``frozen`` (the SSL upstream in eval mode, no gradient), ``pf``
(its front end frozen), ``ef`` (all of it); the trained upstream parameters get their own learning
rate (``ssl_lr``, 1e-5 as the reference; the mask network ``lr``, 1e-4). The upstream is TERA
(ours) by default, its pretrained weights loaded by the YAML's ``ssl_pretrainer`` before any
checkpoint is recovered.

Test: the best checkpoint enhances the noisy test split with the interface's chain
(:func:`~speechbrain_sqe.inference.enhancement.bsse_enhance_keeping_level`, speech level kept), the
outputs and the noisy inputs are scored against the clean references (``report/``), and, for the
``ssl``/``cross`` features, the layer weights are reported against each layer's clean-noisy
distance measured with the upstream before and after fine-tuning
(:mod:`~speechbrain_sqe.analysis.layer_weights`, ``report/layer_weights.*``). The export is a hub
folder :class:`~speechbrain_sqe.inference.enhancement.BSSEEnhancer` loads (``sqe enhance --model``).
"""

import copy
import logging
import os
from types import SimpleNamespace

import speechbrain as sb
import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb
from speechbrain.utils.distributed import run_on_main
from tqdm import tqdm

from speechbrain_sqe.analysis.enhancement_report import (
    format_enhancement_markdown,
    write_enhancement_report,
)
from speechbrain_sqe.analysis.layer_weights import (
    format_layer_weight_markdown,
    layer_weight_rows,
    write_layer_weight_report,
)
from speechbrain_sqe.analysis.quality_report import rows_by_id
from speechbrain_sqe.analysis.ssl_pairs import analyze_ssl_pairs, read_pairs
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.inference.encoders import TERA
from speechbrain_sqe.inference.enhancement import (
    BSSEEnhancer,
    bsse_enhance_keeping_level,
)
from speechbrain_sqe.inference.hub import InterfaceError, load_model
from speechbrain_sqe.lobes.bsse import (
    bsse_forward,
    check_ssl_hop,
    configure_ssl_finetuning,
    log1p_l1_loss,
    log_magnitude_l1_loss,
    ratio_mask_loss,
    residual_noise_loss,
    ssl_hidden_states,
)
from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs
from speechbrain_sqe.utils.safe_load import safe_torch_recovery

logger = logging.getLogger(__name__)


class _UpstreamEncoder:
    """An SSL upstream seen through the encoder contract ``analyze_ssl_pairs`` reads."""

    def __init__(self, upstream, sample_rate, device):
        self.upstream = upstream
        self.device = device
        self.hparams = SimpleNamespace(sample_rate=sample_rate)

    @torch.no_grad()
    def hidden_states(self, wavs, wav_lens=None):
        lens = None if wav_lens is None else wav_lens.to(self.device)
        states, _ = ssl_hidden_states(self.upstream, wavs.to(self.device), lens)
        return [state.cpu() for state in states.unbind(0)]


class BSSEBrain(RecipeBrain):
    """Trains the BSSE enhancer on noisy/clean pairs mixed on the fly (see the module docstring).

    Expected ``modules``: ``enhancer`` (:class:`speechbrain_sqe.lobes.bsse.BSSEModel`) and ``ssl``
    (the upstream, e.g. :class:`speechbrain_sqe.lobes.tera.TERAModel`; unused by the ``spectrum``
    feature). ``hparams``: ``frontend``, ``ssl_pretrainer`` (or null), ``ssl_finetune``, ``lr``,
    ``ssl_lr``, ``crop_seconds``, ``gain_range``, ``reverb_prob``, ``snr_low``, ``snr_high``, the
    dataloader options, ``test_metrics``, ``metric_jobs``, ``layer_analysis``, ``init_from`` (a BSSE
    hub folder whose weights start the run, e.g. the shipped model to fine-tune it on other data;
    null: from scratch) and the folders.
    """

    SELECTION_KEY, SELECTION_MODE = "loss", "min"

    # ------------------------------------------------------------------ set-up
    @property
    def uses_ssl(self):
        """Whether the model reads the SSL upstream (features ``ssl`` and ``cross``)."""
        return self.module("enhancer").uses_ssl

    @property
    def trains_ssl(self):
        """Whether the upstream is fine-tuned (``pf``/``ef`` with an SSL feature)."""
        return self.uses_ssl and self.hparams.ssl_finetune != "frozen"

    def datasets(self, manifests):
        """Clean training crops (mixed in :meth:`corrupt`) and the noisy/clean valid pairs."""
        hp = self.hparams
        return {
            "train": clean_speech_dataset(manifests["train_clean"], hp.sample_rate, hp.crop_seconds, hp.gain_range),
            "valid": paired_dataset(manifests["valid"], hp.sample_rate),
        }

    def prepare(self, manifests, data):
        """Pretrained upstream, fine-tuning mode, the on-the-fly noise and rooms."""
        hp = self.hparams
        upstream = self.module("ssl")
        if self.uses_ssl:
            check_ssl_hop(upstream, self.module("enhancer").ssl_hop_length, hp.sample_rate)
            if getattr(hp, "ssl_pretrainer", None) is not None:
                pretrainer = hp.ssl_pretrainer
                run_on_main(pretrainer.collect_files)
                pretrainer.add_custom_hooks({name: safe_torch_recovery for name in pretrainer.loadables})
                pretrainer.load_collected()
        self.ssl_parameters = configure_ssl_finetuning(upstream, hp.ssl_finetune if self.uses_ssl else "frozen")
        if self.ssl_parameters and torch.distributed.is_initialized():
            raise NotImplementedError("fine-tuning the SSL upstream under DDP is not supported yet "
                                      "(--ssl_finetune=frozen, or one process)")
        # The upstream before fine-tuning (pretrained weights, or its initial ones): the layer analysis.
        self.pretrained_ssl_state = (
            {key: value.detach().clone().cpu() for key, value in upstream.state_dict().items()}
            if self.trains_ssl else None)
        self.add_noise = AddNoise(csv_file=manifests["noise_train"], snr_low=hp.snr_low, snr_high=hp.snr_high,
                                  noise_sample_rate=hp.sample_rate, clean_sample_rate=hp.sample_rate)
        rirs = manifests.get("rirs_train")
        self.add_reverb = None
        if hp.reverb_prob > 0 and rirs and os.path.isfile(rirs):
            self.add_reverb = AddReverb(csv_file=rirs, reverb_sample_rate=hp.sample_rate,
                                        clean_sample_rate=hp.sample_rate)
        elif hp.reverb_prob > 0:
            logger.warning("The corpus has no rirs_train manifest: training without reverberation")
        # The starting weights (before any checkpoint of this run is recovered, which then wins).
        self.start_source = self.starting_source()
        if self.start_source:
            self.load_start(self.start_source)

    def starting_source(self):
        """The BSSE hub folder whose weights start this run (``init_from``), or None (from scratch)."""
        return getattr(self.hparams, "init_from", None)

    def load_start(self, source):
        """Loads the enhancer (and its SSL upstream) of a BSSE hub folder into this run's modules.

        Arguments
        ---------
        source : str
            A hub folder (or a shipped model's name) holding a BSSE enhancer built with this run's
            feature and sizes.
        """
        start = load_model(str(source), task="enhancement")
        if not isinstance(start, BSSEEnhancer):
            raise InterfaceError(f"init_from {source!r}: holds a {type(start).__name__}, not a BSSE enhancer")
        ours = self.module("enhancer")
        theirs_args = getattr(start.mods.enhancer, "init_args", {}) or {}
        differ = {key: value for key, value in theirs_args.items() if ours.init_args.get(key) != value}
        if differ:
            raise ValueError(f"init_from {source!r}: its enhancer was built with {differ}; set the same "
                             "(e.g. --feature, --proj_size, --hidden_size) to start from it")
        ours.load_state_dict(start.mods.enhancer.state_dict())
        if self.uses_ssl and "ssl" in start.mods:
            self.module("ssl").load_state_dict(start.mods.ssl.state_dict())
        logger.info("Started from the enhancer of %s", source)

    def init_optimizers(self):
        """One optimizer, two parameter groups: the enhancer at ``lr``, the trained upstream at ``ssl_lr``."""
        groups = [{"params": list(self.modules["enhancer"].parameters())}]
        if self.ssl_parameters:
            groups.append({"params": self.ssl_parameters, "lr": self.hparams.ssl_lr})
        opt_class = self.opt_class
        self.opt_class = lambda _params: opt_class(groups)
        try:
            super().init_optimizers()
        finally:
            self.opt_class = opt_class

    # ------------------------------------------------------------------ training
    def corrupt(self, clean, lens):
        """Noisy training input: maybe a room (per utterance, ``reverb_prob``), then noise (varied with
        ``noise_variation_prob``, :class:`~speechbrain_sqe.dataio.noise_variation.NoiseVariation`;
        with ``noise_mixture_prob``, the sum of two training noises)."""
        return self.corrupt_with_noise(clean, lens)[0]

    def corrupt_with_noise(self, clean, lens):
        """:meth:`corrupt`'s noisy input and the noise alone in it (the input minus the possibly
        reverberant speech), both zero past each utterance's length."""
        speech = clean
        if self.add_reverb is not None:
            pick = torch.rand(clean.shape[0], device=clean.device) < self.hparams.reverb_prob
            if bool(pick.any()):
                speech = torch.where(pick.unsqueeze(1), self.add_reverb(clean), clean)
        # AddNoise adds the scaled noise to its input: the difference is that noise alone.
        noise = self._varied(self.add_noise(speech, lens) - speech)
        mixture_prob = getattr(self.hparams, "noise_mixture_prob", 0.0)
        if mixture_prob > 0:
            noise = self._mixed_with_another(noise, speech, lens, mixture_prob)
        valid = (torch.arange(clean.shape[1], device=clean.device)[None, :]
                 < torch.round(lens * clean.shape[1])[:, None]).to(speech.dtype)
        return (speech + noise) * valid, noise * valid

    def _varied(self, noise):
        """``noise`` through the recipe's :class:`NoiseVariation` where it has one switched on."""
        variation = getattr(self.hparams, "noise_variation", None)
        return variation(noise) if variation is not None and variation.prob > 0 else noise

    def _mixed_with_another(self, noise, speech, lens, prob):
        """With probability ``prob`` per utterance, ``noise`` plus a second training noise (its own
        draw, SNR and variation), rescaled to ``noise``'s power so the mixture's SNR is unchanged:
        sums of the eight real training noises (hum under a tap, traffic-like rumble under clatter)
        as one more way to meet noises never trained on (ours; SpeechBrain's AddNoise adds one)."""
        pick = torch.rand(noise.shape[0], device=noise.device) < prob
        if not bool(pick.any()):
            return noise
        # Rolled by one utterance: AddNoise fills a batch by repeating its loader's order of noise
        # files, and a second call may repeat the same order, which would add a file to itself.
        second = self._varied(self.add_noise(speech, lens) - speech).roll(1, dims=0)
        summed = noise + second
        scale = (noise.pow(2).sum(1, keepdim=True) / summed.pow(2).sum(1, keepdim=True).clamp(min=1e-12)).sqrt()
        return torch.where(pick.unsqueeze(1), summed * scale, noise)

    def compute_forward(self, batch, stage):
        """Enhanced log1p magnitudes of the noisy input, clean log1p target, frame lengths; in training
        with ``residual_noise_weight`` > 0 also the noisy input's and its noise's log1p magnitudes,
        with ``gain_loss_weight`` > 0 also the noisy input's."""
        batch = batch.to(self.device)
        noise = None
        if stage == sb.Stage.TRAIN:
            clean, lens = batch.sig
            with torch.no_grad():
                noisy, noise = self.corrupt_with_noise(clean, lens)
        else:
            noisy, lens = batch.noisy_sig
            clean, _ = batch.clean_sig
        if not self.trains_ssl:
            self.module("ssl").eval()  # SpeechBrain sets every module to train mode each epoch
        noisy_log1p, enhanced, frame_lens = bsse_forward(
            self.modules["enhancer"], self.hparams.frontend, noisy, lens, self.modules["ssl"],
            train_ssl=stage == sb.Stage.TRAIN and self.trains_ssl,
        )
        with torch.no_grad():
            target = self.hparams.frontend(clean, lens)
            if noise is not None and getattr(self.hparams, "residual_noise_weight", 0.0):
                return enhanced, target, frame_lens, noisy_log1p, self.hparams.frontend(noise, lens)
        if stage == sb.Stage.TRAIN and getattr(self.hparams, "gain_loss_weight", 0.0):
            return enhanced, target, frame_lens, noisy_log1p
        return enhanced, target, frame_lens

    def compute_objectives(self, predictions, batch, stage):
        """L1 between enhanced and clean log1p magnitudes over the valid frames (in training
        asymmetric when ``overestimate_weight`` != 1: noise left in costs that many times lost speech), plus
        ``log_magnitude_weight`` times the L1 of their log magnitudes and, in training,
        ``residual_noise_weight`` times the noise the mask lets through and ``gain_loss_weight``
        times the distance of the mask's gain to the ideal ratio mask (all 0 by default: the
        reference's loss; validation is always the plain L1, the quantity the checkpoint is picked by)."""
        enhanced, target, frame_lens = predictions[:3]
        overestimate = getattr(self.hparams, "overestimate_weight", 1.0) if stage == sb.Stage.TRAIN else 1.0
        loss = log1p_l1_loss(enhanced, target, frame_lens, overestimate_weight=overestimate)
        weight = getattr(self.hparams, "log_magnitude_weight", 0.0)
        if weight:
            floor = getattr(self.hparams, "log_magnitude_floor", 1e-3)
            loss = loss + weight * log_magnitude_l1_loss(enhanced, target, frame_lens, floor)
        if len(predictions) == 5:
            noisy, noise = predictions[3:]
            loss = loss + self.hparams.residual_noise_weight * residual_noise_loss(enhanced, noisy, noise, frame_lens)
        if len(predictions) >= 4 and getattr(self.hparams, "gain_loss_weight", 0.0):
            loss = loss + self.hparams.gain_loss_weight * ratio_mask_loss(enhanced, predictions[3], target, frame_lens)
        return loss

    # ------------------------------------------------------------------ test, report, export
    def test_best(self, test_set):
        """Recovers the checkpoint of lowest validation loss."""
        super().test_best(None)

    def enhance(self, noisy):
        """The interface's chain on a batch (eval mode, no gradients, speech level kept)."""
        self.modules.eval()
        with torch.no_grad():
            return bsse_enhance_keeping_level(self.module("enhancer"), self.hparams.frontend, noisy,
                                              upstream=self.module("ssl") if self.uses_ssl else None)

    def system_name(self):
        """The enhanced system's name in the report (``bsse <feature>[ <ssl_finetune>]``)."""
        return f"bsse {self.module('enhancer').feature}" + (f" {self.hparams.ssl_finetune}" if self.uses_ssl else "")

    def test_report(self, manifests):
        """Enhances and scores the noisy test split; the layer-weight analysis; ``report/``."""
        hp = self.hparams
        manifest = manifests["test"]
        rows = rows_by_id(manifest)
        system = self.system_name()
        folders = {"noisy": None, system: os.path.join(hp.enhanced_folder, "bsse")}
        for uid, row in tqdm(rows.items(), desc="enhancing the test split", dynamic_ncols=True):
            noisy = load_audio(row["noisy_wav"], hp.sample_rate).unsqueeze(0).to(self.device)
            save_audio(os.path.join(folders[system], f"{uid}.wav"), self.enhance(noisy)[0].cpu(), hp.sample_rate)
        metrics = list(hp.test_metrics)
        results = {}
        for name, folder in folders.items():
            pairs = [Pair(uid, row["clean_wav"], row["noisy_wav"] if folder is None else os.path.join(folder, f"{uid}.wav"))
                     for uid, row in rows.items()]
            logger.info("Scoring %s", name)
            results[name], failures = evaluate_pairs(pairs, metrics, hp.sample_rate, jobs=hp.metric_jobs)
            for failure in failures:
                logger.warning("%s: %s could not be scored: %s", name, failure.file, failure.message)
        summary = write_enhancement_report(results, manifest, hp.report_folder, metrics)
        summary["layer_weights"] = self.layer_analysis(manifest) if self.uses_ssl and hp.layer_analysis else None
        with open(os.path.join(hp.report_folder, "report.md"), encoding="utf-8") as stream:
            logger.info("Test report (%s):\n%s", hp.report_folder, stream.read())
        return summary

    def layer_analysis(self, manifest):
        """Layer weights against the CN distance of each layer on ``manifest``'s pairs, measured with
        the upstream before fine-tuning and (when it was trained) after; ``report/layer_weights.*``."""
        hp = self.hparams
        pairs = read_pairs(manifest=manifest)
        upstream = self.module("ssl").eval()
        stages = {}
        if self.pretrained_ssl_state is not None:
            before = copy.deepcopy(upstream)
            before.load_state_dict(self.pretrained_ssl_state)
            stages["pretrained"] = before.eval()
            stages["fine-tuned"] = upstream
        else:
            stages["frozen upstream"] = upstream
        robustness = {}
        for stage, model in stages.items():
            encoder = _UpstreamEncoder(model, hp.sample_rate, self.device)
            robustness[stage] = analyze_ssl_pairs(encoder, pairs, batch_size=8, progress=False).results()
        weights = self.module("enhancer").layer_weights().detach().cpu().tolist()
        table = layer_weight_rows(weights, robustness)
        write_layer_weight_report(table, hp.report_folder)
        return table

    def hub_spec(self, report):
        """The enhancer, the upstream (``ssl``/``cross``) and the front end; the SNR and layer plots."""
        hp = self.hparams
        modules = {"enhancer": self.module("enhancer")}
        if self.uses_ssl:
            upstream = self.module("ssl")
            if getattr(upstream, "init_args", None) is None:
                logger.warning("The SSL upstream %s records no constructor arguments, so a hub folder cannot "
                               "rebuild it: no export (the checkpoints hold the model)", type(upstream).__name__)
                return None
            modules["ssl"] = upstream
        files = [os.path.join(hp.report_folder, name) for name in ("metrics_by_snr.png", "layer_weights.png")]
        return BSSEEnhancer.hub_spec(modules, frontend=hp.frontend, sample_rate=hp.sample_rate,
                                     files=[path for path in files if os.path.isfile(path)])

    def export(self, report, manifests):
        """The enhancer's hub folder; a fine-tuned TERA upstream also as an SSL-encoder folder
        (``ssl_hub_folder``), which ``sqe analyze-ssl --model`` and ``TERA.from_hparams`` load."""
        folder = super().export(report, manifests)
        upstream = self.module("ssl")
        if folder is not None and self.trains_ssl and isinstance(upstream, TERAModel):
            hp = self.hparams
            TERA.export(hp.ssl_hub_folder, {"tera": upstream}, sample_rate=hp.sample_rate, card=(
                f"# TERA fine-tuned by BSSE ({hp.ssl_finetune})\n\nThe SSL upstream of the BSSE enhancer in "
                f"`{folder}` after fine-tuning (command: `{self.command_line()}`); its layers' robustness:\n"
                f"`sqe analyze-ssl --model {hp.ssl_hub_folder} --pairs PAIRS.csv`.\n"))
            logger.info("Exported the fine-tuned SSL upstream to %s", hp.ssl_hub_folder)
        return folder

    def model_card(self, report, manifests):
        """Card with the measured test table and the layer-weight table."""
        hp = self.hparams
        enhancer = self.module("enhancer")
        results = f"Noisy test split ({manifests['test']}):\n\n{format_enhancement_markdown(report)}"
        if report.get("layer_weights"):
            results += ("\n\nLearned layer weights and clean-noisy distance of each layer (test pairs):\n\n"
                        + format_layer_weight_markdown(report["layer_weights"]) + "\n\n![layer weights](layer_weights.png)")
        return self.build_card(
            "BSSE enhancer", BSSEEnhancer,
            "Speech enhancement by a BLSTM mask over the log1p spectrum and softmax-weighted SSL layers\n"
            "(Hung et al., \"Boosting Self-Supervised Embeddings for Speech Enhancement\", Interspeech 2022),\n"
            "trained on noisy/clean pairs mixed on the fly; resynthesis with the noisy phase.",
            'model.enhance_file("noisy.wav", output_path="enhanced.wav")',
            manifests, results,
            {"feature": enhancer.feature,
             "SSL fine-tuning": hp.ssl_finetune if self.uses_ssl else "no SSL",
             "epochs": f"{hp.number_of_epochs} (lowest validation loss kept)",
             "training mixtures": f"SNR U[{hp.snr_low}, {hp.snr_high}] dB, reverberation p={hp.reverb_prob}, "
                                  f"{hp.crop_seconds} s crops, gain U{list(hp.gain_range)}"
                                  + (f", noise varied with p={hp.noise_variation_prob} (colour, speed, level)"
                                     if getattr(hp, "noise_variation_prob", 0) else "")},
        )
