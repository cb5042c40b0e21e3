"""Spectrum-aware SSL vocoder: a HiFi-GAN generator driven by weighted TERA layers fused with the noisy
spectrum (Song, Kim, Kang, Madhu, "Spectrum-Aware Neural Vocoder Based on Self-Supervised Learning
for Speech Enhancement", EUSIPCO 2024; baseline DeVo: Irvin et al., ICASSP 2023).

Layout::

    noisy wav -> SpectralFrontEnd (n_fft 400, hop 160, Hann, centred) -> log1p |X| or |X|   [B, T, 201]
    noisy wav -> SSL upstream -> L hidden states -> per-layer LayerNorm -> softmax-weighted sum
              (or the last layer only) -> frames aligned to the spectrum's (any SSL hop)      [B, T, D_ssl]
    fusion (SpectrumSSLFusion, model_dim d):
        cross_attention  q = Linear(spec), k = v = Linear(ssl); LayerNorm(q + MHA(q, k, v))
        add              Linear(spec) + Linear(ssl)
        film             Linear(spec) * (1 + gamma(ssl)) + beta(ssl)
        none             Linear(ssl)                      (DeVo: the SSL embeddings only)
                                                                                             [B, T, d]
    VocoderGenerator: SpeechBrain's HifiganGenerator, upsampling x hop (160: [5, 4, 4, 2])  [B, T * 160]
    -> cropped to the input length

Discriminators and losses are SpeechBrain's (``speechbrain.lobes.models.HifiGAN``):
:class:`HifiGANDiscriminators` builds SpeechBrain's ``DiscriminatorP`` and ``DiscriminatorS`` (the
MPD + MSD of HiFi-GAN with the default periods and scales, or fewer by option: the CPU recipe
uses periods 2 and 3 and no scale discriminator); :class:`MultiResolutionSTFTLoss` is SpeechBrain's
``MultiScaleSTFTLoss`` (ParallelWaveGAN: log-magnitude L1 + spectral convergence at three
resolutions) with its STFT call fixed: SpeechBrain 1.1's ``HifiGAN.stft`` calls ``torch.stft``
without ``return_complex`` (an error since torch 2.x) and without a window; here a Hann window and
the complex STFT. Generator and discriminator objectives: SpeechBrain's ``GeneratorLoss`` /
``DiscriminatorLoss`` (``MSEGLoss``, ``MelganFeatureLoss``, ``L1SpecLoss``, ``MSEDLoss``), built in
``hparams/ssl_vocoder.yaml``.

What matches the paper (no public code; built from its text): TERA embeddings as a learned softmax-
weighted sum of all hidden states (or the last one: the paper's ablation); the noisy spectrogram,
log or linear magnitude (ablation); cross-attention with the spectrum stream as the query and the
embeddings as keys and values, residual connection and layer norm; additive and FiLM fusion; DeVo
(embeddings only); a HiFi-GAN generator trained with the HiFi-GAN losses to output clean speech
from noisy input. What differs: the "log" spectrum is ``log1p`` of the magnitude (the project's
shared front end; the paper does not give its compression); the attention is local by default
(``attention_window`` frames either side, the diagonal always allowed; ``None``: global), so that
each query sees the embeddings near its own time (the paper does not say; global attention over an
utterance has no positional cue); the SSL states pass through BSSE's per-layer LayerNorm before the
weighted sum (:class:`~speechbrain_sqe.lobes.bsse.LayerNormWeightedSum`); the generator is much
smaller than HiFi-GAN V1 (CPU default: 128 initial channels, resblock type 2; V1: 512, type 1) and
upsamples by 160 (10 ms frames) instead of 256; the upstream is our TERA (3 layers), not s3prl's.

Padded batches: the fusion sees each utterance as alone (masked attention, zeroed padding). The
generator's convolutions pad by reflection at the ends of their input (SpeechBrain's ``Conv1d``
with ``padding="same"``), so a zero-padded batch would differ near each utterance's end;
:func:`ssl_vocoder_forward` therefore runs the generator on each group of equal-length utterances
(training crops: one group), which gives exactly each utterance's output alone.

Authors: speechbrain-sqe contributors
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.HifiGAN import (
    DiscriminatorP,
    DiscriminatorS,
    HifiganGenerator,
    MultiScaleSTFTLoss,
    STFTLoss,
)
from torch import nn

from speechbrain_sqe.lobes.bsse import (
    LayerNormWeightedSum,
    align_frames,
    ssl_hidden_states,
)
from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import apply_mask, relative_lengths_to_mask
from speechbrain_sqe.lobes.weighted_ssl import stack_hidden_states

__all__ = [
    "FUSIONS",
    "SPECTRA",
    "SSL_LAYER_MODES",
    "HifiGANDiscriminators",
    "MultiResolutionSTFTLoss",
    "SSLVocoder",
    "SpectrumSSLFusion",
    "VocoderGenerator",
    "random_segments",
    "spectrum_frontend",
    "ssl_vocoder_forward",
]

#: How the spectrum and the SSL embeddings are joined (``none``: DeVo, the embeddings only).
FUSIONS = ("cross_attention", "add", "film", "none")
#: The spectrum the fusion reads: ``log1p`` of the magnitude or the magnitude.
SPECTRA = ("log", "magnitude")
#: The SSL layers read: the softmax-weighted sum of all, or the last one.
SSL_LAYER_MODES = ("all", "last")


def spectrum_frontend(spectrum="log", n_fft=400, hop_length=160, sample_rate=16000):
    """The shared front end giving the vocoder's spectrum (Hann window of ``n_fft``, centred).

    Arguments
    ---------
    spectrum : str
        ``log`` (``log1p`` of the magnitude) or ``magnitude`` (:data:`SPECTRA`).
    n_fft, hop_length, sample_rate : int
        STFT size, hop (the generator's upsampling) and rate.

    Returns
    -------
    speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        The front end (its constructor arguments recorded for the hub folder).

    Example
    -------
    >>> frontend = spectrum_frontend("magnitude")
    >>> frontend.log1p, frontend(torch.randn(1, 16000)).shape
    (False, torch.Size([1, 101, 201]))
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
    return SpectralFrontEnd(n_fft=n_fft, hop_length=hop_length, win_length=n_fft, log1p=spectrum == "log",
                            sample_rate=sample_rate, window="hann")


def _window_mask(frames, lengths, window, device):
    """Boolean attention mask ``[batch, frames, frames]`` (True: not attended): keys beyond an
    utterance's valid frames or more than ``window`` frames away; the diagonal always allowed."""
    index = torch.arange(frames, device=device)
    valid = torch.ones(1, frames, dtype=torch.bool, device=device)
    if lengths is not None:
        valid = relative_lengths_to_mask(lengths, frames, device=device).bool()  # [batch, frames]
    allowed = valid.unsqueeze(1).expand(valid.shape[0], frames, frames)
    if window is not None:
        allowed = allowed & ((index[:, None] - index[None, :]).abs() <= int(window))
    allowed = allowed | torch.eye(frames, dtype=torch.bool, device=device)
    return ~allowed


@record_init_args
class SpectrumSSLFusion(nn.Module):
    """Joins spectrum frames and aligned SSL embeddings into the generator's input features.

    Arguments
    ---------
    fusion : str
        ``cross_attention``, ``add``, ``film`` or ``none`` (:data:`FUSIONS`).
    n_bins : int
        Spectrum bins (201 for a 400-point FFT).
    ssl_size : int
        Size of the SSL embeddings.
    model_dim : int
        Size of the fused features.
    attention_heads : int
        Heads of the cross-attention.
    attention_window : int or None
        Frames either side a query attends to (None: the whole utterance).
    dropout : float
        Attention dropout.

    Example
    -------
    >>> fusion = SpectrumSSLFusion("cross_attention", n_bins=201, ssl_size=16, model_dim=32, attention_heads=2)
    >>> spec, ssl = torch.rand(2, 50, 201), torch.randn(2, 50, 16)  # [batch, frames, bins / dim]
    >>> fusion(spec, ssl, torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 50, 32])
    >>> [SpectrumSSLFusion(f, 201, 16, 32)(spec, ssl).shape[-1] for f in FUSIONS]
    [32, 32, 32, 32]
    """

    def __init__(self, fusion="cross_attention", n_bins=201, ssl_size=192, model_dim=128, attention_heads=4,
                 attention_window=8, dropout=0.0):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.attention_window = attention_window
        self.ssl_proj = None if fusion == "film" else nn.Linear(ssl_size, model_dim)
        self.spec_proj = None if fusion == "none" else nn.Linear(n_bins, model_dim)
        if fusion == "cross_attention":
            self.attention = nn.MultiheadAttention(model_dim, attention_heads, dropout=dropout, batch_first=True)
            self.norm = nn.LayerNorm(model_dim)
        elif fusion == "film":
            self.film = nn.Linear(ssl_size, 2 * model_dim)

    def forward(self, spec, ssl, lengths=None):
        """Fused features ``[batch, frames, model_dim]`` (0 on padded frames).

        Arguments
        ---------
        spec : torch.Tensor
            Spectrum frames ``[batch, frames, n_bins]``.
        ssl : torch.Tensor
            SSL embeddings aligned to the spectrum frames ``[batch, frames, ssl_size]``.
        lengths : torch.Tensor, optional
            Relative frame lengths ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, model_dim]``.
        """
        ssl = ssl.to(spec.dtype)
        if self.fusion == "none":
            fused = self.ssl_proj(ssl)
        elif self.fusion == "add":
            fused = self.spec_proj(spec) + self.ssl_proj(ssl)
        elif self.fusion == "film":
            gamma, beta = self.film(ssl).chunk(2, dim=-1)
            fused = self.spec_proj(spec) * (1.0 + gamma) + beta
        else:
            query, memory = self.spec_proj(spec), self.ssl_proj(ssl)
            mask = _window_mask(spec.shape[1], lengths, self.attention_window, spec.device)
            mask = mask.expand(spec.shape[0], -1, -1).repeat_interleave(self.attention.num_heads, dim=0)
            attended, _ = self.attention(query, memory, memory, attn_mask=mask, need_weights=False)
            fused = self.norm(query + attended)
        if lengths is not None:
            fused = apply_mask(fused, relative_lengths_to_mask(lengths, fused.shape[1], device=fused.device),
                               time_dim=1)
        return fused


def check_upsampling(hop_length, upsample_factors, upsample_kernel_sizes, upsample_initial_channel):
    """Refuses generator settings that cannot turn one feature frame into ``hop_length`` samples.

    Arguments
    ---------
    hop_length : int
        The feature hop in samples (160: 10 ms at 16 kHz).
    upsample_factors, upsample_kernel_sizes : sequence of int
        Strides and kernels of the transposed convolutions.
    upsample_initial_channel : int
        Channels before the first upsampling (halved at each).

    Raises
    ------
    ValueError
        With what to change.

    Example
    -------
    >>> check_upsampling(160, [5, 4, 4, 2], [11, 8, 8, 4], 128)
    >>> check_upsampling(160, [8, 8, 2, 2], [16, 16, 4, 4], 512)
    Traceback (most recent call last):
    ...
    ValueError: the upsample factors [8, 8, 2, 2] multiply to 256 but the feature hop is 160 samples: their product must equal the hop (e.g. [5, 4, 4, 2] for 160, [5, 4, 4, 4] for 320)
    """
    factors, kernels = [int(u) for u in upsample_factors], [int(k) for k in upsample_kernel_sizes]
    if math.prod(factors) != int(hop_length):
        raise ValueError(f"the upsample factors {factors} multiply to {math.prod(factors)} but the feature hop is "
                         f"{hop_length} samples: their product must equal the hop (e.g. [5, 4, 4, 2] for 160, "
                         "[5, 4, 4, 4] for 320)")
    if len(kernels) != len(factors):
        raise ValueError(f"one upsample kernel size per factor: {kernels} for {factors}")
    bad = [(k, u) for k, u in zip(kernels, factors) if k < u or (k - u) % 2]
    if bad:
        raise ValueError(f"each upsample kernel must be at least its factor, with an even difference (so "
                         f"that a frame gives exactly factor samples): {bad} (kernel, factor) do not")
    if int(upsample_initial_channel) % (2 ** len(factors)):
        raise ValueError(f"upsample_initial_channel {upsample_initial_channel} must be divisible by "
                         f"2 ** {len(factors)} (it is halved at each upsampling)")


@record_init_args
class VocoderGenerator(nn.Module):
    """SpeechBrain's HiFi-GAN generator with its upsampling checked against the feature hop.

    Arguments
    ---------
    in_channels : int
        Feature size.
    hop_length : int
        Samples per feature frame (the product of ``upsample_factors`` must equal it).
    upsample_factors, upsample_kernel_sizes, upsample_initial_channel, resblock_type,
    resblock_kernel_sizes, resblock_dilation_sizes :
        See :class:`speechbrain.lobes.models.HifiGAN.HifiganGenerator`.

    Example
    -------
    >>> gen = VocoderGenerator(32, hop_length=160, upsample_initial_channel=32)
    >>> gen(torch.randn(2, 32, 10)).shape  # [batch, channels, frames] -> [batch, frames * hop]
    torch.Size([2, 1600])
    >>> VocoderGenerator(32, hop_length=320)
    Traceback (most recent call last):
    ...
    ValueError: the upsample factors [5, 4, 4, 2] multiply to 160 but the feature hop is 320 samples: their product must equal the hop (e.g. [5, 4, 4, 2] for 160, [5, 4, 4, 4] for 320)
    """

    def __init__(self, in_channels=128, hop_length=160, upsample_factors=(5, 4, 4, 2),
                 upsample_kernel_sizes=(11, 8, 8, 4), upsample_initial_channel=128, resblock_type="2",
                 resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3), (1, 3))):
        super().__init__()
        check_upsampling(hop_length, upsample_factors, upsample_kernel_sizes, upsample_initial_channel)
        self.hop_length = int(hop_length)
        self.hifigan = HifiganGenerator(
            in_channels=in_channels, out_channels=1, resblock_type=str(resblock_type),
            resblock_dilation_sizes=[list(d) for d in resblock_dilation_sizes],
            resblock_kernel_sizes=list(resblock_kernel_sizes), upsample_kernel_sizes=list(upsample_kernel_sizes),
            upsample_initial_channel=upsample_initial_channel, upsample_factors=list(upsample_factors),
        )

    def forward(self, features):
        """``[batch, in_channels, frames]`` -> waveforms ``[batch, frames * hop_length]`` in (-1, 1)."""
        return self.hifigan(features).squeeze(1)


@record_init_args
class SSLVocoder(nn.Module):
    """The trained part of the spectrum-aware SSL vocoder besides the upstream: SSL layer weighting,
    frame alignment, fusion with the spectrum and the HiFi-GAN generator.

    Arguments
    ---------
    fusion : str
        :data:`FUSIONS` (``none``: DeVo).
    n_bins : int
        Spectrum bins.
    ssl_layers : str
        ``all`` (softmax-weighted sum) or ``last`` (:data:`SSL_LAYER_MODES`).
    ssl_num_layers : int
        Hidden states the upstream gives (input representation included).
    ssl_size : int
        Their size.
    ssl_hop_length : int
        Upstream frame hop in samples (TERA 160; WavLM 320).
    hop_length : int
        Spectrum hop in samples (the generator upsamples by it).
    model_dim, attention_heads, attention_window, dropout :
        See :class:`SpectrumSSLFusion`.
    upsample_factors, upsample_kernel_sizes, upsample_initial_channel, resblock_type,
    resblock_kernel_sizes, resblock_dilation_sizes :
        See :class:`VocoderGenerator`.

    Example
    -------
    >>> model = SSLVocoder("cross_attention", ssl_num_layers=3, ssl_size=16, model_dim=32,
    ...                    attention_heads=2, upsample_initial_channel=32)
    >>> spec = torch.rand(2, 51, 201)              # 0.5 s at hop 160, [batch, frames, bins]
    >>> states = torch.randn(3, 2, 51, 16)         # 3 hidden states at 10 ms
    >>> features = model.features(spec, states, torch.tensor([1.0, 0.5]), torch.tensor([51, 26]))
    >>> features.shape, model.generator(features.transpose(1, 2)).shape
    (torch.Size([2, 51, 32]), torch.Size([2, 8160]))
    >>> [round(w, 3) for w in model.layer_weights().tolist()]
    [0.333, 0.333, 0.333]
    """

    def __init__(self, fusion="cross_attention", n_bins=201, ssl_layers="all", ssl_num_layers=4, ssl_size=192,
                 ssl_hop_length=160, hop_length=160, model_dim=128, attention_heads=4, attention_window=8,
                 dropout=0.0, upsample_factors=(5, 4, 4, 2), upsample_kernel_sizes=(11, 8, 8, 4),
                 upsample_initial_channel=128, resblock_type="2", resblock_kernel_sizes=(3, 7),
                 resblock_dilation_sizes=((1, 3), (1, 3))):
        super().__init__()
        if ssl_layers not in SSL_LAYER_MODES:
            raise ValueError(f"ssl_layers must be one of {SSL_LAYER_MODES}, got {ssl_layers!r}")
        self.fusion_name = fusion
        self.ssl_layers = ssl_layers
        self.ssl_num_layers = int(ssl_num_layers)
        self.ssl_hop_length = int(ssl_hop_length)
        self.hop_length = int(hop_length)
        if ssl_layers == "all":
            self.weighted = LayerNormWeightedSum(ssl_num_layers, ssl_size)
        else:
            self.last_norm = nn.LayerNorm(ssl_size)
        self.fusion = SpectrumSSLFusion(fusion, n_bins, ssl_size, model_dim, attention_heads, attention_window,
                                        dropout)
        self.generator = VocoderGenerator(model_dim, hop_length, upsample_factors, upsample_kernel_sizes,
                                          upsample_initial_channel, resblock_type, resblock_kernel_sizes,
                                          resblock_dilation_sizes)

    @property
    def feature(self):
        """The fusion's name (what reports call the model's feature)."""
        return self.fusion_name

    @property
    def uses_ssl(self):
        """Always True: every fusion reads the SSL embeddings."""
        return True

    def layer_weights(self):
        """``softmax`` of the layer weights ``[ssl_num_layers]`` (None with ``ssl_layers="last"``)."""
        return self.weighted.layer_weights() if self.ssl_layers == "all" else None

    def embeddings(self, hidden_states):
        """The SSL embeddings ``[batch, ssl_frames, ssl_size]`` of the upstream's hidden states."""
        stacked = stack_hidden_states(hidden_states)
        if stacked.shape[0] != self.ssl_num_layers:
            raise ValueError(f"got {stacked.shape[0]} hidden states, expected {self.ssl_num_layers}")
        return self.weighted(stacked) if self.ssl_layers == "all" else self.last_norm(stacked[-1])

    def features(self, spec, hidden_states, lengths=None, ssl_frames=None):
        """The generator's input ``[batch, frames, model_dim]`` (0 on padded frames).

        Arguments
        ---------
        spec : torch.Tensor
            Noisy spectrum frames ``[batch, frames, n_bins]``.
        hidden_states : list of torch.Tensor or torch.Tensor
            The upstream's states, a list of ``[batch, ssl_frames, dim]`` or stacked.
        lengths : torch.Tensor, optional
            Relative frame lengths ``[batch]``.
        ssl_frames : torch.Tensor, optional
            Valid SSL frames per utterance ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, model_dim]``.
        """
        ssl = align_frames(self.embeddings(hidden_states), spec.shape[1], self.ssl_hop_length, self.hop_length,
                           ssl_frames)
        return self.fusion(spec, ssl, lengths)

    def forward(self, spec, hidden_states, lengths=None, ssl_frames=None):
        """Waveforms ``[batch, frames * hop_length]`` of a batch of equal-length utterances (use
        :func:`ssl_vocoder_forward` for a padded batch)."""
        return self.generator(self.features(spec, hidden_states, lengths, ssl_frames).transpose(1, 2))


def ssl_vocoder_forward(model, frontend, wavs, lengths=None, upstream=None, train_ssl=False):
    """The whole chain on a padded batch: spectrum, SSL states, fusion, generator; each utterance as alone.

    Arguments
    ---------
    model : SSLVocoder
        The model (or its DistributedDataParallel wrapper).
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its spectrum front end (hop = the model's ``hop_length``).
    wavs : torch.Tensor
        Noisy waveforms ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    upstream : torch.nn.Module
        The SSL upstream (hidden states, see :func:`~speechbrain_sqe.lobes.bsse.ssl_hidden_states`).
    train_ssl : bool
        Keep the upstream's graph (fine-tuning).

    Returns
    -------
    torch.Tensor
        Waveforms ``[batch, samples]`` (0 beyond each length).

    Example
    -------
    >>> from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> frontend = SpectralFrontEnd(n_fft=400, hop_length=160, log1p=True)
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32).eval()
    >>> model = SSLVocoder("add", ssl_num_layers=2, ssl_size=16, model_dim=32, upsample_initial_channel=32)
    >>> out = ssl_vocoder_forward(model, frontend, torch.randn(2, 8000), torch.tensor([1.0, 0.5]), tera)
    >>> out.shape, float(out[1, 4000:].detach().abs().sum())
    (torch.Size([2, 8000]), 0.0)
    """
    bare = getattr(model, "module", model)
    if upstream is None:
        raise ValueError("the SSL vocoder needs an SSL upstream")
    spec = frontend(wavs, lengths)
    frame_lengths = None if lengths is None else frontend.frame_lengths(lengths, wavs.shape[1])
    upstream = getattr(upstream, "module", upstream)
    with torch.set_grad_enabled(train_ssl and torch.is_grad_enabled()):
        states, ssl_frames = ssl_hidden_states(upstream, wavs, lengths)
    features = bare.features(spec, states, frame_lengths, ssl_frames)
    total = wavs.shape[1]
    if lengths is None:
        return bare.generator(features.transpose(1, 2))[:, :total]
    samples = torch.round(lengths.float() * total).long().clamp(1, total)
    frames = torch.as_tensor(frontend.num_frames(samples)).long()
    groups = {}
    for index, n in enumerate(samples.tolist()):
        groups.setdefault(n, []).append(index)
    out = wavs.new_zeros(wavs.shape[0], total)
    for n, members in groups.items():
        rows = torch.tensor(members, device=wavs.device)
        part = bare.generator(features[rows, : int(frames[members[0]])].transpose(1, 2))[:, :n]
        out = out.index_copy(0, rows, F.pad(part, (0, total - part.shape[1])).to(out.dtype))
    return out


@record_init_args
class HifiGANDiscriminators(nn.Module):
    """HiFi-GAN's multi-period and multi-scale discriminators (SpeechBrain's ``DiscriminatorP`` and
    ``DiscriminatorS``) with the periods and the number of scales as options.

    ``periods=(2, 3, 5, 7, 11), scales=3`` is SpeechBrain's ``HifiganDiscriminator`` (MPD + MSD: the
    first scale with spectral norm, the others on 2x and 4x average-pooled audio). Fewer periods or
    scales make a cheaper adversary (the CPU recipe: periods 2 and 3, no scale discriminator).

    Arguments
    ---------
    periods : sequence of int
        Periods of the period discriminators.
    scales : int
        Scale discriminators (0 to 3).

    Example
    -------
    >>> disc = HifiGANDiscriminators(periods=(2, 3), scales=1)
    >>> scores, feats = disc(torch.randn(2, 1, 2000))  # [batch, 1, samples]
    >>> len(scores), len(feats), len(feats[0])
    (3, 3, 6)
    """

    def __init__(self, periods=(2, 3, 5, 7, 11), scales=3):
        super().__init__()
        if not 0 <= int(scales) <= 3 or (not periods and not scales):
            raise ValueError(f"scales must be 0..3 and at least one discriminator is needed (periods {periods}, "
                             f"scales {scales})")
        self.periods = nn.ModuleList(DiscriminatorP(int(p)) for p in periods)
        self.scales = nn.ModuleList(DiscriminatorS(use_spectral_norm=i == 0) for i in range(int(scales)))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav):
        """Scores and feature maps of every discriminator for waveforms ``[batch, 1, samples]``."""
        scores, feats = [], []
        for disc in self.periods:
            score, feat = disc(wav)
            scores.append(score)
            feats.append(feat)
        x = wav
        for i, disc in enumerate(self.scales):
            if i:
                x = self.pool(x)
            score, feat = disc(x)
            scores.append(score)
            feats.append(feat)
        return scores, feats


class _ComplexSTFTLoss(STFTLoss):
    """SpeechBrain's :class:`~speechbrain.lobes.models.HifiGAN.STFTLoss` with a Hann-windowed complex STFT."""

    def _magnitude(self, wav):
        spec = torch.stft(wav.squeeze(1) if wav.dim() == 3 else wav, self.n_fft, self.hop_length, self.win_length,
                          torch.hann_window(self.win_length, device=wav.device, dtype=wav.dtype),
                          return_complex=True)
        return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-8))

    def forward(self, y_hat, y):
        """Log-magnitude L1 and spectral convergence of ``y_hat`` against ``y``."""
        y_hat_mag, y_mag = self._magnitude(y_hat), self._magnitude(y)
        loss_mag = F.l1_loss(torch.log(y_mag), torch.log(y_hat_mag))
        loss_sc = torch.norm(y_mag - y_hat_mag, p="fro") / torch.norm(y_mag, p="fro")
        return loss_mag, loss_sc


class MultiResolutionSTFTLoss(MultiScaleSTFTLoss):
    """SpeechBrain's ``MultiScaleSTFTLoss`` (same resolutions and averaging) with a working STFT.

    Drop-in for ``GeneratorLoss(stft_loss=...)``: returns the mean log-magnitude L1 and the mean
    spectral convergence over the resolutions.

    Arguments
    ---------
    n_ffts, hop_lengths, win_lengths : sequence of int
        The resolutions (SpeechBrain's defaults: ParallelWaveGAN's).

    Example
    -------
    >>> loss = MultiResolutionSTFTLoss()
    >>> wav = torch.randn(2, 16000)
    >>> [round(float(v), 4) for v in loss(wav, wav)]
    [0.0, 0.0]
    >>> bool(sum(loss(wav + 0.1 * torch.randn(2, 16000), wav)) > 0)
    True
    """

    def __init__(self, n_ffts=(1024, 2048, 512), hop_lengths=(120, 240, 50), win_lengths=(600, 1200, 240)):
        super().__init__(n_ffts, hop_lengths, win_lengths)
        self.loss_funcs = nn.ModuleList(_ComplexSTFTLoss(n, h, w) for n, h, w in zip(n_ffts, hop_lengths, win_lengths))


def random_segments(estimate, target, segment_samples, generator=None):
    """The same random segment of each utterance of two batches (HiFi-GAN's discriminator crops).

    Arguments
    ---------
    estimate, target : torch.Tensor
        ``[batch, samples]``.
    segment_samples : int or None
        Segment length; None or at least ``samples``: the whole batches.
    generator : torch.Generator, optional
        For the offsets.

    Returns
    -------
    tuple of torch.Tensor
        ``[batch, segment_samples]`` each.

    Example
    -------
    >>> a = torch.arange(10.0).repeat(2, 1)
    >>> x, y = random_segments(a, a + 100, 4)
    >>> x.shape, bool(torch.equal(y - 100, x))
    (torch.Size([2, 4]), True)
    """
    total = estimate.shape[1]
    if segment_samples is None or int(segment_samples) >= total:
        return estimate, target
    segment_samples = int(segment_samples)
    starts = torch.randint(0, total - segment_samples + 1, (estimate.shape[0],), generator=generator)
    index = (starts[:, None] + torch.arange(segment_samples)[None, :]).to(estimate.device)
    return estimate.gather(1, index), target.gather(1, index)
