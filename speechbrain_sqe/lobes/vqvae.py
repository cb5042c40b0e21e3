"""VQ-VAE of VQScore (Fu et al., "Self-Supervised Speech Quality Estimation and Enhancement Using
Only Clean Speech", ICLR 2024): a 1-D CNN autoencoder on magnitude spectrograms with a cosine
vector quantizer. Trained on clean speech only; the quality of an utterance is the mean over frames
of ``cos(z_t, q(z_t))``, the cosine similarity between the encoder output and its code.

Layout (defaults = the authors' quality-estimation model, about 0.9 M parameters)::

    spec [B, T, 257] -> InstanceNorm over time
    enc1 = IN(act(conv(x)))          257 -> 128
    enc2 = IN(act(conv(enc1)))       128 -> 128
    enc3 = IN(act(conv(enc1+enc2)))  128 -> 64
    enc4 = IN(act(conv(enc3)))        64 -> 64
    enc5 = IN(act(conv(enc3+enc4)))   64 -> 32
    z    = IN(conv(enc5))             32 -> 32
    zq   = VQ(z)                      2048 x 32 cosine codebook, EMA, k-means init
    dec1 = act(conv(zq))              32 -> 32
    dec2 = act(conv(dec1))            32 -> 64
    dec3 = act(conv(dec2))            64 -> 64
    dec4 = act(conv(dec3+dec2))       64 -> 128
    dec5 = act(conv(dec4))           128 -> 128
    out  = relu(conv(dec5+dec4))     128 -> 257

with ``conv`` a Conv1d over time (frequency as channels, kernel 7, stride 1, "same" padding),
``act`` LeakyReLU(0.3) and ``IN`` an instance norm over time without affine parameters. The
training loss is ``45 * spectral_cosine_loss(spec, spec_hat) + 1.0 * commit_loss``.

What matches the authors' quality-estimation model: the layout above (layer order, sizes, kernel,
activation, instance norms without affine parameters, skip sums, ReLU output), the cosine codebook
(L2-normalised, EMA, k-means initialisation; :mod:`speechbrain_sqe.lobes.quantizers`), the loss
and the score (the mean over frames of ``cos(z_t, q(z_t))``, computed with the frozen codebook and
no decoder). What differs: padded batches (below; the authors score one utterance at a time).

Padded batches: an instance norm over a padded utterance would include the padded frames in its
statistics, and the convolutions would see padding values where an utterance alone sees the
convolution's zero padding. With ``lengths``, every norm here is a masked instance norm (statistics
over the valid frames only) and every layer's output is zeroed beyond each utterance's end, so
each utterance of a padded batch gets the same ``z``, codes and score as alone.

The encoder, decoder and wiring are :mod:`speechbrain_sqe.lobes.conv_stack`'s (shared with the
enhancement model of :mod:`speechbrain_sqe.lobes.vqvae_se`): ``norm="instance"``, the plain last
encoder stage, no transformers. The state-dict keys are ``encoder.convs.N.*``, ``quantizer.*`` and
``decoder.convs.N.*``.

Authors: speechbrain-sqe contributors
"""

import torch

from speechbrain_sqe.lobes.conv_stack import (
    ConvDecoderStack,
    ConvEncoderStack,
    ConvVQVAE,
    VQVAEOutput,
)
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import (
    masked_instance_norm,
    masked_mean,
    relative_lengths_to_mask,
)
from speechbrain_sqe.lobes.quantizers import COSINE_EPS, cosine_similarity

__all__ = [
    "VQVAEOutput",
    "VQVAEQualityDecoder",
    "VQVAEQualityEncoder",
    "VQVAEQualityModel",
    "masked_instance_norm",
    "spectral_cosine_loss",
]


def spectral_cosine_loss(x, x_hat, lengths=None, eps=COSINE_EPS):
    """Minus the mean over valid frames of the cosine similarity of two spectrograms.

    Per frame ``sum(x / (||x|| + eps) * x_hat / (||x_hat|| + eps))`` over frequency, as the
    authors' ``cos_loss`` (on linear magnitudes for VQScore).

    Arguments
    ---------
    x : torch.Tensor
        Reference ``[batch, time, freq]``.
    x_hat : torch.Tensor
        Reconstruction ``[batch, time, freq]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``; padded frames are excluded.
    eps : float
        Added to each frame's norm.

    Returns
    -------
    torch.Tensor
        Scalar loss in ``[-1, 1]`` (-1 = identical directions).

    Example
    -------
    >>> x = torch.rand(2, 10, 257)  # [batch, time, channels]
    >>> float(spectral_cosine_loss(x, 3 * x)) < -0.9999
    True
    """
    cos = cosine_similarity(x, x_hat, eps=eps)
    return -masked_mean(cos, relative_lengths_to_mask(lengths, x.shape[1], device=x.device))


class VQVAEQualityEncoder(ConvEncoderStack):
    """Encoder of the VQScore VQ-VAE (1-D CNN with instance norms and skip sums).

    Stages: for each ``c`` in ``channels``, ``a = IN(act(conv(h)))`` (to ``c``),
    ``b = IN(act(conv(a)))`` (``c`` to ``c``), ``h = a + b``; then ``e = IN(act(conv(h)))`` (to
    ``output_size``) and ``z = IN(conv(e))``: a :class:`ConvEncoderStack` with ``norm="instance"``
    and the plain last stage. Convolutions are stored in order in ``convs`` (the authors'
    ``conv_enc1`` ... ``conv_enc6`` for the defaults).

    Arguments
    ---------
    input_size : int
        Frequency bins of the input (257).
    channels : sequence of int
        Channels of the residual stages (``(128, 64)``).
    output_size : int
        Dimension of ``z`` (the codebook dimension, 32).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    input_norm : bool
        Instance-normalise the input spectrogram first.
    norm_eps : float
        Epsilon of the instance norms.

    Example
    -------
    >>> enc = VQVAEQualityEncoder()
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> enc(spec).shape  # [batch, time, channels]
    torch.Size([2, 40, 32])
    """

    def __init__(
        self,
        input_size=257,
        channels=(128, 64),
        output_size=32,
        kernel_size=7,
        negative_slope=0.3,
        input_norm=True,
        norm_eps=1e-5,
    ):
        super().__init__(
            input_size, channels, output_size, kernel_size, negative_slope, norm="instance",
            norm_eps=norm_eps, input_norm=input_norm, residual_last_stage=False,
        )


class VQVAEQualityDecoder(ConvDecoderStack):
    """Decoder of the VQScore VQ-VAE (mirror of the encoder, no norms, ReLU output).

    ``h = act(conv(zq))`` (``input_size`` to ``input_size``); for each ``c`` in ``channels``
    (given in encoder order, used reversed): ``a = act(conv(h))``, ``b = act(conv(a))``,
    ``h = a + b``; ``out = relu(conv(h))`` to ``output_size``: a :class:`ConvDecoderStack` without
    transformer. Convolutions are stored in order in ``convs`` (the authors' ``conv_dec1`` ...
    ``conv_dec6`` for the defaults).

    Arguments
    ---------
    input_size : int
        Dimension of the codes (32).
    channels : sequence of int
        Channels of the encoder's residual stages (``(128, 64)``); the decoder runs them reversed.
    output_size : int
        Frequency bins of the output (257).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.

    Example
    -------
    >>> dec = VQVAEQualityDecoder()
    >>> zq = torch.randn(2, 40, 32)  # [batch, time, channels]
    >>> dec(zq).shape  # [batch, time, channels]
    torch.Size([2, 40, 257])
    """

    def __init__(
        self, input_size=32, channels=(128, 64), output_size=257, kernel_size=7, negative_slope=0.3
    ):
        super().__init__(input_size, channels, output_size, kernel_size, negative_slope)


@record_init_args
class VQVAEQualityModel(ConvVQVAE):
    """VQScore VQ-VAE: encoder, vector quantizer and decoder (defaults = the authors' QE model).

    A :class:`~speechbrain_sqe.lobes.conv_stack.ConvVQVAE` with instance norms, the plain last
    encoder stage and no transformers (``forward``, ``encode``, ``quantize``, ``decode`` and
    ``token_logits`` come from there); adds the VQScore itself (:meth:`score_frames`,
    :meth:`score`). The constructor arguments are recorded in ``init_args`` (also ``config``).

    Arguments
    ---------
    input_size : int
        Frequency bins (257 for ``n_fft=512``).
    channels : sequence of int
        Channels of the residual stages of the encoder (reversed in the decoder).
    codebook_dim : int
        Dimension of ``z`` and of the codes.
    codebook_size : int
        Number of codes.
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    distance : str
        ``"cosine"`` (VQScore) or ``"euclidean"``.
    ema_update : bool
        EMA codebook (True) or learned codebook (False).
    decay : float
        EMA decay.
    eps : float
        Laplace smoothing of the EMA cluster sizes.
    kmeans_init : bool
        k-means initialisation of the codebook on the first training batch.
    kmeans_iters : int
        k-means iterations.
    threshold_ema_dead_code : float
        Dead-code restart threshold (0 = off, as the authors).
    commitment_weight : float
        Weight of the commitment loss in ``vq.loss``.
    ce_temperature : float
        Temperature of the quantizer's cross-entropy logits.
    euclidean_logits : str
        Euclidean-mode cross-entropy logits: ``"distance"`` or ``"squared_distance"``.
    freeze_codebook : bool
        Never update the codebook (e.g. when training a student encoder against a fixed codebook).
    sync_distributed : bool
        Synchronise the codebook across DDP processes.

    Example
    -------
    >>> model = VQVAEQualityModel()
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> lengths = torch.tensor([1.0, 0.75])
    >>> spec_hat, z, vq = model(spec, lengths)
    >>> spec_hat.shape, z.shape, vq.indices.shape  # [batch, time, channels]
    (torch.Size([2, 40, 257]), torch.Size([2, 40, 32]), torch.Size([2, 40]))
    >>> model.score_frames(spec, lengths).shape  # [batch, time]
    torch.Size([2, 40])
    >>> model.score(spec, lengths).shape  # [batch]
    torch.Size([2])
    >>> model.init_args["channels"], model.init_args["codebook_size"]
    ([128, 64], 2048)
    >>> VQVAEQualityModel(**model.init_args).init_args == model.init_args
    True
    """

    def __init__(
        self,
        input_size=257,
        channels=(128, 64),
        codebook_dim=32,
        codebook_size=2048,
        kernel_size=7,
        negative_slope=0.3,
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
        super().__init__(
            input_size=input_size,
            channels=channels,
            codebook_dim=codebook_dim,
            codebook_size=codebook_size,
            kernel_size=kernel_size,
            negative_slope=negative_slope,
            norm="instance",
            input_norm=True,
            residual_last_stage=False,
            transformer_layers=None,
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

    def score_frames(self, spec, lengths=None, search_dtype=None):
        """Per-frame VQScore ``cos(z_t, q(z_t))`` (encoder and frozen codebook; no decoder).

        Never updates the codebook, whatever the train/eval mode. Gradients with respect to the
        input are kept (wrap in ``torch.no_grad()`` for plain inference).

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        search_dtype : torch.dtype, optional
            ``torch.bfloat16`` for the fast nearest-code search
            (:meth:`~speechbrain_sqe.lobes.quantizers.VectorQuantizer.nearest_similarity`).

        Returns
        -------
        torch.Tensor
            ``[batch, time]`` similarities in ``[-1, 1]`` (0 on padded frames).
        """
        z = self.encode(spec, lengths)
        if search_dtype is None and torch.is_grad_enabled():
            return self.quantizer(z, lengths, freeze_codebook=True).similarity
        return self.quantizer.nearest_similarity(z, lengths, search_dtype=search_dtype)

    def score(self, spec, lengths=None, search_dtype=None):
        """Utterance VQScore: mean of :meth:`score_frames` over the valid frames (higher = better).

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        search_dtype : torch.dtype, optional
            ``torch.bfloat16`` for the fast nearest-code search (see :meth:`score_frames`).

        Returns
        -------
        torch.Tensor
            ``[batch]`` scores.
        """
        frames = self.score_frames(spec, lengths, search_dtype)
        mask = relative_lengths_to_mask(lengths, frames.shape[1], device=frames.device)
        return masked_mean(frames, mask, dim=1)
