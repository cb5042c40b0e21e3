"""TERA's alteration policy for self-supervised pretraining (time, frequency and magnitude).

Follows s3prl's ``generate_masked_acoustic_model_data`` (``pretrain/mockingjay/task.py``) with the
``logMelBase-T-F-M`` settings, per utterance of ``n`` valid frames:

- time: ``round(n * 0.15 / 7)`` span starts drawn without replacement from
  ``[0, max(n - 7 - 1, 0)]`` (spans may overlap), each covering 7 frames; one die per utterance:
  with probability 0.8 the spans are zeroed, 0.1 replaced by as many other randomly placed spans
  of the same utterance, 0.1 left unchanged. All channels of the spanned frames are labelled.
- frequency: a block of ``U{0..int(0.2 * 80) = 16}`` consecutive channels starting at
  ``U{0..C - width - 1}`` is zeroed on every valid frame, and labelled there.
- magnitude: with probability 0.15 Gaussian noise (std 0.2) is added (not labelled).

The loss is the L1 distance on the labelled elements (:func:`masked_l1_loss`, s3prl's
``L1Loss`` on ``masked_select``).

Differences from s3prl: padded frames are never altered (s3prl adds the noise to them too and
could label frames past a very short utterance's end); utterances with nothing labelled are kept
(s3prl drops them from the batch; their mask is simply empty here); all randomness comes from
``torch`` (optionally a ``torch.Generator``), so ``torch.manual_seed`` makes it reproducible.
The noise die is thrown once per batch as in s3prl unless ``noise_per_utterance=True``.

Authors: speechbrain-sqe contributors
"""

import torch
from torch import nn

from speechbrain_sqe.lobes.masking import relative_lengths_to_mask

__all__ = ["TERAAlteration", "masked_l1_loss"]


class TERAAlteration(nn.Module):
    """Alters features as TERA pretraining does and returns the labelled positions.

    Arguments
    ---------
    time_proportion : float
        Fraction of valid frames covered by time spans (0 disables time alteration).
    span : int
        Frames per span.
    zero_prob : float
        Probability (per utterance) that the spans are zeroed.
    replace_prob : float
        Probability that they are replaced by other random frames; otherwise they are kept.
    max_freq_fraction : float
        The frequency block width is ``U{0..int(max_freq_fraction * channels)}`` (0 disables).
    noise_prob : float
        Probability of adding Gaussian noise.
    noise_std : float
        Std of the noise.
    noise_per_utterance : bool
        Throw the noise die per utterance instead of once per batch (s3prl).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> alter = TERAAlteration()
    >>> feats = torch.randn(2, 200, 80)
    >>> altered, mask = alter(feats, torch.tensor([1.0, 0.5]))
    >>> altered.shape, mask.shape, mask.dtype
    (torch.Size([2, 200, 80]), torch.Size([2, 200, 80]), torch.bool)
    >>> bool(mask[1, 100:].any())
    False
    """

    def __init__(self, time_proportion=0.15, span=7, zero_prob=0.8, replace_prob=0.1, max_freq_fraction=0.2,
                 noise_prob=0.15, noise_std=0.2, noise_per_utterance=False):
        super().__init__()
        if zero_prob + replace_prob > 1:
            raise ValueError("zero_prob + replace_prob must be <= 1")
        self.time_proportion = time_proportion
        self.span = span
        self.zero_prob = zero_prob
        self.replace_prob = replace_prob
        self.max_freq_fraction = max_freq_fraction
        self.noise_prob = noise_prob
        self.noise_std = noise_std
        self.noise_per_utterance = noise_per_utterance

    def _span_frames(self, starts, n):
        frames = (starts.unsqueeze(1) + torch.arange(self.span, device=starts.device)).reshape(-1)
        return frames.clamp(max=n - 1)

    @torch.no_grad()
    def forward(self, feats, lengths=None, generator=None):
        """Alters ``feats``.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, frames, channels]`` clean features (not modified in place).
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``; padded frames are never altered nor labelled.
        generator : torch.Generator, optional
            Source of randomness (default: the global CPU generator).

        Returns
        -------
        altered : torch.Tensor
            ``[batch, frames, channels]``.
        mask : torch.Tensor
            ``[batch, frames, channels]`` bool, True where the loss is computed.
        """
        batch, time, channels = feats.shape
        valid = relative_lengths_to_mask(lengths, time, device=feats.device)
        if valid is None:
            valid = torch.ones(batch, time, dtype=torch.bool, device=feats.device)
        n_valid = valid.sum(1).tolist()
        altered = feats.clone()
        mask = torch.zeros_like(feats, dtype=torch.bool)

        def rand(*size):
            return torch.rand(size, generator=generator)

        for b in range(batch):
            n = int(n_valid[b])
            if n == 0:
                continue
            if self.time_proportion > 0:
                start_max = max(n - self.span - 1, 0)
                count = round(n * self.time_proportion / self.span)
                if count > 0:
                    starts = torch.randperm(start_max + 1, generator=generator)[:count]
                    frames = self._span_frames(starts, n).to(feats.device)
                    dice = rand(1).item()
                    if dice < self.zero_prob:
                        altered[b, frames] = 0
                    elif dice < self.zero_prob + self.replace_prob:
                        other = torch.randperm(start_max + 1, generator=generator)[:count]
                        altered[b, frames] = altered[b, self._span_frames(other, n).to(feats.device)]
                    mask[b, frames] = True
            if self.max_freq_fraction > 0:
                max_width = int(channels * self.max_freq_fraction)
                width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
                if width > 0:
                    start = int(torch.randint(0, channels - width, (1,), generator=generator))
                    altered[b, :n, start:start + width] = 0
                    mask[b, :n, start:start + width] = True
        if self.noise_prob > 0:
            if self.noise_per_utterance:
                noisy = rand(batch) < self.noise_prob
            else:
                noisy = (rand(1) < self.noise_prob).expand(batch)
            if bool(noisy.any()):
                noise = torch.randn(feats.shape, generator=generator).to(feats) * self.noise_std
                keep = (valid & noisy.to(feats.device).unsqueeze(1)).unsqueeze(-1)
                altered = altered + noise * keep
        return altered, mask


def masked_l1_loss(pred, target, mask):
    """Mean absolute error over the masked elements (0 when nothing is masked).

    Arguments
    ---------
    pred : torch.Tensor
        ``[batch, frames, channels]`` prediction.
    target : torch.Tensor
        ``[batch, frames, channels]`` clean features.
    mask : torch.Tensor
        Bool, broadcastable to ``pred`` (``[batch, frames, channels]`` or ``[batch, frames, 1]``).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> pred, target = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    >>> mask = torch.tensor([[[True, False], [False, False], [True, True]]])
    >>> masked_l1_loss(pred, target, mask)
    tensor(1.)
    """
    mask = mask.expand_as(pred).to(pred.dtype)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp(min=1.0)
