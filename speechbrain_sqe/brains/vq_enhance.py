"""VQ-VAE speech enhancement trained on clean speech only (Fu et al., ICLR 2024), in one run.

Step 1 (epochs ``1..step1_epochs``): a VQ-VAE reconstructs clean ``log1p`` magnitudes, loss
``sc_weight * spectral convergence + commitment``.

Step 2 (the remaining epochs): from the best step-1 checkpoint, a frozen copy becomes the teacher
and the student's codebook is frozen. For each clean batch: the teacher's tokens of the clean
input; a one-step L2 attack on the waveform against the student's token cross-entropy
(``eps ~ U[eps_min, eps_max] * ||x||``); the student encoder learns the teacher's tokens from the
attacked and the clean input (cross-entropy), the decoder reconstructs clean speech from the
student's detached codes. Both inputs go through the model as one batch of ``2 x batch`` (one
forward, which DistributedDataParallel needs); the means over that batch are doubled to give the
authors' sums ``CE(x_adv) + CE(x)`` and ``SC(x_adv) + SC(x)``.

The phase and the teacher are checkpointed, so an interrupted run resumes in the right step with
the same teacher. Validation enhances the noisy valid pairs and keeps the checkpoint of best PESQ
in each step (the authors select on noisy validation PESQ too); training never sees noisy speech.
The test stage enhances the noisy test split with every system of the ablation (step 1 only,
step 1 + 2, blends with the input), scores them against the clean references and writes
``report/``, then exports a hub folder that :class:`~speechbrain_sqe.inference.vq_enhancer.VQEnhancer`
loads.
"""

import logging
import os
import sys
import time

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from tqdm import tqdm

from speechbrain_sqe.analysis.enhancement_report import write_enhancement_report
from speechbrain_sqe.analysis.quality_report import rows_by_id
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.inference.export import build_vq_enhancer_hub
from speechbrain_sqe.lobes.adversarial import l2_waveform_attack
from speechbrain_sqe.lobes.vqvae_se import (
    enhance_waveforms,
    mix_with_input,
    spectral_convergence_loss,
)
from speechbrain_sqe.metrics.registry import try_compute_metrics
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs
from speechbrain_sqe.utils.safe_load import safe_torch_recovery

logger = logging.getLogger(__name__)

STEP_KEYS = {1: "step1_pesq", 2: "step2_pesq"}


def _bare(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)


class VQEnhanceBrain(RecipeBrain):
    """Trains the clean-speech VQ-VAE enhancer (step 1, then step 2) and evaluates it.

    Expected ``modules``: ``vqvae`` (the student,
    :class:`speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel`). ``hparams``: ``teacher`` (a
    second model of the same configuration, in the checkpointer), ``phase``
    (:class:`speechbrain_sqe.brains.phases.TrainingPhase`, in the checkpointer), ``compute_stft``
    (``log1p`` magnitudes, hop 128), ``step1_epochs``, ``step2_opt_class``, ``sc_weight``,
    ``sc_norm``, ``ce_weight``, ``attack_eps_range``, the dataloader options and the report settings.
    """

    # ------------------------------------------------------------------ features
    def features(self, wavs, lens):
        """``log1p`` magnitudes of each utterance as alone, and the relative frame lengths."""
        spec = self.hparams.compute_stft(wavs, lens)
        return spec, self.hparams.compute_stft.frame_lengths(lens, wavs.shape[1])

    def enhance(self, model, wavs, lens=None, mix=0.0):
        """Enhanced waveforms of a padded batch with ``model`` (eval mode, no gradients)."""
        with torch.no_grad():
            return enhance_waveforms(model, self.hparams.compute_stft, wavs, lens, mix)

    # ------------------------------------------------------------------ training
    def compute_forward(self, batch, stage):
        """Step 1: reconstruction; step 2: the attacked + clean batch; evaluation: enhancement."""
        batch = batch.to(self.device)
        if stage != sb.Stage.TRAIN:
            noisy, lens = batch.noisy_sig
            return self.enhance(_bare(self.modules.vqvae), noisy, lens)
        wavs, lens = batch.sig
        spec, frame_lens = self.features(wavs, lens)
        if self.hparams.phase.current == 1:
            spec_hat, _, vq = self.modules.vqvae(spec, frame_lens)
            return spec, spec_hat, vq, frame_lens
        return self._step2_forward(wavs, lens, spec, frame_lens)

    def _step2_forward(self, wavs, lens, spec, frame_lens):
        """Teacher tokens, the waveform attack, then one student pass on ``[x_adv; x]``."""
        with torch.no_grad():
            teacher = self.hparams.teacher
            tokens = teacher.quantize(teacher.encode(spec, frame_lens), frame_lens, freeze_codebook=True).indices
        student = _bare(self.modules.vqvae)

        def attack_loss(wav):  # the student's token cross-entropy (valid frames only)
            adv_spec, _ = self.features(wav, lens)
            z = student.encode(adv_spec, frame_lens)
            return student.quantize(z, frame_lens, target_indices=tokens, freeze_codebook=True).ce_loss

        student.eval()  # the attack sees the deterministic student (as the authors')
        adv_wavs, _ = l2_waveform_attack(wavs, lens, attack_loss, self.hparams.attack_eps_range)
        student.train()
        adv_spec, _ = self.features(adv_wavs, lens)
        both = torch.cat([adv_spec, spec])
        both_lens = torch.cat([frame_lens, frame_lens])
        targets = torch.cat([tokens, tokens])
        spec_hat, _, vq = self.modules.vqvae(
            both, both_lens, target_indices=targets, freeze_codebook=True, detach_codes=True
        )
        return torch.cat([spec, spec]), spec_hat, vq, both_lens

    def compute_objectives(self, predictions, batch, stage):
        """The step's loss in training; the clean-reconstruction loss and PESQ otherwise."""
        if stage != sb.Stage.TRAIN:
            return self._evaluation_loss(predictions, batch)
        spec, spec_hat, vq, frame_lens = predictions
        sc = spectral_convergence_loss(spec, spec_hat, frame_lens, p=self.hparams.sc_norm)
        if self.hparams.phase.current == 1:
            return self.hparams.sc_weight * sc + vq.loss
        # Means over [x_adv; x] doubled: the authors' CE(x_adv) + CE(x) and SC(x_adv) + SC(x).
        return 2.0 * (self.hparams.ce_weight * vq.ce_loss + self.hparams.sc_weight * sc)

    def _evaluation_loss(self, enhanced, batch):
        """Spectral convergence of the enhanced noisy input to the clean one; collects PESQ."""
        clean, lens = batch.clean_sig
        clean = clean.to(self.device)
        clean_spec, frame_lens = self.features(clean, lens)
        enhanced_spec, _ = self.features(enhanced, lens)
        total = clean.shape[1]
        for i, uid in enumerate(batch.id):
            n = round(float(lens[i]) * total)
            values, _ = try_compute_metrics(clean[i, :n].cpu(), enhanced[i, :n].cpu(), ["pesq_wb"])
            if "pesq_wb" in values:
                self.pesq[uid] = values["pesq_wb"]
        return spectral_convergence_loss(clean_spec, enhanced_spec, frame_lens, p=self.hparams.sc_norm)

    # ------------------------------------------------------------------ phases
    def on_fit_start(self):
        """Recovers (phase and teacher included) and puts the teacher on the device, frozen."""
        super().on_fit_start()
        self._freeze_teacher()

    def _freeze_teacher(self):
        teacher = self.hparams.teacher.to(self.device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)

    def on_stage_start(self, stage, epoch=None):
        """Switches to step 2 at the first epoch past ``step1_epochs``; resets the PESQ buffer."""
        self.pesq = {}
        in_step1 = self.hparams.phase.current == 1
        if stage == sb.Stage.TRAIN and epoch is not None and in_step1 and epoch > self.hparams.step1_epochs:
            self.start_step2()

    def start_step2(self):
        """Best step-1 weights -> student and frozen teacher; a fresh step-2 optimizer."""
        student = _bare(self.modules.vqvae)
        best = self.checkpointer.find_checkpoint(max_key=STEP_KEYS[1]) if self.checkpointer else None
        if best is not None:
            safe_torch_recovery(student, best.paramfiles["vqvae"], end_of_epoch=True)
            logger.info("Step 2 starts from the best step-1 checkpoint (%s)", best.path)
        self.hparams.teacher.load_state_dict(student.state_dict())
        self._freeze_teacher()
        self.hparams.phase.current = 2
        # The step-2 optimizer (the authors' is new too). A run resumed in step 2 builds the
        # step-1 optimizer first, then loads this one's saved state (same class, so lr included).
        self.optimizer = self.hparams.step2_opt_class(self.modules.vqvae.parameters())
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; keeps the best checkpoint of each step by validation PESQ."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["pesq"] = sum(self.pesq.values()) / max(len(self.pesq), 1)
        if stage == sb.Stage.VALID:
            step = self.hparams.phase.current
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "step": step, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={STEP_KEYS[step]: stats["pesq"], "phase": step, "loss": stage_loss},
                max_keys=list(STEP_KEYS.values()),
                num_to_keep=1,
            )

    # ------------------------------------------------------------------ recipe
    def run_recipe(self, manifests):
        """Fits both steps on clean speech, tests the ablation systems, exports the enhancer."""
        hp = self.hparams
        start = time.time()
        train_set = clean_speech_dataset(
            manifests["train_clean"], hp.sample_rate, hp.crop_seconds, hp.gain_range,
            augment=hp.clean_augment,
        )
        valid_set = paired_dataset(manifests["valid"], hp.sample_rate)
        self.fit(
            hp.epoch_counter, train_set, valid_set,
            train_loader_kwargs=self.loader_options(sb.Stage.TRAIN),
            valid_loader_kwargs=self.loader_options(sb.Stage.VALID),
        )
        train_minutes = (time.time() - start) / 60.0
        final_step = hp.phase.current
        self.checkpointer.recover_if_possible(max_key=STEP_KEYS[final_step])
        self._freeze_teacher()
        if not if_main_process():
            return None
        summary = self.test_systems(manifests["test"], with_step1=final_step == 2)
        self.export(summary, manifests, train_minutes)
        return summary

    def test_systems(self, manifest, with_step1=True):
        """Enhances the noisy test split with each ablation system and scores every system.

        Arguments
        ---------
        manifest : str
            The test pairs manifest (``ID``, ``clean_wav``, ``noisy_wav``, conditions).
        with_step1 : bool
            Also test the step-1 model alone (the teacher, when step 2 ran).

        Returns
        -------
        dict
            The report summary (see :func:`~speechbrain_sqe.analysis.enhancement_report.write_enhancement_report`).
        """
        hp = self.hparams
        final = "step1+2" if with_step1 else "step1"
        models = {final: _bare(self.modules.vqvae).eval()}
        if with_step1:
            models = {"step1": hp.teacher.eval(), **models}
        rows = rows_by_id(manifest)
        folders = {"noisy": None}
        for name in models:
            folders[name] = os.path.join(hp.enhanced_folder, name)
        for ratio in hp.test_mix_ratios:
            folders[f"{final} mix {ratio:g}"] = os.path.join(hp.enhanced_folder, f"{final}_mix{ratio:g}")
        for uid, row in tqdm(rows.items(), desc="enhancing the test split", dynamic_ncols=True):
            noisy = load_audio(row["noisy_wav"], hp.sample_rate).unsqueeze(0).to(self.device)
            for name, model in models.items():
                enhanced = self.enhance(model, noisy)
                save_audio(os.path.join(folders[name], f"{uid}.wav"), enhanced[0], hp.sample_rate)
                if name == final:
                    for ratio in hp.test_mix_ratios:
                        mixed = mix_with_input(enhanced, noisy, ratio)[0]
                        save_audio(os.path.join(folders[f"{final} mix {ratio:g}"], f"{uid}.wav"), mixed,
                                   hp.sample_rate)
        results = {}
        for name, folder in folders.items():
            pairs = [
                Pair(uid, row["clean_wav"], row["noisy_wav"] if folder is None else os.path.join(folder, f"{uid}.wav"))
                for uid, row in rows.items()
            ]
            logger.info("Scoring %s", name)
            results[name], failures = evaluate_pairs(pairs, hp.test_metrics, hp.sample_rate, jobs=hp.metric_jobs)
            for failure in failures:
                logger.warning("%s: %s could not be scored: %s", name, failure.file, failure.message)
            if hp.score_with_vqscore:
                self._add_vqscore(results[name], pairs)
        metrics = list(hp.test_metrics) + (["vqscore"] if hp.score_with_vqscore else [])
        summary = write_enhancement_report(results, manifest, hp.report_folder, metrics)
        with open(os.path.join(hp.report_folder, "report.md"), encoding="utf-8") as stream:
            logger.info("Test report (%s):\n%s", hp.report_folder, stream.read())
        return summary

    def _add_vqscore(self, rows, pairs):
        """Adds the no-reference VQScore (the package's shipped scorer) to each row."""
        from speechbrain_sqe.inference.vqscore import VQScore

        if not hasattr(self, "_scorer"):
            self._scorer = VQScore.from_hparams(source=self.hparams.vqscore_source or VQScore.DEFAULT_SOURCE)
        degraded = {pair.file: pair.deg for pair in pairs}
        for row in rows:
            row["vqscore"] = self._scorer.score_file(degraded[row["file"]])

    def export(self, summary, manifests, train_minutes):
        """Writes the hub folder (model, hyperparams, card with the measured table and plot)."""
        from speechbrain_sqe.analysis.enhancement_report import (
            format_enhancement_markdown,
        )

        hp = self.hparams
        command = "python train.py " + " ".join(sys.argv[1:])
        lines = [
            "# VQ enhancer (speechbrain-sqe)",
            "",
            "Speech enhancement by a VQ-VAE trained on clean speech only: noisy speech is encoded,",
            "snapped to the nearest clean-speech codes and decoded, then resynthesised with the noisy",
            "phase. Step 2 (self-distillation under a waveform attack) makes the encoder robust",
            "(Fu et al., ICLR 2024).",
            "",
            "```python",
            "from speechbrain_sqe.inference.vq_enhancer import VQEnhancer",
            'enhancer = VQEnhancer.from_hparams(source="<this folder>")',
            'enhancer.enhance_file("noisy.wav", output_path="enhanced.wav")',
            "```",
            "",
            "## Training",
            "",
            f"- Data: clean speech only, corpus '{hp.corpus}' ({manifests['train_clean']})",
            f"- Command: `{command}`",
            (f"- Epochs: {hp.step1_epochs} step 1 + {hp.number_of_epochs - hp.step1_epochs} step 2 "
             f"(best validation PESQ kept in each step); seed {hp.seed}"),
            f"- Training time: {train_minutes:.1f} min ({torch.get_num_threads()} torch threads, {self.device})",
            f"- Default blend with the input (`mix`): {hp.export_mix}",
            "",
            f"## Measured on the noisy test split ({manifests['test']})",
            "",
            format_enhancement_markdown(summary),
            "![metrics by SNR](metrics_by_snr.png)",
            "",
        ]
        build_vq_enhancer_hub(
            _bare(self.modules.vqvae), hp.hub_folder, sample_rate=hp.sample_rate, n_fft=hp.n_fft,
            hop_length=hp.hop_length, mix=hp.export_mix, card="\n".join(lines),
            extra_files=[os.path.join(hp.report_folder, "metrics_by_snr.png")],
        )
        logger.info("Exported the trained enhancer to %s", hp.hub_folder)
