"""VQ-VAE of the speech-enhancement half of VQScore (Fu et al., "Self-Supervised Speech Quality
Estimation and Enhancement Using Only Clean Speech", ICLR 2024).

Trained on clean speech only, on ``log1p`` magnitude spectrograms (16 kHz, ``n_fft=512``, hop 128);
enhancement encodes a noisy spectrogram, replaces each frame by its nearest (clean) code and
decodes; the waveform is resynthesised with the noisy phase.

Layout (defaults = the authors' enhancement model, d = 128, about 2.9 M parameters)::

    spec [B, T, 257] -> mean removal over time (per channel)
    enc1 = MR(act(conv(x)))          257 -> 200
    enc2 = MR(act(conv(enc1)))       200 -> 200
    enc3 = MR(act(conv(enc1+enc2)))  200 -> 150
    enc4 = MR(act(conv(enc3)))       150 -> 150
    enc5 = MR(act(conv(enc3+enc4)))  150 -> d
    enc6 = MR(act(conv(enc5)))         d -> d
    z    = MR(transformer(enc5+enc6))  2 layers, 8 heads, ff d, dropout 0.4, GELU
    zq   = VQ(z)                      4096 x d Euclidean codebook, EMA (decay 0.8), k-means init
    h    = transformer(zq)             2 layers (same configuration)
    dec1 = act(conv(h))                d -> d
    dec2 = act(conv(dec1))             d -> 150
    dec3 = act(conv(dec2))           150 -> 150
    dec4 = act(conv(dec3+dec2))      150 -> 200
    dec5 = act(conv(dec4))           200 -> 200
    out  = relu(conv(dec5+dec4))     200 -> 257

``conv`` is a Conv1d over time (kernel 7, "same" padding), ``act`` LeakyReLU(0.3), ``MR`` the
removal of each channel's mean over time (no variance normalisation); the transformers have no
positional encoding. Step-1 training loss: ``45 * spectral_convergence_loss(spec, spec_hat) +
3 * commit_loss`` (``vq.loss`` already carries the commitment weight).

What matches the authors' enhancement model: the layout above, the mean removals, the
transformers, the Euclidean EMA codebook with k-means initialisation, the ``log1p`` front end and
the resynthesis with the noisy phase, the step-2 student trained on the teacher's codes under a
waveform attack (:mod:`speechbrain_sqe.lobes.adversarial`). What differs: padded batches (below);
:func:`spectral_convergence_loss` defaults to the Frobenius norm (``p=2``) where the authors' code
uses the L1 norm (``p=1``, available); :func:`mix_with_input` (blending the input back in) is an
addition.

Padded batches: with ``lengths``, every mean removal is taken over the valid frames only, the
transformers get a key padding mask, and every layer's output is zeroed beyond each utterance's
end (so the convolutions see zeros there, as they see their own zero padding for an utterance
alone). Each utterance of a padded batch therefore gets the same output as alone (up to float
rounding), in eval mode (dropout differs otherwise).

The encoder, decoder and wiring are :mod:`speechbrain_sqe.lobes.conv_stack`'s (shared with the
quality model of :mod:`speechbrain_sqe.lobes.vqvae`): ``norm="mean"``, a residual last encoder
stage, transformers after the encoder's and before the decoder's convolutions. The state-dict keys
are ``encoder.convs.N.*``, ``encoder.transformer.*``, ``quantizer.*``, ``decoder.transformer.*`` and
``decoder.convs.N.*``. The front end (``log1p`` magnitudes, resynthesis with the noisy phase) is
:class:`speechbrain_sqe.lobes.frontend.SpectralFrontEnd`, which :func:`enhance_waveforms` takes.

Authors: speechbrain-sqe contributors
"""

import torch  # noqa: F401  (the doctests)

from speechbrain_sqe.lobes.conv_stack import (
    ConvDecoderStack,
    ConvEncoderStack,
    ConvVQVAE,
    VQVAEOutput,
)
from speechbrain_sqe.lobes.frontend import resynthesize
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import masked_mean_removal, relative_lengths_to_mask

__all__ = [
    "VQVAEEnhancementDecoder",
    "VQVAEEnhancementEncoder",
    "VQVAEEnhancementModel",
    "VQVAEEnhancementOutput",
    "enhance_waveforms",
    "masked_mean_removal",
    "mix_with_input",
    "resynthesize",
    "spectral_convergence_loss",
]


def spectral_convergence_loss(x, x_hat, lengths=None, eps=1e-8, p=2):
    """Spectral convergence ``||x - x_hat|| / ||x||`` per utterance, averaged over the batch.

    ``p=2`` is the usual Frobenius form; the authors' enhancement code uses the L1 norm (``p=1``).

    Arguments
    ---------
    x : torch.Tensor
        Reference spectrogram ``[batch, time, freq]`` (``log1p`` magnitudes for the SE model).
    x_hat : torch.Tensor
        Reconstruction ``[batch, time, freq]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``; padded frames are excluded from both norms.
    eps : float
        Added to the reference norm.
    p : int
        1 (sum of absolute values) or 2 (Frobenius).

    Returns
    -------
    torch.Tensor
        Scalar loss (0 = perfect reconstruction).

    Example
    -------
    >>> x = torch.rand(2, 10, 257)  # [batch, time, channels]
    >>> float(spectral_convergence_loss(x, x))
    0.0
    >>> round(float(spectral_convergence_loss(x, 0.5 * x)), 4)
    0.5
    >>> round(float(spectral_convergence_loss(x, 0.5 * x, p=1)), 4)
    0.5
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    diff = (x - x_hat).abs().pow(p).sum(-1)
    ref = x.abs().pow(p).sum(-1)
    mask = relative_lengths_to_mask(lengths, x.shape[1], device=x.device)
    if mask is not None:
        m = mask.to(diff.dtype)
        diff, ref = diff * m, ref * m
    diff, ref = diff.sum(1), ref.sum(1)
    if p == 2:
        diff, ref = diff.sqrt(), ref.sqrt()
    return (diff / (ref + eps)).mean()


class VQVAEEnhancementEncoder(ConvEncoderStack):
    """Encoder of the VQScore enhancement VQ-VAE (CNN with mean removals, then a transformer).

    Stages: for each ``c`` in ``channels``, ``a = MR(act(conv(h)))`` (to ``c``),
    ``b = MR(act(conv(a)))`` (``c`` to ``c``), ``h = a + b``; the same to ``output_size``; then
    ``z = MR(transformer(h))``: a :class:`ConvEncoderStack` with ``norm="mean"``, a residual last
    stage and a transformer. Convolutions are stored in order in ``convs`` (the authors'
    ``conv_enc1`` ... ``conv_enc6`` for the defaults).

    Arguments
    ---------
    input_size : int
        Frequency bins of the input (257).
    channels : sequence of int
        Channels of the residual stages (``(200, 150)``).
    output_size : int
        Dimension of ``z`` (the codebook dimension, 128).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    transformer_layers : int
        Transformer encoder layers (``d_model = dim_feedforward = output_size``).
    heads : int
        Attention heads (must divide ``output_size``).
    dropout : float
        Transformer dropout.

    Example
    -------
    >>> enc = VQVAEEnhancementEncoder().eval()
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> enc(spec, torch.tensor([1.0, 0.5])).shape  # [batch, time, channels]
    torch.Size([2, 40, 128])
    """

    def __init__(
        self,
        input_size=257,
        channels=(200, 150),
        output_size=128,
        kernel_size=7,
        negative_slope=0.3,
        transformer_layers=2,
        heads=8,
        dropout=0.4,
    ):
        super().__init__(
            input_size, channels, output_size, kernel_size, negative_slope, norm="mean",
            input_norm=True, residual_last_stage=True, transformer_layers=transformer_layers,
            heads=heads, dropout=dropout,
        )


class VQVAEEnhancementDecoder(ConvDecoderStack):
    """Decoder of the VQScore enhancement VQ-VAE (transformer, then a CNN with skip sums).

    ``h = act(conv(transformer(zq)))`` (``input_size`` to ``input_size``); for each ``c`` in
    ``channels`` (given in encoder order, used reversed): ``a = act(conv(h))``,
    ``b = act(conv(a))``, ``h = a + b``; ``out = relu(conv(h))`` to ``output_size``: a :class:`ConvDecoderStack` with
    a transformer. Convolutions
    are stored in order in ``convs`` (the authors' ``conv_dec1`` ... ``conv_dec6``).

    Arguments
    ---------
    input_size : int
        Dimension of the codes (128).
    channels : sequence of int
        Channels of the encoder's residual stages (``(200, 150)``); run reversed here.
    output_size : int
        Frequency bins of the output (257).
    kernel_size : int
        Odd convolution kernel size over time.
    negative_slope : float
        LeakyReLU slope.
    transformer_layers : int
        Transformer encoder layers.
    heads : int
        Attention heads.
    dropout : float
        Transformer dropout.

    Example
    -------
    >>> dec = VQVAEEnhancementDecoder().eval()
    >>> zq = torch.randn(2, 40, 128)  # [batch, time, channels]
    >>> dec(zq).shape  # [batch, time, channels]
    torch.Size([2, 40, 257])
    """

    def __init__(
        self,
        input_size=128,
        channels=(200, 150),
        output_size=257,
        kernel_size=7,
        negative_slope=0.3,
        transformer_layers=2,
        heads=8,
        dropout=0.4,
    ):
        super().__init__(
            input_size, channels, output_size, kernel_size, negative_slope,
            transformer_layers=transformer_layers, heads=heads, dropout=dropout,
        )


#: What :meth:`VQVAEEnhancementModel.forward` returns (unpacks as ``spec_hat, z, vq``): the
#: shared :class:`~speechbrain_sqe.lobes.conv_stack.VQVAEOutput`.
VQVAEEnhancementOutput = VQVAEOutput


@record_init_args
class VQVAEEnhancementModel(ConvVQVAE):
    """VQScore enhancement VQ-VAE: encoder, Euclidean vector quantizer and decoder.

    Step 1 (clean speech): ``45 * spectral_convergence_loss(spec, spec_hat, lengths) + vq.loss``
    (``vq.loss = commitment_weight * commit_loss``). Step 2 (adversarial robustness): a student
    encoder is trained with the codebook frozen on ``vq.ce_loss`` against the teacher's indices
    of the clean input (see :mod:`speechbrain_sqe.lobes.adversarial`). Enhancement:
    :meth:`enhance_spec`, then the front end's
    :meth:`~speechbrain_sqe.lobes.frontend.SpectralFrontEnd.resynthesize` (:func:`enhance_waveforms`).

    A :class:`~speechbrain_sqe.lobes.conv_stack.ConvVQVAE` with mean removals, a residual last
    encoder stage and transformers (``forward``, ``encode``, ``quantize``, ``decode`` and
    ``token_logits`` come from there). The constructor arguments are recorded in ``init_args``
    (also ``config``).

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
    transformer_layers : int
        Layers of each transformer (encoder and decoder).
    heads : int
        Attention heads.
    dropout : float
        Transformer dropout.
    distance : str
        ``"euclidean"`` (the authors') or ``"cosine"``.
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
        Dead-code restart threshold (0 = off).
    commitment_weight : float
        Weight of the commitment loss in ``vq.loss`` (3 for step 1).
    ce_temperature : float
        Temperature of the quantizer's cross-entropy logits.
    euclidean_logits : str
        Euclidean-mode logits: ``"distance"`` (the authors' ``-cdist``) or ``"squared_distance"``.
    freeze_codebook : bool
        Never update the codebook (step 2).
    sync_distributed : bool
        Synchronise the codebook across DDP processes.

    Example
    -------
    >>> model = VQVAEEnhancementModel(codebook_size=64)
    >>> spec = torch.rand(2, 40, 257)  # [batch, time, channels]
    >>> lengths = torch.tensor([1.0, 0.75])
    >>> spec_hat, z, vq = model(spec, lengths)
    >>> spec_hat.shape, z.shape, vq.indices.shape  # [batch, time, channels]
    (torch.Size([2, 40, 257]), torch.Size([2, 40, 128]), torch.Size([2, 40]))
    >>> loss = 45 * spectral_convergence_loss(spec, spec_hat, lengths) + vq.loss
    >>> model.token_logits(spec, lengths).shape  # [batch, time, codebook_size]
    torch.Size([2, 40, 64])
    >>> _ = model.eval()
    >>> model.enhance_spec(spec, lengths).shape
    torch.Size([2, 40, 257])
    >>> model.init_args["channels"], model.init_args["codebook_size"]
    ([200, 150], 64)
    """

    def __init__(
        self,
        input_size=257,
        channels=(200, 150),
        codebook_dim=128,
        codebook_size=4096,
        kernel_size=7,
        negative_slope=0.3,
        transformer_layers=2,
        heads=8,
        dropout=0.4,
        distance="euclidean",
        ema_update=True,
        decay=0.8,
        eps=1e-5,
        kmeans_init=True,
        kmeans_iters=10,
        threshold_ema_dead_code=0.0,
        commitment_weight=3.0,
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
            norm="mean",
            input_norm=True,
            residual_last_stage=True,
            transformer_layers=transformer_layers,
            heads=heads,
            dropout=dropout,
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

    def enhance_spec(self, noisy_spec, lengths=None):
        """Encodes, takes the nearest code of each frame (codebook never updated) and decodes.

        Arguments
        ---------
        noisy_spec : torch.Tensor
            ``[batch, time, input_size]`` (``log1p`` magnitudes).
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            Enhanced ``log1p`` magnitudes ``[batch, time, input_size]`` (0 on padded frames).
        """
        z = self.encode(noisy_spec, lengths)
        return self.decode(self.quantize(z, lengths, freeze_codebook=True).quantized, lengths)


def mix_with_input(enhanced, noisy, mix=0.0):
    """Blends an enhanced waveform with its input: ``(1 - mix) * enhanced + mix * noisy``.

    VQ resynthesis removes noise but also distorts speech; giving back a little of the input trades
    noise for naturalness (the paper's open question, measured in the recipe's ablation).

    Arguments
    ---------
    enhanced : torch.Tensor
        Enhanced waveforms ``[batch, samples]``.
    noisy : torch.Tensor
        The input waveforms ``[batch, samples]``.
    mix : float
        Fraction of the input in the output, in ``[0, 1]`` (0: enhanced only).

    Returns
    -------
    torch.Tensor
        ``[batch, samples]``.

    Example
    -------
    >>> mix_with_input(torch.zeros(1, 4), torch.ones(1, 4), 0.25)
    tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    mix = float(mix or 0.0)
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1] (the fraction of the input kept), got {mix}")
    if mix == 0.0:
        return enhanced
    return (1.0 - mix) * enhanced + mix * noisy


def enhance_waveforms(model, frontend, wavs, lengths=None, mix=0.0):
    """Enhances waveforms with a trained :class:`VQVAEEnhancementModel` (the whole SE chain).

    ``frontend(wavs)`` (``log1p |STFT|``) -> :meth:`VQVAEEnhancementModel.enhance_spec` ->
    ``frontend.resynthesize`` (``expm1``, clamp at 0, noisy phase, iSTFT with the same framing) ->
    optional blend with the input (:func:`mix_with_input`). The front end is the one the model was
    trained with (the ``frontend`` of the recipe and of the hub folder), so a change of the
    STFT in the YAML reaches training, validation, test and inference alike. Each utterance of a
    padded batch is processed as alone; the padding of the output is 0. Put the model in
    ``eval()`` mode first (dropout).

    Arguments
    ---------
    model : VQVAEEnhancementModel
        The trained model.
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its front end (``forward``, ``frame_lengths`` and ``resynthesize``).
    wavs : torch.Tensor
        Noisy waveforms ``[batch, samples]`` (16 kHz for the shipped models).
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    mix : float
        Fraction of the noisy input in the output.

    Returns
    -------
    torch.Tensor
        Enhanced waveforms ``[batch, samples]``.

    Example
    -------
    >>> from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8).eval()
    >>> frontend = SpectralFrontEnd(n_fft=512, hop_length=128, log1p=True)
    >>> wavs = torch.randn(2, 8000)  # [batch, samples]
    >>> enhance_waveforms(model, frontend, wavs, torch.tensor([1.0, 0.5]), mix=0.2).shape
    torch.Size([2, 8000])
    """
    spec = frontend(wavs, lengths)
    frame_lens = None if lengths is None else frontend.frame_lengths(lengths, wavs.shape[1])
    enhanced = frontend.resynthesize(model.enhance_spec(spec, frame_lens), wavs, lengths)
    return mix_with_input(enhanced, wavs, mix)
