"""Quality predictors: the ``QualityPredictor`` task interface and VQScore.

A quality predictor scores speech without a reference (higher is better unless its ``DIRECTION``
says otherwise). Every predictor gives ``score_batch`` (a padded batch -> one score per file) and
inherits ``score_file``; predictors with per-frame scores also give ``score_frames_batch``.
``sqe score --model FOLDER`` loads any of them by the interface its hub folder names.

VQScore scoring runs the encoder and the codebook only (never the decoder): the mean over frames of
the cosine similarity between the encoder output and its nearest code.

Example (with the model shipped in the package)::

    from speechbrain_sqe.inference.quality import VQScore
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE)
    scorer.score_file("speech.wav")             # one float
    times, frames = scorer.score_frames("speech.wav")  # per-frame scores, to locate bad regions
"""

import os
from typing import ClassVar

import torch

from speechbrain_sqe.inference.hub import DEFAULT_SOURCES, TASK_DESCRIPTIONS
from speechbrain_sqe.inference.safe_pretrained import SafePretrained
from speechbrain_sqe.lobes.frontend import STFTMagnitude

#: The model trained by ``hparams/vqscore.yaml`` and shipped inside the package.
DEFAULT_MODEL = DEFAULT_SOURCES["quality"]


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


class QualityPredictor(SafePretrained):
    """Base of the no-reference quality predictors (the ``quality`` task).

    A subclass implements :meth:`score_batch` and, where the method has frame scores,
    :meth:`score_frames_batch` with :attr:`frame_hop_seconds`. ``METRIC_NAME`` names the score
    (the column of ``sqe score``'s CSV and the name in the metric registry).
    """

    TASK = "quality"
    TASK_DESCRIPTION = TASK_DESCRIPTIONS["quality"]
    #: Name of the score (CSV column, metric registry name).
    METRIC_NAME = "score"
    #: ``"higher"`` or ``"lower"`` is better.
    DIRECTION = "higher"

    def score_batch(self, wavs, wav_lens=None):
        """One score per waveform of a padded batch ``[batch, time]`` -> ``[batch]`` (CPU)."""
        raise NotImplementedError

    def score_frames_batch(self, wavs, wav_lens=None):
        """Per-frame scores ``[batch, frames]`` of a padded batch, where the method has them."""
        raise NotImplementedError(f"{type(self).__name__} gives no per-frame scores")

    @property
    def frame_hop_seconds(self):
        """Seconds between two frame scores."""
        raise NotImplementedError(f"{type(self).__name__} gives no per-frame scores")

    @property
    def has_frame_scores(self):
        """Whether :meth:`score_frames` works for this predictor."""
        return type(self).score_frames_batch is not QualityPredictor.score_frames_batch

    def score_file(self, path):
        """Score of one audio file.

        Arguments
        ---------
        path : str
            The audio file (any rate or channel count: resampled and downmixed).

        Returns
        -------
        float
            The score.
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
            Start time of each frame in seconds, ``[frames]``.
        scores : torch.Tensor
            The score of each frame, ``[frames]``.
        """
        wav = self.load_file(path_or_wav) if isinstance(path_or_wav, (str, os.PathLike)) else path_or_wav
        scores = self.score_frames_batch(wav.unsqueeze(0))[0]
        times = torch.arange(scores.shape[0]) * self.frame_hop_seconds
        return times, scores


class VQScore(QualityPredictor):
    """Scores speech quality without a reference (VQScore, Fu et al., ICLR 2024).

    Load with ``VQScore.from_hparams(source=<folder or hub id>, savedir=...)``. The hub folder holds
    the ``frontend`` of training (waveform ``[batch, time]`` -> magnitude ``[batch, frames, freq]``),
    ``sample_rate``, ``min_seconds`` and the module ``vqvae``
    (:class:`speechbrain_sqe.lobes.vqvae.VQVAEQualityModel`).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
    >>> folder = VQScore.export(tempfile.mkdtemp(), {"vqvae": VQVAEQualityModel(codebook_size=16)})
    >>> scorer = VQScore.from_hparams(source=folder)
    >>> scorer.score_batch(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2])
    """

    MODULES_NEEDED = ("vqvae",)
    DEFAULT_SOURCE = DEFAULT_MODEL
    METRIC_NAME = "vqscore"
    HUB_TITLE = ("VQScore: no-reference speech quality from a VQ-VAE trained on clean speech only\n"
                 "(Fu et al., ICLR 2024), trained with speechbrain-sqe's hparams/vqscore.yaml.")
    INFERENCE_OVERRIDES: ClassVar[dict] = {"vqvae": {"sync_distributed": False}}

    @classmethod
    def hub_spec(cls, modules, frontend=None, **kwargs):
        """See :meth:`SafePretrained.hub_spec`; the front end defaults to the paper's (|STFT|,
        n_fft 512, hop 256)."""
        frontend = frontend if frontend is not None else STFTMagnitude(n_fft=512, hop_length=256)
        return super().hub_spec(modules, frontend=frontend, **kwargs)

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
        # Folders written before the hub spec named the front end ``compute_stft``.
        self.frontend = getattr(self.hparams, "frontend", None) or self.hparams.compute_stft

    @property
    def frame_hop_seconds(self):
        """Seconds between two frame scores (the front end's hop)."""
        return self.frontend.hop_length / self.hparams.sample_rate

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

    def _features(self, wavs, wav_lens):
        """Spectrogram of each waveform exactly as alone, and relative frame lengths."""
        wavs, wav_lens = self.as_batch(wavs, wav_lens)
        if wav_lens is None:  # all full length: one batched STFT
            return self.frontend(wavs), None
        return self.frontend(wavs, wav_lens), self.frontend.frame_lengths(wav_lens, wavs.shape[1])
