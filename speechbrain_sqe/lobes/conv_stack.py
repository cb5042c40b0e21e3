"""The convolutional encoder/decoder stack and the VQ-VAE wiring shared by the two VQScore models
(Fu et al., "Self-Supervised Speech Quality Estimation and Enhancement Using Only Clean Speech",
ICLR 2024): the quality-estimation VQ-VAE (:mod:`speechbrain_sqe.lobes.vqvae`) and the enhancement
VQ-VAE (:mod:`speechbrain_sqe.lobes.vqvae_se`) are the same 1-D CNN over time (frequency as
channels) with different options.

Encoder (:class:`ConvEncoderStack`)::

    h = N(x)                                        input normalisation (or none)
    for c in channels:    a = N(act(conv(h)));  b = N(act(conv(a)));  h = a + b
    last stage, plain:    e = N(act(conv(h)));  z = N(conv(e))        quality model
    last stage, residual: a = N(act(conv(h)));  b = N(act(conv(a)));  z = a + b
    optional transformer: z = N(transformer(z))                        enhancement model

Decoder (:class:`ConvDecoderStack`)::

    h = transformer(zq) (optional);  h = act(conv(h))
    for c in reversed(channels):  a = act(conv(h));  b = act(conv(a));  h = a + b
    out = relu(conv(h))

``conv`` is a Conv1d over time (odd kernel, "same" padding), ``act`` a LeakyReLU and ``N`` either
an instance norm over time without affine parameters (the quality model's ``nn.InstanceNorm1d``)
or the removal of each channel's mean over time (the enhancement model); the transformers are
PyTorch ``TransformerEncoder`` stacks (``dim_feedforward = d_model``, GELU, no positional encoding).
Convolutions are stored in order in ``convs`` (the authors' ``conv_enc1`` ... / ``conv_dec1`` ...),
the transformers in ``transformer``; :class:`ConvVQVAE` holds ``encoder``, ``quantizer``
(:class:`~speechbrain_sqe.lobes.quantizers.VectorQuantizer`) and ``decoder``, so the state-dict keys
are those of the shipped checkpoints.

What matches the authors: layer order, channel sizes, skip sums, activations, the norms' arithmetic
on an utterance alone, the transformer configuration. What differs: padded batches. With
``lengths``, every norm takes its statistics over the valid frames only, the transformers get a key
padding mask, and every layer's output is zeroed beyond each utterance's end (so the convolutions
see zeros there, as they see their own zero padding for an utterance alone); each utterance of a
padded batch therefore gets the same output as alone (up to float rounding; in eval mode where
there is dropout). The authors process one utterance at a time. At inference the convolutions may run
by overlap-save (:mod:`speechbrain_sqe.lobes.fft_conv`, :meth:`ConvEncoderStack.set_convolution`):
the same convolution by another float32 algorithm, within a few 1e-6. The transformers may attend
locally (:meth:`ConvVQVAE.set_attention_context`, :mod:`speechbrain_sqe.lobes.local_attention`):
chunks with a halo and, optionally, every few frames of the whole input; not in the authors' code.

Authors: speechbrain-sqe contributors
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.fft_conv import OverlapSaveConv1d
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.local_attention import (
    local_keys,
    local_transformer,
    whole_input_transformer,
)
from speechbrain_sqe.lobes.masking import (
    apply_mask,
    masked_instance_norm,
    masked_mean_removal,
    relative_lengths_to_mask,
)
from speechbrain_sqe.lobes.quantizers import QuantizerOutput, VectorQuantizer

__all__ = ["CONVOLUTIONS", "NORMS", "ConvDecoderStack", "ConvEncoderStack", "ConvVQVAE", "VQVAEOutput"]

#: Normalisations of the encoder: ``"instance"`` (masked instance norm, quality model) and
#: ``"mean"`` (masked mean removal, enhancement model).
NORMS = ("instance", "mean")

#: Algorithms of the encoder's convolutions at inference (:meth:`ConvEncoderStack.set_convolution`).
CONVOLUTIONS = ("direct", "overlap_save")


def _conv(in_channels, out_channels, kernel_size):
    return torch.nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def _check_kernel(kernel_size):
    if kernel_size % 2 != 1:
        raise ValueError("kernel_size must be odd (same-length convolutions)")


def _gelu(x):
    """GELU as a plain function: PyTorch's transformer "fast path" (taken in eval mode for
    ``"gelu"``/``F.gelu``) is about 8 times slower on CPU than the regular path for these small heads
    (d 64, 8 heads: 1.0 s against 0.09 s for 8 x 500 frames, 1 thread); this activation keeps
    the regular path (same arithmetic, up to float rounding)."""
    return F.gelu(x)


def _transformer(d_model, heads, layers, dropout):
    """``layers`` post-LN transformer layers (``dim_feedforward = d_model``), or None for None."""
    if layers is None:
        return None
    layer = torch.nn.TransformerEncoderLayer(
        d_model=d_model,
        nhead=heads,
        dim_feedforward=d_model,
        dropout=dropout,
        activation=_gelu,
        batch_first=True,
    )
    # No nested tensors: padded frames then go through the same arithmetic as valid ones.
    return torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


def _run_transformer(transformer, x, mask, context=None, halo=0, stride=0):
    """``x`` ``[batch, time, d]`` through a transformer with a key padding mask from ``mask``;
    with ``context`` (frames), local attention (:mod:`speechbrain_sqe.lobes.local_attention`):
    equal chunks of at most ``context`` frames (``ceil(time / context)`` of them over the batch's
    time), each attending to itself, ``halo`` frames on each side (0: only to itself) and, with
    ``stride``, every ``stride``-th frame of the input; the whole input where that is no fewer keys
    (:func:`~speechbrain_sqe.lobes.local_attention.whole_input_transformer`)."""
    time = x.shape[1]
    if context is not None and local_keys(time, context, halo, stride) < time:
        out = local_transformer(transformer, x, mask, context, halo, stride)
    else:
        out = whole_input_transformer(transformer, x, mask)
    return out if mask is None else apply_mask(out, mask, time_dim=1)


class _ConvStack(torch.nn.Module):
    """What the encoder and decoder share: the choice of convolution algorithm at inference."""

    def _init_convolutions(self, convs):
        self.convs = torch.nn.ModuleList(convs)
        #: Algorithm of the convolutions at inference (see :meth:`set_convolution`).
        self.convolution = "direct"
        # Plain attributes, not submodules: the state dict is unchanged.
        self._overlap_save = [OverlapSaveConv1d(conv) for conv in self.convs]
        #: Frames per chunk of the transformer's local attention (None: the whole input) and the
        #: frames each chunk also sees on each side; see :meth:`ConvVQVAE.set_attention_context`.
        self.attention_context = None
        self.attention_halo = 0
        self.attention_stride = 0

    def set_convolution(self, algorithm="direct"):
        """Picks the algorithm of the convolutions outside training, without autograd.

        ``"direct"``: ``torch.nn.Conv1d`` (oneDNN on CPUs, cuDNN on GPUs); ``"overlap_save"``:
        :class:`~speechbrain_sqe.lobes.fft_conv.OverlapSaveConv1d` (float32 arithmetic with fewer
        products; within a few 1e-6 of the direct one; used in the weights' dtype only, so
        :meth:`set_inference_dtype` with another dtype takes precedence).

        Arguments
        ---------
        algorithm : str
            ``"direct"`` or ``"overlap_save"``.

        Example
        -------
        >>> enc = ConvEncoderStack(257, (16,), 8).eval()
        >>> spec = torch.rand(1, 20, 257)  # [batch, time, channels]
        >>> exact = enc(spec)
        >>> enc.set_convolution("overlap_save")
        >>> with torch.no_grad():
        ...     fast = enc(spec)
        >>> fast.shape, bool((fast - exact).abs().max() < 1e-4)
        (torch.Size([1, 20, 8]), True)
        """
        if algorithm not in CONVOLUTIONS:
            raise ValueError(f"convolution must be one of {CONVOLUTIONS}, got {algorithm!r}")
        self.convolution = algorithm

    def _fast_conv(self, index, dtype=None):
        """The overlap-save runner of convolution ``index`` where it applies now, else None."""
        if (self.convolution == "overlap_save" and not self.training and not torch.is_grad_enabled()
                and dtype in (None, self.convs[index].weight.dtype)):
            return self._overlap_save[index]
        return None


class ConvEncoderStack(_ConvStack):
    """Encoder of the VQScore VQ-VAEs: residual conv stages with norms, optional transformer.

    Arguments
    ---------
    input_size : int
        Frequency bins of the input (257).
    channels : sequence of int
        Channels of the residual stages before the last one.
    output_size : int
        Dimension of ``z`` (the codebook dimension).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    norm : str
        ``"instance"`` (masked instance norm, no affine) or ``"mean"`` (masked mean removal).
    norm_eps : float
        Epsilon of the instance norms.
    input_norm : bool
        Normalise the input spectrogram first.
    residual_last_stage : bool
        False: the quality model's last stage ``e = N(act(conv(h))); z = N(conv(e))``; True: a
        residual stage like the others (the enhancement model).
    transformer_layers : int, optional
        Layers of a transformer after the convolutions (``z = N(transformer(h))``); None: none.
    heads : int
        Attention heads of the transformer (must divide ``output_size``).
    dropout : float
        Transformer dropout.

    Example
    -------
    >>> enc = ConvEncoderStack(257, (64, 48), 32, norm="mean", residual_last_stage=True,
    ...                        transformer_layers=1, heads=4).eval()
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> z = enc(spec, torch.tensor([1.0, 0.5]))
    >>> z.shape  # [batch, time, channels]
    torch.Size([2, 40, 32])
    >>> float(z[1, 20:].detach().abs().sum())
    0.0
    """

    def __init__(
        self,
        input_size=257,
        channels=(128, 64),
        output_size=32,
        kernel_size=7,
        negative_slope=0.3,
        norm="instance",
        norm_eps=1e-5,
        input_norm=True,
        residual_last_stage=False,
        transformer_layers=None,
        heads=8,
        dropout=0.0,
    ):
        super().__init__()
        _check_kernel(kernel_size)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.norm_eps = norm_eps
        self.input_norm = input_norm
        self.residual_last_stage = residual_last_stage
        self.activation = torch.nn.LeakyReLU(negative_slope)
        convs, prev = [], input_size
        for c in list(channels) + [output_size]:
            convs += [_conv(prev, c, kernel_size), _conv(c, c, kernel_size)]
            prev = c
        self._init_convolutions(convs)
        self.transformer = _transformer(output_size, heads, transformer_layers, dropout)
        #: Dtype of the convolutions at inference (``None``: the weights' own; see
        #: :meth:`set_inference_dtype`).
        self.inference_dtype = None

    def set_inference_dtype(self, dtype=None):
        """Runs the convolutions in ``dtype`` (e.g. ``torch.bfloat16``) outside training.

        Inputs, weights and outputs are rounded to ``dtype`` (the products accumulate in
        float32); everything else (norms, activations, the transformer) stays float32. On CPUs with
        AVX512-BF16 the convolution stack of the VQScore model runs 1.8 times faster in
        bfloat16. Training (``self.training``) always uses the weights' dtype.

        Arguments
        ---------
        dtype : torch.dtype, optional
            ``None`` restores the weights' dtype.

        Example
        -------
        >>> enc = ConvEncoderStack(257, (16,), 8).eval()
        >>> spec = torch.rand(1, 20, 257)  # [batch, time, channels]
        >>> exact = enc(spec)
        >>> enc.set_inference_dtype(torch.bfloat16)
        >>> fast = enc(spec)
        >>> fast.dtype, bool((fast - exact).abs().max() < 0.1)
        (torch.float32, True)
        """
        self.inference_dtype = dtype

    def _conv(self, index, x):
        conv = self.convs[index]
        dtype = self.inference_dtype
        fast = self._fast_conv(index, dtype)
        if fast is not None:
            return fast(x)
        if dtype is None or self.training or dtype == conv.weight.dtype:
            return conv(x)
        bias = None if conv.bias is None else conv.bias.to(dtype)
        out = F.conv1d(x.to(dtype), conv.weight.to(dtype), bias, padding=conv.padding)
        return out.to(x.dtype)

    def _act(self, x):
        # Without autograd the activation overwrites the convolution's fresh output: one buffer
        # less per layer (session 27).
        if x.requires_grad:
            return self.activation(x)
        return F.leaky_relu_(x, self.activation.negative_slope)

    def _norm(self, x, mask):
        if self.norm == "instance":
            return masked_instance_norm(x, mask, self.norm_eps)
        return masked_mean_removal(x, mask)

    def forward(self, spec, lengths=None):
        """Encodes a spectrogram.

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (masked norms and attention; padded frames of ``z`` are 0).

        Returns
        -------
        torch.Tensor
            ``z``: ``[batch, time, output_size]``.
        """
        mask = relative_lengths_to_mask(lengths, spec.shape[1], device=spec.device)
        h = spec.transpose(1, 2)
        h = self._norm(h, mask) if self.input_norm else apply_mask(h, mask)
        num_stages = len(self.convs) // 2
        for stage in range(num_stages if self.residual_last_stage else num_stages - 1):
            a = self._norm(self._act(self._conv(2 * stage, h)), mask)
            b = self._norm(self._act(self._conv(2 * stage + 1, a)), mask)
            h = a + b if a.requires_grad or b.requires_grad else a.add_(b)  # a: a saved conv input
        if not self.residual_last_stage:
            e = self._norm(self._act(self._conv(len(self.convs) - 2, h)), mask)
            h = self._norm(self._conv(len(self.convs) - 1, e), mask)
        if self.transformer is not None:
            z = _run_transformer(self.transformer, h.transpose(1, 2), mask, self.attention_context,
                                 self.attention_halo, self.attention_stride)
            h = self._norm(z.transpose(1, 2), mask)
        return h.transpose(1, 2)


class ConvDecoderStack(_ConvStack):
    """Decoder of the VQScore VQ-VAEs: optional transformer, conv stages with skip sums, ReLU out.

    Arguments
    ---------
    input_size : int
        Dimension of the codes.
    channels : sequence of int
        Channels of the encoder's residual stages (given in encoder order, run reversed).
    output_size : int
        Frequency bins of the output (257).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    transformer_layers : int, optional
        Layers of a transformer before the convolutions; None: none.
    heads : int
        Attention heads of the transformer.
    dropout : float
        Transformer dropout.

    Example
    -------
    >>> dec = ConvDecoderStack(32, (128, 64), 257)
    >>> zq = torch.randn(2, 40, 32)  # [batch, time, channels]
    >>> out = dec(zq, torch.tensor([1.0, 0.5]))
    >>> out.shape  # [batch, time, channels]
    torch.Size([2, 40, 257])
    >>> bool((out >= 0).all()), float(out[1, 20:].detach().sum())
    (True, 0.0)
    """

    def __init__(
        self,
        input_size=32,
        channels=(128, 64),
        output_size=257,
        kernel_size=7,
        negative_slope=0.3,
        transformer_layers=None,
        heads=8,
        dropout=0.0,
    ):
        super().__init__()
        _check_kernel(kernel_size)
        self.activation = torch.nn.LeakyReLU(negative_slope)
        self.transformer = _transformer(input_size, heads, transformer_layers, dropout)
        convs, prev = [_conv(input_size, input_size, kernel_size)], input_size
        for c in reversed(list(channels)):
            convs += [_conv(prev, c, kernel_size), _conv(c, c, kernel_size)]
            prev = c
        convs.append(_conv(prev, output_size, kernel_size))
        self._init_convolutions(convs)

    def _conv(self, index, x):
        fast = self._fast_conv(index)
        return self.convs[index](x) if fast is None else fast(x)

    def _masked_act(self, x, mask):
        if x.requires_grad:
            return apply_mask(self.activation(x), mask)
        # Without autograd, in the convolution's fresh output: no new buffers (session 27).
        x = F.leaky_relu_(x, self.activation.negative_slope)
        return x if mask is None else x.mul_(mask.unsqueeze(1).to(x.dtype))

    def forward(self, zq, lengths=None):
        """Decodes codes into a (non-negative) magnitude spectrogram.

        Arguments
        ---------
        zq : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (attention key padding mask; padded frames zeroed between
            layers and at the output).

        Returns
        -------
        torch.Tensor
            ``[batch, time, output_size]``, non-negative.
        """
        mask = relative_lengths_to_mask(lengths, zq.shape[1], device=zq.device)
        if self.transformer is not None:
            h = _run_transformer(self.transformer, zq, mask, self.attention_context,
                                 self.attention_halo, self.attention_stride).transpose(1, 2)
        else:
            h = apply_mask(zq.transpose(1, 2), mask)
        h = self._masked_act(self._conv(0, h), mask)
        for stage in range((len(self.convs) - 2) // 2):
            a = self._masked_act(self._conv(1 + 2 * stage, h), mask)
            b = self._masked_act(self._conv(2 + 2 * stage, a), mask)
            h = a + b if a.requires_grad or b.requires_grad else a.add_(b)  # a: a saved conv input
        out = apply_mask(F.relu(self._conv(len(self.convs) - 1, h)), mask)
        return out.transpose(1, 2)


class VQVAEOutput(NamedTuple):
    """What :meth:`ConvVQVAE.forward` returns (unpacks as ``spec_hat, z, vq``).

    Attributes
    ----------
    spec_hat : torch.Tensor
        Reconstructed spectrogram ``[batch, time, freq]``.
    z : torch.Tensor
        Encoder output ``[batch, time, codebook_dim]``.
    vq : QuantizerOutput
        The quantizer's output (``quantized``, ``indices``, ``commit_loss``, ``similarity``...).
    """

    spec_hat: torch.Tensor
    z: torch.Tensor
    vq: QuantizerOutput


@record_init_args
class ConvVQVAE(torch.nn.Module):
    """Encoder -> vector quantizer -> decoder, the wiring of both VQScore VQ-VAEs.

    Builds a :class:`ConvEncoderStack`, a
    :class:`~speechbrain_sqe.lobes.quantizers.VectorQuantizer` and a :class:`ConvDecoderStack`
    (in that order, so seeded initialisations are reproducible) from its arguments;
    :class:`~speechbrain_sqe.lobes.vqvae.VQVAEQualityModel` and
    :class:`~speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel` are this class with their
    options. The constructor arguments are recorded in ``init_args`` (also read as ``config``).

    Arguments
    ---------
    input_size : int
        Frequency bins (257 for ``n_fft=512``).
    channels : sequence of int
        Channels of the encoder's residual stages (reversed in the decoder).
    codebook_dim : int
        Dimension of ``z``, of the codes and of the transformers.
    codebook_size : int
        Number of codes.
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    norm : str
        Encoder normalisation: ``"instance"`` or ``"mean"`` (see :class:`ConvEncoderStack`).
    input_norm : bool
        Normalise the input spectrogram first.
    residual_last_stage : bool
        Last encoder stage residual (True) or the quality model's plain one (False).
    transformer_layers : int, optional
        Layers of the transformer after the encoder's and before the decoder's convolutions;
        None: no transformers.
    heads : int
        Attention heads.
    dropout : float
        Transformer dropout.
    distance, ema_update, decay, eps, kmeans_init, kmeans_iters, threshold_ema_dead_code,
    commitment_weight, ce_temperature, euclidean_logits, freeze_codebook, sync_distributed
        The quantizer's options (see :class:`~speechbrain_sqe.lobes.quantizers.VectorQuantizer`).

    Example
    -------
    >>> model = ConvVQVAE(channels=(32, 16), codebook_dim=8, codebook_size=16)
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> spec_hat, z, vq = model(spec, torch.tensor([1.0, 0.75]))
    >>> spec_hat.shape, z.shape, vq.indices.shape
    (torch.Size([2, 40, 257]), torch.Size([2, 40, 8]), torch.Size([2, 40]))
    >>> model.token_logits(spec).shape  # [batch, time, codebook_size]
    torch.Size([2, 40, 16])
    >>> model.init_args["channels"], model.init_args["norm"]
    ([32, 16], 'instance')
    """

    def __init__(
        self,
        input_size=257,
        channels=(128, 64),
        codebook_dim=32,
        codebook_size=2048,
        kernel_size=7,
        negative_slope=0.3,
        norm="instance",
        input_norm=True,
        residual_last_stage=False,
        transformer_layers=None,
        heads=8,
        dropout=0.0,
        distance="cosine",
        ema_update=True,
        decay=0.8,
        eps=1e-5,
        kmeans_init=True,
        kmeans_iters=10,
        threshold_ema_dead_code=0.0,
        commitment_weight=1.0,
        ce_temperature=1.0,
        euclidean_logits="distance",
        freeze_codebook=False,
        sync_distributed=True,
    ):
        super().__init__()
        self.encoder = ConvEncoderStack(
            input_size, channels, codebook_dim, kernel_size, negative_slope, norm=norm,
            input_norm=input_norm, residual_last_stage=residual_last_stage,
            transformer_layers=transformer_layers, heads=heads, dropout=dropout,
        )
        self.quantizer = VectorQuantizer(
            dim=codebook_dim,
            codebook_size=codebook_size,
            distance=distance,
            ema_update=ema_update,
            decay=decay,
            eps=eps,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            commitment_weight=commitment_weight,
            ce_temperature=ce_temperature,
            euclidean_logits=euclidean_logits,
            freeze_codebook=freeze_codebook,
            sync_distributed=sync_distributed,
        )
        self.decoder = ConvDecoderStack(
            codebook_dim, channels, input_size, kernel_size, negative_slope,
            transformer_layers=transformer_layers, heads=heads, dropout=dropout,
        )

    @property
    def config(self):
        """The constructor arguments (a copy of ``init_args``), for ``cls(**model.config)``."""
        return dict(self.init_args)

    def set_convolution(self, algorithm="direct"):
        """Sets the convolution algorithm of the encoder and the decoder at inference
        (:meth:`ConvEncoderStack.set_convolution`).

        Arguments
        ---------
        algorithm : str
            One of :data:`CONVOLUTIONS`.
        """
        self.encoder.set_convolution(algorithm)
        self.decoder.set_convolution(algorithm)

    def set_attention_context(self, frames=None, halo=0, stride=0):
        """Makes the transformers of the encoder and the decoder attend locally instead of over the
        whole input: the frames are cut into consecutive equal chunks of at most ``frames`` frames,
        and each chunk attends to itself, ``halo`` frames on each side and, with ``stride``, every
        ``stride``-th frame of the input (:mod:`speechbrain_sqe.lobes.local_attention`); attention
        then costs ``time x (chunk + 2 halo + time / stride)`` instead of ``time^2`` (the whole input
        is used where that is no cheaper). The weights are unchanged. Measured with the shipped VQ
        enhancer on the real-speech test sets (benchmarks/RESULTS.md): 2 s chunks alone lost
        1.0-1.65 dB SI-SDR (session 30), 1 s chunks with 1 s on each side 0.2-1.0 dB and up to 0.085
        DNSMOS OVRL; with every 8th frame too, the same quality as the whole file (the shipped
        setting since session 31).

        Arguments
        ---------
        frames : int, optional
            Most frames per chunk; None: the whole input (the default).
        halo : int
            Frames each chunk also attends to on each side (0: only to itself).
        stride : int
            Each chunk also attends to every ``stride``-th frame of the whole input outside its
            window, each such key weighted as the ``stride`` frames it stands for (0: none).

        Example
        -------
        >>> model = ConvVQVAE(channels=(16,), codebook_dim=8, codebook_size=16, transformer_layers=1,
        ...                   heads=2).eval()
        >>> spec = torch.rand(2, 50, 257)  # [batch, time, bins]
        >>> model.set_attention_context(20, halo=5)  # chunks of 17, 17 and 16 frames, windows of 27
        >>> model.encoder(spec).shape, model.decoder.attention_context, model.decoder.attention_halo
        (torch.Size([2, 50, 8]), 20, 5)
        """
        if frames is not None and (int(frames) != frames or frames < 1):
            raise ValueError(f"attention context must be a whole number of frames >= 1, got {frames!r}")
        if int(halo) != halo or halo < 0:
            raise ValueError(f"attention halo must be a whole number of frames >= 0, got {halo!r}")
        if int(stride) != stride or stride < 0 or stride == 1:
            raise ValueError(f"attention stride must be 0 (none) or a whole number of frames >= 2, got {stride!r}")
        for stack in (self.encoder, self.decoder):
            stack.attention_context = None if frames is None else int(frames)
            stack.attention_halo = int(halo)
            stack.attention_stride = int(stride)

    def forward(self, spec, lengths=None, target_indices=None, freeze_codebook=None, detach_codes=False):
        """Encodes, quantizes (updating the codebook in training unless frozen) and decodes.

        Arguments
        ---------
        spec : torch.Tensor
            Spectrogram ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        target_indices : torch.Tensor, optional
            ``[batch, time]`` target codes for the quantizer's cross-entropy (``vq.ce_loss``).
        freeze_codebook : bool, optional
            Overrides the quantizer's ``freeze_codebook`` for this call.
        detach_codes : bool
            Decode detached codes, so a reconstruction loss trains the decoder only.

        Returns
        -------
        VQVAEOutput
            ``(spec_hat, z, vq)``.
        """
        z = self.encode(spec, lengths)
        vq = self.quantize(z, lengths, target_indices, freeze_codebook)
        codes = vq.quantized.detach() if detach_codes else vq.quantized
        return VQVAEOutput(self.decode(codes, lengths), z, vq)

    def encode(self, spec, lengths=None):
        """Encoder only.

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``z``: ``[batch, time, codebook_dim]`` (0 on padded frames).
        """
        return self.encoder(spec, lengths)

    def quantize(self, z, lengths=None, target_indices=None, freeze_codebook=None):
        """Quantizer only (see :meth:`VectorQuantizer.forward`).

        Arguments
        ---------
        z : torch.Tensor
            ``[batch, time, codebook_dim]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        target_indices : torch.Tensor, optional
            ``[batch, time]`` target codes (adds ``ce_loss``).
        freeze_codebook : bool, optional
            Overrides the quantizer's ``freeze_codebook`` for this call.

        Returns
        -------
        QuantizerOutput
            The quantizer's output.
        """
        return self.quantizer(
            z, lengths, target_indices=target_indices, freeze_codebook=freeze_codebook
        )

    def decode(self, zq, lengths=None):
        """Decoder only.

        Arguments
        ---------
        zq : torch.Tensor
            ``[batch, time, codebook_dim]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, time, input_size]``, non-negative.
        """
        return self.decoder(zq, lengths)

    def token_logits(self, spec, lengths=None):
        """Cross-entropy logits of each frame over the codes (for a student encoder).

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (padded frames' logits are not masked: ignore them).

        Returns
        -------
        torch.Tensor
            ``[batch, time, codebook_size]``.
        """
        return self.quantizer.logits(self.encode(spec, lengths))
