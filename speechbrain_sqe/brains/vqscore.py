"""VQScore training: a VQ-VAE on clean speech only; its quantization error scores quality.

Training sees clean speech only (random 3 s crops, random gain). Validation scores the noisy/clean
pairs of the valid split and keeps the checkpoint whose VQScore correlates best (Spearman) with PESQ
of the noisy files; the test stage writes the per-file CSV, correlations (overall and per condition)
and a scatter plot; the export is a hub folder that
:class:`speechbrain_sqe.inference.quality.VQScore` loads. The run itself is the recipe template's
(:class:`~speechbrain_sqe.brains.base.RecipeBrain`).
"""

import os

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_sqe.analysis.quality_report import (
    load_reference_metrics,
    write_quality_report,
)
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.vqvae import spectral_cosine_loss
from speechbrain_sqe.metrics.correlation import correlation


class VQScoreBrain(RecipeBrain):
    """Trains the VQScore VQ-VAE on clean speech and evaluates it as a quality estimator.

    Expected ``modules``: ``vqvae`` (:class:`speechbrain_sqe.lobes.vqvae.VQVAEQualityModel`);
    ``hparams``: ``frontend`` (waveform -> magnitude ``[batch, time, freq]``), ``recon_weight``,
    ``commit_weight``, the dataloader options and the report settings.
    """

    SELECTION_KEY = "spearman_pesq"
    SELECTION_MODE = "max"

    def datasets(self, manifests):
        """Clean training crops (with the realism augmentation); noisy/clean valid and test pairs."""
        hp = self.hparams
        return {
            "train": clean_speech_dataset(manifests["train_clean"], hp.sample_rate, hp.crop_seconds,
                                          hp.gain_range, augment=hp.clean_augment),
            "valid": paired_dataset(manifests["valid"], hp.sample_rate),
            "test": paired_dataset(manifests["test"], hp.sample_rate),
        }

    def prepare(self, manifests, data):
        """PESQ (and the test metrics) of the noisy valid/test files, computed once and cached."""
        hp = self.hparams
        self.reference_metrics = {}
        for stage, split, metrics in ((sb.Stage.VALID, "valid", hp.valid_metrics),
                                      (sb.Stage.TEST, "test", hp.test_metrics)):
            cache = os.path.join(hp.output_folder, f"reference_metrics_{split}.csv")
            kwargs = {"manifest": manifests[split], "cache": cache, "metrics": metrics, "jobs": hp.metric_jobs}
            run_on_main(load_reference_metrics, kwargs=kwargs)
            self.reference_metrics[stage] = load_reference_metrics(**kwargs)

    def compute_forward(self, batch, stage):
        """Reconstructs clean speech in training; scores noisy and clean speech otherwise."""
        batch = batch.to(self.device)
        if stage == sb.Stage.TRAIN:
            spec, lens = self.features(*batch.sig)
            spec_hat, _, quantized = self.modules.vqvae(spec, lens)
            return spec, spec_hat, quantized, lens
        model = self.module("vqvae")  # scoring is not forward: the bare module under DDP
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

    def stage_statistics(self, stage):
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

    def test_report(self, manifests):
        """Per-file scores, correlations overall and per condition, scatter plot (``report/``)."""
        return write_quality_report(
            scores=self.scores,
            reference=self.reference_metrics[sb.Stage.TEST],
            manifest=manifests["test"],
            output_folder=self.hparams.report_folder,
        )

    def hub_spec(self, report):
        """The best model with the front end it was trained with."""
        return VQScore.hub_spec({"vqvae": self.module("vqvae")}, frontend=self.hparams.frontend,
                                sample_rate=self.hparams.sample_rate)

    def model_card(self, report, manifests):
        """Card with the measured correlations of the test split."""
        hp = self.hparams
        table = ["| metric | Pearson | Spearman | Kendall |", "|---|---|---|---|"]
        table += [f"| {metric} | {c['pearson']:.3f} | {c['spearman']:.3f} | {c['kendall']:.3f} |"
                  for metric, c in report["overall"].items()]
        results = (f"Test split ({manifests['test']}), noisy files: clean above its noisy version in "
                   f"{100 * report['clean_above_noisy']:.1f}% of {report['n']} pairs.\n\n" + "\n".join(table))
        return self.build_card(
            "VQScore", VQScore,
            "No-reference speech quality: the cosine similarity between a clean-speech VQ-VAE's encoder\n"
            "output and its nearest code, averaged over frames (Fu et al., ICLR 2024). Higher is better.",
            'model.score_file("speech.wav")   # higher is better', manifests, results,
            {"epoch kept (best validation Spearman with PESQ)": hp.epoch_counter.current,
             "epochs trained": hp.number_of_epochs,
             "realism augmentation": hp.clean_augment is not None},
        )

