"""Speech enhancers: the ``Enhancer`` task interface, the VQ enhancer and the BSSE enhancer.

An enhancer maps noisy waveforms to enhanced ones at its ``sample_rate``. Every enhancer gives
``enhance_batch(wavs, lengths, **options)`` (a padded batch, each file enhanced as if alone) and
inherits ``enhance_file``; its method options (the VQ enhancer's ``mix``) are declared in
``OPTIONS`` so ``sqe enhance --option NAME=VALUE`` can pass them through and refuse unknown ones.
``sqe enhance --model FOLDER`` loads any of them by the interface its hub folder names.

The VQ enhancer (Fu et al., ICLR 2024, trained on clean speech only) encodes noisy speech, snaps each
frame to its nearest clean-speech code and decodes; the waveform is resynthesised with the noisy
phase. ``mix`` blends a fraction of the input back in, trading residual noise for naturalness.

The BSSE enhancer (Hung et al., Interspeech 2022, trained on noisy/clean pairs) masks the noisy
log1p spectrum with a BLSTM that reads the spectrum, weighted SSL layers, or both
(:mod:`speechbrain_sqe.lobes.bsse`); resynthesis with the noisy phase.

The shared-latent enhancer (after Li et al., 2022, on SSE, trained on UNPAIRED clean speech and noisy
mixtures; :mod:`speechbrain_sqe.lobes.shared_latent`) encodes the noisy compressed magnitude with
the mixture autoencoder, passes the shared layer and decodes with the speech autoencoder's amplitude
and phase decoders; option ``phase=noisy`` resynthesises with the noisy phase instead.

Example (with the model shipped in the package)::

    from speechbrain_sqe.inference.enhancement import VQEnhancer
    enhancer = VQEnhancer.from_hparams(source=VQEnhancer.DEFAULT_SOURCE)
    enhancer.enhance_file("noisy.wav", output_path="enhanced.wav")    # 16 kHz wav
    enhanced = enhancer.enhance_batch(wavs, lengths, mix=0.2)        # [batch, time]
"""

import os
from typing import ClassVar

import torch

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.inference.convolution import ConvolutionChoice
from speechbrain_sqe.inference.hub import (
    DEFAULT_SOURCES,
    PRETRAINED_FOLDER,
    TASK_DESCRIPTIONS,
)
from speechbrain_sqe.inference.safe_pretrained import SafePretrained
from speechbrain_sqe.lobes.bsse import bsse_forward
from speechbrain_sqe.lobes.frontend import PhaseSpectralFrontEnd, SpectralFrontEnd
from speechbrain_sqe.lobes.vqvae_se import enhance_waveforms, mix_with_input

#: The enhancer ``sqe enhance`` and ``load_model(task="enhancement")`` use without a model: BSSE.
DEFAULT_MODEL = DEFAULT_SOURCES["enhancement"]
#: The enhancer trained by ``hparams/vq_enhance.yaml`` and shipped inside the package.
VQ_ENHANCER_MODEL = os.path.join(PRETRAINED_FOLDER, "vq_enhancer")


def fraction(value):
    """A method option in ``[0, 1]`` (e.g. the share of the input kept).

    Arguments
    ---------
    value : str or float
        The value.

    Returns
    -------
    float
        The checked value.

    Example
    -------
    >>> fraction("0.25")
    0.25
    """
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be in [0, 1], got {value:g}")
    return value


def seconds(value):
    """A method option in seconds, ``>= 0`` (0: off, e.g. no limit).

    Arguments
    ---------
    value : str or float
        The value.

    Returns
    -------
    float
        The checked value.

    Example
    -------
    >>> seconds("2"), seconds(0)
    (2.0, 0.0)
    """
    value = float(value)
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"must be a number of seconds >= 0, got {value:g}")
    return value


def stride(value):
    """A method option: every how many frames a sampled key is taken (0: none; otherwise >= 2).

    Arguments
    ---------
    value : str or int
        The value.

    Returns
    -------
    int
        The checked value.

    Example
    -------
    >>> stride("8"), stride(0)
    (8, 0)
    """
    number = float(value)
    if number != int(number) or number < 0 or number == 1:
        raise ValueError(f"must be 0 (none) or a whole number of frames >= 2, got {value}")
    return int(number)


def set_vq_attention(model, frames_per_second, attention_seconds=0.0, attention_halo_seconds=0.0,
                     attention_stride=0):
    """Gives a VQ-VAE the local attention of the VQ enhancer's settings (checked; in seconds).

    Arguments
    ---------
    model : speechbrain_sqe.lobes.conv_stack.ConvVQVAE
        The model (its ``set_attention_context``).
    frames_per_second : float
        Its front end's frame rate.
    attention_seconds : float
        Chunk length; 0: attention over the whole file.
    attention_halo_seconds : float
        Context on each side of a chunk.
    attention_stride : int
        Every N-th frame of the file is a key too (0: none).

    Returns
    -------
    model
        The same model.

    Example
    -------
    >>> from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    >>> model = set_vq_attention(VQVAEEnhancementModel(channels=(8,), codebook_dim=8, codebook_size=4),
    ...                          125.0, attention_seconds=1.0, attention_halo_seconds=0.5, attention_stride=8)
    >>> model.encoder.attention_context, model.encoder.attention_halo, model.encoder.attention_stride
    (125, 62, 8)
    """
    chunk, halo = seconds(attention_seconds), seconds(attention_halo_seconds)
    model.set_attention_context(max(1, round(chunk * frames_per_second)) if chunk else None,
                                halo=round(halo * frames_per_second), stride=stride(attention_stride))
    return model


def speech_energy(wavs, lengths=None, frame=320, noise_quantile=0.1):
    """Energy of the speech in noisy waveforms: frame powers minus a noise floor, summed.

    The noise floor of each file is the ``noise_quantile`` of its 20 ms frame powers (the quietest
    frames hold noise, or the quietest speech), subtracted from every frame, negative values
    clipped; what is left is the energy the speech brings.

    Arguments
    ---------
    wavs : torch.Tensor
        Waveforms ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    frame : int
        Frame length in samples (20 ms at 16 kHz).
    noise_quantile : float
        Quantile of the frame powers taken as the noise floor.

    Returns
    -------
    torch.Tensor
        ``[batch]`` energies (sum of squares, like ``(wav ** 2).sum()``).

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> tone = torch.sin(2 * torch.pi * 200 * t) * (t > 0.5)    # 0.5 s of silence, then a tone
    >>> noise = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    >>> energy = speech_energy(torch.stack([tone, tone + noise]))
    >>> [round(float(e / (tone ** 2).sum()), 2) for e in energy]
    [1.0, 1.0]
    """
    wavs = torch.as_tensor(wavs, dtype=torch.float64)
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)
    total = wavs.shape[1]
    ends = [total] * wavs.shape[0] if lengths is None else [round(float(r) * total) for r in lengths]
    energies = []
    for wav, end in zip(wavs, ends):
        count = max(1, end // frame)
        frames = torch.nn.functional.pad(wav[: count * frame], (0, max(0, count * frame - end)))
        power = frames.reshape(count, frame).pow(2).mean(dim=1)
        floor = torch.quantile(power, noise_quantile)
        energies.append((power - floor).clamp(min=0).sum() * frame)
    return torch.stack(energies)


def keep_speech_level(enhanced, noisy, lengths=None):
    """Scales each enhanced waveform so that its energy equals the speech energy of its input.

    Why: an enhancer is asked to remove noise, not to change how loud the speech is. The VQ
    enhancer's decoder, trained on log-magnitudes, under-estimates magnitudes (the shipped model's
    output was about 10 dB quieter than its input). Matching the output's energy to the energy
    the speech brings to the input (:func:`speech_energy`: the input's frame powers above its noise
    floor) needs no reference and no training data, so it holds for any enhancer and any input
    level. The gain is one number per file (no change of the waveform's shape), limited so that
    the output peaks at 0.99 at most (a 16-bit file would clip); a silent output is left as it is.

    Arguments
    ---------
    enhanced : torch.Tensor
        Enhanced waveforms ``[batch, time]`` (noise removed, level arbitrary).
    noisy : torch.Tensor
        The inputs ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.

    Returns
    -------
    torch.Tensor
        The enhanced waveforms at the speech level of their inputs.

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> speech = 0.5 * torch.sin(2 * torch.pi * 200 * t) * (t > 0.5)
    >>> noisy = speech + 0.05 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    >>> out = keep_speech_level(0.2 * speech.unsqueeze(0), noisy.unsqueeze(0))
    >>> round(float((out * speech).sum() / (speech ** 2).sum()), 2)
    1.0
    """
    target = speech_energy(noisy, lengths).to(enhanced.device)
    own = speech_energy(enhanced, lengths, noise_quantile=0.0).to(enhanced.device)  # the whole output's energy
    gain = torch.where(own > 0, (target / own.clamp(min=1e-20)).sqrt(), torch.ones_like(own))
    peak = enhanced.detach().abs().amax(dim=1).to(gain.dtype)
    gain = torch.minimum(gain, torch.where(peak > 0, 0.99 / peak.clamp(min=1e-20), gain))
    return enhanced * gain.to(enhanced.dtype).unsqueeze(1)


def vq_enhance_keeping_level(model, frontend, wavs, lengths=None, mix=0.0):
    """The VQ enhancer's whole chain: enhance, keep the input's speech level, blend the input back.

    Used by :class:`VQEnhancer` and by the recipe's validation and test, so the recipe reports what
    users get.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel
        The trained model (eval mode).
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its front end.
    wavs : torch.Tensor
        Noisy waveforms ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    mix : float
        Fraction of the input blended back (after the level is matched, so both parts share it).

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` on the device of ``wavs``.
    """
    enhanced = enhance_waveforms(model, frontend, wavs, lengths, 0.0)
    return mix_with_input(keep_speech_level(enhanced, wavs, lengths), wavs, mix)


def _crossfade_weights(size, overlap, fade_in, fade_out, device=None):
    """Weights of one window of :meth:`Enhancer.run_chain`: 1, ramping up over its first
    ``overlap`` samples (``fade_in``) and down over its last (``fade_out``); never 0.

    Example
    -------
    >>> _crossfade_weights(8, 2, fade_in=True, fade_out=False)
    tensor([0.2500, 0.7500, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000])
    """
    weights = torch.ones(size, device=device)
    ramp = (torch.arange(overlap, device=device) + 0.5) / overlap
    if fade_in:
        weights[:overlap] = ramp
    if fade_out:
        weights[size - overlap:] = torch.minimum(weights[size - overlap:], ramp.flip(0))
    return weights


class Enhancer(SafePretrained):
    """Base of the speech enhancers (the ``enhancement`` task).

    A subclass implements :meth:`enhance_batch` and declares its method options in ``OPTIONS``
    (``{name: (parse function, help text)}``). Its output keeps the speech level of its input
    (:func:`keep_speech_level`): users expect a cleaner file, not a quieter one.
    """

    TASK = "enhancement"
    TASK_DESCRIPTION = TASK_DESCRIPTIONS["enhancement"]
    #: Whether the enhancer is trained to remove the room as well as the noise, i.e. its target is
    #: the DRY clean speech of a reverberant mixture. Benchmarks score such an enhancer against the
    #: dry clean reference; one that keeps the room (False) against the reverberant clean speech
    #: (the speech as it is in the mixture), so that it is not charged for what it never tried to do.
    DEREVERBERATES: ClassVar[bool] = False
    #: Method options of :meth:`enhance_batch`: ``{name: (parse function, help)}``.
    OPTIONS: ClassVar[dict] = {}
    #: Longest input enhanced in one pass, in seconds (``None``: whole inputs, however long).
    #: Longer inputs are cut into overlapping windows (:meth:`run_chain`), so that an hour-long
    #: recording takes memory for 30 s and time linear in its length (the VQ enhancer's
    #: transformer attends over all frames of its input: quadratic time). A hub folder may set
    #: ``segment_seconds``; ``sqe enhance --segment-seconds`` and :attr:`segment_seconds` override.
    SEGMENT_SECONDS: ClassVar[float] = 30.0
    #: Overlap of two consecutive windows, in seconds (at most a quarter of a window), crossfaded.
    SEGMENT_OVERLAP_SECONDS: ClassVar[float] = 1.0

    @property
    def segment_seconds(self):
        """Window length of long inputs in seconds (``None``: no windows); settable."""
        if "_segment_seconds" in self.__dict__:
            return self._segment_seconds
        return getattr(self.hparams, "segment_seconds", self.SEGMENT_SECONDS)

    @segment_seconds.setter
    def segment_seconds(self, seconds):
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"segment_seconds must be a positive number of seconds or None, got {seconds!r}")
        self._segment_seconds = None if seconds is None else float(seconds)

    def enhance_batch(self, wavs, lengths=None, **options):
        """Enhanced waveforms ``[batch, time]`` of a padded batch (0 beyond each length, on the CPU)."""
        raise NotImplementedError

    def run_chain(self, wavs, lengths, chain, min_samples=None):
        """What every ``enhance_batch`` does around its method's chain: a ``[time]`` or ``[batch,
        time]`` input checked as a batch (:meth:`as_batch`), the front end's minimum length refused
        with a clear error, ``chain(wavs, lengths)`` run, its output on the CPU in the input's shape.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms ``[batch, time]`` or ``[time]``.
        lengths : torch.Tensor, optional
            Relative lengths in ``[0, 1]``.
        chain : callable
            ``(wavs [batch, time], lengths) -> enhanced [batch, time]``.
        min_samples : int, optional
            Shortest input taken; default: the front end's ``min_samples``.

        Returns
        -------
        torch.Tensor
            ``[batch, time]``, or ``[time]`` for a ``[time]`` input.
        """
        squeeze = torch.is_tensor(wavs) and wavs.dim() == 1
        wavs, lengths = self.as_batch(wavs, lengths)
        min_samples = self.frontend.min_samples if min_samples is None else min_samples
        if wavs.shape[1] < min_samples:
            raise ValueError(f"waveforms need at least {min_samples} samples, got {wavs.shape[1]}")
        window = self._window_samples(min_samples)
        if window is None or wavs.shape[1] <= window:
            out = chain(wavs, lengths)
        else:
            out = self._run_in_windows(wavs, lengths, chain, window)
        out = out.cpu()
        return out[0] if squeeze else out

    def _window_samples(self, min_samples):
        """:attr:`segment_seconds` in samples (None: no windows), checked against the minimum."""
        seconds = self.segment_seconds
        if seconds is None:
            return None
        window = round(seconds * self.sample_rate)
        if window < 4 * min_samples:
            raise ValueError(f"segment_seconds={seconds} is too short: windows need at least "
                             f"{4 * min_samples / self.sample_rate:.3f} s for this model")
        return window

    def _run_in_windows(self, wavs, lengths, chain, window):
        """``chain`` over windows of ``window`` samples, joined by crossfades.

        Each input longer than a window is cut into windows overlapping by
        :attr:`SEGMENT_OVERLAP_SECONDS` (the last one ending with the input, so that every window
        is full); shorter inputs are one window each, processed as they are. Windows go through
        ``chain`` in batches as large as the input batch (memory stays that of one batch of
        windows); the outputs are added with weights that ramp linearly over each overlap and are
        divided by the summed weights, so an overlap is a crossfade and every sample a weighted
        mean. Written here: SpeechBrain has no overlap-add enhancement of long inputs.
        """
        total = wavs.shape[1]
        sizes = [total] * wavs.shape[0] if lengths is None else \
            torch.round(lengths.float() * total).long().clamp(1, total).tolist()
        overlap = min(round(self.SEGMENT_OVERLAP_SECONDS * self.sample_rate), window // 4)
        pieces = []  # (row, start, end)
        for row, size in enumerate(sizes):
            starts = [0] if size <= window else list(range(0, size - window, window - overlap)) + [size - window]
            pieces += [(row, start, min(start + window, size)) for start in starts]
        out = torch.zeros_like(wavs)
        weight = torch.zeros_like(wavs)
        per_pass = wavs.shape[0]  # windows per chain call: the caller's batch size bounds memory
        for first in range(0, len(pieces), per_pass):
            group = pieces[first:first + per_pass]
            longest = max(end - start for _, start, end in group)
            batch = wavs.new_zeros(len(group), longest)
            for index, (row, start, end) in enumerate(group):
                batch[index, : end - start] = wavs[row, start:end]
            lens = torch.tensor([(end - start) / longest for _, start, end in group], device=wavs.device)
            # Full windows need no lengths: the models' unmasked paths are the fast ones (a
            # transformer's padding mask costs TERA-based enhancers 4 times the time).
            enhanced = chain(batch, None if bool((lens == 1).all()) else lens).to(wavs.device)
            for index, (row, start, end) in enumerate(group):
                ramp = _crossfade_weights(end - start, overlap, fade_in=start > 0, fade_out=end < sizes[row],
                                          device=wavs.device)
                out[row, start:end] += ramp * enhanced[index, : end - start]
                weight[row, start:end] += ramp
        return out / weight.clamp(min=torch.finfo(weight.dtype).tiny)

    @classmethod
    def parse_options(cls, pairs):
        """Method options from ``NAME=VALUE`` strings, checked against :attr:`OPTIONS`.

        Arguments
        ---------
        pairs : list of str
            ``NAME=VALUE`` items.

        Returns
        -------
        dict
            Parsed options.

        Raises
        ------
        ValueError
            For an unknown name, a missing ``=`` or a bad value (the message lists the options).
        """
        known = ", ".join(f"{name} ({text})" for name, (_, text) in cls.OPTIONS.items()) or "none"
        options = {}
        for pair in pairs or []:
            name, sep, value = pair.partition("=")
            if not sep or name not in cls.OPTIONS:
                raise ValueError(f"{cls.__name__} has no option {pair!r}; its options: {known}")
            try:
                options[name] = cls.OPTIONS[name][0](value)
            except ValueError as error:
                raise ValueError(f"option {name}: {error}") from None
        return options

    def enhance_file(self, path, output_path=None, **options):
        """Enhances one audio file.

        Arguments
        ---------
        path : str
            The noisy file (any rate or channel count: resampled and downmixed).
        output_path : str, optional
            Where to write the enhanced audio (16-bit wav at :attr:`sample_rate`).
        **options : dict
            Method options (see :attr:`OPTIONS`).

        Returns
        -------
        torch.Tensor
            The enhanced waveform ``[time]``.
        """
        enhanced = self.enhance_batch(self.load_file(path).unsqueeze(0), **options)[0]
        if output_path is not None:
            save_audio(output_path, enhanced, self.sample_rate)
        return enhanced


class VQEnhancer(ConvolutionChoice, Enhancer):
    """Enhances speech with a VQ-VAE trained on clean speech only (Fu et al., ICLR 2024).

    Load with ``VQEnhancer.from_hparams(source=<folder or hub id>, savedir=...)``. The hub folder
    holds the ``frontend`` of training (:class:`~speechbrain_sqe.lobes.frontend.SpectralFrontEnd`:
    ``log1p`` magnitudes in, resynthesis with the noisy phase out), ``sample_rate``, ``min_seconds``, ``mix`` (the default blend with the input) and
    the module ``vqvae`` (:class:`speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel`).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    >>> enhancer = VQEnhancer.from_hparams(source=VQEnhancer.export(tempfile.mkdtemp(), {"vqvae": model}))
    >>> wavs = torch.randn(2, 16000)  # [batch, time]
    >>> enhancer.enhance_batch(wavs, torch.tensor([1.0, 0.5]), mix=0.2).shape
    torch.Size([2, 16000])
    """

    HPARAMS_NEEDED = ("sample_rate", "min_seconds", "mix")
    MODULES_NEEDED = ("vqvae",)
    DEFAULT_SOURCE = VQ_ENHANCER_MODEL
    OPTIONS: ClassVar[dict] = {"mix": (fraction, "share of the noisy input blended back in, 0..1"),
                               "attention_seconds": (seconds, ("attention within chunks of at most this "
                                                      "many seconds, 0: over the whole file")),
                               "attention_halo_seconds": (seconds, ("seconds each chunk also attends to on "
                                                           "each side (with attention_seconds)")),
                               "attention_stride": (stride, ("each chunk also attends to every N-th frame of "
                                                     "the file, weighted for the N it stands for (0: none)"))}
    HUB_TITLE = ("VQ-VAE speech enhancer trained on clean speech only, with self-distillation under\n"
                 "adversarial attack (Fu et al., ICLR 2024), trained with speechbrain-sqe's hparams/vq_enhance.yaml.")
    INFERENCE_OVERRIDES: ClassVar[dict] = {"vqvae": {"sync_distributed": False}}
    SETTING_COMMENTS: ClassVar[dict] = {
        **Enhancer.SETTING_COMMENTS,
        "mix": "Default fraction of the noisy input blended into the output (0: enhanced only);\n"
               "enhance_batch/enhance_file(mix=...) and `sqe enhance --option mix=R` override it.",
        "attention_seconds": "The transformers attend within consecutive chunks of at most this many seconds\n"
                             "(0: over the whole file); `sqe enhance --option attention_seconds=S` overrides it.",
        "attention_halo_seconds": "Seconds each chunk also attends to on each side (local attention; 0: the chunk\n"
                                  "only); `sqe enhance --option attention_halo_seconds=S` overrides it.",
        "attention_stride": "Each chunk also attends to every N-th frame of the whole file, each weighted for\n"
                            "the N frames it stands for (0: none); `sqe enhance --option attention_stride=N`.",
    }

    @classmethod
    def hub_spec(cls, modules, frontend=None, mix=0.0, **kwargs):
        """See :meth:`SafePretrained.hub_spec`; ``mix`` is the default blend with the input and the
        front end defaults to the authors' (``log1p`` |STFT|, n_fft 512, hop 128)."""
        frontend = frontend if frontend is not None else SpectralFrontEnd(n_fft=512, hop_length=128, log1p=True)
        return super().hub_spec(modules, frontend=frontend, mix=float(mix), **kwargs)

    def __init__(self, *args, convolution="auto", **kwargs):
        """See :class:`speechbrain.inference.interfaces.Pretrained`; ``convolution`` is the
        algorithm of the VQ-VAE's convolutions (:mod:`speechbrain_sqe.inference.convolution`:
        ``"auto"`` = overlap-save on a CPU, 1.0-1.35 times faster end to end, outputs within one
        16-bit step of the direct algorithm)."""
        super().__init__(*args, **kwargs)
        self.frontend = getattr(self.hparams, "frontend", None)
        if self.frontend is None:  # folders written before the hub spec carried the front end
            self.frontend = SpectralFrontEnd(self.hparams.n_fft, self.hparams.hop_length, log1p=True,
                                             sample_rate=self.hparams.sample_rate)
        self.set_convolution(convolution)

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None, mix=None, attention_seconds=None, attention_halo_seconds=None,
                      attention_stride=None):
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
        attention_seconds : float, optional
            The transformers attend within consecutive chunks of at most this many seconds
            (:meth:`~speechbrain_sqe.lobes.conv_stack.ConvVQVAE.set_attention_context`); 0: over
            the whole file; None: the folder's ``attention_seconds`` (0 where it has none).
        attention_halo_seconds : float, optional
            With ``attention_seconds``, each chunk also attends to this many seconds on each side
            (local attention); None: the folder's ``attention_halo_seconds`` (0 where it has none).
        attention_stride : int, optional
            With ``attention_seconds``, each chunk also attends to every N-th frame of the whole
            file (:meth:`~speechbrain_sqe.lobes.conv_stack.ConvVQVAE.set_attention_context`); None:
            the folder's ``attention_stride`` (0 where it has none).

        Returns
        -------
        torch.Tensor
            Enhanced waveforms ``[batch, time]`` (0 beyond each length), on the CPU; ``[time]``
            for a ``[time]`` input.
        """
        mix = self.hparams.mix if mix is None else mix
        if attention_seconds is None:
            attention_seconds = getattr(self.hparams, "attention_seconds", 0.0) or 0.0
        if attention_halo_seconds is None:
            attention_halo_seconds = getattr(self.hparams, "attention_halo_seconds", 0.0) or 0.0
        if attention_stride is None:
            attention_stride = getattr(self.hparams, "attention_stride", 0) or 0
        set_vq_attention(self.mods.vqvae, self.hparams.sample_rate / self.frontend.hop_length,
                         attention_seconds, attention_halo_seconds, attention_stride)
        return self.run_chain(wavs, lengths, lambda batch, lens: vq_enhance_keeping_level(
            self.mods.vqvae, self.frontend, batch, lens, mix), min_samples=self.frontend.n_fft // 2 + 1)


def bsse_enhance_keeping_level(model, frontend, wavs, lengths=None, upstream=None):
    """The BSSE enhancer's whole chain: mask the noisy log1p spectrum, resynthesise with the noisy
    phase, keep the input's speech level.

    Used by :class:`BSSEEnhancer` and by the recipe's test, so the recipe reports what users get.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.bsse.BSSEModel
        The trained model (eval mode).
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its front end (log1p magnitudes, n_fft 400, hop 160, Hamming).
    wavs : torch.Tensor
        Noisy waveforms ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    upstream : torch.nn.Module, optional
        The SSL upstream (features ``ssl`` and ``cross``).

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` on the device of ``wavs`` (0 beyond each length).
    """
    _, enhanced, _ = bsse_forward(model, frontend, wavs, lengths, upstream)
    return keep_speech_level(frontend.resynthesize(enhanced, wavs, lengths), wavs, lengths)


def bsse_frontend():
    """BSSE's front end: log1p |STFT|, n_fft 400, window 400, hop 160, Hamming, centred, reflect.

    Returns
    -------
    speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        The front end.

    Example
    -------
    >>> bsse_frontend().init_args["window"]
    'hamming'
    """
    return SpectralFrontEnd(n_fft=400, hop_length=160, win_length=400, log1p=True, window="hamming")


class BSSEEnhancer(Enhancer):
    """Enhances speech with a BSSE mask network over the spectrum and/or weighted SSL layers
    (Hung et al., "Boosting Self-Supervised Embeddings for Speech Enhancement", Interspeech 2022).

    Load with ``BSSEEnhancer.from_hparams(source=<folder>)`` (or ``load_model``/``sqe enhance
    --model``). The hub folder holds ``frontend`` (log1p magnitudes, n_fft 400, hop 160, Hamming),
    ``sample_rate``, ``min_seconds``, the module ``enhancer``
    (:class:`speechbrain_sqe.lobes.bsse.BSSEModel`) and, for the ``ssl`` and ``cross`` features, the
    SSL upstream ``ssl`` (e.g. :class:`speechbrain_sqe.lobes.tera.TERAModel`, fine-tuned or not).
    The output keeps the speech level of the input. It dereverberates (:attr:`DEREVERBERATES`): the
    recipe trains it on reverberant noisy crops against the dry clean crop.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.bsse import BSSEModel
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = BSSEModel("cross", ssl_layers=2, ssl_size=16, proj_size=16, hidden_size=16)
    >>> folder = BSSEEnhancer.export(tempfile.mkdtemp(), {"enhancer": model, "ssl": tera})
    >>> enhancer = BSSEEnhancer.from_hparams(source=folder)
    >>> enhancer.enhance_batch(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 16000])
    >>> [round(w, 2) for w in enhancer.layer_weights()]
    [0.5, 0.5]
    >>> enhancer.DEREVERBERATES, VQEnhancer.DEREVERBERATES
    (True, False)
    """

    MODULES_NEEDED = ("enhancer",)
    MIN_SECONDS = 0.05
    #: The BSSE model shipped in the package (trained on real speech; its model card says how).
    DEFAULT_SOURCE = os.path.join(PRETRAINED_FOLDER, "bsse")
    #: Trained to output the dry clean speech from reverberant mixtures (``brains/bsse.py``).
    DEREVERBERATES: ClassVar[bool] = True
    HUB_TITLE = ("BSSE: speech enhancement by a BLSTM mask over the log1p spectrum, weighted SSL layers or both\n"
                 "(Hung et al., Interspeech 2022), trained with speechbrain-sqe's hparams/bsse.yaml.")

    @classmethod
    def hub_spec(cls, modules, frontend=None, **kwargs):
        """See :meth:`SafePretrained.hub_spec`; the front end defaults to BSSE's (:func:`bsse_frontend`)."""
        return super().hub_spec(modules, frontend=frontend if frontend is not None else bsse_frontend(), **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frontend = getattr(self.hparams, "frontend", None) or bsse_frontend()
        model = self.mods.enhancer
        if model.uses_ssl and "ssl" not in self.mods:
            raise ValueError(f"this BSSE model reads SSL features ({model.feature!r}) but its folder has no 'ssl' module")

    @property
    def upstream(self):
        """The SSL upstream (None for the ``spectrum`` feature)."""
        return getattr(self.mods, "ssl", None)

    def layer_weights(self):
        """The learned SSL layer weights (softmax, input representation first), or None.

        Returns
        -------
        list of float or None
            One weight per hidden state of the upstream.
        """
        weights = self.mods.enhancer.layer_weights()
        return None if weights is None else [float(w) for w in weights]

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None):
        """Enhances a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms ``[batch, time]`` (or ``[time]``) at :attr:`sample_rate`.
        lengths : torch.Tensor, optional
            Relative lengths in ``[0, 1]``; None: all full length.

        Returns
        -------
        torch.Tensor
            Enhanced waveforms ``[batch, time]`` (0 beyond each length), on the CPU; ``[time]`` for
            a ``[time]`` input.
        """
        return self.run_chain(wavs, lengths, lambda batch, lens: bsse_enhance_keeping_level(
            self.mods.enhancer, self.frontend, batch, lens, self.upstream))


PHASE_SOURCES = ("decoded", "noisy")


def phase_source(value):
    """The ``phase`` option of :class:`SharedLatentEnhancer`: ``decoded`` or ``noisy``.

    Arguments
    ---------
    value : str
        The value.

    Returns
    -------
    str
        The checked value.

    Example
    -------
    >>> phase_source("noisy")
    'noisy'
    """
    if value not in PHASE_SOURCES:
        raise ValueError(f"must be one of {', '.join(PHASE_SOURCES)}, got {value!r}")
    return value


def shared_latent_enhance_keeping_level(model, frontend, wavs, lengths=None, phase="decoded",
                                        return_spec=False):
    """The shared-latent enhancer's whole chain: MAE encoder -> shared layer -> SAE amplitude (and
    phase) decoders -> inverse STFT, then the input's speech level.

    Used by :class:`SharedLatentEnhancer` and by the recipe's validation and test.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.shared_latent.SharedLatentModel
        The trained model (eval mode).
    frontend : speechbrain_sqe.lobes.frontend.PhaseSpectralFrontEnd
        Its front end (compressed magnitudes).
    wavs : torch.Tensor
        Noisy waveforms ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    phase : str
        ``decoded`` (the SAE's phase decoder; the noisy phase for a model without one) or ``noisy``.
    return_spec : bool
        Also return the enhanced compressed magnitudes and their relative frame lengths.

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` on the device of ``wavs`` (0 beyond each length); with ``return_spec``,
        ``(waveforms, [batch, frames, bins] magnitudes, [batch] frame lengths)``.
    """
    spec = frontend(wavs, lengths)
    frame_lens = None if lengths is None else frontend.frame_lengths(lengths, wavs.shape[1])
    amplitude, decoded = model.enhance(spec, frame_lens)
    if decoded is None or phase == "noisy":
        enhanced = frontend.resynthesize(amplitude, wavs, lengths)
    else:
        enhanced = frontend.synthesize(amplitude, decoded, wavs.shape[1], lengths)
    enhanced = keep_speech_level(enhanced, wavs, lengths)
    return (enhanced, amplitude, frame_lens) if return_spec else enhanced


class SharedLatentEnhancer(Enhancer):
    """Enhances speech with the shared-latent SAE/MAE model trained on UNPAIRED clean speech and
    noisy mixtures (after Li, Sun, Wang, Naqvi, 2022, on SSE by Wang et al., 2020).

    Load with ``SharedLatentEnhancer.from_hparams(source=<folder>)`` (or ``load_model`` / ``sqe
    enhance --model``). The hub folder holds ``frontend``
    (:class:`~speechbrain_sqe.lobes.frontend.PhaseSpectralFrontEnd`: ``|STFT| ** 0.5``, n_fft 1024,
    hop 256), ``sample_rate``, ``min_seconds``, ``phase`` (the default phase source) and the module
    ``model`` (:class:`speechbrain_sqe.lobes.shared_latent.SharedLatentModel`). The output keeps the
    speech level of the input. It dereverberates (:attr:`DEREVERBERATES`): its speech decoder only
    ever learned dry clean speech.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.shared_latent import SharedLatentModel
    >>> model = SharedLatentModel(n_bins=129, sae_channels=(16, 8), mae_channels=(16, 12, 8))
    >>> frontend = PhaseSpectralFrontEnd(n_fft=256, hop_length=64)
    >>> folder = SharedLatentEnhancer.export(tempfile.mkdtemp(), {"model": model}, frontend=frontend)
    >>> enhancer = SharedLatentEnhancer.from_hparams(source=folder)
    >>> enhancer.enhance_batch(torch.randn(2, 8000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 8000])
    >>> enhancer.enhance_batch(torch.randn(8000), phase="noisy").shape
    torch.Size([8000])
    """

    HPARAMS_NEEDED = ("sample_rate", "min_seconds", "phase")
    MODULES_NEEDED = ("model",)
    DEREVERBERATES: ClassVar[bool] = True
    OPTIONS: ClassVar[dict] = {"phase": (phase_source, "decoded (the speech autoencoder's phase decoder) or noisy")}
    HUB_TITLE = ("Shared latent space SAE/MAE speech enhancer trained on unpaired clean speech and noisy mixtures\n"
                 "(after Li et al., 2022, on SSE), trained with speechbrain-sqe's hparams/shared_latent.yaml.")
    SETTING_COMMENTS: ClassVar[dict] = {
        **Enhancer.SETTING_COMMENTS,
        "phase": "Default phase of the output: decoded (the phase decoder; the noisy phase for a model without\n"
                 "one) or noisy; enhance_batch/enhance_file(phase=...) and `sqe enhance --option phase=...` override it.",
    }

    @classmethod
    def hub_spec(cls, modules, frontend=None, phase="decoded", **kwargs):
        """See :meth:`SafePretrained.hub_spec`; the front end defaults to SSE's (n_fft 1024, hop 256,
        Hann, magnitude ** 0.5) and ``phase`` is the default phase source."""
        frontend = frontend if frontend is not None else PhaseSpectralFrontEnd()
        return super().hub_spec(modules, frontend=frontend, phase=phase_source(phase), **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frontend = getattr(self.hparams, "frontend", None) or PhaseSpectralFrontEnd()

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None, phase=None):
        """Enhances a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms ``[batch, time]`` (or ``[time]``) at :attr:`sample_rate`.
        lengths : torch.Tensor, optional
            Relative lengths in ``[0, 1]``; None: all full length.
        phase : str, optional
            ``decoded`` or ``noisy``; None: the folder's default (``hparams.phase``).

        Returns
        -------
        torch.Tensor
            Enhanced waveforms ``[batch, time]`` (0 beyond each length), on the CPU; ``[time]`` for
            a ``[time]`` input.
        """
        phase = self.hparams.phase if phase is None else phase_source(phase)
        return self.run_chain(wavs, lengths, lambda batch, lens: shared_latent_enhance_keeping_level(
            self.mods.model, self.frontend, batch, lens, phase))


def ssl_vocoder_enhance_keeping_level(model, frontend, wavs, lengths=None, upstream=None):
    """The spectrum-aware SSL vocoder's whole chain: spectrum and SSL states of the noisy input,
    fusion, HiFi-GAN generator (each utterance as alone, cropped to its length), then the input's
    speech level kept.

    Used by :class:`SSLVocoderEnhancer` and by the recipe's test, so the recipe reports what users get.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.ssl_vocoder.SSLVocoder
        The trained model (eval mode).
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its spectrum front end.
    wavs : torch.Tensor
        Noisy waveforms ``[batch, time]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    upstream : torch.nn.Module
        The SSL upstream.

    Returns
    -------
    torch.Tensor
        ``[batch, time]`` on the device of ``wavs`` (0 beyond each length).
    """
    from speechbrain_sqe.lobes.ssl_vocoder import ssl_vocoder_forward

    if lengths is None:
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
    return keep_speech_level(ssl_vocoder_forward(model, frontend, wavs, lengths, upstream), wavs, lengths)


def ssl_vocoder_frontend():
    """The SSL vocoder's default spectrum front end: log1p |STFT|, n_fft 400, hop 160, Hann, centred.

    Returns
    -------
    speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        The front end.

    Example
    -------
    >>> ssl_vocoder_frontend().init_args["hop_length"]
    160
    """
    return SpectralFrontEnd(n_fft=400, hop_length=160, win_length=400, log1p=True, window="hann")


class SSLVocoderEnhancer(Enhancer):
    """Enhances speech by resynthesis: a HiFi-GAN generator driven by weighted SSL (TERA) layers fused
    with the noisy spectrum (Song et al., "Spectrum-Aware Neural Vocoder Based on Self-Supervised
    Learning for Speech Enhancement", EUSIPCO 2024; fusion ``none`` is DeVo, Irvin et al., 2023).

    Load with ``SSLVocoderEnhancer.from_hparams(source=<folder>)`` (or ``load_model``/``sqe enhance
    --model``). The hub folder holds ``frontend`` (the spectrum: log1p or linear magnitude, hop 160),
    ``sample_rate``, ``min_seconds`` and the modules ``enhancer``
    (:class:`speechbrain_sqe.lobes.ssl_vocoder.SSLVocoder`) and ``ssl`` (the upstream, e.g.
    :class:`speechbrain_sqe.lobes.tera.TERAModel`). The output has the input's length and keeps the
    speech level of the input. It dereverberates (:attr:`DEREVERBERATES`): the recipe trains it on
    reverberant noisy crops against the dry clean crop.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.lobes.ssl_vocoder import SSLVocoder
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> model = SSLVocoder("film", ssl_num_layers=2, ssl_size=16, model_dim=32, upsample_initial_channel=32)
    >>> folder = SSLVocoderEnhancer.export(tempfile.mkdtemp(), {"enhancer": model, "ssl": tera})
    >>> enhancer = SSLVocoderEnhancer.from_hparams(source=folder)
    >>> enhancer.enhance_batch(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 16000])
    >>> [round(w, 2) for w in enhancer.layer_weights()]
    [0.5, 0.5]
    """

    MODULES_NEEDED = ("enhancer", "ssl")
    MIN_SECONDS = 0.05
    #: Trained to output the dry clean speech from reverberant mixtures (``brains/ssl_vocoder.py``).
    DEREVERBERATES: ClassVar[bool] = True
    HUB_TITLE = ("Spectrum-aware SSL vocoder: HiFi-GAN resynthesis from weighted TERA layers fused with the noisy\n"
                 "spectrum (Song et al., EUSIPCO 2024), trained with speechbrain-sqe's hparams/ssl_vocoder.yaml.")

    @classmethod
    def hub_spec(cls, modules, frontend=None, **kwargs):
        """See :meth:`SafePretrained.hub_spec`; the front end defaults to :func:`ssl_vocoder_frontend`."""
        return super().hub_spec(modules, frontend=frontend if frontend is not None else ssl_vocoder_frontend(),
                                **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frontend = getattr(self.hparams, "frontend", None) or ssl_vocoder_frontend()

    def layer_weights(self):
        """The learned SSL layer weights (softmax, input representation first); None for the last layer only.

        Returns
        -------
        list of float or None
            One weight per hidden state of the upstream.
        """
        weights = self.mods.enhancer.layer_weights()
        return None if weights is None else [float(w) for w in weights]

    @torch.no_grad()
    def enhance_batch(self, wavs, lengths=None):
        """Enhances a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Noisy waveforms ``[batch, time]`` (or ``[time]``) at :attr:`sample_rate`.
        lengths : torch.Tensor, optional
            Relative lengths in ``[0, 1]``; None: all full length.

        Returns
        -------
        torch.Tensor
            Enhanced waveforms ``[batch, time]`` (0 beyond each length), on the CPU; ``[time]`` for
            a ``[time]`` input.
        """
        return self.run_chain(wavs, lengths, lambda batch, lens: ssl_vocoder_enhance_keeping_level(
            self.mods.enhancer, self.frontend, batch, lens, self.mods.ssl))
