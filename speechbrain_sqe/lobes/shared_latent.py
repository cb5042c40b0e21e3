"""Shared latent space SAE/MAE enhancement from unpaired clean speech and noisy mixtures (Li, Sun,
Wang, Naqvi, "Joint Learning with Shared Latent Space for Self-Supervised Monaural Speech
Enhancement", arXiv 2112.11142 / 2206.04962), on the SSE framework (Wang, Venkataramani, Smaragdis,
"Self-supervised learning for speech enhancement", 2020).

Layout (``[B, T, F]`` compressed magnitudes ``|STFT| ** 0.5`` of
:class:`~speechbrain_sqe.lobes.frontend.PhaseSpectralFrontEnd`, n_fft 1024, hop 256, F = 513)::

    clean  -> SAE encoder (Conv1d k7: 513-512-256-128-64) -+-> [shared layer] -> z_s -> SAE amplitude decoder -> |S|^0.5
                                                           |                          -> SAE phase decoder     -> (cos, sin)
    noisy  -> MAE encoder (513-512-400-300-200-100-64)  ---+-> [shared layer] -> z_m -> MAE decoder           -> |X|^0.5
    inference: noisy -> MAE encoder -> shared layer -> SAE amplitude and phase decoders -> inverse STFT

The widths above are SSE's (the classes' defaults); the recipe's default
(``hparams/shared_latent.yaml``) is CPU-sized, 513-88-76-64 and 513-88-84-80-76-70-64 (2.57 M
parameters with the ``cos_sin`` phase decoder, against 20.4 M).

Every encoder layer is Conv1d + BatchNorm + softplus, its channels divided by their mean over the
(valid) frames, as SSE. In training a unit Gaussian is added to the latent and ``mean(z ** 2)`` is
SSE's "KL" term (:meth:`SharedLatentModel.sample`).

The shared layer (``shared_layer``): ``none`` (SSE: the MAE latent goes straight to the SAE
decoders), ``latent`` (one Conv1d + softplus + mean normalisation applied to the output of both
encoders: both latents are made by the same weights) or ``encoder_last`` (the last encoder layer is
one module for both encoders; the MAE's last own layer then outputs the SAE's penultimate width, 128
by default, instead of its configured one). The phase decoder (``phase``): ``none`` (SSE: the noisy
phase at resynthesis), ``cos_sin`` (2F outputs normalised to unit phasors) or ``angle`` (F angles).

What matches the references: SSE's STFT (1024/256 Hann at 16 kHz), magnitude ** 0.5, the encoder
widths, kernel 7, BatchNorm + softplus, per-layer mean normalisation over time, the latent noise and
its ``mean(mu^2)`` term, the cycle (mixture latent -> SAE decoder -> SAE encoder -> MAE decoder) and
the latent consistency term; the poster's two SAE decoders (amplitude, phase), the shared layer and
the multi-resolution spectral loss (:class:`MultiResolutionSpectralLoss`: windows 1024, 512, 256 and
128 at one frame shift of 32, so every resolution's feature map has the same frames).

What differs (each a choice the references leave open or a defect not reproduced):

- Decoders are Conv1d blocks (same as a stride-1 ConvTranspose1d) WITHOUT BatchNorm, and the shared
  layer has none either: they see latents of both domains, and running statistics gathered on one
  domain would be applied to the other at inference. The amplitude output is softplus, the phase
  output linear.
- The latent noise is added in training only (SSE also adds it at inference); inference is
  deterministic.
- Padded frames are zeroed after every layer and the time means are over valid frames, so a padded
  batch gives each utterance's own output (eval mode).
- ``linear_bypass`` (ours, off by default = SSE): every encoder, decoder and the shared layer also
  gets a linear path (a kernel-1 Conv1d from its input to its output, added before the output
  activation). Why: measured on real clean speech, SSE's block stack learns slowly: the SAE alone
  reconstructed held-out speech at -1.8 dB SI-SNR after 400 updates and 1.3 dB after 1,900 (clean
  phase), where a linear 513-64-513 autoencoder reached 12 dB in 800 and a 64-component PCA gives
  18 dB; with the bypass (and the shared latent layer, latent noise, mean normalisation as SSE)
  the same SAE reached 10.7 dB in 800 updates. It also lets the SAE decoder output more than
  speech, which weakens what the unpaired training relies on (a decoder that can express only
  speech); on enhancement it did not help (README, "Shared latent space").
- The cycle re-encodes the compressed magnitude the SAE decoder gave (SSE goes through an inverse
  STFT with the noisy phase and an STFT again); the phase decoder is trained on clean speech only.

Authors: speechbrain-sqe contributors
"""

import torch
from torch import nn
from torch.nn import functional as F

from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import relative_lengths_to_mask

__all__ = [
    "PHASE_MODES",
    "SHARED_LAYERS",
    "MixtureAutoencoder",
    "MultiResolutionSpectralLoss",
    "SharedLatentLayer",
    "SharedLatentModel",
    "SpeechAutoencoder",
    "frame_mask",
    "masked_frame_mean",
    "phase_loss",
]

PHASE_MODES = ("none", "cos_sin", "angle")
SHARED_LAYERS = ("none", "latent", "encoder_last")
EPS = 1e-8


def frame_mask(lengths, frames, reference):
    """``[batch, 1, frames]`` float mask of valid frames (all ones without ``lengths``).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative frame lengths ``[batch]``.
    frames : int
        Padded number of frames.
    reference : torch.Tensor
        Gives the batch size, dtype and device.

    Returns
    -------
    torch.Tensor
        ``[batch, 1, frames]``.

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5]), 4, torch.zeros(2))
    tensor([[[1., 1., 1., 1.]],
    <BLANKLINE>
            [[1., 1., 0., 0.]]])
    """
    if lengths is None:
        return reference.new_ones(reference.shape[0], 1, frames)
    return relative_lengths_to_mask(lengths, frames, reference.device).to(reference.dtype).unsqueeze(1)


def masked_frame_mean(values, mask):
    """Mean of ``values`` ``[batch, channels, frames]`` (or ``[batch, frames, ...]`` with a mask
    that broadcasts) over the valid entries.

    Arguments
    ---------
    values : torch.Tensor
        Values.
    mask : torch.Tensor
        0/1 mask broadcastable to ``values``.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> masked_frame_mean(torch.tensor([[[1.0, 3.0, 100.0]]]), torch.tensor([[[1.0, 1.0, 0.0]]]))
    tensor(2.)
    """
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class _Block(nn.Module):
    """Conv1d (same padding) [+ BatchNorm] [+ softplus] [+ division by the mean over valid frames]."""

    def __init__(self, in_channels, out_channels, kernel_size, batch_norm, activation, mean_normalize):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm1d(out_channels) if batch_norm else None
        self.activation = activation
        self.mean_normalize = mean_normalize

    def forward(self, x, mask):
        x = self.conv(x * mask)
        if self.norm is not None:
            if self.training and not bool((mask > 0).all()):  # batch statistics of the valid frames only
                rows = mask[:, 0, :].reshape(-1) > 0
                flat = x.transpose(1, 2).reshape(-1, x.shape[1])
                normed = torch.zeros_like(flat).index_put((rows,), self.norm(flat[rows]))
                x = normed.reshape(x.shape[0], x.shape[2], x.shape[1]).transpose(1, 2)
            else:
                x = self.norm(x)
        if self.activation:
            x = F.softplus(x)
        x = x * mask
        if self.mean_normalize:
            mean = x.sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True).clamp(min=1.0)
            x = x / (mean + EPS)
        return x


def _encoder(widths, kernel_size):
    return nn.ModuleList(
        _Block(widths[i], widths[i + 1], kernel_size, batch_norm=True, activation=True, mean_normalize=True)
        for i in range(len(widths) - 1)
    )


def _decoder(widths, out_channels, kernel_size, out_activation):
    """Hidden blocks (softplus, no BatchNorm) through ``widths``, then the output layer."""
    blocks = [_Block(widths[i], widths[i + 1], kernel_size, False, True, False) for i in range(len(widths) - 1)]
    blocks.append(_Block(widths[-1], out_channels, kernel_size, False, out_activation, False))
    return nn.ModuleList(blocks)


def _run(blocks, x, mask):
    for block in blocks:
        x = block(x, mask)
    return x


def _bypass(in_channels, out_channels, enabled):
    """The linear path of ``linear_bypass`` (a kernel-1 Conv1d), or None."""
    return nn.Conv1d(in_channels, out_channels, 1) if enabled else None


def _run_with_bypass(blocks, bypass, x, mask, out_activation=False):
    """The blocks' output plus the linear path from their input (then softplus if
    ``out_activation``: a bypassed output block is built without its own activation)."""
    out = _run(blocks, x, mask)
    if bypass is None:
        return out
    out = out + bypass(x * mask)
    return F.softplus(out) * mask if out_activation else out * mask


@record_init_args
class SharedLatentLayer(nn.Module):
    """The layer both autoencoders pass through: Conv1d + softplus + mean normalisation over time
    (no BatchNorm: it sees both domains).

    Arguments
    ---------
    in_channels : int
        Input channels (the latent width, or the encoders' common penultimate width).
    out_channels : int
        Latent width.
    kernel_size : int
        Convolution kernel over frames.
    linear_bypass : bool
        Add a linear path (module docstring).

    Example
    -------
    >>> layer = SharedLatentLayer(8, 4, kernel_size=3)
    >>> layer(torch.rand(2, 8, 10), torch.ones(2, 1, 10)).shape  # [batch, channels, time]
    torch.Size([2, 4, 10])
    """

    def __init__(self, in_channels=64, out_channels=64, kernel_size=1, linear_bypass=False):
        super().__init__()
        self.block = _Block(in_channels, out_channels, kernel_size, batch_norm=False, activation=True,
                            mean_normalize=True)
        self.bypass = _bypass(in_channels, out_channels, linear_bypass)

    def forward(self, x, mask):
        """``[batch, in_channels, frames]`` -> ``[batch, out_channels, frames]`` (0 on padded frames)."""
        return _run_with_bypass([self.block], self.bypass, x, mask)


@record_init_args
class SpeechAutoencoder(nn.Module):
    """SAE: a convolutional encoder of clean compressed magnitudes, an amplitude decoder and
    (``phase`` not ``none``) a phase decoder, both reading the latent.

    Arguments
    ---------
    n_bins : int
        Frequency bins (513 for n_fft 1024).
    channels : sequence of int
        Encoder widths after the input, the last being the latent (SSE: 512, 256, 128, 64).
    kernel_size : int
        Convolution kernel over frames (SSE: 7).
    phase : str
        ``none``, ``cos_sin`` or ``angle`` (see the module docstring).
    encoder_layers : int, optional
        How many of ``channels`` the encoder makes itself (default all; one less when the last
        encoder layer is shared).
    linear_bypass : bool
        Add a linear path to the encoder and to each decoder (module docstring).

    Example
    -------
    >>> sae = SpeechAutoencoder(n_bins=17, channels=(16, 8), phase="cos_sin")
    >>> mask = torch.ones(2, 1, 10)
    >>> z = sae.encode(torch.rand(2, 17, 10), mask)  # [batch, latent, time]
    >>> z.shape, sae.decode_amplitude(z, mask).shape, sae.decode_phase(z, mask).shape
    (torch.Size([2, 8, 10]), torch.Size([2, 17, 10]), torch.Size([2, 17, 10, 2]))
    """

    def __init__(self, n_bins=513, channels=(512, 256, 128, 64), kernel_size=7, phase="cos_sin",
                 encoder_layers=None, linear_bypass=False):
        super().__init__()
        if phase not in PHASE_MODES:
            raise ValueError(f"phase must be one of {PHASE_MODES}, got {phase!r}")
        widths = [n_bins, *channels]
        own = len(channels) if encoder_layers is None else encoder_layers
        self.phase = phase
        self.encoder = _encoder(widths[: own + 1], kernel_size)
        self.encoder_bypass = _bypass(n_bins, widths[own], linear_bypass)
        hidden = list(reversed(channels))
        self.amplitude_decoder = _decoder(hidden, n_bins, kernel_size, out_activation=not linear_bypass)
        self.amplitude_bypass = _bypass(channels[-1], n_bins, linear_bypass)
        self.phase_decoder = self.phase_bypass = None
        if phase != "none":
            phase_channels = n_bins * (2 if phase == "cos_sin" else 1)
            self.phase_decoder = _decoder(hidden, phase_channels, kernel_size, False)
            self.phase_bypass = _bypass(channels[-1], phase_channels, linear_bypass)

    def encode(self, spec, mask):
        """``[batch, bins, frames]`` -> the encoder's output ``[batch, channels, frames]``."""
        return _run_with_bypass(self.encoder, self.encoder_bypass, spec, mask)

    def decode_amplitude(self, z, mask):
        """Latent -> compressed magnitudes ``[batch, bins, frames]``."""
        return _run_with_bypass(self.amplitude_decoder, self.amplitude_bypass, z, mask, out_activation=True)

    def decode_phase(self, z, mask):
        """Latent -> unit phasors ``[batch, bins, frames, 2]`` (cos, sin), or None without a phase decoder."""
        if self.phase_decoder is None:
            return None
        out = _run_with_bypass(self.phase_decoder, self.phase_bypass, z, mask)
        if self.phase == "angle":
            return torch.stack([torch.cos(out), torch.sin(out)], dim=-1) * mask.unsqueeze(-1)
        bins = out.shape[1] // 2
        pair = torch.stack([out[:, :bins], out[:, bins:]], dim=-1)
        return F.normalize(pair, dim=-1, eps=1e-6)


@record_init_args
class MixtureAutoencoder(nn.Module):
    """MAE: a convolutional encoder and decoder of noisy compressed magnitudes.

    Arguments
    ---------
    n_bins : int
        Frequency bins.
    channels : sequence of int
        Encoder widths, the last being the latent (SSE: 512, 400, 300, 200, 100, 64).
    kernel_size : int
        Convolution kernel over frames.
    encoder_channels : sequence of int, optional
        The widths the encoder itself makes (default ``channels``; with a shared last layer, all
        but the last, the penultimate set to the shared layer's input).
    linear_bypass : bool
        Add a linear path to the encoder and the decoder (module docstring).

    Example
    -------
    >>> mae = MixtureAutoencoder(n_bins=17, channels=(16, 12, 8))
    >>> mask = torch.ones(2, 1, 10)
    >>> z = mae.encode(torch.rand(2, 17, 10), mask)
    >>> z.shape, mae.decode(z, mask).shape
    (torch.Size([2, 8, 10]), torch.Size([2, 17, 10]))
    """

    def __init__(self, n_bins=513, channels=(512, 400, 300, 200, 100, 64), kernel_size=7, encoder_channels=None,
                 linear_bypass=False):
        super().__init__()
        own = list(channels if encoder_channels is None else encoder_channels)
        self.encoder = _encoder([n_bins, *own], kernel_size)
        self.encoder_bypass = _bypass(n_bins, own[-1], linear_bypass)
        self.decoder = _decoder(list(reversed(channels)), n_bins, kernel_size, out_activation=not linear_bypass)
        self.decoder_bypass = _bypass(channels[-1], n_bins, linear_bypass)

    def encode(self, spec, mask):
        """``[batch, bins, frames]`` -> the encoder's output ``[batch, channels, frames]``."""
        return _run_with_bypass(self.encoder, self.encoder_bypass, spec, mask)

    def decode(self, z, mask):
        """Latent -> compressed noisy magnitudes ``[batch, bins, frames]``."""
        return _run_with_bypass(self.decoder, self.decoder_bypass, z, mask, out_activation=True)


@record_init_args
class SharedLatentModel(nn.Module):
    """SAE, MAE and the shared layer: everything the recipe trains and a hub folder holds.

    Tensors are ``[batch, frames, bins]`` (the front end's layout) with relative frame ``lengths``.

    Arguments
    ---------
    n_bins : int
        Frequency bins (513).
    sae_channels : sequence of int
        SAE encoder widths (512, 256, 128, 64).
    mae_channels : sequence of int
        MAE encoder widths (512, 400, 300, 200, 100, 64); same latent width as the SAE.
    kernel_size : int
        Convolution kernel over frames (7).
    shared_layer : str
        ``none`` (SSE), ``latent`` or ``encoder_last`` (module docstring).
    shared_kernel : int
        Kernel of the shared layer.
    phase : str
        ``none`` (SSE), ``cos_sin`` or ``angle``.
    latent_noise : float
        Standard deviation of the Gaussian added to the latent in training (SSE: 1).
    linear_bypass : bool
        A linear path in every encoder, decoder and the shared layer (module docstring; SSE: none).

    Example
    -------
    >>> model = SharedLatentModel(n_bins=17, sae_channels=(16, 8), mae_channels=(16, 12, 8), shared_layer="latent")
    >>> spec, lengths = torch.rand(2, 10, 17), torch.tensor([1.0, 0.6])  # [batch, time, bins]
    >>> amplitude, phase = model.eval().enhance(spec, lengths)
    >>> amplitude.shape, phase.shape  # [batch, time, bins], [batch, time, bins, 2]
    (torch.Size([2, 10, 17]), torch.Size([2, 10, 17, 2]))
    >>> alone, _ = model.enhance(spec[1:, :6], None)
    >>> bool(torch.allclose(alone[0], amplitude[1, :6], atol=1e-5)), amplitude[1, 6:].abs().sum().item()
    (True, 0.0)
    """

    def __init__(self, n_bins=513, sae_channels=(512, 256, 128, 64), mae_channels=(512, 400, 300, 200, 100, 64),
                 kernel_size=7, shared_layer="latent", shared_kernel=1, phase="cos_sin", latent_noise=1.0,
                 linear_bypass=False):
        super().__init__()
        if shared_layer not in SHARED_LAYERS:
            raise ValueError(f"shared_layer must be one of {SHARED_LAYERS}, got {shared_layer!r}")
        if sae_channels[-1] != mae_channels[-1]:
            raise ValueError(f"the SAE and MAE latents must have one width, got {sae_channels[-1]} and {mae_channels[-1]}")
        if shared_layer == "encoder_last" and (len(sae_channels) < 2 or len(mae_channels) < 2):
            raise ValueError("shared_layer=encoder_last needs at least two encoder layers in each autoencoder")
        self.shared_layer_mode = shared_layer
        self.latent_noise = latent_noise
        latent = sae_channels[-1]
        mae_own = None
        sae_own = None
        self.shared = None
        if shared_layer == "latent":
            self.shared = SharedLatentLayer(latent, latent, shared_kernel, linear_bypass)
        elif shared_layer == "encoder_last":
            self.shared = SharedLatentLayer(sae_channels[-2], latent, shared_kernel, linear_bypass)
            sae_own = len(sae_channels) - 1
            mae_own = [*mae_channels[:-2], sae_channels[-2]]
        self.sae = SpeechAutoencoder(n_bins, sae_channels, kernel_size, phase, encoder_layers=sae_own,
                                     linear_bypass=linear_bypass)
        self.mae = MixtureAutoencoder(n_bins, mae_channels, kernel_size, encoder_channels=mae_own,
                                      linear_bypass=linear_bypass)

    @property
    def has_phase_decoder(self):
        """Whether the SAE estimates the phase."""
        return self.sae.phase_decoder is not None

    def sae_modules(self):
        """The modules trained on clean speech only in a staged run (SAE, and the shared layer)."""
        return [self.sae] + ([self.shared] if self.shared is not None else [])

    def _latent(self, h, mask):
        return h if self.shared is None else self.shared(h, mask)

    @staticmethod
    def _mask(spec, lengths):
        return frame_mask(lengths, spec.shape[1], spec)

    def encode_speech(self, spec, lengths=None):
        """Clean compressed magnitudes ``[batch, frames, bins]`` -> (latent ``[batch, latent, frames]``, mask)."""
        mask = self._mask(spec, lengths)
        return self._latent(self.sae.encode(spec.transpose(1, 2), mask), mask), mask

    def encode_mixture(self, spec, lengths=None):
        """Noisy compressed magnitudes -> (latent ``[batch, latent, frames]``, mask)."""
        mask = self._mask(spec, lengths)
        return self._latent(self.mae.encode(spec.transpose(1, 2), mask), mask), mask

    def sample(self, z, mask):
        """The latent the decoders read: ``z`` plus Gaussian noise in training (SSE), ``z`` in eval."""
        if self.training and self.latent_noise > 0:
            z = z + self.latent_noise * torch.randn_like(z) * mask
        return z

    def decode_speech(self, z, mask):
        """Latent -> (compressed magnitudes ``[batch, frames, bins]``, phasors ``[batch, frames, bins, 2]`` or None)."""
        amplitude = self.sae.decode_amplitude(z, mask).transpose(1, 2)
        phase = self.sae.decode_phase(z, mask)
        return amplitude, None if phase is None else phase.transpose(1, 2)

    def decode_mixture(self, z, mask):
        """Latent -> compressed noisy magnitudes ``[batch, frames, bins]``."""
        return self.mae.decode(z, mask).transpose(1, 2)

    def enhance(self, noisy_spec, lengths=None):
        """Inference: MAE encoder -> shared layer -> SAE amplitude and phase decoders.

        Arguments
        ---------
        noisy_spec : torch.Tensor
            Noisy compressed magnitudes ``[batch, frames, bins]``.
        lengths : torch.Tensor, optional
            Relative frame lengths ``[batch]``.

        Returns
        -------
        amplitude : torch.Tensor
            Enhanced compressed magnitudes ``[batch, frames, bins]`` (0 on padded frames).
        phase : torch.Tensor or None
            Estimated phasors ``[batch, frames, bins, 2]``, or None (``phase="none"``).
        """
        z, mask = self.encode_mixture(noisy_spec, lengths)
        return self.decode_speech(self.sample(z, mask), mask)


def phase_loss(estimate, target, weight, mask):
    """``1 - cos`` of the phase error, weighted by ``weight`` (e.g. the clean compressed magnitude:
    the phase of a bin without energy does not matter) over the valid frames.

    Arguments
    ---------
    estimate, target : torch.Tensor
        Unit phasors ``[batch, frames, bins, 2]``.
    weight : torch.Tensor
        ``[batch, frames, bins]``, non-negative.
    mask : torch.Tensor
        ``[batch, 1, frames]`` frame mask.

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 2]``.

    Example
    -------
    >>> target = torch.tensor([1.0, 0.0]).expand(1, 3, 2, 2)
    >>> mask, weight = torch.ones(1, 1, 3), torch.ones(1, 3, 2)
    >>> float(phase_loss(target, target, weight, mask)), float(phase_loss(-target, target, weight, mask))
    (0.0, 2.0)
    """
    error = 1.0 - (estimate * target).sum(-1)
    weight = weight * mask.transpose(1, 2)
    return (error * weight).sum() / weight.sum().clamp(min=EPS)


@record_init_args
class MultiResolutionSpectralLoss(nn.Module):
    """Mean over STFT resolutions of the L1 (or L2) distance of compressed magnitudes, every
    resolution at the same frame shift so that the feature maps share their frames.

    Arguments
    ---------
    windows : sequence of int
        Window (= FFT) lengths (the poster's: 1024, 512, 256, 128).
    hop_length : int
        Common frame shift in samples (32).
    power : float
        Magnitude compression exponent (0.5, as the model's input).
    distance : str
        ``l1`` or ``l2``.

    Example
    -------
    >>> loss = MultiResolutionSpectralLoss(windows=(256, 128), hop_length=32)
    >>> wav, lengths = torch.randn(2, 4000), torch.tensor([1.0, 0.5])
    >>> float(loss(wav, wav, lengths)), bool(loss(wav + 0.1 * torch.randn(2, 4000), wav, lengths) > 0)
    (0.0, True)
    """

    def __init__(self, windows=(1024, 512, 256, 128), hop_length=32, power=0.5, distance="l1"):
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"distance must be l1 or l2, got {distance!r}")
        self.windows = tuple(windows)
        self.hop_length = hop_length
        self.power = power
        self.distance = distance

    def features(self, wav, window):
        """Compressed magnitudes ``[batch, frames, window // 2 + 1]`` at ``hop_length``."""
        spec = torch.stft(wav, window, self.hop_length, window, torch.hann_window(window, device=wav.device,
                          dtype=wav.dtype), center=True, pad_mode="reflect", return_complex=True)
        return spec.abs().clamp(min=1e-7).pow(self.power).transpose(1, 2)

    def forward(self, estimate, target, lengths=None):
        """Loss between waveforms ``[batch, samples]`` over the valid frames (``lengths`` relative)."""
        total = 0.0
        for window in self.windows:
            est, ref = self.features(estimate, window), self.features(target, window)
            mask = frame_mask(lengths, est.shape[1], est).transpose(1, 2)  # [batch, frames, 1]
            diff = (est - ref).abs() if self.distance == "l1" else (est - ref).pow(2)
            total = total + masked_frame_mean(diff, mask)
        return total / len(self.windows)
