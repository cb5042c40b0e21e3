"""Spectrum-aware SSL vocoder: a HiFi-GAN generator fed by weighted TERA layers fused with the noisy
spectrum, trained as a GAN on pairs mixed on the fly (Song et al., EUSIPCO 2024; DeVo with ``--fusion=none``).

Data: exactly BSSE's (this Brain is a :class:`~speechbrain_sqe.brains.bsse.BSSEBrain`): random crops
of the corpus's clean speech at a random gain, a training room with probability ``reverb_prob``
(SpeechBrain's ``AddReverb``), a training noise at an SNR in [``snr_low``, ``snr_high``] dB
(``AddNoise``); the target is the DRY clean crop. The SSL upstream (TERA, pretrained weights from
``ssl_pretrainer``) is frozen by default (``ssl_finetune``: ``pf``/``ef`` as BSSE's).

Training, one update per batch (:meth:`SSLVocoderBrain.fit_batch`):

- warm-up (epochs ``1..warmup_epochs``): the generator alone on the reconstruction losses of
  SpeechBrain's ``GeneratorLoss`` (multi-resolution STFT + mel L1), no discriminator;
- then HiFi-GAN's alternating updates: the discriminators (SpeechBrain's ``DiscriminatorLoss``, MSE)
  on one random ``segment_seconds`` segment of each clean and generated crop, then the generator on
  the reconstruction losses plus the adversarial (MSE) and feature-matching losses on the same
  segment.

Two optimizers (``opt_class`` for the generator side, with the fine-tuned upstream at ``ssl_lr``;
``opt_class_d`` for the discriminators) and their exponential learning-rate decays (per epoch, as
HiFi-GAN) are all in the checkpoint, so an interrupted run resumes where it stopped.
``epoch_updates`` limits an epoch to that many batches (random crops of random files, another
draw each epoch): a run's length in updates, independent of the corpus size.

Validation: the enhanced valid pairs' STOI against the clean reference (the checkpoint of highest
STOI is kept) and the reconstruction loss. Test, report and export: BSSE's (the test split enhanced
with the interface's chain, :func:`~speechbrain_sqe.inference.enhancement.ssl_vocoder_enhance_keeping_level`,
scored; the layer weights against each layer's clean-noisy distance; a hub folder
:class:`~speechbrain_sqe.inference.enhancement.SSLVocoderEnhancer` loads).
"""

import logging

import speechbrain as sb
import torch

from speechbrain_sqe.analysis.enhancement_report import format_enhancement_markdown
from speechbrain_sqe.brains.bsse import BSSEBrain
from speechbrain_sqe.inference.enhancement import (
    SSLVocoderEnhancer,
    ssl_vocoder_enhance_keeping_level,
)
from speechbrain_sqe.lobes.ssl_vocoder import random_segments, ssl_vocoder_forward
from speechbrain_sqe.metrics.registry import try_compute_metrics
from speechbrain_sqe.utils.checkpoint_guard import NAME as COMPLETE_MARKER

logger = logging.getLogger(__name__)


class SSLVocoderBrain(BSSEBrain):
    """Trains the spectrum-aware SSL vocoder (see the module docstring).

    Expected ``modules``: ``enhancer`` (:class:`speechbrain_sqe.lobes.ssl_vocoder.SSLVocoder`),
    ``ssl`` (the upstream) and ``discriminator``
    (:class:`speechbrain_sqe.lobes.ssl_vocoder.HifiGANDiscriminators`). ``hparams``: BSSE's data and
    upstream settings, ``generator_loss`` and ``discriminator_loss`` (SpeechBrain's), ``opt_class_d``,
    ``lr_decay``, ``warmup_epochs``, ``segment_seconds``, ``epoch_updates``.
    """

    SELECTION_KEY, SELECTION_MODE = "stoi", "max"

    # ------------------------------------------------------------------ set-up
    @property
    def adversarial(self):
        """Whether the current epoch trains with the discriminators (after the warm-up)."""
        return self.hparams.epoch_counter.current > int(self.hparams.warmup_epochs)

    def prepare(self, manifests, data):
        """BSSE's (pretrained upstream, fine-tuning mode, noise and rooms); DDP is refused."""
        if torch.distributed.is_initialized():
            raise NotImplementedError("the SSL vocoder's GAN step is not written for DDP yet (one process)")
        super().prepare(manifests, data)

    def init_optimizers(self):
        """The generator's optimizer (BSSE's groups), the discriminators' and both schedulers, all
        checkpointed (the completeness marker stays the last recoverable)."""
        super().init_optimizers()
        hp = self.hparams
        self.optimizer_d = hp.opt_class_d(self.modules["discriminator"].parameters())
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=hp.lr_decay)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optimizer_d, gamma=hp.lr_decay)
        self.optimizers_dict = {"generator": self.optimizer, "discriminator": self.optimizer_d}
        if self.checkpointer is not None:
            marker = self.checkpointer.recoverables.pop(COMPLETE_MARKER, None)
            for name, obj in (("optimizer_d", self.optimizer_d), ("scheduler_g", self.scheduler_g),
                              ("scheduler_d", self.scheduler_d)):
                self.checkpointer.add_recoverable(name, obj)
            if marker is not None:
                self.checkpointer.recoverables[COMPLETE_MARKER] = marker

    # ------------------------------------------------------------------ training
    def generate(self, noisy, lens, train=False):
        """The generator's waveforms ``[batch, samples]`` for a noisy padded batch."""
        if not self.trains_ssl:
            self.module("ssl").eval()  # SpeechBrain sets every module to train mode each epoch
        return ssl_vocoder_forward(self.modules["enhancer"], self.hparams.frontend, noisy, lens, self.modules["ssl"],
                                   train_ssl=train and self.trains_ssl)

    def fit_batch(self, batch):
        """One update: the discriminators' (after the warm-up), then the generator's."""
        hp = self.hparams
        batch = batch.to(self.device)
        clean, lens = batch.sig
        with torch.no_grad():
            noisy = self.corrupt(clean, lens)
        target = clean * (torch.arange(clean.shape[1], device=clean.device)[None, :]
                          < torch.round(lens * clean.shape[1])[:, None]).to(clean.dtype)
        generated = self.generate(noisy, lens, train=True)
        if self.adversarial:
            fake, real = random_segments(generated, target, round(hp.segment_seconds * hp.sample_rate))
            fake, real = fake.unsqueeze(1), real.unsqueeze(1)
            discriminator = self.modules["discriminator"]
            scores_fake, _ = discriminator(fake.detach())
            scores_real, _ = discriminator(real)
            loss_d = hp.discriminator_loss(scores_fake, scores_real)["D_loss"]
            self.optimizer_d.zero_grad()
            loss_d.backward()
            self.optimizer_d.step()
            scores_fake, feats_fake = discriminator(fake)
            with torch.no_grad():
                _, feats_real = discriminator(real)
            losses = hp.generator_loss(sb.Stage.TRAIN, generated.unsqueeze(1), target.unsqueeze(1), scores_fake,
                                       feats_fake, feats_real)
            self.d_losses.append(float(loss_d.detach()))
        else:
            losses = hp.generator_loss(sb.Stage.TRAIN, generated.unsqueeze(1), target.unsqueeze(1))
        loss = losses["G_loss"]
        self.check_loss_isfinite(loss)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.reconstruction.append(float(losses["G_gen_loss"].detach()))
        self.on_fit_batch_end(batch, None, loss, True)
        return loss.detach().cpu()

    def compute_forward(self, batch, stage):
        """Validation and test: the generated waveforms of the noisy pairs and their clean references."""
        batch = batch.to(self.device)
        noisy, lens = batch.noisy_sig
        clean, _ = batch.clean_sig
        return self.generate(noisy, lens), clean, lens

    def compute_objectives(self, predictions, batch, stage):
        """The reconstruction loss (multi-resolution STFT + mel L1); collects each pair's STOI."""
        generated, clean, lens = predictions
        total = clean.shape[1]
        for i, uid in enumerate(batch.id):
            n = round(float(lens[i]) * total)
            values, _ = try_compute_metrics(clean[i, :n].cpu(), generated[i, :n].cpu(), ["stoi"])
            if "stoi" in values:
                self.stoi[uid] = values["stoi"]
        return self.hparams.generator_loss(stage, generated.unsqueeze(1), clean.unsqueeze(1))["G_gen_loss"]

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-epoch buffers."""
        self.stoi, self.d_losses, self.reconstruction = {}, [], []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Training: the discriminator and reconstruction losses join the log line, and both learning
        rates decay (before the epoch's checkpoint); then the template's logging and checkpointing."""
        super().on_stage_end(stage, stage_loss, epoch)
        if stage == sb.Stage.TRAIN:
            mean = lambda values: sum(values) / len(values) if values else 0.0
            self.train_stats.update(reconstruction=mean(self.reconstruction), d_loss=mean(self.d_losses))
            self.scheduler_g.step()
            if self.adversarial:  # the discriminators' rate decays over their own epochs
                self.scheduler_d.step()

    def stage_statistics(self, stage):
        """Mean STOI of the enhanced valid pairs."""
        return {"stoi": sum(self.stoi.values()) / max(len(self.stoi), 1)}

    def epoch_meta(self):
        """Whether the epoch was adversarial, in its log line."""
        return {"phase": "gan" if self.adversarial else "warm-up"}

    # ------------------------------------------------------------------ test, report, export
    def enhance(self, noisy):
        """The interface's chain on a batch (eval mode, no gradients, speech level kept)."""
        self.modules.eval()
        with torch.no_grad():
            return ssl_vocoder_enhance_keeping_level(self.module("enhancer"), self.hparams.frontend, noisy,
                                                     upstream=self.module("ssl"))

    def system_name(self):
        """The enhanced system's name in the report (``ssl vocoder <fusion> <ssl_layers>[ <ssl_finetune>]``)."""
        model = self.module("enhancer")
        finetune = "" if self.hparams.ssl_finetune == "frozen" else f" {self.hparams.ssl_finetune}"
        return f"ssl vocoder {model.feature} {model.ssl_layers}{finetune}"

    def layer_analysis(self, manifest):
        """BSSE's layer-weight analysis (none when only the last layer is read)."""
        if self.module("enhancer").layer_weights() is None:
            return None
        return super().layer_analysis(manifest)

    def hub_spec(self, report):
        """The vocoder, the upstream and the front end; the SNR and layer plots."""
        spec = super().hub_spec(report)
        if spec is None:
            return None
        return SSLVocoderEnhancer.hub_spec(spec.modules, frontend=self.hparams.frontend,
                                           sample_rate=self.hparams.sample_rate, files=spec.files)

    def model_card(self, report, manifests):
        """Card with the measured test table and the layer-weight table."""
        from speechbrain_sqe.analysis.layer_weights import format_layer_weight_markdown

        hp = self.hparams
        model = self.module("enhancer")
        results = f"Noisy test split ({manifests['test']}):\n\n{format_enhancement_markdown(report)}"
        if report.get("layer_weights"):
            results += ("\n\nLearned layer weights and clean-noisy distance of each layer (test pairs):\n\n"
                        + format_layer_weight_markdown(report["layer_weights"]) + "\n\n![layer weights](layer_weights.png)")
        return self.build_card(
            "Spectrum-aware SSL vocoder", SSLVocoderEnhancer,
            "Speech enhancement by resynthesis: a HiFi-GAN generator (SpeechBrain's) driven by the noisy\n"
            "spectrum fused with softmax-weighted TERA layers (Song et al., \"Spectrum-Aware Neural Vocoder\n"
            "Based on Self-Supervised Learning for Speech Enhancement\", EUSIPCO 2024; fusion `none` is DeVo),\n"
            "trained as a GAN on noisy/clean pairs mixed on the fly.",
            'model.enhance_file("noisy.wav", output_path="enhanced.wav")',
            manifests, results,
            {"fusion": model.feature, "SSL layers": model.ssl_layers,
             "spectrum": "log1p magnitude" if hp.frontend.log1p else "magnitude",
             "SSL fine-tuning": hp.ssl_finetune,
             "epochs": f"{hp.number_of_epochs} ({hp.warmup_epochs} warm-up without discriminators; highest "
                       "validation STOI kept)",
             "updates per epoch": hp.epoch_updates or "one crop per training file",
             "training mixtures": f"SNR U[{hp.snr_low}, {hp.snr_high}] dB, reverberation p={hp.reverb_prob}, "
                                  f"{hp.crop_seconds} s crops, gain U{list(hp.gain_range)}"},
        )
