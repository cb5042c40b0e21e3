"""Tests of speechbrain_sqe.lobes.weighted_ssl."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.lobes.weighted_ssl import WeightedSSL, WeightedSSLEncoder


def _tera():
    return TERAModel(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, dropout=0.1)


class _StackedUpstream(torch.nn.Module):
    """Mimics SpeechBrain's HF SSL wrappers with output_all_hiddens=True: [layers, B, T, D]."""

    def __init__(self, layers=5, dim=6):
        super().__init__()
        self.proj = torch.nn.Linear(1, dim)
        self.layers = layers

    def forward(self, wav, wav_lens=None):
        x = self.proj(wav[:, ::100].unsqueeze(-1))
        return torch.stack([x * (i + 1) for i in range(self.layers)])


def test_weights_start_uniform_and_learn():
    ws = WeightedSSL(3)
    torch.testing.assert_close(ws.layer_weights(), torch.full((3,), 1 / 3))
    states = torch.randn(3, 2, 4, 5)
    torch.testing.assert_close(ws(states), states.mean(0))
    torch.testing.assert_close(ws(list(states)), states.mean(0))
    target = states[2]
    opt = torch.optim.SGD(ws.parameters(), lr=5.0)
    for _ in range(20):
        opt.zero_grad()
        F.mse_loss(ws(states), target).backward()
        opt.step()
    assert ws.layer_weights().argmax() == 2 and ws.layer_weights()[2] > 0.6
    with pytest.raises(ValueError):
        ws(torch.randn(4, 2, 4, 5))


def test_layer_norm_option():
    states = torch.randn(2, 2, 4, 5) * 10 + 3
    out = WeightedSSL(2, layer_norm=True)(states)
    torch.testing.assert_close(out, F.layer_norm(states, (5,)).mean(0))
    assert len(list(WeightedSSL(2, layer_norm=True).parameters())) == 1  # no affine norm


def test_frozen_tera_upstream_gets_no_gradient_and_stays_eval():
    enc = WeightedSSLEncoder(_tera(), num_layers=3)
    enc.train()
    assert enc.training and not enc.upstream.training
    out = enc(torch.randn(2, 3200), torch.tensor([1.0, 0.6]))
    assert out.shape == (2, 21, 16)
    out.pow(2).mean().backward()
    assert enc.weighted.weights.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in enc.upstream.parameters())


def test_finetuned_upstream_gets_gradient():
    enc = WeightedSSLEncoder(_tera(), num_layers=3, freeze=False, layer_norm=True)
    enc.train()
    assert enc.upstream.training
    enc(torch.randn(2, 3200)).pow(2).mean().backward()
    assert enc.upstream.encoder.input_proj.weight.grad.abs().sum() > 0


def test_stacked_upstream_layout():
    up = _StackedUpstream()
    enc = WeightedSSLEncoder(up, num_layers=5)
    wav = torch.randn(2, 1000)
    out = enc(wav, torch.ones(2))
    torch.testing.assert_close(out, up(wav).mean(0))
    out.sum().backward()
    assert up.proj.weight.grad is None
