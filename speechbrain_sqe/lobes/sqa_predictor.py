"""A learned multi-metric speech quality predictor: weighted SSL layers, a Transformer encoder, one
output per metric through a range activation (the URGENT 2026 track 2 baseline's layout).

Layout::

    wav -> SSL upstream (frozen) -> L hidden states [L, B, Ts, D] -> per-layer LayerNorm -> softmax-weighted sum  [B, Ts, D]
        -> Linear(D -> d_model) -> LayerNorm -> TransformerEncoder (padding masked)                              [B, Ts, d_model]
        -> mean over each utterance's valid frames                                                              [B, d_model]
        -> Linear(d_model -> M) -> RangeActivation (per metric: bounded, lower/upper-bounded or unbounded)    [B, M]
    loss = mean over metrics of the MSE of (prediction - label) / scale, labels missing (NaN) left out

    optional spectral branch (``spectral_mels > 0``), added before the LayerNorm:
    wav -> level-normalized log-mel, no CMVN [B, Tm, mels] -> frames resampled to Ts -> Linear(mels -> d_model)

:class:`SQAPredictor` holds everything trained besides the upstream (the upstream is a separate
module, a :class:`~speechbrain_sqe.lobes.tera.TERAModel` or any module meeting the SSL-encoder
contract BSSE uses, see :func:`~speechbrain_sqe.lobes.bsse.ssl_hidden_states`), so a hub folder can
rebuild both. :func:`sqa_forward` is the chain of training, validation, test and inference;
:func:`masked_metric_mse` the loss.

Range activation (:class:`RangeActivation`), with ``s`` the metric's scale: ``low + (high - low) *
sigmoid(x)`` for a bounded metric (PESQ [1, 4.5], STOI/ESTOI [0, 1], DNSMOS OVRL and Distill-MOS
[1, 5]); ``low + s * softplus(x)`` for a lower-bounded one, ``high - s * softplus(-x)`` for an
upper-bounded one; ``s * x`` for an unbounded one (SI-SDR, dB). Scaling of the loss: each metric's
error is divided by its scale ``s`` before squaring (``high - low`` for a bounded metric, so every
bounded metric's error is a fraction of its own range; a given scale, 30 dB by default for SI-SDR,
for the others), so no metric dominates by its units; the head works in the same units.

What matches the reference (URGENT 2026 challenge, track 2 baseline, ``urgent2026_sqa/model.py``,
as described in this project's issue 14; its code was not at hand when this was written): a frozen
SSL front end, a softmax-weighted sum of its hidden states, Linear + LayerNorm, a Transformer
encoder, mean pooling over valid frames, one output per metric through a range activation
(``min + (max - min) * sigmoid`` for bounded metrics, softplus for lower-bounded, identity for
unbounded), an MSE loss per metric with missing labels masked. What differs: the SSL is TERA (ours)
rather than a large pretrained model; each layer goes through its own affine LayerNorm before the
weighted sum (BSSE's :class:`~speechbrain_sqe.lobes.bsse.LayerNormWeightedSum`, reused, not a second
weighted-layer lobe); the Transformer's depth and width are arguments with a small default (2 layers
of width 128 here, 6 in the reference) so that it trains on a CPU; no positional encoding is added
(the SSL features carry position already); unbounded and half-bounded outputs are scaled by the
metric's scale (``s * x`` rather than ``x``) so the head's outputs share one magnitude; the loss
divides each metric's error by its scale (the reference's weighting of metrics was not checked).
The optional spectral branch is ours (not in the reference): a small frozen SSL such as TERA
normalizes each utterance's features (CMVN), so its states say little about the absolute noise
floor or the band that PESQ and DNSMOS react to; a log-mel of the level-normalized waveform, without
CMVN, is added to the projected SSL features (off by default; measured in the README).

Authors: speechbrain-sqe contributors
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_sqe.lobes.bsse import LayerNormWeightedSum, ssl_hidden_states
from speechbrain_sqe.lobes.frontend import TERAFeatures
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.local_attention import whole_input_transformer

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_RANGES",
    "UNBOUNDED_SCALES",
    "RangeActivation",
    "SQAPredictor",
    "masked_metric_mse",
    "metric_scales",
    "sqa_forward",
]

#: The metrics predicted by default, in output order (names of the metric registry).
DEFAULT_METRICS = ("pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "distillmos")
#: Output range of each known metric: ``[low, high]``, ``None`` for an unbounded side.
METRIC_RANGES = {
    "pesq_wb": [1.0, 4.5],
    "pesq_nb": [1.0, 4.5],
    "stoi": [0.0, 1.0],
    "estoi": [0.0, 1.0],
    "si_sdr": [None, None],
    "si_snr": [None, None],
    "csig": [1.0, 5.0],
    "cbak": [1.0, 5.0],
    "covl": [1.0, 5.0],
    "dnsmos_ovrl": [1.0, 5.0],
    "dnsmos_sig": [1.0, 5.0],
    "dnsmos_bak": [1.0, 5.0],
    "dnsmos_p808": [1.0, 5.0],
    "distillmos": [1.0, 5.0],
}
#: Scale of metrics without both bounds (the loss divides their error by it; see the module notes).
UNBOUNDED_SCALES = {"si_sdr": 30.0, "si_snr": 30.0}
_DEFAULT_SCALE = 1.0


def _bound(value):
    return None if value is None else float(value)


def metric_scales(ranges, scales=None):
    """The scale of each metric: ``high - low`` where both bounds are known, else the given one.

    Arguments
    ---------
    ranges : list of [low, high]
        One range per metric (``None`` for an unbounded side).
    scales : list of float or None, optional
        Scales given for some metrics (``None`` entries: derived); default all derived.

    Returns
    -------
    list of float
        One positive scale per metric.

    Example
    -------
    >>> metric_scales([[1.0, 4.5], [0.0, 1.0], [None, None]], [None, None, 30.0])
    [3.5, 1.0, 30.0]
    """
    scales = list(scales) if scales is not None else [None] * len(ranges)
    if len(scales) != len(ranges):
        raise ValueError(f"{len(scales)} scales for {len(ranges)} metrics")
    out = []
    for (low, high), scale in zip(ranges, scales):
        if scale is None:
            scale = (high - low) if low is not None and high is not None else _DEFAULT_SCALE
        if not float(scale) > 0:
            raise ValueError(f"metric scales must be positive, got {scale}")
        out.append(float(scale))
    return out


class RangeActivation(nn.Module):
    """Maps raw outputs ``[batch, metrics]`` into each metric's range (see the module notes).

    Arguments
    ---------
    ranges : list of [low, high]
        One range per output; ``None`` for an unbounded side.
    scales : list of float, optional
        Scale per output (default :func:`metric_scales`).

    Example
    -------
    >>> act = RangeActivation([[1.0, 4.5], [0.0, None], [None, None]], [3.5, 2.0, 30.0])
    >>> act(torch.tensor([[0.0, 0.0, 0.5], [-30.0, -30.0, -1.0]])).round(decimals=4)
    tensor([[  2.7500,   1.3863,  15.0000],
            [  1.0000,   0.0000, -30.0000]])
    """

    def __init__(self, ranges, scales=None):
        super().__init__()
        ranges = [[_bound(low), _bound(high)] for low, high in ranges]
        for low, high in ranges:
            if low is not None and high is not None and not low < high:
                raise ValueError(f"range [{low}, {high}] must have low < high")
        self.ranges = ranges
        scales = metric_scales(ranges, scales)
        kinds = [(low is not None) + 2 * (high is not None) for low, high in ranges]  # 0 none, 1 low, 2 high, 3 both
        self.register_buffer("kinds", torch.tensor(kinds), persistent=False)
        self.register_buffer("lows", torch.tensor([0.0 if low is None else low for low, _ in ranges]), persistent=False)
        self.register_buffer("highs", torch.tensor([0.0 if high is None else high for _, high in ranges]),
                             persistent=False)
        self.register_buffer("scales", torch.tensor(scales), persistent=False)

    def forward(self, x):
        """``[batch, metrics]`` raw outputs -> values in each metric's range."""
        lows, highs, scales, kinds = (t.to(x.dtype) if t.is_floating_point() else t
                                      for t in (self.lows, self.highs, self.scales, self.kinds))
        bounded = lows + (highs - lows) * torch.sigmoid(x)
        lower = lows + scales * F.softplus(x)
        upper = highs - scales * F.softplus(-x)
        free = scales * x
        return torch.where(kinds == 3, bounded, torch.where(kinds == 1, lower, torch.where(kinds == 2, upper, free)))


def masked_metric_mse(predictions, labels, scales=None):
    """Mean over metrics of the MSE of scaled errors, labels that are NaN (missing) left out.

    A metric without any label in the batch adds nothing (no gradient, no NaN); the loss is the
    mean over the metrics that have labels (0, still attached to the graph, when none has).

    Arguments
    ---------
    predictions : torch.Tensor
        ``[batch, metrics]``.
    labels : torch.Tensor
        ``[batch, metrics]``, NaN where missing.
    scales : torch.Tensor or list of float, optional
        ``[metrics]``: each metric's error is divided by its scale (default 1).

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    per_metric : torch.Tensor
        ``[metrics]`` scaled MSE of each metric (NaN where the batch has no label), detached.

    Example
    -------
    >>> pred = torch.tensor([[2.0, 0.5], [3.0, 0.5]], requires_grad=True)
    >>> labels = torch.tensor([[1.0, float("nan")], [3.0, float("nan")]])
    >>> loss, per_metric = masked_metric_mse(pred, labels, [2.0, 1.0])
    >>> float(loss.detach()), per_metric   # ((2 - 1) / 2) ** 2 / 2; the second metric has no label
    (0.125, tensor([0.1250,    nan]))
    >>> loss.backward(); pred.grad
    tensor([[0.2500, 0.0000],
            [0.0000, 0.0000]])
    """
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels = labels.to(predictions.dtype)
    valid = ~torch.isnan(labels)
    if scales is None:
        scales = torch.ones(predictions.shape[-1], dtype=predictions.dtype, device=predictions.device)
    scales = torch.as_tensor(scales, dtype=predictions.dtype, device=predictions.device)
    errors = torch.where(valid, (predictions - torch.where(valid, labels, torch.zeros_like(labels))) / scales,
                         torch.zeros_like(predictions))
    counts = valid.sum(dim=0)
    per_metric = (errors**2).sum(dim=0) / counts.clamp(min=1)
    present = counts > 0
    if bool(present.any()):
        loss = per_metric[present].mean()
    else:
        loss = predictions.sum() * 0.0
    shown = torch.where(present, per_metric.detach(), torch.full_like(per_metric, math.nan).detach())
    return loss, shown


@record_init_args
class SQAPredictor(nn.Module):
    """The trained part of the quality predictor besides the SSL upstream (see the module notes).

    Arguments
    ---------
    metrics : list of str
        The predicted metrics, in output order (default :data:`DEFAULT_METRICS`).
    ranges : list of [low, high], optional
        Range of each metric (``None`` for an unbounded side); default :data:`METRIC_RANGES`.
    scales : list of float, optional
        Scale of each metric (``None`` entries: ``high - low``, or :data:`UNBOUNDED_SCALES`).
    ssl_layers : int
        Hidden states of the upstream (input representation included).
    ssl_size : int
        Size of each hidden state.
    d_model : int
        Width of the Transformer encoder.
    num_layers : int
        Transformer encoder layers (6 in the reference).
    num_heads : int
        Attention heads.
    ffn_size : int
        Feed-forward size of each Transformer layer.
    dropout : float
        Dropout in the Transformer layers.
    spectral_mels : int
        Mel bins of the optional spectral branch (see the module notes); 0: off (SSL states only).

    Example
    -------
    >>> model = SQAPredictor(["pesq_wb", "stoi", "si_sdr"], ssl_layers=3, ssl_size=16, d_model=32,
    ...                      num_layers=1, num_heads=2, ffn_size=64)
    >>> states = torch.randn(3, 2, 50, 16)       # 3 hidden states of 2 utterances, 50 frames
    >>> scores = model(states, torch.tensor([50, 30]))
    >>> scores.shape                             # [batch, metrics]
    torch.Size([2, 3])
    >>> bool(((scores[:, 0] >= 1.0) & (scores[:, 0] <= 4.5)).all())
    True
    >>> model.metrics, model.scales
    (['pesq_wb', 'stoi', 'si_sdr'], [3.5, 1.0, 30.0])
    >>> spectral = SQAPredictor(["pesq_wb"], ssl_layers=3, ssl_size=16, d_model=32, num_layers=1, num_heads=2,
    ...                         ffn_size=64, spectral_mels=40)
    >>> wavs = torch.randn(2, 8000)              # the waveforms the 50 SSL frames came from
    >>> spectral(states, torch.tensor([50, 30]), wavs, torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 1])
    """

    def __init__(self, metrics=DEFAULT_METRICS, ranges=None, scales=None, ssl_layers=4, ssl_size=192,
                 d_model=128, num_layers=2, num_heads=4, ffn_size=256, dropout=0.1, spectral_mels=0):
        super().__init__()
        self.metrics = [str(name) for name in metrics]
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics must be distinct names, got {self.metrics}")
        if ranges is None:
            unknown = [name for name in self.metrics if name not in METRIC_RANGES]
            if unknown:
                raise ValueError(f"no known range for {', '.join(unknown)}: give ranges=")
            ranges = [METRIC_RANGES[name] for name in self.metrics]
        if len(ranges) != len(self.metrics):
            raise ValueError(f"{len(ranges)} ranges for {len(self.metrics)} metrics")
        if scales is None:
            scales = [UNBOUNDED_SCALES.get(name) for name in self.metrics]
        self.ranges = [[_bound(low), _bound(high)] for low, high in ranges]
        self.scales = metric_scales(self.ranges, scales)
        self.weighted = LayerNormWeightedSum(ssl_layers, ssl_size)
        self.proj = nn.Linear(ssl_size, d_model)
        self.proj_norm = nn.LayerNorm(d_model)
        self.spectral_mels = int(spectral_mels)
        if self.spectral_mels > 0:
            # eps 1e-6: a floor near the quietest real noise at the -25 dB level, not s3prl's 1e-10
            # (which puts digital silence 20 log units below everything else).
            self.spectral = TERAFeatures(self.spectral_mels, cmvn=False, eps=1e-6)
            self.spectral_proj = nn.Linear(self.spectral_mels, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, ffn_size, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, len(self.metrics))
        self.activation = RangeActivation(self.ranges, self.scales)

    def layer_weights(self):
        """``softmax`` of the SSL layer weights ``[ssl_layers]``."""
        return self.weighted.layer_weights()

    def spectral_features(self, wavs, lengths, frames):
        """The spectral branch's log-mel of ``wavs`` resampled to ``frames`` frames ``[batch, frames, mels]``.

        Both streams cover the padded batch's duration, so one resampling aligns every utterance
        (none for TERA, whose frames are the same 10 ms frames).
        """
        if wavs is None:
            raise ValueError("this predictor has a spectral branch (spectral_mels > 0): pass the waveforms")
        feats, _ = self.spectral(wavs, lengths)
        # log(mel + 1e-6) spans about -14..+6 at the -25 dB level: scaled to about unit size.
        feats = feats / 10.0
        if feats.shape[1] != frames:
            feats = F.interpolate(feats.transpose(1, 2), size=frames, mode="linear", align_corners=False)
            feats = feats.transpose(1, 2)
        return feats

    def pooled(self, hidden_states, ssl_frames=None, wavs=None, lengths=None):
        """The utterance embeddings: mean of the encoder output over each utterance's valid frames.

        Arguments
        ---------
        hidden_states : list of torch.Tensor or torch.Tensor
            The upstream's states: a list of ``[batch, frames, dim]`` or ``[layers, batch, frames, dim]``.
        ssl_frames : torch.Tensor, optional
            Valid frames of each utterance ``[batch]``; None: all.
        wavs : torch.Tensor, optional
            The waveforms ``[batch, samples]`` (needed, and only used, with a spectral branch).
        lengths : torch.Tensor, optional
            Relative lengths of ``wavs`` ``[batch]``.

        Returns
        -------
        torch.Tensor
            ``[batch, d_model]``.
        """
        x = self.weighted(hidden_states)
        batch, frames, _ = x.shape
        if ssl_frames is None:
            valid = torch.ones(batch, frames, dtype=torch.bool, device=x.device)
        else:
            counts = ssl_frames.to(x.device).long().clamp(min=1, max=frames)
            valid = torch.arange(frames, device=x.device)[None, :] < counts[:, None]
        x = self.proj(x)
        if self.spectral_mels > 0:
            x = x + self.spectral_proj(self.spectral_features(wavs, lengths, frames).to(x.dtype))
        x = self.proj_norm(x)
        x = whole_input_transformer(self.encoder, x, valid)
        weights = valid.to(x.dtype).unsqueeze(-1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1)

    def forward(self, hidden_states, ssl_frames=None, wavs=None, lengths=None):
        """Predicted metrics ``[batch, metrics]`` (see :meth:`pooled` for the arguments)."""
        return self.activation(self.head(self.pooled(hidden_states, ssl_frames, wavs, lengths)))

    def loss(self, predictions, labels):
        """:func:`masked_metric_mse` with this model's scales; returns ``(loss, per_metric)``."""
        return masked_metric_mse(predictions, labels, self.scales)


def sqa_forward(model, upstream, wavs, lengths=None, train_ssl=False):
    """The predictor's chain on a padded batch of waveforms: SSL states, then the metrics.

    Arguments
    ---------
    model : SQAPredictor
        The predictor (or its DistributedDataParallel wrapper, called so gradients sync).
    upstream : torch.nn.Module
        The SSL upstream (see :func:`~speechbrain_sqe.lobes.bsse.ssl_hidden_states`).
    wavs : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    train_ssl : bool
        Keep the upstream's graph; False (the default, a frozen upstream) runs it without gradients.

    Returns
    -------
    torch.Tensor
        ``[batch, metrics]``.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32).eval()
    >>> model = SQAPredictor(["stoi", "si_sdr"], ssl_layers=2, ssl_size=16, d_model=16, num_layers=1,
    ...                      num_heads=2, ffn_size=32)
    >>> sqa_forward(model, tera, torch.randn(2, 8000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 2])
    """
    upstream = getattr(upstream, "module", upstream)
    with torch.set_grad_enabled(train_ssl and torch.is_grad_enabled()):
        states, ssl_frames = ssl_hidden_states(upstream, wavs, lengths)
    if not train_ssl:
        states = states.detach()
    return model(states, ssl_frames, wavs, lengths)

