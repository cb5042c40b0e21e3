"""The VQEnhancer pretrained interface: speech enhancement by a clean-speech VQ-VAE.

Noisy speech is encoded, each frame snapped to its nearest clean-speech code and decoded; the
waveform is resynthesised with the noisy phase (Fu et al., ICLR 2024, trained on clean speech
only). ``mix`` blends a fraction of the input back in, trading residual noise for naturalness.

Example (with the model shipped in the package)::

    from speechbrain_sqe.inference.vq_enhancer import VQEnhancer
    enhancer = VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE)
    enhancer.enhance_file("noisy.wav", output_path="enhanced.wav")    # 16 kHz wav
    enhanced = enhancer.enhance_batch(wavs, lengths, mix=0.2)        # [batch, time]
"""

import os

import torch

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.inference.safe_pretrained import SafePretrained
from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
from speechbrain_sqe.lobes.vqvae_se import enhance_waveforms

#: The enhancer trained by ``hparams/vq_enhance.yaml`` and shipped inside the package.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained", "vq_enhancer")


class VQEnhancer(SafePretrained):
    """Enhances speech with a VQ-VAE trained on clean speech only (Fu et al., ICLR 2024).

    Load with ``VQEnhancer.from_hparams(source=<folder or hub id>, savedir=...)``. The
    hyperparams define ``sample_rate``, ``n_fft``, ``hop_length``, ``min_seconds``, ``mix`` (the
    default blend with the input) and the module ``vqvae``
    (:class:`speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel`); the front end is their
    ``compute_stft`` entry (:class:`speechbrain_sqe.lobes.frontend.SpectralFrontEnd`) where they
    have one, else a ``log1p`` one built from ``n_fft``, ``hop_length`` and ``sample_rate``.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.inference.export import build_vq_enhancer_hub
    >>> from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    >>> enhancer = VQEnhancer.from_hparams(source=build_vq_enhancer_hub(model, tempfile.mkdtemp()))
    >>> wavs = torch.randn(2, 16000)  # [batch, time]
    >>> enhancer.enhance_batch(wavs, torch.tensor([1.0, 0.5]), mix=0.2).shape
    torch.Size([2, 16000])
    """

    HPARAMS_NEEDED = ("sample_rate", "n_fft", "hop_length", "min_seconds", "mix")
    MODULES_NEEDED = ("vqvae",)
    DEFAULT_SOURCE = DEFAULT_MODEL

    @property
    def sample_rate(self):
        """The rate the model works at (inputs are resampled to it, outputs are at it)."""
        return self.hparams.sample_rate

    @property
    def frontend(self):
        """The model's front end: ``hparams.compute_stft``, or one from ``n_fft``/``hop_length``."""
        if getattr(self, "_frontend", None) is None:
            frontend = getattr(self.hparams, "compute_stft", None)
            if frontend is None:
                frontend = SpectralFrontEnd(
                    n_fft=self.hparams.n_fft, hop_length=self.hparams.hop_length, log1p=True,
                    sample_rate=self.hparams.sample_rate,
                )
            self._frontend = frontend
        return self._frontend

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None, mix=None):
        """Enhances a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms ``[batch, time]`` (or ``[time]``) at :attr:`sample_rate`.
        lengths : torch.Tensor, optional
            Relative lengths in ``[0, 1]`` (SpeechBrain convention); None: all full length.
        mix : float, optional
            Fraction of the input kept in the output, in ``[0, 1]``; None: the model's default
            (``hparams.mix``, chosen by the recipe's ablation).

        Returns
        -------
        torch.Tensor
            Enhanced waveforms ``[batch, time]`` (0 beyond each length), on the CPU.
        """
        squeeze = wavs.dim() == 1
        if squeeze:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, time], got shape {tuple(wavs.shape)}")
        min_samples = self.frontend.n_fft // 2 + 1
        if wavs.shape[1] < min_samples:
            raise ValueError(f"waveforms need at least {min_samples} samples, got {wavs.shape[1]}")
        mix = self.hparams.mix if mix is None else mix
        wavs = wavs.float().to(self.device)
        if lengths is not None:
            lengths = lengths.float().to(self.device)
        out = enhance_waveforms(self.mods.vqvae, self.frontend, wavs, lengths, mix).cpu()
        return out[0] if squeeze else out

    def enhance_file(self, path, output_path=None, mix=None):
        """Enhances one audio file.

        Arguments
        ---------
        path : str
            The noisy file (any rate or channel count: resampled and downmixed).
        output_path : str, optional
            Where to write the enhanced audio (16-bit wav at :attr:`sample_rate`).
        mix : float, optional
            Fraction of the input kept (see :meth:`enhance_batch`).

        Returns
        -------
        torch.Tensor
            The enhanced waveform ``[time]``.
        """
        enhanced = self.enhance_batch(self.load_file(path), mix=mix)
        if output_path is not None:
            save_audio(output_path, enhanced, self.hparams.sample_rate)
        return enhanced
