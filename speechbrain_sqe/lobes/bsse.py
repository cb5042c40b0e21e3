"""Cross-domain SSL speech enhancement (BSSE: Hung et al., "Boosting Self-Supervised Embeddings for
Speech Enhancement", Interspeech 2022): the spectrogram joined with weighted SSL layers, a BLSTM mask.

Layout::

    noisy wav -> SpectralFrontEnd (n_fft 400, win 400, hop 160, Hamming, centred, reflect) -> log1p |X|  [B, T, 201]
    noisy wav -> SSL upstream -> L hidden states [B, Ts, D] -> per-layer LayerNorm -> softmax-weighted sum
              -> frames aligned to the STFT frames (any SSL hop)                                         [B, T, D]
    feature = spectrum | ssl | cross (concatenation [B, T, 201 + D])
    mask = BLSTMMaskNet(feature)  (Linear -> 2-layer BLSTM, directions summed -> Linear -> sigmoid)   [B, T, 201]
    enhanced log1p = mask * noisy log1p; loss = L1 to the clean log1p; waveform: expm1, noisy phase

:class:`BSSEModel` holds everything trained besides the upstream (the weighted sum and the mask net);
the upstream is a separate module (a :class:`~speechbrain_sqe.lobes.tera.TERAModel` or any module
giving all hidden states, e.g. SpeechBrain's Hugging Face ``WavLM`` wrapper built with
``output_all_hiddens=True``), so a hub folder can rebuild both and the SSL encoder contract stays
the upstream's. :func:`bsse_forward` is the chain of training, validation, test and inference.

Frame alignment (:func:`align_frames`): STFT frame ``t`` takes SSL frame ``(t * stft_hop) //
ssl_hop``, clamped to the utterance's last valid SSL frame. For a 20 ms SSL hop (wav2vec 2.0,
HuBERT, WavLM) this is the reference's repetition x2 with the last frame repeated to pad; for
TERA's 10 ms hop (same centred framing as the STFT) it is the identity; other hops take the latest
SSL frame that starts at or before the STFT frame.

Fine-tuning modes (:func:`configure_ssl_finetuning`): ``frozen`` (no gradient to the upstream, kept
in eval mode), ``pf`` (partial: the upstream's FRONT END frozen, the rest trained) and ``ef``
(entire upstream trained). The front end (:func:`ssl_front_end`) is the part that turns the waveform
into the first hidden state's input: for wav2vec 2.0 / HuBERT / WavLM (SpeechBrain's wrappers, or
any module reached through ``.model`` attributes) the convolutional ``feature_extractor``, as in the
reference; for TERA the log-mel features (no parameters) and the input projection and its
LayerNorm (``encoder.input_proj``, ``encoder.input_norm``), i.e. what computes the input
representation (hidden state 0); TERA's prediction head is unused and never trained. An upstream
can name its own with a ``front_end_modules()`` method.

What matches the reference code (khhungg/BSSE-SE, ``models/BLSTM.py``, ``util.py``, ``Trainer.py``):
the STFT settings and log1p magnitude, per-layer ``nn.LayerNorm`` (with affine parameters) before
the softmax-weighted sum with equal initial weights, the x2 repetition with last-frame padding, the
three feature modes (the reference's spectrum-only mode crashes on a stale feature name; here
all three run), the mask network, the L1 loss on log1p magnitudes, resynthesis with the noisy
phase, the fine-tuning modes. What differs: the magnitude is ``sqrt(max(|X|^2, 1e-7))`` (the
project's front end; the reference adds 1e-6 to ``|X|``); padded batches are handled per utterance
(features, alignment and BLSTM see each utterance as alone; the reference uses equal-length crops
and one file at a time); the loss is averaged over valid frames only; the SSL is TERA (ours) by
default rather than WavLM Large; the recipe's default mask network is smaller (see
``hparams/bsse.yaml``: projection and hidden size 128 instead of 256) so that it trains on a CPU and
ships under 10 MB with the TERA upstream.
Options of ours, off by default: ``noise_floor_frames`` adds the spectrum's running noise floor to
the features (noise-aware training, :mod:`~speechbrain_sqe.lobes.noise_floor`);
``overestimate_weight`` of :func:`log1p_l1_loss` makes the L1 asymmetric (the shipped model's
training: noise left in costs twice as much as speech taken away).

Authors: speechbrain-sqe contributors
"""

import torch
from torch import nn

from speechbrain_sqe.lobes.blstm_mask import BLSTMMaskNet, frame_counts
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import (
    apply_mask,
    masked_mean,
    relative_lengths_to_mask,
)
from speechbrain_sqe.lobes.noise_floor import noise_floor
from speechbrain_sqe.lobes.weighted_ssl import WeightedSSL, stack_hidden_states

__all__ = [
    "FEATURE_MODES",
    "FINETUNE_MODES",
    "BSSEModel",
    "LayerNormWeightedSum",
    "align_frames",
    "bsse_forward",
    "check_ssl_hop",
    "configure_ssl_finetuning",
    "log1p_l1_loss",
    "log_magnitude_l1_loss",
    "residual_noise_loss",
    "ssl_front_end",
    "ssl_hidden_states",
]

#: Inputs of the mask network: the log1p spectrum, the weighted SSL layers, or both concatenated.
FEATURE_MODES = ("spectrum", "ssl", "cross")
#: SSL fine-tuning: none, all but the front end (the reference's "PF"), everything ("EF").
FINETUNE_MODES = ("frozen", "pf", "ef")


def align_frames(features, frames, ssl_hop_length, stft_hop_length, ssl_frames=None):
    """SSL frames aligned to STFT frames: frame ``t`` takes SSL frame ``(t * stft_hop) // ssl_hop``.

    The index is clamped to each utterance's last valid SSL frame, so the last frame pads (the
    reference's repetition of it) and padding of a batch is never read.

    Arguments
    ---------
    features : torch.Tensor
        SSL features ``[batch, ssl_frames, dim]``.
    frames : int
        Number of STFT frames wanted.
    ssl_hop_length : int
        SSL hop in samples (320 for 20 ms at 16 kHz, 160 for TERA's 10 ms).
    stft_hop_length : int
        STFT hop in samples (160).
    ssl_frames : torch.Tensor, optional
        Valid SSL frames of each utterance ``[batch]``; None: all of them.

    Returns
    -------
    torch.Tensor
        ``[batch, frames, dim]``.

    Example
    -------
    >>> ssl = torch.arange(3.0).view(1, 3, 1)  # 3 SSL frames at 20 ms
    >>> align_frames(ssl, 7, 320, 160)[0, :, 0].tolist()  # repeated x2, last frame padded
    [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    >>> align_frames(ssl, 2, 160, 160)[0, :, 0].tolist()  # 10 ms: identity, trimmed
    [0.0, 1.0]
    """
    batch, available, dim = features.shape
    index = torch.arange(frames, device=features.device) * int(stft_hop_length) // int(ssl_hop_length)
    last = torch.full((batch,), available - 1, device=features.device, dtype=torch.long)
    if ssl_frames is not None:
        last = torch.minimum(last, ssl_frames.to(features.device).long() - 1).clamp(min=0)
    index = torch.minimum(index.unsqueeze(0), last.unsqueeze(1))  # [batch, frames]
    return features.gather(1, index.unsqueeze(-1).expand(batch, frames, dim))


class LayerNormWeightedSum(WeightedSSL):
    """Each hidden state through its own ``nn.LayerNorm``, then the softmax-weighted sum.

    :class:`~speechbrain_sqe.lobes.weighted_ssl.WeightedSSL` with affine layer norms, one per layer
    (BSSE's, where s3prl's featurizer uses a parameter-free norm); weights start equal.

    Arguments
    ---------
    num_layers : int
        Hidden states combined (input representation included).
    hidden_size : int
        Size of each hidden state.

    Example
    -------
    >>> ws = LayerNormWeightedSum(3, 8)
    >>> [round(w, 4) for w in ws.layer_weights().tolist()]  # equal at the start
    [0.3333, 0.3333, 0.3333]
    >>> ws(torch.randn(3, 2, 5, 8)).shape  # [layers, batch, frames, dim] -> [batch, frames, dim]
    torch.Size([2, 5, 8])
    """

    def __init__(self, num_layers, hidden_size):
        super().__init__(num_layers, layer_norm=False)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))

    def forward(self, hidden_states):
        """``num_layers`` states ``[batch, frames, dim]`` (or stacked) -> ``[batch, frames, dim]``."""
        stacked = stack_hidden_states(hidden_states)
        if stacked.shape[0] != self.num_layers:
            raise ValueError(f"got {stacked.shape[0]} hidden states, expected {self.num_layers}")
        weights = self.layer_weights().to(stacked.dtype)
        return sum(weight * norm(state) for weight, norm, state in zip(weights, self.norms, stacked))


@record_init_args
class BSSEModel(nn.Module):
    """The trained part of BSSE besides the SSL upstream: weighted SSL layers, alignment, mask network.

    Arguments
    ---------
    feature : str
        ``spectrum``, ``ssl`` or ``cross`` (:data:`FEATURE_MODES`).
    n_bins : int
        Frequency bins of the spectrum (201 for a 400-point FFT).
    ssl_layers : int
        Hidden states of the upstream (input representation included); unused for ``spectrum``.
    ssl_size : int
        Size of each hidden state.
    ssl_hop_length : int
        Upstream frame hop in samples (TERA 160, WavLM 320 at 16 kHz).
    stft_hop_length : int
        STFT hop in samples (160).
    proj_size, hidden_size, num_layers, dropout : see :class:`~speechbrain_sqe.lobes.blstm_mask.BLSTMMaskNet`.
    noise_floor_frames : int
        Ours, not the reference's (noise-aware training): when > 0, the running noise floor of the
        spectrum (:func:`~speechbrain_sqe.lobes.noise_floor.noise_floor`, the minimum over a centred
        window of this many frames) is concatenated to the features (``n_bins`` more inputs).
        0 (default): the reference's features.

    Example
    -------
    >>> model = BSSEModel("cross", n_bins=201, ssl_layers=3, ssl_size=16, ssl_hop_length=320,
    ...                   proj_size=32, hidden_size=32)
    >>> spec = torch.rand(2, 51, 201)              # log1p |X| of 0.5 s, [batch, frames, bins]
    >>> states = torch.randn(3, 2, 25, 16)         # 3 layers of 20 ms frames
    >>> enhanced, mask = model(spec, torch.tensor([1.0, 0.5]), states, torch.tensor([25, 12]))
    >>> enhanced.shape, mask.shape, model.input_size
    (torch.Size([2, 51, 201]), torch.Size([2, 51, 201]), 217)
    >>> model.uses_ssl, BSSEModel("spectrum").uses_ssl
    (True, False)
    >>> BSSEModel("spectrum", noise_floor_frames=101).input_size   # spectrum + its noise floor
    402
    """

    def __init__(self, feature="cross", n_bins=201, ssl_layers=4, ssl_size=192, ssl_hop_length=160,
                 stft_hop_length=160, proj_size=256, hidden_size=256, num_layers=2, dropout=0.0,
                 noise_floor_frames=0):
        super().__init__()
        if feature not in FEATURE_MODES:
            raise ValueError(f"feature must be one of {FEATURE_MODES}, got {feature!r}")
        self.feature = feature
        self.n_bins = n_bins
        self.ssl_hop_length = int(ssl_hop_length)
        self.stft_hop_length = int(stft_hop_length)
        self.noise_floor_frames = int(noise_floor_frames)
        self.input_size = {"spectrum": n_bins, "ssl": ssl_size, "cross": n_bins + ssl_size}[feature]
        self.input_size += n_bins if self.noise_floor_frames > 0 else 0
        self.weighted = LayerNormWeightedSum(ssl_layers, ssl_size) if self.uses_ssl else None
        self.mask_net = BLSTMMaskNet(self.input_size, n_bins, proj_size, hidden_size, num_layers, dropout)

    @property
    def uses_ssl(self):
        """Whether the model reads SSL hidden states (``ssl`` and ``cross``)."""
        return self.feature != "spectrum"

    def layer_weights(self):
        """``softmax`` of the layer weights ``[ssl_layers]`` (None for ``spectrum``)."""
        return None if self.weighted is None else self.weighted.layer_weights()

    def features(self, spec, lengths=None, hidden_states=None, ssl_frames=None):
        """The mask network's input ``[batch, frames, input_size]`` (0 on padded frames).

        Arguments
        ---------
        spec : torch.Tensor
            Noisy log1p magnitudes ``[batch, frames, n_bins]``.
        lengths : torch.Tensor, optional
            Relative frame lengths ``[batch]``.
        hidden_states : list of torch.Tensor or torch.Tensor, optional
            The upstream's states (``ssl`` and ``cross``): a list of ``[batch, ssl_frames, dim]`` or
            stacked ``[layers, batch, ssl_frames, dim]``.
        ssl_frames : torch.Tensor, optional
            Valid SSL frames per utterance ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, input_size]`` (the noise floor last when ``noise_floor_frames`` > 0).
        """
        features = self._spectrum_and_ssl(spec, lengths, hidden_states, ssl_frames)
        if self.noise_floor_frames <= 0:
            return features
        return torch.cat([features, noise_floor(spec, lengths, self.noise_floor_frames)], dim=-1)

    def _spectrum_and_ssl(self, spec, lengths, hidden_states, ssl_frames):
        if not self.uses_ssl:
            return spec
        if hidden_states is None:
            raise ValueError(f"feature {self.feature!r} needs the SSL hidden states")
        ssl = align_frames(self.weighted(hidden_states), spec.shape[1], self.ssl_hop_length,
                           self.stft_hop_length, ssl_frames)
        ssl = apply_mask(ssl, relative_lengths_to_mask(lengths, spec.shape[1], device=spec.device), time_dim=1)
        return ssl if self.feature == "ssl" else torch.cat([spec, ssl.to(spec.dtype)], dim=-1)

    def forward(self, spec, lengths=None, hidden_states=None, ssl_frames=None):
        """The enhanced log1p magnitudes and the mask.

        Arguments
        ---------
        spec, lengths, hidden_states, ssl_frames : see :meth:`features`.

        Returns
        -------
        enhanced : torch.Tensor
            ``mask * spec`` ``[batch, frames, n_bins]``.
        mask : torch.Tensor
            ``[batch, frames, n_bins]`` in ``(0, 1)``, 0 on padded frames.
        """
        mask = self.mask_net(self.features(spec, lengths, hidden_states, ssl_frames), lengths)
        return mask * spec, mask


def log1p_l1_loss(estimate, target, lengths=None, overestimate_weight=1.0):
    """L1 distance of log1p magnitudes, averaged over bins and valid frames.

    With ``overestimate_weight`` w != 1 the distance is asymmetric (ours, not the reference's): a bin
    estimated above its target (noise left in) costs w times as much as one below it (speech taken
    away). That is the pinball loss of the quantile 1 / (1 + w), scaled by 1 + w: where an unseen
    noise and speech cannot be told apart, the plain L1 keeps the median of what the clean bin could
    be, w > 1 a lower quantile (more suppression where the mask is unsure).

    Arguments
    ---------
    estimate, target : torch.Tensor
        ``[batch, frames, bins]``.
    lengths : torch.Tensor, optional
        Relative frame lengths ``[batch]``.
    overestimate_weight : float
        Cost of an estimate above its target relative to one below it (1: the plain L1).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> target = torch.zeros(2, 4, 3)
    >>> estimate = torch.ones(2, 4, 3)
    >>> estimate[1, 2:] = 100.0  # padding of the second utterance: not counted
    >>> log1p_l1_loss(estimate, target, torch.tensor([1.0, 0.5]))
    tensor(1.)
    >>> log1p_l1_loss(estimate, target, torch.tensor([1.0, 0.5]), overestimate_weight=3.0)
    tensor(3.)
    >>> log1p_l1_loss(target, estimate, torch.tensor([1.0, 0.5]), overestimate_weight=3.0)
    tensor(1.)
    """
    difference = estimate - target
    if overestimate_weight == 1.0:
        per_bin = difference.abs()
    else:
        per_bin = torch.where(difference > 0, overestimate_weight * difference, -difference)
    per_frame = per_bin.mean(dim=-1)
    return masked_mean(per_frame, relative_lengths_to_mask(lengths, per_frame.shape[1], device=per_frame.device))


def log_magnitude_l1_loss(estimate, target, lengths=None, floor=1e-3):
    """L1 distance of log magnitudes ``log(|S| + floor)``, from log1p magnitudes (not the
    reference's; ``hparams/bsse.yaml``'s ``log_magnitude_weight`` adds it to :func:`log1p_l1_loss`).

    Why: ``log1p(|S|)`` is about ``|S|`` for the small magnitudes of the pauses, so the reference's
    loss barely notices noise left there (the shipped model takes a median 4 dB off the quietest
    frames of the real test noises, RNNoise 28 dB, and DNSMOS rates those pauses). On a log scale a
    residual 20 dB above the clean speech's floor costs as much in a pause as in speech.

    Arguments
    ---------
    estimate, target : torch.Tensor
        log1p magnitudes ``[batch, frames, bins]``.
    lengths : torch.Tensor, optional
        Relative frame lengths ``[batch]``.
    floor : float
        Magnitude added before the log (below it, differences stop counting).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> clean = torch.full((1, 4, 3), 1e-3).log1p()  # a pause
    >>> residual = torch.full((1, 4, 3), 1e-2).log1p()  # noise 20 dB above it
    >>> round(float(log1p_l1_loss(residual, clean)), 4), round(float(log_magnitude_l1_loss(residual, clean)), 2)
    (0.009, 1.7)
    """
    def log_magnitude(log1p_magnitude):
        return torch.log(torch.expm1(log1p_magnitude).clamp_min(0.0) + floor)

    return log1p_l1_loss(log_magnitude(estimate), log_magnitude(target), lengths)


def residual_noise_loss(enhanced, noisy, noise, lengths=None):
    """The noise a mask lets through, as log1p magnitudes averaged over bins and valid frames (not
    the reference's; ``hparams/bsse.yaml``'s ``residual_noise_weight`` adds it to :func:`log1p_l1_loss`).

    With the noisy phase, an enhanced log1p magnitude ``m * log1p|X|`` is the mixture times a real
    gain ``G = expm1(m * log1p|X|) / |X|`` (at most 1), so the output is ``G S + G N``: the speech
    it keeps and the noise ``G N`` it leaves (the decomposition of Xia et al., "Weighted speech
    distortion losses for neural-network-based real-time speech enhancement", ICASSP 2020). The
    reference's L1 to the clean magnitude counts a residual only where it shows above the speech
    (pauses, near-linearly at their small magnitudes); this term counts it in every bin, one-sided
    (only a smaller gain lowers it), so its weight trades speech distortion for noise removal.

    Arguments
    ---------
    enhanced, noisy, noise : torch.Tensor
        log1p magnitudes ``[batch, frames, bins]`` of the enhanced output, of its noisy input and
        of the noise alone in that input (known for mixtures made in training).
    lengths : torch.Tensor, optional
        Relative frame lengths ``[batch]``.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> noisy = torch.full((1, 4, 3), 2.0).log1p()
    >>> noise = torch.full((1, 4, 3), 1.0).log1p()  # half of |X| is noise
    >>> round(float(residual_noise_loss(noisy, noisy, noise)), 4)  # no mask: all of it, log1p(1)
    0.6931
    >>> half = torch.full((1, 4, 3), 1.0).log1p()  # |Y| = |X| / 2
    >>> round(float(residual_noise_loss(half, noisy, noise)), 4)  # log1p(0.5)
    0.4055
    """
    gain = implied_gain(enhanced, noisy)
    return log1p_l1_loss(torch.log1p(gain * torch.expm1(noise).clamp_min(0.0)), torch.zeros_like(noise), lengths)


def implied_gain(log1p_magnitude, noisy):
    """The real gain ``|Y| / |X|`` that a log1p magnitude implies on its noisy input, in [0, 1].

    Arguments
    ---------
    log1p_magnitude, noisy : torch.Tensor
        log1p magnitudes ``[batch, frames, bins]`` of an output (or a target) and of the noisy input.

    Returns
    -------
    torch.Tensor
        The gain per bin, clamped to [0, 1] (at most 1 for a mask in [0, 1]; clamped so that
        padding, with any values, cannot overflow to NaN).

    Example
    -------
    >>> implied_gain(torch.tensor([1.0, 3.0]).log1p(), torch.tensor([2.0, 2.0]).log1p())
    tensor([0.5000, 1.0000])
    """
    return (torch.expm1(log1p_magnitude) / torch.expm1(noisy).clamp_min(1e-6)).clamp(0.0, 1.0)


def ratio_mask_loss(enhanced, noisy, target, lengths=None, power=0.5, eps=1e-4):
    """Squared distance of compressed gains to the ideal ratio mask, averaged over bins and valid
    frames (not the reference's; ``hparams/bsse.yaml``'s ``gain_loss_weight`` adds it to
    :func:`log1p_l1_loss`).

    With the noisy phase the output is the mixture times a real gain ``G = |Y| / |X|`` (at most 1);
    the ideal one is ``G* = min(1, |S| / |X|)``. RNNoise (Valin, MMSP 2018) trains its band gains on
    ``(G ** 0.5 - G* ** 0.5) ** 2``: every bin weighs the same whatever its level, so a gain of 0.1
    left on a quiet noise-only bin costs as much as on a loud one, where the reference's L1 of
    log1p magnitudes barely sees the quiet bins of the pauses (the README's BSSE section). Ours
    keeps BSSE's per-bin mask and applies the same distance to the gain it implies.

    Arguments
    ---------
    enhanced, noisy, target : torch.Tensor
        log1p magnitudes ``[batch, frames, bins]`` of the enhanced output, of its noisy input and
        of the clean target.
    lengths : torch.Tensor, optional
        Relative frame lengths ``[batch]``.
    power : float
        Compression of both gains (RNNoise's 0.5).
    eps : float
        Added to both gains before the power (keeps the gradient finite at a gain of 0).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> noisy = torch.full((1, 4, 3), 2.0).log1p()
    >>> clean = torch.full((1, 4, 3), 0.0)  # a pause: the ideal gain is 0
    >>> kept = torch.full((1, 4, 3), 0.2).log1p()  # a gain of 0.1 left
    >>> round(float(ratio_mask_loss(kept, noisy, clean)), 3), round(float(ratio_mask_loss(clean, noisy, clean)), 3)
    (0.094, 0.0)
    >>> quiet = torch.full((1, 4, 3), 0.02).log1p()  # the same gain on a 100 x quieter input
    >>> round(float(ratio_mask_loss(torch.full((1, 4, 3), 0.002).log1p(), quiet, clean)), 3)
    0.094
    """
    error = ((implied_gain(enhanced, noisy) + eps) ** power - (implied_gain(target, noisy) + eps) ** power).pow(2)
    return log1p_l1_loss(error, torch.zeros_like(error), lengths)


def _upstream_frame_count(upstream, num_samples):
    """Frames the upstream gives for ``num_samples`` samples, when it says (TERA), else None."""
    for owner in (upstream, getattr(upstream, "features", None)):
        if owner is not None and callable(getattr(owner, "num_frames", None)):
            return owner.num_frames
    return None


def ssl_hidden_states(upstream, wavs, lengths=None):
    """All hidden states of an upstream and each utterance's valid SSL frame count.

    Arguments
    ---------
    upstream : torch.nn.Module
        Has ``hidden_states(wav, lengths)`` (TERA, :class:`~speechbrain_sqe.inference.encoders.SSLWrapperEncoder`)
        or is called ``upstream(wav, lengths)`` (SpeechBrain's Hugging Face wrappers with
        ``output_all_hiddens=True``); returns a list of ``[batch, frames, dim]`` or a stacked tensor.
    wavs : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative waveform lengths ``[batch]``.

    Returns
    -------
    states : torch.Tensor
        ``[layers, batch, ssl_frames, dim]``.
    ssl_frames : torch.Tensor or None
        Valid frames of each utterance ``[batch]`` (the upstream's own count when it gives
        ``num_frames``, as TERA does; else ``round(length * ssl_frames)``); None without ``lengths``.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> states, counts = ssl_hidden_states(tera, torch.randn(2, 3200), torch.tensor([1.0, 0.5]))
    >>> states.shape, counts.tolist()
    (torch.Size([2, 2, 21, 16]), [21, 11])
    """
    if hasattr(upstream, "hidden_states"):
        states = upstream.hidden_states(wavs, lengths)
    else:
        states = upstream(wavs, lengths)
    states = stack_hidden_states(states)
    if lengths is None:
        return states, None
    count = _upstream_frame_count(upstream, wavs.shape[1])
    if count is not None:
        samples = torch.round(lengths.float() * wavs.shape[1]).long().clamp(1, wavs.shape[1])
        counts = torch.as_tensor(count(samples)).long().clamp(1, states.shape[2])
    else:
        counts = frame_counts(lengths, states.shape[2])
    return states, counts.to(states.device)


def upstream_hop_samples(upstream, sample_rate=16000):
    """An upstream's frame hop in samples: ``frame_hop_seconds`` (the SSL encoder contract) or
    ``features.hop_length`` (TERA); None when it says neither.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> upstream_hop_samples(TERAModel.small()), upstream_hop_samples(torch.nn.Identity())
    (160, None)
    """
    if hasattr(upstream, "frame_hop_seconds"):
        return round(float(upstream.frame_hop_seconds) * sample_rate)
    if hasattr(getattr(upstream, "features", None), "hop_length"):
        return int(upstream.features.hop_length)
    return None


def check_ssl_hop(upstream, ssl_hop_length, sample_rate=16000):
    """Refuses a model that would align an upstream's frames with another hop than the upstream's.

    Arguments
    ---------
    upstream : torch.nn.Module
        The SSL upstream; its hop is read from ``frame_hop_seconds`` (the SSL encoder contract) or
        ``features.hop_length`` (TERA); an upstream that says neither is not checked.
    ssl_hop_length : int
        The hop (samples) the model aligns with (:class:`BSSEModel`'s ``ssl_hop_length``).
    sample_rate : int
        Sampling rate.

    Raises
    ------
    ValueError
        When the two hops differ.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> check_ssl_hop(TERAModel.small(), 160)
    >>> check_ssl_hop(TERAModel.small(), 320)
    Traceback (most recent call last):
    ...
    ValueError: the SSL upstream's frame hop is 160 samples but the model aligns 320 (set ssl_hop_length)
    """
    hop = upstream_hop_samples(upstream, sample_rate)
    if hop is not None and hop != int(ssl_hop_length):
        raise ValueError(f"the SSL upstream's frame hop is {hop} samples but the model aligns {ssl_hop_length} "
                         "(set ssl_hop_length)")


def ssl_front_end(upstream):
    """The modules of an upstream's front end (what the ``pf`` mode freezes).

    Arguments
    ---------
    upstream : torch.nn.Module
        The SSL upstream (see the module docstring for what "front end" means per model).

    Returns
    -------
    list of torch.nn.Module
        The front-end modules.

    Raises
    ------
    ValueError
        When the front end cannot be found (give the upstream a ``front_end_modules()`` method).

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> [type(m).__name__ for m in ssl_front_end(TERAModel.small())]
    ['TERAFeatures', 'Linear', 'LayerNorm']
    """
    if callable(getattr(upstream, "front_end_modules", None)):
        return list(upstream.front_end_modules())
    encoder = getattr(upstream, "encoder", None)
    if hasattr(upstream, "features") and hasattr(encoder, "input_proj"):  # TERA
        return [upstream.features, encoder.input_proj, encoder.input_norm]
    owner = upstream
    for _ in range(4):  # SSLWrapperEncoder -> SpeechBrain's HF wrapper -> transformers model
        if owner is None:
            break
        if isinstance(getattr(owner, "feature_extractor", None), nn.Module):
            return [owner.feature_extractor]
        owner = getattr(owner, "model", None)
    raise ValueError(f"cannot tell the front end of {type(upstream).__name__} (for the 'pf' mode): give it "
                     "a front_end_modules() method returning the modules to freeze")


def _unused_modules(upstream):
    """Upstream modules that never reach the hidden states (TERA's prediction head)."""
    head = getattr(upstream, "head", None)
    return [head] if isinstance(head, nn.Module) and hasattr(upstream, "encoder") else []


def configure_ssl_finetuning(upstream, mode):
    """Sets which upstream parameters train in a fine-tuning mode; returns them.

    Arguments
    ---------
    upstream : torch.nn.Module
        The SSL upstream.
    mode : str
        ``frozen``, ``pf`` (front end frozen, the rest trained) or ``ef`` (all trained), see
        :data:`FINETUNE_MODES`.

    Returns
    -------
    list of torch.nn.Parameter
        The trainable upstream parameters (empty when frozen).

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> [len(configure_ssl_finetuning(tera, mode)) for mode in FINETUNE_MODES]
    [0, 16, 20]
    >>> tera.encoder.input_proj.weight.requires_grad, tera.head.dense.weight.requires_grad
    (True, False)
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f"ssl fine-tuning mode must be one of {FINETUNE_MODES}, got {mode!r}")
    for parameter in upstream.parameters():
        parameter.requires_grad_(mode != "frozen")
    frozen = _unused_modules(upstream) + (ssl_front_end(upstream) if mode == "pf" else [])
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    if mode == "frozen":
        upstream.eval()
    return [parameter for parameter in upstream.parameters() if parameter.requires_grad]


def bsse_forward(model, frontend, wavs, lengths=None, upstream=None, train_ssl=False):
    """The BSSE chain on a padded batch: noisy log1p spectrum, SSL states, enhanced log1p spectrum.

    Arguments
    ---------
    model : BSSEModel
        The model (or its DistributedDataParallel wrapper, which is called so gradients sync).
    frontend : speechbrain_sqe.lobes.frontend.SpectralFrontEnd
        Its front end (log1p magnitudes).
    wavs : torch.Tensor
        Noisy waveforms ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    upstream : torch.nn.Module, optional
        The SSL upstream (needed by the ``ssl`` and ``cross`` features).
    train_ssl : bool
        Keep the upstream's graph (fine-tuning); False runs it without gradients.

    Returns
    -------
    noisy : torch.Tensor
        Noisy log1p magnitudes ``[batch, frames, bins]``.
    enhanced : torch.Tensor
        Enhanced log1p magnitudes ``[batch, frames, bins]``.
    frame_lengths : torch.Tensor or None
        Relative frame lengths ``[batch]`` (None without ``lengths``).

    Example
    -------
    >>> from speechbrain_sqe.lobes.frontend import SpectralFrontEnd
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> frontend = SpectralFrontEnd(n_fft=400, hop_length=160, log1p=True, window="hamming")
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32).eval()
    >>> model = BSSEModel("cross", ssl_layers=2, ssl_size=16, proj_size=16, hidden_size=16)
    >>> noisy, enhanced, frame_lengths = bsse_forward(model, frontend, torch.randn(2, 8000), torch.tensor([1.0, 0.5]), tera)
    >>> enhanced.shape, frame_lengths.tolist()
    (torch.Size([2, 51, 201]), [1.0, 0.5098039507865906])
    >>> wav = frontend.resynthesize(enhanced, torch.randn(2, 8000), torch.tensor([1.0, 0.5]))  # noisy phase
    """
    bare = getattr(model, "module", model)  # a DistributedDataParallel wrapper is called, not unwrapped
    noisy = frontend(wavs, lengths)
    frame_lengths = None if lengths is None else frontend.frame_lengths(lengths, wavs.shape[1])
    states = ssl_frames = None
    if bare.uses_ssl:
        if upstream is None:
            raise ValueError(f"feature {bare.feature!r} needs an SSL upstream")
        upstream = getattr(upstream, "module", upstream)
        with torch.set_grad_enabled(train_ssl and torch.is_grad_enabled()):
            states, ssl_frames = ssl_hidden_states(upstream, wavs, lengths)
    enhanced, _ = model(noisy, frame_lengths, states, ssl_frames)
    return noisy, enhanced, frame_lengths
