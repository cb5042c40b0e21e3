"""Waveform adversarial attack of VQScore's enhancement step 2 (Fu et al., ICLR 2024).

To make the enhancement encoder robust, a student encoder (initialised from the step-1 teacher,
codebook frozen) is trained to predict, from a perturbed waveform, the teacher's tokens of the
clean waveform. The perturbation is one step of L2-normalised gradient ascent on the waveform
against the student's token cross-entropy::

    x_adv = x + eps * ||x|| * g / ||g||,   g = d CE(student(x), teacher_tokens(x)) / dx,
    eps ~ U[eps_min, eps_max] per utterance (0.03 to 0.55 in the paper),

with both norms taken per utterance over its valid samples.

Authors: speechbrain-sqe contributors
"""

import torch

from speechbrain_sqe.lobes.masking import relative_lengths_to_mask

__all__ = ["l2_waveform_attack"]


def _sample_mask(wav, lengths):
    """``[batch, samples]`` float mask of valid samples (all ones without ``lengths``)."""
    if lengths is None:
        return torch.ones_like(wav)
    return relative_lengths_to_mask(lengths, wav.shape[1], device=wav.device).to(wav.dtype)


def l2_waveform_attack(wav, lengths, loss_fn, eps_range=(0.03, 0.55), generator=None):
    """One step of L2-normalised gradient ascent on a batch of waveforms.

    ``x_adv = x + eps * ||x|| * g / ||g||`` with ``g`` the gradient of ``loss_fn`` with respect
    to the waveform, zeroed on padded samples, and both norms per utterance over its valid
    samples, so ``||x_adv - x|| = eps * ||x||`` and the padding is unchanged. The gradient is taken
    with :func:`torch.autograd.grad` with respect to the waveform only: no ``.grad`` is
    accumulated on the model's parameters. Utterances with a zero gradient are left unchanged.
    Put the student in the mode wanted for the attack (e.g. ``eval()`` to attack without dropout)
    before calling.

    Arguments
    ---------
    wav : torch.Tensor
        Waveforms ``[batch, samples]``.
    lengths : torch.Tensor or None
        Relative lengths ``[batch]`` (None: all samples valid).
    loss_fn : callable
        ``loss_fn(wav) -> scalar tensor`` differentiable with respect to ``wav`` (e.g. the
        student's token cross-entropy to the teacher's tokens of the clean waveform).
    eps_range : tuple of float
        ``(low, high)``: ``eps`` is drawn uniformly per utterance (``low == high``: fixed).
    generator : torch.Generator, optional
        Random generator for ``eps`` (on the CPU).

    Returns
    -------
    wav_adv : torch.Tensor
        Perturbed waveforms ``[batch, samples]``, detached.
    eps : torch.Tensor
        The relative perturbation sizes ``[batch]``.

    Example
    -------
    >>> wav = torch.randn(2, 1000)  # [batch, samples]
    >>> lengths = torch.tensor([1.0, 0.5])
    >>> target = torch.zeros(2, 1000)
    >>> loss_fn = lambda x: ((x - target) ** 2).sum()
    >>> wav_adv, eps = l2_waveform_attack(wav, lengths, loss_fn)
    >>> wav_adv.shape, eps.shape, wav_adv.requires_grad
    (torch.Size([2, 1000]), torch.Size([2]), False)
    >>> bool(loss_fn(wav_adv) > loss_fn(wav))
    True
    >>> bool(torch.equal(wav_adv[1, 500:], wav[1, 500:]))
    True
    """
    low, high = eps_range
    x = wav.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x)
        (grad,) = torch.autograd.grad(loss, [x], allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    mask = _sample_mask(wav, lengths)
    grad = grad.detach() * mask
    x0 = wav.detach()
    x_norm = (x0 * mask).norm(dim=1)
    g_norm = grad.norm(dim=1)
    eps = low + (high - low) * torch.rand(wav.shape[0], generator=generator)
    eps = eps.to(device=wav.device, dtype=wav.dtype)
    scale = torch.where(g_norm > 0, eps * x_norm / g_norm.clamp(min=torch.finfo(g_norm.dtype).tiny), 0.0)
    return x0 + scale.unsqueeze(1) * grad, eps
