"""Quality guidance: a FROZEN learned quality predictor turned into a training loss for an enhancer.

Layout::

    enhanced wav [B, N] -> predictor's SSL upstream (eval, requires_grad False; graph kept)
        -> hidden states -> SQAPredictor (eval, requires_grad False) -> predictions [B, M]
    distance_m = max(best_m - prediction_m, 0) / scale_m          (0 at the metric's best value)
    loss = sum_m w_m * mean_batch(distance_m) / sum_m w_m          (w: a per-metric weight, YAML dict)

``best_m`` is the top of a bounded metric's range (PESQ 4.5, STOI/ESTOI 1, DNSMOS OVRL and
Distill-MOS 5) and ``scale_m`` its width, so ``distance = (high - pred) / (high - low)``, a fraction
of the range in [0, 1]. An unbounded metric (SI-SDR) has no best value: its target is its scale
(30 dB, the predictor's own :data:`~speechbrain_sqe.lobes.sqa_predictor.UNBOUNDED_SCALES`) unless
given, so ``distance = max(30 - pred, 0) / 30``: no reward for predicted SI-SDR beyond 30 dB, where
the predictor's labels stop being informative (they are clipped to 50 dB in training). The
predictor's parameters never change, but the gradient flows through it and its upstream to the
waveform: TERA's log-mel front end (:class:`~speechbrain_sqe.lobes.frontend.TERAFeatures`: RMS
level scaling, ``torch.stft``, power, mel matrix, log, per-utterance CMVN) and its Transformer are
differentiable w.r.t. the waveform (the tests check the gradient reaches it, finite), and so is the
Distill-MOS encoder (``--ssl_upstream=distillmos``: its compressed STFT is computed with a finite
gradient, :meth:`~speechbrain_sqe.lobes.distillmos_encoder.DistillMOSEncoder.compressed_spectrum`). Note that
:func:`~speechbrain_sqe.lobes.sqa_predictor.sqa_forward` runs a frozen upstream WITHOUT a graph (the
predictor's own training needs none), so this module calls
:func:`~speechbrain_sqe.lobes.bsse.ssl_hidden_states` and the predictor itself, with the graph.
Two caveats of TERA's front end, both harmless for real speech: a constant (all-equal) waveform
has a zero CMVN standard deviation (its gradient is then not finite), and the level scaling makes
the predictor blind to the output level (so the loss cannot reward loudness).

:func:`si_snr_loss` is the reference-based loss of the comparison: the negative SI-SNR (dB) of each
utterance on its own valid samples (SpeechBrain's :func:`~speechbrain.nnet.losses.cal_si_snr`, which
has no length mask, applied to each group of equal-length utterances).

What matches the seed paper ("Improving Speech Enhancement with Multi-Metric Supervision from
Learned Quality Assessment", 2025): a learned multi-metric quality predictor, kept frozen, scores
the enhancer's output and its predictions of several metrics (PESQ, STOI, SI-SDR, DNSMOS...) become
the training signal, alone or beside a reference-based loss, and on noisy data without references.
What is our choice (the paper's loss form is not public): the per-metric distance to the best value
normalised by the metric's range (or scale), the hinge at the best value, the weighted mean over
metrics, and the predictor itself (the project's :class:`~speechbrain_sqe.lobes.sqa_predictor.SQAPredictor`
over TERA, not the paper's).

Authors: speechbrain-sqe contributors
"""

import torch
from speechbrain.nnet.losses import cal_si_snr
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from torch import nn

from speechbrain_sqe.lobes.bsse import ssl_hidden_states
from speechbrain_sqe.lobes.sqa_predictor import UNBOUNDED_SCALES

__all__ = [
    "PredictorRefresh",
    "QualityGuidanceLoss",
    "freeze",
    "guidance_targets",
    "si_snr_loss",
    "si_snr_values",
]


def freeze(module):
    """Sets a module to eval mode with every parameter ``requires_grad=False``; returns it.

    Arguments
    ---------
    module : torch.nn.Module
        The module.

    Returns
    -------
    torch.nn.Module
        The same module.

    Example
    -------
    >>> net = freeze(nn.Linear(2, 2))
    >>> net.training, net.weight.requires_grad
    (False, False)
    """
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def guidance_targets(metrics, ranges, scales, targets=None):
    """The best value and the scale of each metric (see the module notes).

    Arguments
    ---------
    metrics : list of str
        The predictor's metrics, in output order.
    ranges : list of [low, high]
        Their ranges (``None`` for an unbounded side).
    scales : list of float
        Their scales (``high - low`` for bounded metrics).
    targets : dict, optional
        ``{metric: best value}`` replacing the default (the range's top, else the scale).

    Returns
    -------
    tuple of list
        ``(best, scales)``, one float each per metric.

    Example
    -------
    >>> guidance_targets(["pesq_wb", "stoi", "si_sdr"], [[1.0, 4.5], [0.0, 1.0], [None, None]], [3.5, 1.0, 30.0])
    ([4.5, 1.0, 30.0], [3.5, 1.0, 30.0])
    >>> guidance_targets(["si_sdr"], [[None, None]], [30.0], {"si_sdr": 20.0})[0]
    [20.0]
    """
    targets = dict(targets or {})
    best = []
    for name, (_, high), scale in zip(metrics, ranges, scales):
        if name in targets and targets[name] is not None:
            best.append(float(targets[name]))
        elif high is not None:
            best.append(float(high))
        else:
            best.append(float(UNBOUNDED_SCALES.get(name, scale)))
    return best, [float(scale) for scale in scales]


class QualityGuidanceLoss(nn.Module):
    """The distance of a frozen predictor's predictions on a waveform to each metric's best value.

    The predictor and its upstream are frozen (eval mode, ``requires_grad=False``) and stay in eval
    mode whatever ``train()`` asks (a Brain sets every module to train mode each epoch); gradients
    reach the waveform through them.

    Arguments
    ---------
    predictor : speechbrain_sqe.lobes.sqa_predictor.SQAPredictor
        The trained predictor (``LearnedQualityPredictor(...).mods.predictor``).
    upstream : torch.nn.Module
        Its SSL upstream (``.mods.ssl``).
    weights : dict, optional
        ``{metric: weight}`` (default 1 for every predicted metric); a metric left out or at 0
        adds nothing; a name the predictor does not predict is refused.
    targets : dict, optional
        ``{metric: best value}`` (see :func:`guidance_targets`).

    Example
    -------
    >>> from speechbrain_sqe.lobes.sqa_predictor import SQAPredictor
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> predictor = SQAPredictor(["pesq_wb", "si_sdr"], ssl_layers=2, ssl_size=16, d_model=16,
    ...                          num_layers=1, num_heads=2, ffn_size=32)
    >>> guidance = QualityGuidanceLoss(predictor, tera, weights={"pesq_wb": 1.0, "si_sdr": 0.5})
    >>> wavs = torch.randn(2, 8000, requires_grad=True)        # enhanced waveforms [batch, samples]
    >>> loss, predictions = guidance(wavs, torch.tensor([1.0, 0.5]))
    >>> loss.shape, predictions.shape                          # scalar, [batch, metrics]
    (torch.Size([]), torch.Size([2, 2]))
    >>> loss.backward()
    >>> bool(wavs.grad.abs().sum() > 0), predictor.head.weight.grad is None   # to the waveform only
    (True, True)
    >>> guidance.train().predictor.training                    # stays in eval mode
    False
    """

    def __init__(self, predictor, upstream, weights=None, targets=None):
        super().__init__()
        self.predictor = freeze(predictor)
        self.upstream = freeze(upstream)
        self.metrics = list(predictor.metrics)
        weights = {name: 1.0 for name in self.metrics} if weights is None else dict(weights)
        unknown = [name for name in weights if name not in self.metrics]
        if unknown:
            raise ValueError(f"guidance weights name {', '.join(unknown)}, which the predictor does not predict "
                             f"(it predicts {', '.join(self.metrics)})")
        values = [float(weights.get(name, 0.0) or 0.0) for name in self.metrics]
        if any(value < 0 for value in values) or not sum(values) > 0:
            raise ValueError(f"guidance weights must be >= 0 with at least one > 0, got {weights}")
        best, scales = guidance_targets(self.metrics, predictor.ranges, predictor.scales, targets)
        self.register_buffer("weights", torch.tensor(values), persistent=False)
        self.register_buffer("best", torch.tensor(best), persistent=False)
        self.register_buffer("scales", torch.tensor(scales), persistent=False)

    def train(self, mode=True):
        """Always eval mode (the predictor is frozen; no dropout in its guidance)."""
        return super().train(False)

    def predict(self, wavs, lengths=None):
        """The predictor's metrics ``[batch, metrics]`` of a padded batch, with the graph to ``wavs``."""
        states, ssl_frames = ssl_hidden_states(self.upstream, wavs, lengths)
        return self.predictor(states, ssl_frames, wavs, lengths)

    def distances(self, predictions):
        """``max(best - prediction, 0) / scale`` per utterance and metric ``[batch, metrics]``."""
        best, scales = self.best.to(predictions.dtype), self.scales.to(predictions.dtype)
        return torch.relu(best - predictions) / scales

    def forward(self, wavs, lengths=None):
        """The guidance loss of a padded batch of (enhanced) waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        loss : torch.Tensor
            Scalar: the weighted mean over metrics of the batch's mean distance.
        predictions : torch.Tensor
            ``[batch, metrics]``, detached (for logging).
        """
        predictions = self.predict(wavs, lengths)
        weights = self.weights.to(predictions.dtype)
        loss = (self.distances(predictions).mean(dim=0) * weights).sum() / weights.sum()
        return loss, predictions.detach()


@register_checkpoint_hooks
class PredictorRefresh:
    """Keeps a guidance predictor honest: fine-tunes it on the enhancer's CURRENT outputs with their
    true metric values (MetricGAN's discriminator step, applied to a multi-metric predictor).

    A frozen predictor can be gamed: the enhancer finds outputs the predictor scores high that are
    not better (the project measured predicted PESQ 4.2 against 1.45 true). MetricGAN (Fu et al.,
    2019; MetricGAN+, 2021) avoids this by training its metric-predicting discriminator, in turn with
    the generator, on the generator's latest outputs and on the noisy inputs, labelled by the true
    metric: an output that fools the predictor becomes a training example that corrects it. Here
    the predictor is :class:`QualityGuidanceLoss`'s; its upstream stays frozen (the hidden states are
    computed without a graph), only the predictor's own parameters are updated, by AdamW, gradients
    clipped, with the predictor's own masked scaled MSE (:meth:`SQAPredictor.loss`): a metric whose
    label is NaN (not refreshed) adds nothing. Between refreshes the predictor is frozen again, so
    the enhancer's step treats it as constant. Dropout stays off (the predictor stays in eval mode,
    as in its guidance). What is ours: the multi-metric predictor as the discriminator, the
    fine-tuning of a pretrained one (MetricGAN trains its own from scratch), the learning rate (the
    URGENT 2026 predictor's 3e-5 by default). A SpeechBrain checkpoint recoverable (the predictor's
    weights and the optimizer's state), so an interrupted run resumes with its refreshed predictor.

    Arguments
    ---------
    guidance : QualityGuidanceLoss
        The guidance whose predictor is refreshed (its upstream is never trained).
    lr : float
        AdamW's learning rate.
    clip : float
        Gradient norm clip.

    Example
    -------
    >>> from speechbrain_sqe.lobes.sqa_predictor import SQAPredictor
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> _ = torch.manual_seed(0)
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> predictor = SQAPredictor(["pesq_wb", "stoi"], ssl_layers=2, ssl_size=16, d_model=16,
    ...                          num_layers=1, num_heads=2, ffn_size=32)
    >>> guidance = QualityGuidanceLoss(predictor, tera)
    >>> refresh = PredictorRefresh(guidance, lr=0.01)
    >>> wavs = torch.randn(4, 8000)                                  # enhanced outputs [batch, samples]
    >>> labels = torch.tensor([[1.2, float("nan")]] * 4)            # their true PESQ; STOI not refreshed
    >>> losses = [refresh.step(wavs, labels) for _ in range(20)]
    >>> losses[-1] < losses[0], predictor.head.weight.requires_grad  # closer to the labels; frozen again
    (True, False)
    """

    def __init__(self, guidance, lr=3e-5, clip=1.0):
        self.guidance = guidance
        self.predictor = guidance.predictor
        self.clip = float(clip)
        self.optimizer = torch.optim.AdamW(self.predictor.parameters(), lr=float(lr))
        self.steps = 0

    def step(self, wavs, labels, lengths=None):
        """One update of the predictor toward ``labels`` on ``wavs`` (no graph to ``wavs``).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` (detached here).
        labels : torch.Tensor
            ``[batch, metrics]`` true values in the predictor's metric order, NaN where missing.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.

        Returns
        -------
        float
            The loss before the update (the predictor's scaled MSE on this batch).
        """
        wavs = wavs.detach()
        parameters = list(self.predictor.parameters())
        with torch.no_grad():  # the upstream is never trained: its states need no graph
            states, ssl_frames = ssl_hidden_states(self.guidance.upstream, wavs, lengths)
        with torch.enable_grad():
            for parameter in parameters:
                parameter.requires_grad_(True)
            try:
                predictions = self.predictor(states, ssl_frames, wavs, lengths)
                loss, _ = self.predictor.loss(predictions, labels.to(predictions.device))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, self.clip)
                self.optimizer.step()
            finally:
                self.optimizer.zero_grad(set_to_none=True)
                for parameter in parameters:
                    parameter.requires_grad_(False)
        self.steps += 1
        return float(loss.detach())

    @mark_as_saver
    def _save(self, path):
        torch.save({"predictor": self.predictor.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "steps": self.steps}, path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])


def si_snr_values(estimate, target, lengths=None):
    """SI-SNR (dB) of each utterance on its own valid samples (SpeechBrain's ``cal_si_snr``).

    Arguments
    ---------
    estimate, target : torch.Tensor
        ``[batch, samples]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.

    Returns
    -------
    torch.Tensor
        ``[batch]``.

    Example
    -------
    >>> clean = torch.randn(2, 1600)
    >>> noisy = clean + 0.1 * torch.randn(2, 1600)
    >>> noisy[1, 800:] = 100.0                     # padding of the second utterance: not counted
    >>> values = si_snr_values(noisy, clean, torch.tensor([1.0, 0.5]))
    >>> bool((values > 15).all() and (values < 25).all())
    True
    """
    total = estimate.shape[1]
    if lengths is None:
        counts = [total] * estimate.shape[0]
    else:
        counts = torch.round(lengths.float() * total).long().clamp(1, total).tolist()
    groups = {}
    for index, count in enumerate(counts):
        groups.setdefault(count, []).append(index)
    out = estimate.new_zeros(estimate.shape[0])
    for count, members in groups.items():
        index = torch.tensor(members, device=estimate.device)
        # [T, B, 1] as cal_si_snr wants; it scales its estimate in place, so it gets its own copy.
        est = estimate[members, :count].transpose(0, 1).unsqueeze(-1).clone()
        ref = target[members, :count].transpose(0, 1).unsqueeze(-1).to(est.dtype)
        out = out.index_copy(0, index, -cal_si_snr(ref, est).reshape(-1))
    return out


def si_snr_loss(estimate, target, lengths=None):
    """The negative mean SI-SNR (dB) of a padded batch (see :func:`si_snr_values`).

    Example
    -------
    >>> clean = torch.randn(2, 1600)
    >>> bool(si_snr_loss(clean, clean) < -50), bool(si_snr_loss(torch.randn(2, 1600), clean) > 0)
    (True, True)
    """
    return -si_snr_values(estimate, target, lengths).mean()
