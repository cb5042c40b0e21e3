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

Padded batches: with ``lengths``, every mean removal is taken over the valid frames only, the
transformers get a key padding mask, and every layer's output is zeroed beyond each utterance's
end (so the convolutions see zeros there, as they see their own zero padding for an utterance
alone). Each utterance of a padded batch therefore gets the same output as alone (up to float
rounding), in eval mode (dropout differs otherwise).

Authors: speechbrain-sqe contributors
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.quantizers import (
    QuantizerOutput,
    VectorQuantizer,
    relative_lengths_to_mask,
)
from speechbrain_sqe.lobes.spectral import num_frames

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


def masked_mean_removal(x, mask=None):
    """Removes each channel's mean over time, the mean taken over valid frames only.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, channels, time]``.
    mask : torch.Tensor, optional
        ``[batch, time]`` bool, True on valid frames; padded frames of the output are 0.

    Returns
    -------
    torch.Tensor
        ``[batch, channels, time]`` with zero mean over (valid) time.

    Example
    -------
    >>> x = torch.randn(2, 4, 10)  # [batch, channels, time]
    >>> mask = torch.arange(10) < torch.tensor([[10], [6]])
    >>> y = masked_mean_removal(x, mask)
    >>> torch.allclose(y[1:, :, :6], masked_mean_removal(x[1:, :, :6]), atol=1e-6)
    True
    >>> float(y[1, :, 6:].abs().sum())
    0.0
    """
    if mask is None:
        return x - x.mean(dim=-1, keepdim=True)
    m = mask.unsqueeze(1).to(x.dtype)
    mean = (x * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
    return (x - mean) * m


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


def resynthesize(
    magnitude,
    noisy_wav,
    n_fft=512,
    hop_length=128,
    win_length=None,
    window_fn=torch.hann_window,
    lengths=None,
):
    """Waveform from a (linear) magnitude spectrogram and the phase of a (noisy) waveform.

    The phase is that of ``torch.stft(noisy_wav)`` with the same centred, reflect-padded framing
    as :func:`~speechbrain_sqe.lobes.spectral.stft_magnitude`; the inverse is ``torch.istft``
    (overlap-add with the same window), so the clean magnitude of a signal with that signal's own
    phase gives the signal back. The model works on ``log1p`` magnitudes: pass
    ``torch.expm1(spec_hat)``.

    Arguments
    ---------
    magnitude : torch.Tensor
        Linear magnitudes ``[batch, frames, n_fft // 2 + 1]`` with ``frames = 1 + samples // hop``.
    noisy_wav : torch.Tensor
        Waveforms ``[batch, samples]`` giving the phase.
    n_fft : int
        FFT size.
    hop_length : int
        Hop in samples.
    win_length : int, optional
        Window length (defaults to ``n_fft``).
    window_fn : callable
        Window constructor (Hann, as the features; a Hamming window also reconstructs at hop 128).
    lengths : torch.Tensor, optional
        Relative waveform lengths ``[batch]``: each utterance is then resynthesised from its own
        samples and frames (as :func:`~speechbrain_sqe.lobes.spectral.stft_magnitude` with
        ``lengths``), the padding of the output being 0.

    Returns
    -------
    torch.Tensor
        Waveforms ``[batch, samples]`` (same length as ``noisy_wav``).

    Example
    -------
    >>> from speechbrain_sqe.lobes.spectral import stft_magnitude
    >>> wav = torch.randn(2, 4000)  # [batch, samples]
    >>> mag = stft_magnitude(wav, hop_length=128)  # [batch, time, channels]
    >>> out = resynthesize(mag, wav)
    >>> out.shape, bool((out - wav).abs().max() < 1e-3)
    (torch.Size([2, 4000]), True)
    """
    win_length = n_fft if win_length is None else win_length
    window = window_fn(win_length, device=noisy_wav.device, dtype=noisy_wav.dtype)

    def _one(mag, wav):
        spec = torch.stft(
            wav, n_fft, hop_length, win_length, window, center=True, pad_mode="reflect",
            return_complex=True,
        )  # [batch, freq, frames]
        # Unit phasor spec / |spec| (1 where the bin is 0, as polar(1, angle(0))): cheaper than
        # angle + polar.
        size = spec.abs()
        phase = torch.where(size > 0, spec / size.clamp(min=torch.finfo(size.dtype).tiny), 1.0)
        frames = spec.shape[-1]
        mag = mag[:, :frames].transpose(1, 2).to(spec.real.dtype)
        return torch.istft(
            mag * phase, n_fft, hop_length, win_length, window, center=True,
            length=wav.shape[-1],
        )

    if lengths is None:
        return _one(magnitude, noisy_wav)
    total = noisy_wav.shape[1]
    abs_samples = torch.round(lengths.float() * total).long().clamp(1, total).tolist()
    groups = {}  # utterances of the same length are resynthesised together
    for index, n in enumerate(abs_samples):
        groups.setdefault(n, []).append(index)
    out = torch.zeros_like(noisy_wav)
    for n, members in groups.items():
        frames = int(num_frames(n, hop_length))
        out[members, :n] = _one(magnitude[members, :frames], noisy_wav[members, :n])
    return out


def _conv(in_channels, out_channels, kernel_size):
    return torch.nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def _apply_mask(x, mask):
    """Zeroes the padded frames of ``[batch, channels, time]``."""
    return x if mask is None else x * mask.unsqueeze(1).to(x.dtype)


def _gelu(x):
    """GELU as a plain function: PyTorch's transformer "fast path" (taken in eval mode for
    ``"gelu"``/``F.gelu``) is about 8 times slower on CPU than the regular path for these small heads
    (d 64, 8 heads: 1.0 s against 0.09 s for 8 x 500 frames, 1 thread); this activation keeps
    the regular path (same arithmetic, up to float rounding)."""
    return F.gelu(x)


def _transformer(d_model, heads, layers, dropout):
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


def _run_transformer(transformer, x, mask):
    """``x`` ``[batch, time, d]`` through a transformer with a key padding mask from ``mask``."""
    if mask is None:
        return transformer(x)
    out = transformer(x, src_key_padding_mask=~mask)
    return out * mask.unsqueeze(-1).to(out.dtype)


class VQVAEEnhancementEncoder(torch.nn.Module):
    """Encoder of the VQScore enhancement VQ-VAE (CNN with mean removals, then a transformer).

    Stages: for each ``c`` in ``channels``, ``a = MR(act(conv(h)))`` (to ``c``),
    ``b = MR(act(conv(a)))`` (``c`` to ``c``), ``h = a + b``; the same to ``output_size``; then
    ``z = MR(transformer(h))``. Convolutions are stored in order in ``convs`` (the authors'
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
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd (same-length convolutions)")
        self.activation = torch.nn.LeakyReLU(negative_slope)
        convs, prev = [], input_size
        for c in list(channels) + [output_size]:
            convs += [_conv(prev, c, kernel_size), _conv(c, c, kernel_size)]
            prev = c
        self.convs = torch.nn.ModuleList(convs)
        self.transformer = _transformer(output_size, heads, transformer_layers, dropout)

    def forward(self, spec, lengths=None):
        """Encodes a spectrogram.

        Arguments
        ---------
        spec : torch.Tensor
            ``[batch, time, input_size]`` (``log1p`` magnitudes).
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (masked mean removals and attention; padded frames of
            ``z`` are 0).

        Returns
        -------
        torch.Tensor
            ``z``: ``[batch, time, output_size]``.
        """
        mask = relative_lengths_to_mask(lengths, spec.shape[1], device=spec.device)
        h = masked_mean_removal(spec.transpose(1, 2), mask)
        for stage in range(len(self.convs) // 2):
            a = masked_mean_removal(self.activation(self.convs[2 * stage](h)), mask)
            b = masked_mean_removal(self.activation(self.convs[2 * stage + 1](a)), mask)
            h = a + b
        z = _run_transformer(self.transformer, h.transpose(1, 2), mask)
        return masked_mean_removal(z.transpose(1, 2), mask).transpose(1, 2)


class VQVAEEnhancementDecoder(torch.nn.Module):
    """Decoder of the VQScore enhancement VQ-VAE (transformer, then a CNN with skip sums).

    ``h = act(conv(transformer(zq)))`` (``input_size`` to ``input_size``); for each ``c`` in
    ``channels`` (given in encoder order, used reversed): ``a = act(conv(h))``,
    ``b = act(conv(a))``, ``h = a + b``; ``out = relu(conv(h))`` to ``output_size``. Convolutions
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
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd (same-length convolutions)")
        self.activation = torch.nn.LeakyReLU(negative_slope)
        self.transformer = _transformer(input_size, heads, transformer_layers, dropout)
        convs, prev = [_conv(input_size, input_size, kernel_size)], input_size
        for c in reversed(list(channels)):
            convs += [_conv(prev, c, kernel_size), _conv(c, c, kernel_size)]
            prev = c
        convs.append(_conv(prev, output_size, kernel_size))
        self.convs = torch.nn.ModuleList(convs)

    def forward(self, zq, lengths=None):
        """Decodes codes into a (``log1p``) magnitude spectrogram.

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
        h = _run_transformer(self.transformer, zq, mask).transpose(1, 2)
        h = _apply_mask(self.activation(self.convs[0](h)), mask)
        for stage in range((len(self.convs) - 2) // 2):
            a = _apply_mask(self.activation(self.convs[1 + 2 * stage](h)), mask)
            b = _apply_mask(self.activation(self.convs[2 + 2 * stage](a)), mask)
            h = a + b
        out = _apply_mask(F.relu(self.convs[-1](h)), mask)
        return out.transpose(1, 2)


class VQVAEEnhancementOutput(NamedTuple):
    """What :meth:`VQVAEEnhancementModel.forward` returns (unpacks as ``spec_hat, z, vq``).

    Attributes
    ----------
    spec_hat : torch.Tensor
        Reconstructed spectrogram ``[batch, time, freq]``.
    z : torch.Tensor
        Encoder output ``[batch, time, codebook_dim]``.
    vq : QuantizerOutput
        The quantizer's output (``quantized``, ``indices``, ``commit_loss``, ``ce_loss``...).
    """

    spec_hat: torch.Tensor
    z: torch.Tensor
    vq: QuantizerOutput


class VQVAEEnhancementModel(torch.nn.Module):
    """VQScore enhancement VQ-VAE: encoder, Euclidean vector quantizer and decoder.

    Step 1 (clean speech): ``45 * spectral_convergence_loss(spec, spec_hat, lengths) + vq.loss``
    (``vq.loss = commitment_weight * commit_loss``). Step 2 (adversarial robustness): a student
    encoder is trained with the codebook frozen on ``vq.ce_loss`` against the teacher's indices
    of the clean input (see :mod:`speechbrain_sqe.lobes.adversarial`). Enhancement:
    :meth:`enhance_spec`, then :func:`resynthesize` with ``torch.expm1`` of the output.

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
        super().__init__()
        # The constructor arguments, so an export can write a hyperparams file that rebuilds it.
        self.config = {
            "input_size": input_size, "channels": list(channels), "codebook_dim": codebook_dim,
            "codebook_size": codebook_size, "kernel_size": kernel_size, "negative_slope": negative_slope,
            "transformer_layers": transformer_layers, "heads": heads, "dropout": dropout,
            "distance": distance, "ema_update": ema_update, "decay": decay, "eps": eps, "kmeans_init": kmeans_init,
            "kmeans_iters": kmeans_iters, "threshold_ema_dead_code": threshold_ema_dead_code,
            "commitment_weight": commitment_weight, "ce_temperature": ce_temperature,
            "euclidean_logits": euclidean_logits, "freeze_codebook": freeze_codebook,
        }
        self.encoder = VQVAEEnhancementEncoder(
            input_size, channels, codebook_dim, kernel_size, negative_slope,
            transformer_layers, heads, dropout,
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
        self.decoder = VQVAEEnhancementDecoder(
            codebook_dim, channels, input_size, kernel_size, negative_slope,
            transformer_layers, heads, dropout,
        )

    def forward(self, spec, lengths=None, target_indices=None, freeze_codebook=None, detach_codes=False):
        """Encodes, quantizes (updating the codebook in training unless frozen) and decodes.

        Arguments
        ---------
        spec : torch.Tensor
            ``log1p`` magnitude spectrogram ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        target_indices : torch.Tensor, optional
            ``[batch, time]`` target codes for the quantizer's cross-entropy (``vq.ce_loss``).
        freeze_codebook : bool, optional
            Overrides the quantizer's ``freeze_codebook`` for this call.
        detach_codes : bool
            Decode detached codes, so a reconstruction loss trains the decoder only (step 2,
            where the encoder learns from the cross-entropy alone).

        Returns
        -------
        VQVAEEnhancementOutput
            ``(spec_hat, z, vq)``.
        """
        z = self.encode(spec, lengths)
        vq = self.quantize(z, lengths, target_indices, freeze_codebook)
        codes = vq.quantized.detach() if detach_codes else vq.quantized
        return VQVAEEnhancementOutput(self.decode(codes, lengths), z, vq)

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
            ``[batch, time, input_size]`` non-negative (``log1p`` magnitudes).
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
            ``[batch, time, codebook_size]`` (minus the distance to each code, by default).
        """
        return self.quantizer.logits(self.encode(spec, lengths))

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
        vq = self.quantizer(z, lengths, freeze_codebook=True)
        return self.decode(vq.quantized, lengths)


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


def enhance_waveforms(model, wavs, lengths=None, n_fft=512, hop_length=128, mix=0.0):
    """Enhances waveforms with a trained :class:`VQVAEEnhancementModel` (the whole SE chain).

    ``log1p |STFT|`` -> :meth:`VQVAEEnhancementModel.enhance_spec` -> ``expm1`` -> resynthesis
    with the noisy phase -> optional blend with the input (:func:`mix_with_input`). Each utterance
    of a padded batch is processed as alone; the padding of the output is 0. Put the model in
    ``eval()`` mode first (dropout).

    Arguments
    ---------
    model : VQVAEEnhancementModel
        The trained model.
    wavs : torch.Tensor
        Noisy waveforms ``[batch, samples]`` (16 kHz for the shipped models).
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    n_fft : int
        FFT size of the model's front end.
    hop_length : int
        Hop of the model's front end.
    mix : float
        Fraction of the noisy input in the output.

    Returns
    -------
    torch.Tensor
        Enhanced waveforms ``[batch, samples]``.

    Example
    -------
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8).eval()
    >>> wavs = torch.randn(2, 8000)  # [batch, samples]
    >>> enhance_waveforms(model, wavs, torch.tensor([1.0, 0.5]), mix=0.2).shape
    torch.Size([2, 8000])
    """
    from speechbrain_sqe.lobes.spectral import frame_lengths, stft_magnitude

    spec = stft_magnitude(wavs, n_fft, hop_length, n_fft, lengths=lengths, log1p=True)
    frame_lens = None if lengths is None else frame_lengths(lengths, wavs.shape[1], hop_length, n_fft=n_fft)
    magnitude = torch.expm1(model.enhance_spec(spec, frame_lens)).clamp(min=0.0)
    enhanced = resynthesize(magnitude, wavs, n_fft, hop_length, lengths=lengths)
    return mix_with_input(enhanced, wavs, mix)
