"""The VQScore pretrained interface: no-reference speech quality from a clean-speech VQ-VAE.

Scoring runs the encoder and the codebook only (never the decoder): VQScore is the mean over frames
of the cosine similarity between the encoder output and its nearest code. Higher is better.

Example (with the model shipped in the package)::

    from speechbrain_sqe.inference.vqscore import VQScore
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE)
    scorer.score_file("speech.wav")             # one float
    times, frames = scorer.score_frames("speech.wav")  # per-frame scores, to locate bad regions
"""

import os

import torch

from speechbrain_sqe.inference.safe_pretrained import SafePretrained

#: The model trained by ``hparams/vqscore.yaml`` and shipped inside the package.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained", "vqscore")


def bf16_is_fast(device="cpu"):
    """Whether bfloat16 matrix products are fast here: CUDA, or a CPU with AVX512-BF16 or AMX.

    Arguments
    ---------
    device : str
        The device the model runs on.

    Returns
    -------
    bool
        True where the bfloat16 nearest-code search pays off.

    Example
    -------
    >>> isinstance(bf16_is_fast("cpu"), bool)
    True
    """
    if str(device).startswith("cuda"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            flags = stream.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class VQScore(SafePretrained):
    """Scores speech quality without a reference (VQScore, Fu et al., ICLR 2024).

    Load with ``VQScore.from_hparams(source=<folder or hub id>, savedir=...)``. The hyperparams
    must define ``compute_stft`` (waveform ``[batch, time]`` -> magnitude
    ``[batch, frames, freq]``), ``sample_rate``, ``min_seconds``, ``hop_length`` and the module
    ``vqvae``.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.inference.export import build_vqscore_hub
    >>> from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
    >>> folder = build_vqscore_hub(VQVAEQualityModel(codebook_size=16), tempfile.mkdtemp())
    >>> scorer = VQScore.from_hparams(source=folder)
    >>> scorer.score_batch(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2])
    """

    HPARAMS_NEEDED = ("compute_stft", "sample_rate", "min_seconds", "hop_length")
    MODULES_NEEDED = ("vqvae",)
    DEFAULT_SOURCE = DEFAULT_MODEL

    def __init__(self, *args, fast_search=None, **kwargs):
        """See :class:`speechbrain.inference.interfaces.Pretrained`.

        ``fast_search`` (default: automatic) searches the nearest code with a bfloat16 matrix
        product re-ranked in float32 (see ``VectorQuantizer.nearest_similarity``); automatic
        means on where bfloat16 is fast (CUDA, or CPUs with AVX512-BF16 or AMX). On 390 test
        files the scores were identical to the float32 search (``benchmarks/check_fast_search.py``).
        """
        super().__init__(*args, **kwargs)
        if fast_search is None:
            fast_search = bf16_is_fast(self.device)
        self.search_dtype = torch.bfloat16 if fast_search else None

    @torch.no_grad()
    def score_batch(self, wavs, wav_lens=None):
        """VQScore of each waveform of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]``, at the model's sample rate.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]`` (SpeechBrain convention); None means all full length.

        Returns
        -------
        torch.Tensor
            One score per waveform, ``[batch]``.
        """
        spec, frame_lens = self._features(wavs, wav_lens)
        return self.mods.vqvae.score(spec, frame_lens, self.search_dtype).cpu()

    @torch.no_grad()
    def score_frames_batch(self, wavs, wav_lens=None):
        """Per-frame scores of a padded batch (frames past each length are meaningless).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]``.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            Frame scores, ``[batch, frames]``.
        """
        spec, frame_lens = self._features(wavs, wav_lens)
        return self.mods.vqvae.score_frames(spec, frame_lens, self.search_dtype).cpu()

    def score_file(self, path):
        """VQScore of one audio file.

        Arguments
        ---------
        path : str
            The audio file (any rate or channel count: resampled and downmixed).

        Returns
        -------
        float
            The score (higher is better; clean speech scores near the top).
        """
        wav = self.load_file(path)
        return float(self.score_batch(wav.unsqueeze(0))[0])

    def score_frames(self, path_or_wav):
        """Per-frame scores of one file or waveform, to see where quality drops.

        Arguments
        ---------
        path_or_wav : str or torch.Tensor
            An audio file, or a waveform ``[time]`` at the model's rate.

        Returns
        -------
        times : torch.Tensor
            Centre time of each frame in seconds, ``[frames]``.
        scores : torch.Tensor
            Cosine similarity of each frame to its code, ``[frames]``.
        """
        wav = self.load_file(path_or_wav) if isinstance(path_or_wav, (str, os.PathLike)) else path_or_wav
        scores = self.score_frames_batch(wav.unsqueeze(0))[0]
        times = torch.arange(scores.shape[0]) * self.hparams.hop_length / self.hparams.sample_rate
        return times, scores

    def _features(self, wavs, wav_lens):
        """Spectrogram of each waveform exactly as alone, and relative frame lengths."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, time], got shape {tuple(wavs.shape)}")
        wavs = wavs.float().to(self.device)
        if wav_lens is None:  # all full length: one batched STFT
            return self.hparams.compute_stft(wavs), None
        wav_lens = wav_lens.float().to(self.device)
        spec = self.hparams.compute_stft(wavs, wav_lens)
        return spec, self.hparams.compute_stft.frame_lengths(wav_lens, wavs.shape[1])
