"""Quality predictors: the ``QualityPredictor`` task interface and VQScore.

A quality predictor scores speech without a reference (higher is better unless its ``DIRECTION``
says otherwise). Every predictor gives ``score_batch`` (a padded batch -> one score per file) and
inherits ``score_file``; predictors with per-frame scores also give ``score_frames_batch``.
``sqe score --model FOLDER`` loads any of them by the interface its hub folder names.

VQScore scoring runs the encoder and the codebook only (never the decoder): the mean over frames of
the cosine similarity between the encoder output and its nearest code. ``frame_weighting="all"``
(the default) averages every frame, as the paper does; ``"speech"`` averages only the frames that
:mod:`speechbrain_sqe.dataio.activity` marks as speech (NaN for a file without any).

Example (with the model shipped in the package)::

    from speechbrain_sqe.inference.quality import VQScore
    scorer = VQScore.from_hparams(source=VQScore.DEFAULT_SOURCE)
    scorer.score_file("speech.wav")             # one float
    times, frames = scorer.score_frames("speech.wav")  # per-frame scores, to locate bad regions
"""

import os
from typing import ClassVar

import torch

from speechbrain_sqe.dataio.activity import speech_frames
from speechbrain_sqe.inference.convolution import ConvolutionChoice
from speechbrain_sqe.inference.hub import (
    DEFAULT_SOURCES,
    PRETRAINED_FOLDER,
    TASK_DESCRIPTIONS,
)
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
        True where bfloat16 convolutions and matrix products pay off.

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
    (the column of ``sqe score``'s CSV and the name in the metric registry). A predictor of several
    metrics also gives :attr:`metric_names` and :meth:`score_metrics_batch` (``[batch, metrics]``);
    its :meth:`score_batch` gives its first (primary) metric. Consumers that show every score
    (``sqe score``, :func:`~speechbrain_sqe.inference.batch_scoring.score_files`, the metric
    registry) read :attr:`metric_names` and :meth:`score_metrics_batch`.
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

    @property
    def metric_names(self):
        """The names of the scores this predictor gives, in the column order of
        :meth:`score_metrics_batch` (default: one, :attr:`METRIC_NAME`). ``sqe score`` writes one
        CSV column per name."""
        return (self.METRIC_NAME,)

    def score_metrics_batch(self, wavs, wav_lens=None):
        """Every score of each waveform of a padded batch: ``[batch, len(metric_names)]`` (CPU).

        The default wraps :meth:`score_batch` (one column); a predictor of several metrics
        overrides it.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[batch, time]`` at the model's rate.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            ``[batch, metrics]``.
        """
        return torch.as_tensor(self.score_batch(wavs, wav_lens)).reshape(-1, 1).cpu()

    def score_file_metrics(self, path):
        """Every score of one audio file, by name.

        Arguments
        ---------
        path : str
            The audio file (any rate or channel count: resampled and downmixed).

        Returns
        -------
        dict
            ``{metric name: float}`` in :attr:`metric_names` order.
        """
        wav = self.load_file(path)
        row = self.score_metrics_batch(wav.unsqueeze(0))[0]
        return {name: float(value) for name, value in zip(self.metric_names, row)}

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


class VQScore(ConvolutionChoice, QualityPredictor):
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
    # Batches padded to 16 frames (0.256 s), so a long job meets each batch length again and reuses
    # what is prepared per length (oneDNN's kernels for direct convolutions, the STFT's FFT plans):
    # the first pass over 2,479 real files ran at 1,668-1,702 x real time against 1,487-1,555 x with
    # direct convolutions (session 28), and on 576 files at 1,766-1,795 x against 1,500-1,558 x with
    # overlap-save (session 29); scores within 2e-7 (benchmarks/RESULTS.md).
    BATCH_FRAMES_MULTIPLE = 16

    @classmethod
    def hub_spec(cls, modules, frontend=None, **kwargs):
        """See :meth:`SafePretrained.hub_spec`; the front end defaults to the paper's (|STFT|,
        n_fft 512, hop 256)."""
        frontend = frontend if frontend is not None else STFTMagnitude(n_fft=512, hop_length=256)
        return super().hub_spec(modules, frontend=frontend, **kwargs)

    #: How frame scores are averaged: ``"all"`` frames (the paper) or only ``"speech"`` frames.
    FRAME_WEIGHTINGS = ("all", "speech")

    #: Arithmetic of the encoder's convolutions: ``"float32"`` (exact) or ``"bfloat16"``
    #: (rounded inputs and weights, float32 accumulation); ``"auto"`` picks bfloat16 where it is
    #: fast (:func:`bf16_is_fast`).
    PRECISIONS = ("float32", "bfloat16", "auto")

    def __init__(self, *args, fast_search=None, precision="float32", convolution="auto", frame_weighting="all",
                 **kwargs):
        """See :class:`speechbrain.inference.interfaces.Pretrained`.

        ``frame_weighting`` is ``"all"`` (the paper's definition and the default: every frame
        counts, so pauses and noise-only stretches pull the score too) or ``"speech"`` (only the
        frames :func:`speechbrain_sqe.dataio.activity.speech_frames` marks as speech; a file with
        none scores NaN). The default stays the paper's because the shipped model's reported
        correlations and the recipes' checkpoint selection use it.

        ``fast_search`` (default: automatic) searches the nearest code with a bfloat16 matrix
        product re-ranked in float32 (see ``VectorQuantizer.nearest_similarity``); automatic
        means on CUDA only: on the CPU the exact float32 search, in cache-sized blocks, is
        faster. On 390 test files the scores were identical to the float32 search
        (``benchmarks/check_fast_search.py``).

        ``precision`` (one of :attr:`PRECISIONS`) is the arithmetic of the encoder's
        convolutions, most of the scoring time. ``"float32"`` (the default, as SpeechBrain's
        inference) gives the scores that the model card's figures and the pinned tests use (within
        2e-7 whichever ``convolution`` algorithm runs). ``"bfloat16"`` runs the convolutions 1.8 times faster
        on CPUs with AVX512-BF16 (AMX, CUDA) and moves scores by at most 5e-4 (mean 1e-4; the
        scores of a test set spread with a standard deviation of about 0.03), leaving the order of
        files unchanged (Spearman 0.99996 with the float32 scores on 576 real test files;
        ``benchmarks/check_fast_search.py --precision bfloat16``); a padded batch then scores each
        file as alone within 1e-4 rather than 1e-5. ``"auto"`` is bfloat16 where it is fast
        (:func:`bf16_is_fast`), float32 elsewhere.

        ``convolution`` is the algorithm of the float32 convolutions
        (:mod:`speechbrain_sqe.inference.convolution`): ``"auto"`` (the default) runs them by
        overlap-save on a CPU (1.3-1.8 times faster scoring, scores within 2e-7 of the direct
        algorithm on 576 real test files) and directly on a GPU; ``"direct"`` is oneDNN's/cuDNN's
        convolution, the algorithm of the scores published before session 29.
        """
        super().__init__(*args, **kwargs)
        self.frame_weighting = self._check_weighting(frame_weighting)
        if fast_search is None:
            fast_search = str(self.device).startswith("cuda")
        self.search_dtype = torch.bfloat16 if fast_search else None
        self.set_precision(precision)
        self.set_convolution(convolution)
        # Folders written before the hub spec named the front end ``compute_stft``.
        self.frontend = getattr(self.hparams, "frontend", None) or self.hparams.compute_stft

    def set_precision(self, precision):
        """Sets the arithmetic of the encoder's convolutions (see the class; ``sqe score --precision``).

        Arguments
        ---------
        precision : str
            One of :attr:`PRECISIONS`; :attr:`precision` then says which is in use.
        """
        if precision not in self.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(self.PRECISIONS)}, got {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if bf16_is_fast(self.device) else "float32"
        #: The convolutions' arithmetic in use (``"float32"`` or ``"bfloat16"``).
        self.precision = precision
        self.mods.vqvae.encoder.set_inference_dtype(torch.bfloat16 if precision == "bfloat16" else None)

    @property
    def frame_hop_seconds(self):
        """Seconds between two frame scores (the front end's hop)."""
        return self.frontend.hop_length / self.hparams.sample_rate

    def _check_weighting(self, frame_weighting):
        if frame_weighting not in self.FRAME_WEIGHTINGS:
            raise ValueError(f"frame_weighting must be one of {', '.join(self.FRAME_WEIGHTINGS)}, "
                             f"got {frame_weighting!r}")
        return frame_weighting

    @torch.no_grad()
    def score_batch(self, wavs, wav_lens=None, frame_weighting=None):
        """VQScore of each waveform of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]``, at the model's sample rate.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]`` (SpeechBrain convention); None means all full length.
        frame_weighting : str, optional
            ``"all"`` or ``"speech"`` (see the class); default: the one given at construction.

        Returns
        -------
        torch.Tensor
            One score per waveform, ``[batch]`` (NaN where ``"speech"`` finds no speech frame).
        """
        weighting = self._check_weighting(frame_weighting or self.frame_weighting)
        if weighting == "all":
            spec, frame_lens = self._features(wavs, wav_lens)
            return self.mods.vqvae.score(spec, frame_lens, self.search_dtype).cpu()
        wavs, wav_lens = self.as_batch(wavs, wav_lens)
        frames = self.score_frames_batch(wavs, wav_lens)
        mask = self.speech_mask(wavs, wav_lens, frames.shape[1])
        counts = mask.sum(dim=1)
        return torch.where(counts > 0, (frames * mask).sum(dim=1) / counts.clamp_min(1),
                           torch.full_like(counts, float("nan"), dtype=frames.dtype))

    def speech_mask(self, wavs, wav_lens, frame_count):
        """Which frames of each file hold speech (False past each file's end), ``[batch, frames]``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor or None
            Relative lengths.
        frame_count : int
            Frames of the padded batch.

        Returns
        -------
        torch.Tensor
            Bool ``[batch, frames]``.
        """
        hop = self.frontend.hop_length
        mask = torch.zeros(wavs.shape[0], frame_count, dtype=torch.bool)
        for row in range(wavs.shape[0]):
            length = wavs.shape[1] if wav_lens is None else round(float(wav_lens[row]) * wavs.shape[1])
            speech, _ = speech_frames(wavs[row, :length].cpu(), self.hparams.sample_rate, hop)
            count = min(speech.shape[0], frame_count)
            mask[row, :count] = speech[:count]
        return mask

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


class LearnedQualityPredictor(QualityPredictor):
    """Predicts several quality metrics of speech without a reference (PESQ, STOI, ESTOI, SI-SDR,
    DNSMOS OVRL, Distill-MOS...): a Transformer over softmax-weighted SSL layers, trained on labels
    (``hparams/sqa.yaml``, the URGENT 2026 track 2 baseline's layout).

    Load with ``LearnedQualityPredictor.from_hparams(source=<folder>)`` (or ``load_model(source,
    task="quality")``, ``sqe score --model``). The hub folder holds ``sample_rate``, ``min_seconds``,
    the module ``predictor`` (:class:`speechbrain_sqe.lobes.sqa_predictor.SQAPredictor`, whose
    ``metrics`` name the outputs) and the SSL upstream ``ssl`` (e.g.
    :class:`speechbrain_sqe.lobes.tera.TERAModel`). :attr:`metric_names` are the predicted metrics;
    :meth:`score_metrics_batch` gives all of them, :meth:`score_batch` the first (the primary one,
    :attr:`METRIC_NAME` of this instance). The model shipped in the package
    (``speechbrain_sqe/pretrained/sqa``, :attr:`DEFAULT_SOURCE`; its model card gives its measured
    agreement with the true metrics, far below the issue's targets) is registered as the metrics
    ``sqa_pesq_wb``, ``sqa_stoi``... of ``sqe evaluate``.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.sqa_predictor import SQAPredictor
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = SQAPredictor(["pesq_wb", "stoi"], ssl_layers=2, ssl_size=16, d_model=16, num_layers=1,
    ...                      num_heads=2, ffn_size=32)
    >>> folder = LearnedQualityPredictor.export(tempfile.mkdtemp(), {"predictor": model, "ssl": tera})
    >>> scorer = LearnedQualityPredictor.from_hparams(source=folder)
    >>> scorer.metric_names, scorer.METRIC_NAME
    (('pesq_wb', 'stoi'), 'pesq_wb')
    >>> scorer.score_metrics_batch(torch.randn(3, 16000), torch.tensor([1.0, 0.5, 0.8])).shape
    torch.Size([3, 2])
    >>> scorer.score_batch(torch.randn(2, 16000)).shape
    torch.Size([2])
    """

    MODULES_NEEDED = ("predictor", "ssl")
    #: The predictor shipped in the package.
    DEFAULT_SOURCE = os.path.join(PRETRAINED_FOLDER, "sqa")
    MIN_SECONDS = 0.1
    METRIC_NAME = "sqa"
    # Its Transformers' products use both threads well: batches side by side measured no faster
    # (22 against 23 x real time, 2-core CPU) for 1.4 GB more memory (benchmarks/RESULTS.md).
    SIDE_BY_SIDE_BATCHES = False
    HUB_TITLE = ("Learned multi-metric speech quality predictor (a Transformer over weighted SSL layers;\n"
                 "URGENT 2026 track 2 baseline layout), trained with speechbrain-sqe's hparams/sqa.yaml.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.METRIC_NAME = self.metric_names[0]  # the primary metric: score_batch's

    @property
    def metric_names(self):
        """The predicted metrics, in output order."""
        return tuple(self.mods.predictor.metrics)

    @property
    def metric_ranges(self):
        """``{metric: (low, high)}`` of the outputs (``None`` for an unbounded side)."""
        return {name: tuple(bounds) for name, bounds in zip(self.metric_names, self.mods.predictor.ranges)}

    def layer_weights(self):
        """The learned SSL layer weights (softmax, input representation first)."""
        return [float(w) for w in self.mods.predictor.layer_weights().detach()]

    @torch.no_grad()
    def score_metrics_batch(self, wavs, wav_lens=None):
        """Every predicted metric of each waveform of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[batch, time]`` (or ``[time]``) at :attr:`sample_rate`.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]``; None: all full length.

        Returns
        -------
        torch.Tensor
            ``[batch, metrics]`` on the CPU, columns in :attr:`metric_names` order.
        """
        from speechbrain_sqe.lobes.sqa_predictor import sqa_forward

        wavs, wav_lens = self.as_batch(wavs, wav_lens)
        self.mods.eval()
        return sqa_forward(self.mods.predictor, self.mods.ssl, wavs, wav_lens).float().cpu()

    def score_batch(self, wavs, wav_lens=None):
        """The primary (first) metric of each waveform ``[batch]``; see :meth:`score_metrics_batch`."""
        return self.score_metrics_batch(wavs, wav_lens)[:, 0]


def register_quality_model(name, source, replace=False):
    """Registers a quality predictor's hub folder in the metric registry, for ``sqe evaluate
    --metrics`` and the metrics runner: a predictor of one score as the metric ``name``, one of
    several (:attr:`QualityPredictor.metric_names`) as ``<name>_<metric>`` each, all computed by one
    pass of the model per file.

    Arguments
    ---------
    name : str
        The metric name, or the prefix of the names of a multi-metric predictor (its metric names,
        ``pesq_wb``..., are taken by the reference metrics).
    source : str
        The model's hub folder (any quality interface: the folder names it).
    replace : bool
        Replace metrics of the same names.

    Returns
    -------
    list of speechbrain_sqe.metrics.registry.MetricSpec
        The registered specs.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.lobes.sqa_predictor import SQAPredictor
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> from speechbrain_sqe.metrics import registry
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = SQAPredictor(["pesq_wb", "stoi"], ssl_layers=2, ssl_size=16, d_model=16, num_layers=1,
    ...                      num_heads=2, ffn_size=32)
    >>> folder = LearnedQualityPredictor.export(tempfile.mkdtemp(), {"predictor": model, "ssl": tera})
    >>> [(spec.name, spec.range, spec.group) for spec in register_quality_model("doc_sqa", folder)]
    [('doc_sqa_pesq_wb', (1.0, 4.5), 'doc_sqa'), ('doc_sqa_stoi', (0.0, 1.0), 'doc_sqa')]
    >>> for metric in ("doc_sqa_pesq_wb", "doc_sqa_stoi"):
    ...     registry.unregister_metric(metric)
    """
    from speechbrain_sqe.inference.hub import class_path, load_model
    from speechbrain_sqe.metrics.registry import register_predictor

    model = load_model(source, task="quality")
    names = list(model.metric_names)
    ranges = getattr(model, "metric_ranges", {}) or {}
    direction = getattr(model, "DIRECTION", "higher")
    if len(names) == 1:
        return register_predictor(name, interface=class_path(model), source=source, range=ranges.get(names[0], (None, None)),
                                  direction=direction, description=f"{type(model).__name__} of {source}",
                                  replace=replace)
    outputs = {f"{name}_{metric}": metric for metric in names}
    return register_predictor(
        name, interface=class_path(model), source=source, output=outputs,
        range={metric: ranges.get(key, (None, None)) for metric, key in outputs.items()}, direction=direction,
        description={metric: f"{key} predicted by {type(model).__name__} of {source}" for metric, key in outputs.items()},
        replace=replace)
