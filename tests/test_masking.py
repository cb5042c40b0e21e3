"""Tests of speechbrain_sqe.lobes.masking (one home for the masking helpers)."""

import torch

from speechbrain_sqe.lobes import (
    alteration,
    conv_stack,
    quantizers,
    tera,
    vqvae,
    vqvae_se,
)
from speechbrain_sqe.lobes.masking import (
    apply_mask,
    masked_instance_norm,
    masked_mean,
    masked_mean_removal,
    relative_lengths_to_mask,
)

LENGTHS = torch.tensor([1.0, 0.7, 0.3])


def test_mask_from_relative_lengths():
    mask = relative_lengths_to_mask(LENGTHS, 10)
    assert mask.dtype == torch.bool and mask.shape == (3, 10)
    assert mask.sum(1).tolist() == [10, 7, 3]
    assert relative_lengths_to_mask(None, 10) is None


def test_one_definition_used_everywhere():
    for module in (quantizers, tera, alteration, conv_stack, vqvae, vqvae_se):
        assert module.relative_lengths_to_mask is relative_lengths_to_mask
    assert vqvae.masked_instance_norm is masked_instance_norm
    assert vqvae_se.masked_mean_removal is masked_mean_removal
    for module in (vqvae, vqvae_se):
        assert not hasattr(module, "_apply_mask") and not hasattr(module, "_conv")


def test_apply_mask_both_layouts():
    x = torch.randn(3, 4, 10)  # [batch, channels, time]
    mask = relative_lengths_to_mask(LENGTHS, 10)
    y = apply_mask(x, mask)
    assert float(y[1, :, 7:].abs().sum()) == 0.0 and torch.equal(y[1, :, :7], x[1, :, :7])
    torch.testing.assert_close(apply_mask(x.transpose(1, 2), mask, time_dim=1), y.transpose(1, 2))
    assert apply_mask(x, None) is x


def test_masked_statistics_equal_the_utterance_alone():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 10)
    mask = relative_lengths_to_mask(LENGTHS, 10)
    inorm, mr = masked_instance_norm(x, mask), masked_mean_removal(x, mask)
    for i, n in enumerate([10, 7, 3]):
        torch.testing.assert_close(inorm[i : i + 1, :, :n], masked_instance_norm(x[i : i + 1, :, :n]))
        torch.testing.assert_close(mr[i : i + 1, :, :n], masked_mean_removal(x[i : i + 1, :, :n]))
        assert float(inorm[i, :, n:].abs().sum()) == 0.0 and float(mr[i, :, n:].abs().sum()) == 0.0
    torch.testing.assert_close(masked_instance_norm(x), torch.nn.InstanceNorm1d(4)(x))
    torch.testing.assert_close(masked_mean_removal(x), x - x.mean(-1, keepdim=True))


def test_masked_norms_inference_path_equals_the_autograd_path():
    """Without autograd the norms take their faster path (batched matrix-vector sums); it gives the
    values of the autograd path, including padded frames at 0, an all-padded row and constant
    channels (zero variance)."""
    torch.manual_seed(0)
    x = torch.randn(4, 8, 50) * 3 + 1
    x[2, 3] = 5.0  # a constant channel
    mask = relative_lengths_to_mask(torch.tensor([1.0, 0.62, 0.3, 0.0]), 50)
    fast = masked_instance_norm(x, mask)
    exact = masked_instance_norm(x.clone().requires_grad_(), mask)
    assert exact.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, exact.detach(), atol=1e-5, rtol=1e-5)
    assert float(fast[1, :, 31:].abs().sum()) == 0.0 and float(fast[3].abs().sum()) == 0.0
    assert torch.isfinite(fast).all() and float(fast[2, 3].abs().max()) == 0.0
    exact.square().sum().backward()  # the autograd path still trains
    fast = masked_mean_removal(x, mask)
    exact = masked_mean_removal(x.clone().requires_grad_(), mask)
    torch.testing.assert_close(fast, exact.detach(), atol=1e-5, rtol=1e-5)
    assert float(fast[1, :, 31:].abs().sum()) == 0.0 and float(fast[3].abs().sum()) == 0.0


def test_masked_mean():
    values = torch.randn(3, 10)
    mask = relative_lengths_to_mask(LENGTHS, 10)
    per_utt = masked_mean(values, mask, dim=1)
    for i, n in enumerate([10, 7, 3]):
        torch.testing.assert_close(per_utt[i], values[i, :n].mean())
    total = torch.cat([values[0], values[1, :7], values[2, :3]]).mean()
    torch.testing.assert_close(masked_mean(values, mask), total)
    torch.testing.assert_close(masked_mean(values), values.mean())
    torch.testing.assert_close(masked_mean(values, None, dim=1), values.mean(1))
    assert float(masked_mean(values, torch.zeros(3, 10, dtype=torch.bool))) == 0.0
