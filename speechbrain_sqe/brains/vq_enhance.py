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
``report/``, then exports a hub folder that :class:`~speechbrain_sqe.inference.enhancement.VQEnhancer`
loads. The run itself is the recipe template's (:class:`~speechbrain_sqe.brains.base.RecipeBrain`).
"""

import logging
import os

import speechbrain as sb
import torch
from tqdm import tqdm

from speechbrain_sqe.analysis.enhancement_report import (
    format_enhancement_markdown,
    write_enhancement_report,
)
from speechbrain_sqe.analysis.quality_report import rows_by_id
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.inference.enhancement import (
    VQEnhancer,
    set_vq_attention,
    vq_enhance_keeping_level,
)
from speechbrain_sqe.lobes.adversarial import l2_waveform_attack
from speechbrain_sqe.lobes.vqvae_se import (
    mix_with_input,
    spectral_convergence_loss,
)
from speechbrain_sqe.metrics.registry import try_compute_metrics
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs
from speechbrain_sqe.utils.safe_load import safe_torch_recovery

logger = logging.getLogger(__name__)

STEP_KEYS = {1: "step1_pesq", 2: "step2_pesq"}


class VQEnhanceBrain(RecipeBrain):
    """Trains the clean-speech VQ-VAE enhancer (step 1, then step 2) and evaluates it.

    Expected ``modules``: ``vqvae`` (the student,
    :class:`speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel`). ``hparams``: ``teacher`` (a
    second model of the same configuration, in the checkpointer), ``phase``
    (:class:`speechbrain_sqe.brains.phases.TrainingPhase`, in the checkpointer), ``frontend``
    (``log1p`` magnitudes, hop 128), ``step1_epochs``, ``step2_opt_class``, ``sc_weight``,
    ``sc_norm``, ``ce_weight``, ``attack_eps_range``, the dataloader options and the report settings.
    """

    # ------------------------------------------------------------------ the template's hooks
    def datasets(self, manifests):
        """Clean training crops (with the realism augmentation) and the noisy/clean valid pairs; the
        test split is enhanced by every ablation system in :meth:`test_report`."""
        hp = self.hparams
        return {
            "train": clean_speech_dataset(manifests["train_clean"], hp.sample_rate, hp.crop_seconds,
                                          hp.gain_range, augment=hp.clean_augment),
            "valid": paired_dataset(manifests["valid"], hp.sample_rate),
        }

    def selection(self):
        """The best validation PESQ of the current step."""
        return STEP_KEYS[self.hparams.phase.current], "max"

    def keep_policy(self):
        """Keeps the best checkpoint of EACH step (step 2 starts from the best of step 1)."""
        return {"max_keys": list(STEP_KEYS.values())}

    def stage_statistics(self, stage):
        """Mean PESQ of the enhanced valid files."""
        return {"pesq": sum(self.pesq.values()) / max(len(self.pesq), 1)}

    def checkpoint_meta(self, stats):
        """The step's PESQ under the step's key, the step, and the loss."""
        step = self.hparams.phase.current
        return {STEP_KEYS[step]: stats["pesq"], "phase": step, "loss": stats["loss"]}

    def epoch_meta(self):
        """The training step in every epoch line of the log."""
        return {"step": self.hparams.phase.current}

    def test_best(self, test_set):
        """Recovers the best checkpoint of the final step; the teacher is frozen again."""
        super().test_best(None)
        self._freeze_teacher()

    def test_report(self, manifests):
        """The ablation: every system enhances the noisy test split and is scored."""
        return self.test_systems(manifests["test"], with_step1=self.hparams.phase.current == 2)

    def hub_spec(self, report):
        """The student with the training front end, the default mix and the per-SNR plot."""
        hp = self.hparams
        return VQEnhancer.hub_spec(
            {"vqvae": self.module("vqvae")}, frontend=hp.frontend, mix=hp.export_mix,
            sample_rate=hp.sample_rate, files=[os.path.join(hp.report_folder, "metrics_by_snr.png")],
            **self._attention_settings(),
        )

    def _attention_settings(self):
        """The YAML's local attention, exported only where it is set."""
        chunk = float(getattr(self.hparams, "attention_seconds", 0.0) or 0.0)
        halo = float(getattr(self.hparams, "attention_halo_seconds", 0.0) or 0.0)
        stride = int(getattr(self.hparams, "attention_stride", 0) or 0)
        return {"attention_seconds": chunk, "attention_halo_seconds": halo, "attention_stride": stride} if chunk else {}

    def _apply_attention(self, model):
        """Gives ``model`` the YAML's local attention (whole input where ``attention_seconds`` is 0)."""
        return set_vq_attention(model, self.hparams.sample_rate / self.hparams.frontend.hop_length,
                                **self._attention_settings())

    def model_card(self, report, manifests):
        """Card with the measured ablation table and plot."""
        hp = self.hparams
        return self.build_card(
            "VQ enhancer", VQEnhancer,
            "Speech enhancement by a VQ-VAE trained on clean speech only: noisy speech is encoded,\n"
            "snapped to the nearest clean-speech codes and decoded, then resynthesised with the noisy\n"
            "phase. Step 2 (self-distillation under a waveform attack) makes the encoder robust\n"
            "(Fu et al., ICLR 2024).",
            'model.enhance_file("noisy.wav", output_path="enhanced.wav")',
            manifests,
            f"Noisy test split ({manifests['test']}):\n\n{format_enhancement_markdown(report)}\n\n"
            "![metrics by SNR](metrics_by_snr.png)",
            {"epochs": f"{hp.step1_epochs} step 1 + {hp.number_of_epochs - hp.step1_epochs} step 2 "
                       "(best validation PESQ kept in each step)",
             "default blend with the input (mix)": hp.export_mix},
        )

    # ------------------------------------------------------------------ enhancement
    def enhance(self, model, wavs, lens=None, mix=0.0):
        """Enhanced waveforms of a padded batch with ``model`` (eval mode, no gradients)."""
        with torch.no_grad():  # the interface's chain, speech level kept: the report measures what users get
            return vq_enhance_keeping_level(self._apply_attention(model), self.hparams.frontend, wavs, lens, mix)

    # ------------------------------------------------------------------ training
    def compute_forward(self, batch, stage):
        """Step 1: reconstruction; step 2: the attacked + clean batch; evaluation: enhancement."""
        batch = batch.to(self.device)
        if stage != sb.Stage.TRAIN:
            noisy, lens = batch.noisy_sig
            return self.enhance(self.module("vqvae"), noisy, lens)
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
        student = self.module("vqvae")

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
        for model in (self.module("vqvae"), self.hparams.teacher):
            self._apply_attention(model)

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
        student = self.module("vqvae")
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
        models = {final: self.module("vqvae").eval()}
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
        metrics = list(hp.test_metrics)
        results = {}
        for name, folder in folders.items():
            pairs = [
                Pair(uid, row["clean_wav"], row["noisy_wav"] if folder is None else os.path.join(folder, f"{uid}.wav"))
                for uid, row in rows.items()
            ]
            logger.info("Scoring %s", name)
            results[name], failures = evaluate_pairs(pairs, metrics, hp.sample_rate, jobs=hp.metric_jobs)
            for failure in failures:
                logger.warning("%s: %s could not be scored: %s", name, failure.file, failure.message)
        summary = write_enhancement_report(results, manifest, hp.report_folder, metrics)
        with open(os.path.join(hp.report_folder, "report.md"), encoding="utf-8") as stream:
            logger.info("Test report (%s):\n%s", hp.report_folder, stream.read())
        return summary
