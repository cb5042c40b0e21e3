"""Shared latent space SAE/MAE enhancement trained on UNPAIRED clean speech and noisy mixtures.

Data: the corpus's training speakers (``train_clean.csv``, speaker column ``voice``) are split in two
disjoint halves, seeded, by speaker (:func:`~speechbrain_sqe.dataio.pipelines.split_by_speaker`;
``<output_folder>/speaker_split/``): one half gives clean speech to the speech autoencoder (SAE), the
other half's speech is mixed on the fly with training noises (``noise_train``) and, with probability
``reverb_prob``, training rooms (``rirs_train``) for the mixture autoencoder (MAE). The mixing is
done inside the data pipeline (:class:`~speechbrain_sqe.dataio.pipelines.OnTheFlyMixer`), so the
Brain never receives the speech a mixture was made from: no clean reference of a noisy training
file exists downstream. ``report/speaker_split.json`` lists both halves.

Training (:mod:`speechbrain_sqe.lobes.shared_latent`), per batch of ``clean_sig`` and
``noisy_sig`` (unrelated utterances of different speakers):

- SAE: L2 of the compressed magnitude reconstruction, ``mean(z^2)`` (SSE's "KL"), the phase loss
  of the phase decoder (``1 - cos``, weighted by the clean magnitude) and the multi-resolution
  spectral loss between the resynthesised waveform (decoded amplitude and phase) and the clean one;
- MAE: L2 of its own reconstruction of the noisy magnitude, its "KL", the multi-resolution loss of
  its resynthesis (noisy phase) against the noisy waveform, and SSE's cycle: the mixture latent
  decoded by the SAE amplitude decoder, encoded again by the SAE encoder, decoded by the MAE decoder
  (L2 to the noisy magnitude, weight ``cycle_weight``), with the two latents pulled together
  (``latent_weight``) and the cycle latent's "KL".

SSE computes its MAE reconstruction term on a tensor it has overwritten (its ``mag_b_recon`` is
reassigned to the magnitude of the SAE-decoded, i.e. enhanced, output before the loss is taken), so
its "reconstruction" pulls the enhanced output toward the noisy magnitude. Not reproduced: here the
term compares the MAE decoder's own reconstruction with the noisy magnitude, and nothing pulls the
enhanced output toward the mixture.

``schedule``: ``joint`` (both sides' losses summed each update; every module trained) or
``staged`` (SSE: epochs ``1..sae_epochs`` train the SAE and the shared layer on clean speech only,
then they are frozen, in eval mode, and the MAE learns through them).

Validation enhances the noisy valid pairs (held-out speakers, training noises and rooms) with the
inference chain (phase source ``default_phase``); the validation loss is the L2 between the enhanced
and the clean compressed magnitudes (the clean references of VALIDATION pairs, never of training
files), also SI-SNR of the enhanced waveform; the checkpoint of lowest validation loss is kept (in a staged run, none of the
SAE-only epochs: the MAE is untrained there). The test stage enhances the noisy test split (with the
decoded and, when the model has a phase decoder, also with the noisy phase), scores it against the
clean references (``report/``) and exports a hub folder
:class:`~speechbrain_sqe.inference.enhancement.SharedLatentEnhancer` loads (``sqe enhance --model``).
"""

import csv
import json
import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main
from tqdm import tqdm

from speechbrain_sqe.analysis.enhancement_report import (
    format_enhancement_markdown,
    write_enhancement_report,
)
from speechbrain_sqe.analysis.quality_report import rows_by_id
from speechbrain_sqe.brains.base import RecipeBrain
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.pipelines import (
    OnTheFlyMixer,
    paired_dataset,
    split_by_speaker,
    unpaired_training_dataset,
)
from speechbrain_sqe.inference.enhancement import (
    SharedLatentEnhancer,
    shared_latent_enhance_keeping_level,
)
from speechbrain_sqe.lobes.quality_guidance import si_snr_values
from speechbrain_sqe.lobes.shared_latent import (
    frame_mask,
    masked_frame_mean,
    phase_loss,
)
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("sae_clean", "mae_speech")
SCHEDULES = ("joint", "staged")


class SharedLatentBrain(RecipeBrain):
    """Trains the shared-latent SAE/MAE enhancer on unpaired data (see the module docstring).

    Expected ``modules``: ``model`` (:class:`speechbrain_sqe.lobes.shared_latent.SharedLatentModel`).
    ``hparams``: ``frontend`` (:class:`~speechbrain_sqe.lobes.frontend.PhaseSpectralFrontEnd`),
    ``multires_loss``, ``schedule``, ``sae_epochs``, the loss weights (``recon_weight``,
    ``kl_weight``, ``cycle_weight``, ``latent_weight``, ``phase_weight``, ``multires_weight``),
    ``noisy_speaker_fraction``, ``crop_seconds``, ``gain_range``, ``reverb_prob``, ``snr_low``,
    ``snr_high``, ``test_metrics``, ``metric_jobs`` and the folders.
    """

    SELECTION_KEY, SELECTION_MODE = "loss", "min"

    # ------------------------------------------------------------------ set-up
    def datasets(self, manifests):
        """Unpaired training items (clean of one speaker half, mixtures of the other) and the valid pairs."""
        hp = self.hparams
        if hp.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {hp.schedule!r}")
        if torch.distributed.is_initialized():
            # The terms call the model's parts (encode, decode...), not its forward: DDP would not
            # synchronise their gradients.
            raise NotImplementedError("the shared-latent recipe does not support DDP yet: run one process")
        folder = os.path.join(hp.output_folder, "speaker_split")
        run_on_main(split_by_speaker, args=[manifests["train_clean"], folder],
                    kwargs={"seed": hp.seed, "names": SPLIT_NAMES, "fraction": hp.noisy_speaker_fraction})
        self.split_csvs = {name: os.path.join(folder, f"{name}.csv") for name in SPLIT_NAMES}
        mixer = OnTheFlyMixer(manifests["noise_train"], manifests.get("rirs_train"), hp.snr_low, hp.snr_high,
                              hp.reverb_prob, hp.sample_rate)
        if hp.reverb_prob > 0 and mixer.add_reverb is None:
            logger.warning("The corpus has no rirs_train manifest: mixtures without reverberation")
        train = unpaired_training_dataset(self.split_csvs["sae_clean"], self.split_csvs["mae_speech"], mixer,
                                          hp.sample_rate, hp.crop_seconds, hp.gain_range)
        return {"train": train, "valid": paired_dataset(manifests["valid"], hp.sample_rate)}

    def training_mode(self):
        """``joint``, or in a staged run ``sae`` (epochs up to ``sae_epochs``) then ``mae``."""
        hp = self.hparams
        if hp.schedule == "joint":
            return "joint"
        return "sae" if hp.epoch_counter.current <= hp.sae_epochs else "mae"

    def _freeze_speech_side(self, frozen):
        for module in self.module("model").sae_modules():
            module.requires_grad_(not frozen)
            if frozen:
                module.eval()

    # ------------------------------------------------------------------ training
    def compute_forward(self, batch, stage):
        """Training: the loss terms of the mode; validation/test: enhanced and clean compressed magnitudes."""
        batch = batch.to(self.device)
        hp = self.hparams
        model = self.modules["model"]
        if stage != sb.Stage.TRAIN:
            noisy, lens = batch.noisy_sig
            clean, _ = batch.clean_sig
            enhanced, amplitude, frame_lens = shared_latent_enhance_keeping_level(
                self.module("model"), hp.frontend, noisy, lens, phase=hp.default_phase, return_spec=True)
            return {"enhanced_spec": amplitude, "clean_spec": hp.frontend(clean, lens), "frame_lens": frame_lens,
                    "si_snr": si_snr_values(enhanced, clean, lens)}
        mode = self.training_mode()
        self._freeze_speech_side(mode == "mae")
        terms = {}
        if mode in ("sae", "joint"):
            terms.update(self.speech_terms(model, *batch.clean_sig))
        if mode in ("mae", "joint"):
            terms.update(self.mixture_terms(model, *batch.noisy_sig))
        return terms

    def speech_terms(self, model, clean, lens):
        """SAE terms on clean speech: reconstruction, "KL", phase, multi-resolution."""
        hp = self.hparams
        model = getattr(model, "module", model)
        with torch.no_grad():
            spec = hp.frontend(clean, lens)
        frame_lens = hp.frontend.frame_lengths(lens, clean.shape[1])
        z, mask = model.encode_speech(spec, frame_lens)
        amplitude, phase = model.decode_speech(model.sample(z, mask), mask)
        frames = mask.transpose(1, 2)
        terms = {"sae_recon": masked_frame_mean((amplitude - spec).pow(2), frames),
                 "sae_kl": masked_frame_mean(z.pow(2), mask)}
        need_target_phase = phase is not None or hp.multires_weight > 0
        target_phase = hp.frontend.phase(clean, lens) if need_target_phase else None
        if phase is not None:
            terms["sae_phase"] = phase_loss(phase, target_phase, spec, mask)
        if hp.multires_weight > 0:
            wav = hp.frontend.synthesize(amplitude, target_phase if phase is None else phase, clean.shape[1], lens)
            terms["sae_multires"] = hp.multires_loss(wav, clean, lens)
        return terms

    def mixture_terms(self, model, noisy, lens):
        """MAE terms on noisy mixtures: its own reconstruction, "KL", multi-resolution, the cycle and latent terms."""
        hp = self.hparams
        model = getattr(model, "module", model)
        with torch.no_grad():
            spec = hp.frontend(noisy, lens)
        frame_lens = hp.frontend.frame_lengths(lens, noisy.shape[1])
        z, mask = model.encode_mixture(spec, frame_lens)
        sampled = model.sample(z, mask)
        frames = mask.transpose(1, 2)
        # The MAE decoder's own output against the noisy magnitude (not SSE's overwritten tensor).
        reconstruction = model.decode_mixture(sampled, mask)
        enhanced, _ = model.decode_speech(sampled, mask)
        z_cycle, _ = model.encode_speech(enhanced, frame_lens)
        cycle = model.decode_mixture(model.sample(z_cycle, mask), mask)
        terms = {"mae_recon": masked_frame_mean((reconstruction - spec).pow(2), frames),
                 "mae_kl": masked_frame_mean(z.pow(2), mask),
                 "cycle_recon": masked_frame_mean((cycle - spec).pow(2), frames),
                 "cycle_kl": masked_frame_mean(z_cycle.pow(2), mask),
                 "latent": masked_frame_mean((z_cycle - z).pow(2), mask)}
        if hp.multires_weight > 0:
            terms["mae_multires"] = hp.multires_loss(hp.frontend.resynthesize(reconstruction, noisy, lens), noisy, lens)
        return terms

    def weighted_terms(self, terms):
        """Each term times its weight (``recon_weight``... of the YAML)."""
        hp = self.hparams
        weights = {"sae_recon": hp.recon_weight, "mae_recon": hp.recon_weight, "sae_kl": hp.kl_weight,
                   "mae_kl": hp.kl_weight, "cycle_kl": hp.kl_weight, "cycle_recon": hp.cycle_weight,
                   "latent": hp.latent_weight, "sae_phase": hp.phase_weight, "sae_multires": hp.multires_weight,
                   "mae_multires": hp.multires_weight}
        return {name: weights[name] * value for name, value in terms.items()}

    def compute_objectives(self, predictions, batch, stage):
        """Training: the weighted sum of the mode's terms; validation/test: the enhanced-vs-clean L2."""
        if stage == sb.Stage.TRAIN:
            weighted = self.weighted_terms(predictions)
            self.term_sums = getattr(self, "term_sums", {})
            for name, value in weighted.items():
                total, count = self.term_sums.get(name, (0.0, 0))
                self.term_sums[name] = (total + float(value.detach()), count + 1)
            return sum(weighted.values())
        enhanced = predictions["enhanced_spec"]
        mask = frame_mask(predictions["frame_lens"], enhanced.shape[1], enhanced).transpose(1, 2)
        self.si_snrs = getattr(self, "si_snrs", []) + predictions["si_snr"].detach().cpu().tolist()
        return masked_frame_mean((enhanced - predictions["clean_spec"]).pow(2), mask)

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-stage accumulators."""
        self.si_snrs = []
        if stage == sb.Stage.TRAIN:
            self.term_sums = {}

    def epoch_meta(self):
        """The training mode and the mean weighted loss terms of the epoch, in the log line."""
        meta = {"mode": self.training_mode()}
        for name, (total, count) in sorted(getattr(self, "term_sums", {}).items()):
            meta[f"train_{name}"] = total / max(count, 1)
        return meta

    def stage_statistics(self, stage):
        """Mean SI-SNR (dB) of the enhanced valid/test waveforms against the clean references."""
        return {"si_snr": sum(self.si_snrs) / len(self.si_snrs)} if self.si_snrs else {}

    def checkpoint_meta(self, stats):
        """An SAE-only epoch of a staged run is never the best checkpoint (its MAE is untrained)."""
        if self.training_mode() == "sae":
            return {**stats, "loss": float("inf")}
        return stats

    # ------------------------------------------------------------------ test, report, export
    def test_best(self, test_set):
        """Recovers the checkpoint of lowest validation loss."""
        super().test_best(None)

    def systems(self):
        """Phase sources of the report: ``decoded`` and, with a phase decoder, ``noisy`` too."""
        return ["decoded", "noisy"] if self.module("model").has_phase_decoder else ["noisy"]

    def test_report(self, manifests):
        """Enhances and scores the noisy test split; ``report/`` (with the speaker split)."""
        hp = self.hparams
        model = self.module("model").eval()
        manifest = manifests["test"]
        rows = rows_by_id(manifest)
        folders = {"noisy": None}
        for phase in self.systems():
            name = f"shared_latent {phase} phase"
            folders[name] = os.path.join(hp.enhanced_folder, f"{phase}_phase")
            for uid, row in tqdm(rows.items(), desc=f"enhancing the test split ({phase} phase)", dynamic_ncols=True):
                noisy = load_audio(row["noisy_wav"], hp.sample_rate).unsqueeze(0).to(self.device)
                with torch.no_grad():
                    out = shared_latent_enhance_keeping_level(model, hp.frontend, noisy, phase=phase)
                save_audio(os.path.join(folders[name], f"{uid}.wav"), out[0].cpu(), hp.sample_rate)
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
        summary["speaker_split"] = self.write_speaker_split(hp.report_folder)
        with open(os.path.join(hp.report_folder, "report.md"), encoding="utf-8") as stream:
            logger.info("Test report (%s):\n%s", hp.report_folder, stream.read())
        return summary

    def write_speaker_split(self, folder):
        """``speaker_split.json``: the speakers and file counts of the clean and the mixture halves."""
        split = {}
        for name, path in self.split_csvs.items():
            with open(path, newline="", encoding="utf-8") as stream:
                rows = list(csv.DictReader(stream))
            split[name] = {"files": len(rows), "speakers": sorted({row["voice"] for row in rows})}
        with open(os.path.join(folder, "speaker_split.json"), "w", encoding="utf-8") as stream:
            json.dump(split, stream, indent=2)
        return split

    def hub_spec(self, report):
        """The model, the front end and the default phase source; the SNR plot."""
        hp = self.hparams
        files = [os.path.join(hp.report_folder, "metrics_by_snr.png")]
        return SharedLatentEnhancer.hub_spec({"model": self.module("model")}, frontend=hp.frontend,
                                             sample_rate=hp.sample_rate, phase=hp.default_phase,
                                             files=[path for path in files if os.path.isfile(path)])

    def model_card(self, report, manifests):
        """Card with the measured test table and the training facts."""
        hp = self.hparams
        model = self.module("model")
        split = report.get("speaker_split", {}) if report else {}
        results = f"Noisy test split ({manifests['test']}):\n\n{format_enhancement_markdown(report)}"
        return self.build_card(
            "Shared latent space SAE/MAE enhancer", SharedLatentEnhancer,
            "Speech enhancement learned from UNPAIRED clean speech and noisy mixtures: a speech autoencoder\n"
            "(amplitude and phase decoders) and a mixture autoencoder joined by a shared layer (after Li, Sun,\n"
            "Wang, Naqvi, 2022, on SSE by Wang, Venkataramani, Smaragdis, 2020).",
            'model.enhance_file("noisy.wav", output_path="enhanced.wav")',
            manifests, results,
            {"schedule": hp.schedule + (f" (SAE alone for {hp.sae_epochs} epochs)" if hp.schedule == "staged" else ""),
             "shared layer": model.shared_layer_mode, "phase decoder": model.sae.phase,
             "linear bypass": "yes" if model.sae.encoder_bypass is not None else "no (SSE)",
             "loss weights": f"recon {hp.recon_weight}, KL {hp.kl_weight}, cycle {hp.cycle_weight}, "
                             f"latent {hp.latent_weight}, phase {hp.phase_weight}, multi-resolution {hp.multires_weight}",
             "unpaired data": ", ".join(f"{name}: {part['files']} files of {len(part['speakers'])} speakers"
                                        for name, part in split.items()),
             "epochs": f"{hp.number_of_epochs} (lowest validation loss kept)",
             "training mixtures": f"SNR U[{hp.snr_low}, {hp.snr_high}] dB, reverberation p={hp.reverb_prob}, "
                                  f"{hp.crop_seconds} s crops"},
        )
