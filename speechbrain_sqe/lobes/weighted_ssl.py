"""Learnable weighted sum of the hidden states of a self-supervised upstream (SUPERB style).

``WeightedSSL`` combines ``L`` hidden states ``h_l`` as ``sum_l softmax(w)_l * h_l`` with ``w``
initialized to zero (uniform weights), optionally layer-normalizing each ``h_l`` (no affine
parameters) first, like s3prl's featurizer. ``WeightedSSLEncoder`` wraps an upstream:

- :class:`speechbrain_sqe.lobes.tera.TERAModel` (its ``hidden_states(wav, lengths)`` returns a
  list of ``[batch, time, dim]``), or
- SpeechBrain's HuggingFace SSL wrappers (``speechbrain.lobes.models.huggingface_transformers``
  ``WavLM``, ``HuBERT``, ``Wav2Vec2`` with ``output_all_hiddens=True``), called as
  ``upstream(wav, wav_lens)`` and returning a stacked ``[layers, batch, time, dim]`` tensor.

Authors: speechbrain-sqe contributors
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WeightedSSL", "WeightedSSLEncoder", "stack_hidden_states"]


def stack_hidden_states(hidden_states):
    """Hidden states as one ``[layers, batch, time, dim]`` tensor.

    Arguments
    ---------
    hidden_states : list of torch.Tensor or torch.Tensor
        A list/tuple of ``[batch, time, dim]`` or an already stacked 4-D tensor.

    Returns
    -------
    torch.Tensor
        ``[layers, batch, time, dim]``.

    Example
    -------
    >>> stack_hidden_states([torch.zeros(2, 5, 3)] * 4).shape
    torch.Size([4, 2, 5, 3])
    """
    if isinstance(hidden_states, (list, tuple)):
        return torch.stack(list(hidden_states), dim=0)
    if hidden_states.dim() != 4:
        raise ValueError(f"expected [layers, batch, time, dim], got shape {tuple(hidden_states.shape)}")
    return hidden_states


class WeightedSSL(nn.Module):
    """Softmax-weighted sum of hidden states.

    Arguments
    ---------
    num_layers : int
        Number of hidden states combined (e.g. 4 for base TERA: input representation + 3 layers).
    layer_norm : bool
        Layer-normalize each hidden state (no affine parameters) before the sum.

    Example
    -------
    >>> ws = WeightedSSL(4)
    >>> ws.layer_weights().tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> ws([torch.randn(2, 10, 8) for _ in range(4)]).shape
    torch.Size([2, 10, 8])
    """

    def __init__(self, num_layers, layer_norm=False):
        super().__init__()
        self.num_layers = num_layers
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def layer_weights(self):
        """The normalized weights ``softmax(w)`` ``[num_layers]``."""
        return self.weights.softmax(dim=0)

    def forward(self, hidden_states):
        """Weighted sum.

        Arguments
        ---------
        hidden_states : list of torch.Tensor or torch.Tensor
            ``num_layers`` tensors ``[batch, time, dim]`` or a stacked ``[num_layers, batch, time, dim]``.

        Returns
        -------
        torch.Tensor
            ``[batch, time, dim]``.
        """
        stacked = stack_hidden_states(hidden_states)
        if stacked.shape[0] != self.num_layers:
            raise ValueError(f"got {stacked.shape[0]} hidden states, expected {self.num_layers}")
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.layer_weights().to(stacked.dtype).view(-1, 1, 1, 1)
        return (weights * stacked).sum(dim=0)


class WeightedSSLEncoder(nn.Module):
    """An upstream returning hidden states followed by :class:`WeightedSSL`.

    Arguments
    ---------
    upstream : nn.Module
        Has ``hidden_states(wav, lengths)`` (TERA) or is called as ``upstream(wav, lengths)``
        returning a list of ``[batch, time, dim]`` or a stacked ``[layers, batch, time, dim]``.
    num_layers : int
        Number of hidden states the upstream returns.
    freeze : bool
        No gradient to the upstream, which stays in ``eval()`` mode even when this module trains.
    layer_norm : bool
        See :class:`WeightedSSL`.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel.small(num_layers=2)
    >>> enc = WeightedSSLEncoder(tera, num_layers=3)
    >>> enc(torch.randn(2, 4000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 26, 192])
    """

    def __init__(self, upstream, num_layers, freeze=True, layer_norm=False):
        super().__init__()
        self.upstream = upstream
        self.freeze = freeze
        self.weighted = WeightedSSL(num_layers, layer_norm)
        if freeze:
            for p in self.upstream.parameters():
                p.requires_grad_(False)
            self.upstream.eval()

    def train(self, mode=True):
        """Sets the training mode, keeping a frozen upstream in ``eval()``."""
        super().train(mode)
        if self.freeze:
            self.upstream.eval()
        return self

    def upstream_hidden_states(self, wav, lengths=None):
        """The upstream's hidden states ``[layers, batch, time, dim]``."""
        if hasattr(self.upstream, "hidden_states"):
            states = self.upstream.hidden_states(wav, lengths)
        else:
            states = self.upstream(wav, lengths)
        return stack_hidden_states(states)

    def forward(self, wav, lengths=None):
        """``wav`` ``[batch, samples]``, relative ``lengths`` -> ``[batch, time, dim]``."""
        if self.freeze:
            with torch.no_grad():
                states = self.upstream_hidden_states(wav, lengths)
            states = states.detach()
        else:
            states = self.upstream_hidden_states(wav, lengths)
        return self.weighted(states)
