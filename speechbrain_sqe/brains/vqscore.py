"""VQScore training: a VQ-VAE on clean speech only; its quantization error scores quality.

Training sees clean speech only (random 3 s crops, random gain). Validation scores the noisy/clean
pairs of the valid split and keeps the checkpoint whose VQScore correlates best (Spearman) with PESQ
of the noisy files; the test stage writes the per-file CSV, correlations (overall and per condition)
and a scatter plot, then the recipe exports a hub-ready folder that
:class:`speechbrain_sqe.inference.vqscore.VQScore` loads.
"""

import logging
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_sqe.analysis.quality_report import (
    load_reference_metrics,
    write_quality_report,
)
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.inference.export import build_vqscore_hub, vqscore_model_card
from speechbrain_sqe.lobes.vqvae import spectral_cosine_loss
from speechbrain_sqe.metrics.correlation import correlation

logger = logging.getLogger(__name__)


class VQScoreBrain(RecipeBrain):
    """Trains the VQScore VQ-VAE on clean speech and evaluates it as a quality estimator.

    Expected ``modules``: ``vqvae`` (:class:`speechbrain_sqe.lobes.vqvae.VQVAEQualityModel`);
    ``hparams``: ``compute_stft`` (waveform -> magnitude ``[batch, time, freq]``),
    ``recon_weight``, ``commit_weight``, the dataloader options and the report settings.
    """

    def features(self, wavs, lens):
        """Magnitude spectrogram, each utterance exactly as alone, and relative frame lengths."""
        spec = self.hparams.compute_stft(wavs, lens)
        return spec, self.hparams.compute_stft.frame_lengths(lens, wavs.shape[1])

    def compute_forward(self, batch, stage):
        """Reconstructs clean speech in training; scores noisy and clean speech otherwise."""
        batch = batch.to(self.device)
        if stage == sb.Stage.TRAIN:
            spec, lens = self.features(*batch.sig)
            spec_hat, _, quantized = self.modules.vqvae(spec, lens)
            return spec, spec_hat, quantized, lens
        # Evaluation uses the bare module (DDP wraps it in training; scoring is not forward).
        model = getattr(self.modules.vqvae, "module", self.modules.vqvae)
        noisy_spec, noisy_lens = self.features(*batch.noisy_sig)
        clean_spec, clean_lens = self.features(*batch.clean_sig)
        noisy_scores = model.score(noisy_spec, noisy_lens)
        clean_hat, _, quantized = model(clean_spec, clean_lens)
        clean_scores = model.score(clean_spec, clean_lens)
        return clean_spec, clean_hat, quantized, clean_lens, noisy_scores, clean_scores

    def compute_objectives(self, predictions, batch, stage):
        """45 x spectral cosine distance on linear magnitudes + commitment (the paper's loss)."""
        spec, spec_hat, quantized, lens = predictions[:4]
        recon = spectral_cosine_loss(spec, spec_hat, lens)
        loss = self.hparams.recon_weight * recon + self.hparams.commit_weight * quantized.commit_loss
        if stage != sb.Stage.TRAIN:
            noisy_scores, clean_scores = predictions[4:]
            for uid, noisy, clean in zip(batch.id, noisy_scores.tolist(), clean_scores.tolist()):
                self.scores[uid] = {"vqscore_noisy": noisy, "vqscore_clean": clean}
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Collects the per-utterance scores of validation and test."""
        self.scores = {}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, keeps the best checkpoint by validation correlation, writes the test report."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update(self._score_statistics(stage))
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta=stats, max_keys=["spearman_pesq"], num_to_keep=self.hparams.keep_checkpoints
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )

    def _score_statistics(self, stage):
        """Spearman with PESQ and the clean > noisy rate of the collected scores."""
        reference = self.reference_metrics[stage]
        ids = [uid for uid in self.scores if uid in reference]
        scores = [self.scores[uid]["vqscore_noisy"] for uid in ids]
        pesq = [reference[uid]["pesq_wb"] for uid in ids]
        ordered = [self.scores[uid]["vqscore_clean"] > self.scores[uid]["vqscore_noisy"] for uid in ids]
        return {
            "spearman_pesq": correlation(scores, pesq)["spearman"],
            "clean_above_noisy": sum(ordered) / max(len(ordered), 1),
        }

    def run_recipe(self, manifests):
        """Fits on clean speech, tests the best checkpoint, writes the report, exports the model."""
        hp = self.hparams
        train_set = clean_speech_dataset(
            manifests["train_clean"], hp.sample_rate, hp.crop_seconds, hp.gain_range,
            augment=hp.clean_augment,
        )
        valid_set = paired_dataset(manifests["valid"], hp.sample_rate)
        test_set = paired_dataset(manifests["test"], hp.sample_rate)
        self.reference_metrics = {}
        splits = ((sb.Stage.VALID, "valid", hp.valid_metrics), (sb.Stage.TEST, "test", hp.test_metrics))
        for stage, split, metrics in splits:
            cache = os.path.join(hp.output_folder, f"reference_metrics_{split}.csv")
            kwargs = {"manifest": manifests[split], "cache": cache, "metrics": metrics, "jobs": hp.metric_jobs}
            run_on_main(load_reference_metrics, kwargs=kwargs)
            self.reference_metrics[stage] = load_reference_metrics(**kwargs)
        self.fit(
            hp.epoch_counter,
            train_set,
            valid_set,
            train_loader_kwargs=self.loader_options(sb.Stage.TRAIN),
            valid_loader_kwargs=self.loader_options(sb.Stage.VALID),
        )
        self.evaluate(
            test_set, max_key="spearman_pesq", test_loader_kwargs=self.loader_options(sb.Stage.TEST)
        )
        if if_main_process():
            report = write_quality_report(
                scores=self.scores,
                reference=self.reference_metrics[sb.Stage.TEST],
                manifest=manifests["test"],
                output_folder=hp.report_folder,
            )
            card = vqscore_model_card(
                report,
                train_description=f"clean speech only, corpus '{hp.corpus}' ({manifests['train_clean']})",
                training={
                    "epoch kept (best validation Spearman with PESQ)": hp.epoch_counter.current,
                    "epochs trained": hp.number_of_epochs,
                    "realism augmentation": hp.clean_augment is not None,
                    "seed": hp.seed,
                },
                command="python train.py " + " ".join(sys.argv[1:]),
            )
            build_vqscore_hub(
                getattr(self.modules.vqvae, "module", self.modules.vqvae), hp.hub_folder, sample_rate=hp.sample_rate, n_fft=hp.n_fft,
                hop_length=hp.hop_length, log1p=hp.input_log1p, card=card,
            )
            logger.info("Exported the trained scorer to %s", hp.hub_folder)
        return self.scores
