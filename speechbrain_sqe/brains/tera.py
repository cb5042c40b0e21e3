"""TERA pretraining: reconstruct clean log-mel features from time/frequency/magnitude-altered ones.

Training sees clean speech only (random crops, random gain). Optionally (``noise_prob`` > 0, the
"noisy TERA" variant) the INPUT waveform of an utterance is mixed with a training noise at a random
SNR with that probability while the TARGET stays the features of the clean waveform, so the model
also learns to denoise. Validation computes the same masked L1 loss on the CLEAN files of the valid
split with a fixed alteration seed per batch (so the valid loss is comparable across epochs); the
checkpoint with the lowest valid loss is kept. At the end the recipe writes the loss curve (PNG and
CSV) and exports a hub-ready folder that :class:`speechbrain_sqe.inference.encoders.TERA` loads.
The run itself is the recipe template's (:class:`~speechbrain_sqe.brains.base.RecipeBrain`).

Optimisation: AdamW, gradient clipping through SpeechBrain's ``max_grad_norm`` and SpeechBrain's
:class:`speechbrain.nnet.schedulers.LinearWarmupScheduler` (linear warm-up over ``warmup_proportion``
of all updates, then linear decay to 0, the BERT/TERA schedule), stepped before every update.
"""

import csv
import json
import math
import os

import speechbrain as sb
import torch
from speechbrain.augment.time_domain import AddNoise
from speechbrain.nnet.schedulers import LinearWarmupScheduler
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset
from speechbrain_sqe.inference.encoders import TERA
from speechbrain_sqe.inference.hub import constructor_arguments
from speechbrain_sqe.lobes.alteration import masked_l1_loss


@register_checkpoint_hooks
class LossHistory:
    """Per-epoch train/valid losses, saved in the checkpoints so a resumed run keeps its curve.

    Example
    -------
    >>> history = LossHistory()
    >>> history.add(1, 0.9, 0.8)
    >>> history.rows
    [{'epoch': 1, 'train_loss': 0.9, 'valid_loss': 0.8}]
    """

    def __init__(self):
        self.rows = []

    def add(self, epoch, train_loss, valid_loss):
        """Records (or replaces) the losses of ``epoch``."""
        self.rows = [row for row in self.rows if row["epoch"] != epoch]
        self.rows.append({"epoch": int(epoch), "train_loss": float(train_loss), "valid_loss": float(valid_loss)})
        self.rows.sort(key=lambda row: row["epoch"])

    @mark_as_saver
    def save(self, path):
        """Writes the rows as JSON."""
        with open(path, "w", encoding="utf-8") as stream:
            json.dump(self.rows, stream)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Reads the rows back."""
        del end_of_epoch
        with open(path, encoding="utf-8") as stream:
            self.rows = json.load(stream)

    def write(self, folder):
        """Writes ``loss_curve.csv`` and ``loss_curve.png`` into ``folder``; returns the PNG path."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "loss_curve.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=["epoch", "train_loss", "valid_loss"])
            writer.writeheader()
            writer.writerows(self.rows)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = [row["epoch"] for row in self.rows]
        ax.plot(epochs, [row["train_loss"] for row in self.rows], "o-", label="train")
        ax.plot(epochs, [row["valid_loss"] for row in self.rows], "s-", label="valid (clean, fixed alteration)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("masked L1 loss")
        ax.set_title("TERA pretraining")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(folder, "loss_curve.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


class TERABrain(RecipeBrain):
    """Pretrains TERA on clean speech (optionally with noisy inputs and clean targets).

    Expected ``modules``: ``tera`` (:class:`speechbrain_sqe.lobes.tera.TERAModel`); ``hparams``:
    ``alteration`` (:class:`speechbrain_sqe.lobes.alteration.TERAAlteration`), ``lr``,
    ``warmup_proportion``, ``noise_prob`` / ``noise_snr_low`` / ``noise_snr_high``,
    ``valid_alteration_seed``, the crop/gain settings, the dataloader options and ``hub_folder``.
    """

    def datasets(self, manifests):
        """Clean training crops; the clean side of the valid pairs for the validation loss."""
        hp = self.hparams
        return {
            "train": clean_speech_dataset(manifests["train_clean"], hp.sample_rate, hp.crop_seconds, hp.gain_range),
            "valid": clean_speech_dataset(manifests["valid"], hp.sample_rate, wav_column="clean_wav"),
        }

    def prepare(self, manifests, data):
        """The noisy-input augmentation, the warm-up schedule sized to this run, the loss history."""
        hp = self.hparams
        self.add_noise = None
        if hp.noise_prob > 0:
            self.add_noise = AddNoise(
                csv_file=manifests["noise_train"], snr_low=hp.noise_snr_low, snr_high=hp.noise_snr_high,
                noise_sample_rate=hp.sample_rate, clean_sample_rate=hp.sample_rate,
            )
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        batch_size = self.loader_options(sb.Stage.TRAIN).get("batch_size", 1)
        steps_per_epoch = math.ceil(len(data["train"]) / (batch_size * world))
        self.total_steps = steps_per_epoch * hp.number_of_epochs
        self.warmup_steps = max(1, round(hp.warmup_proportion * self.total_steps))
        self.lr_scheduler = LinearWarmupScheduler(hp.lr, self.warmup_steps, self.total_steps)
        self.loss_history = LossHistory()
        self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)
        self.checkpointer.add_recoverable("loss_history", self.loss_history)

    def compute_forward(self, batch, stage):
        """Features of the clean target and of the (maybe noisy) input, altered input, prediction."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        bare = self.module("tera")
        with torch.no_grad():
            target, flens = bare.extract_features(wavs, lens)
            inputs = target
            if stage == sb.Stage.TRAIN and self.add_noise is not None:
                noisy = self.add_noise(wavs, lens)
                pick = torch.rand(wavs.shape[0], device=wavs.device) < self.hparams.noise_prob
                if bool(pick.any()):
                    noisy_wavs = torch.where(pick.unsqueeze(1), noisy, wavs)
                    inputs, _ = bare.extract_features(noisy_wavs, lens)
            generator = None
            if stage != sb.Stage.TRAIN:
                # A fixed alteration per validation batch: the loss is comparable across epochs.
                generator = torch.Generator().manual_seed(self.hparams.valid_alteration_seed + self.eval_batch)
                self.eval_batch += 1
            altered, mask = self.hparams.alteration(inputs, flens, generator=generator)
        prediction = self.modules.tera(altered, flens)
        return prediction, target, mask

    def compute_objectives(self, predictions, batch, stage):
        """L1 between the prediction and the clean features on the altered positions."""
        prediction, target, mask = predictions
        return masked_l1_loss(prediction, target, mask)

    def on_fit_start(self):
        """Recovers, then fits the warm-up schedule to this run's number of updates."""
        super().on_fit_start()
        # A resumed run asked for more epochs gets the schedule of the new total.
        self.lr_scheduler.num_training_steps = self.total_steps
        self.lr_scheduler.num_warmup_steps = self.warmup_steps

    def on_fit_batch_start(self, batch, should_step):
        """Sets the learning rate of the coming update (linear warm-up, then linear decay)."""
        if should_step:
            self.lr_scheduler(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        """Restarts the validation batch counter (the alteration seeds)."""
        self.eval_batch = 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Records the epoch's losses in the curve; the template logs and checkpoints."""
        if stage == sb.Stage.VALID:
            self.loss_history.add(epoch, self.train_stats["loss"], stage_loss)
        super().on_stage_end(stage, stage_loss, epoch)

    def test_best(self, test_set):
        """Keeps the whole curve, then recovers the best checkpoint (lowest valid loss)."""
        self.curve = list(self.loss_history.rows)
        super().test_best(None)

    def test_report(self, manifests):
        """The loss curve (PNG and CSV) of the whole run."""
        history = LossHistory()
        history.rows = self.curve
        history.write(self.hparams.output_folder)
        return self.curve

    def hub_spec(self, report):
        """The pretrained model (its log-mel front end is part of it, as in s3prl) and its curve."""
        return TERA.hub_spec({"tera": self.module("tera")}, sample_rate=self.hparams.sample_rate,
                             files=[os.path.join(self.hparams.output_folder, "loss_curve.png")])

    def model_card(self, report, manifests):
        """Card with the model's sizes and the loss curve."""
        hp = self.hparams
        best = min(report, key=lambda row: row["valid_loss"]) if report else {}
        sizes = "\n".join(f"- {key}: {value}" for key, value in constructor_arguments(self.module("tera")).items())
        table = ["| epoch | train loss | valid loss |", "|---|---|---|"]
        table += [f"| {row['epoch']} | {row['train_loss']:.4f} | {row['valid_loss']:.4f} |" for row in report]
        card = self.build_card(
            "TERA", TERA,
            "Self-supervised speech representations: a Transformer encoder pretrained to reconstruct\n"
            "log-mel features altered in time, frequency and magnitude (Liu et al., 2021).",
            'states = model.hidden_states_file("speech.wav")  # model.layer_count tensors [1, frames, hidden]',
            manifests,
            "Masked L1 loss on the altered positions (valid: clean files, fixed alteration):\n\n"
            + "\n".join(table) + "\n\n![loss curve](loss_curve.png)",
            {"epoch kept (lowest valid loss)": best.get("epoch"),
             "epochs trained": hp.number_of_epochs,
             "noisy inputs (probability, SNR dB)": (hp.noise_prob, hp.noise_snr_low, hp.noise_snr_high)},
        )
        return card + "\n## Model\n\n" + sizes + "\n"
