"""A BLSTM mask network: ``Linear(in -> proj) -> BLSTM (directions summed) -> Linear(-> bins) -> sigmoid``.

The mask estimator of BSSE (Hung et al., "Boosting Self-Supervised Embeddings for Speech
Enhancement", Interspeech 2022), usable alone for any frame-level mask: input features ``[batch,
frames, input_size]`` give a mask in ``(0, 1)`` of ``[batch, frames, output_size]``.

What matches the reference code (khhungg/BSSE-SE, ``models/BLSTM.py``): a linear projection of the
input to 256, a 2-layer bidirectional ``torch.nn.LSTM`` of hidden size 256 whose forward and
backward outputs are SUMMED (not concatenated), a linear layer to 201 bins and a sigmoid; PyTorch's
default initialisation. What differs: a padded batch is packed
(:func:`torch.nn.utils.rnn.pack_padded_sequence` with each utterance's frame count), so the backward
direction starts at each utterance's own last frame and every utterance gets the mask it gets alone
(the reference trains on equal-length crops and infers one file at a time); padded frames of the mask
are 0. SpeechBrain's :class:`speechbrain.nnet.RNN.LSTM` is not used: it packs with
``relative_length * frames`` truncated to an integer, which drops the last frame of an utterance
whenever the float product falls just below its count.

Authors: speechbrain-sqe contributors
"""

import torch
from torch import nn

from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import apply_mask, relative_lengths_to_mask

__all__ = ["BLSTMMaskNet", "frame_counts"]


def frame_counts(lengths, frames):
    """Frame counts from SpeechBrain relative lengths (``round(length * frames)``, at least 1).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths ``[batch]``; None: every utterance has ``frames`` frames.
    frames : int
        Padded number of frames.

    Returns
    -------
    torch.Tensor or None
        ``[batch]`` int64 counts (None when ``lengths`` is None).

    Example
    -------
    >>> frame_counts(torch.tensor([1.0, 0.5079]), 126)
    tensor([126,  64])
    """
    if lengths is None:
        return None
    return torch.round(lengths.float() * frames).long().clamp(1, frames)


@record_init_args
class BLSTMMaskNet(nn.Module):
    """Frame-level sigmoid mask from a projection, a BLSTM with summed directions and a linear layer.

    Arguments
    ---------
    input_size : int
        Size of the input features (201 spectrum, the SSL size, or both for the cross-domain input).
    output_size : int
        Mask bins (201 for a 400-point FFT).
    proj_size : int
        Size of the input projection (reference: 256).
    hidden_size : int
        LSTM hidden size per direction; the summed output has this size (reference: 256).
    num_layers : int
        Stacked BLSTM layers (reference: 2).
    dropout : float
        Dropout between the LSTM layers (reference: 0).

    Example
    -------
    >>> net = BLSTMMaskNet(input_size=10, output_size=6, proj_size=8, hidden_size=8)
    >>> x = torch.randn(2, 20, 10)  # [batch, frames, features]
    >>> lengths = torch.tensor([1.0, 0.5])
    >>> mask = net(x, lengths)
    >>> mask.shape, bool((mask[0] > 0).all() and (mask < 1).all())
    (torch.Size([2, 20, 6]), True)
    >>> torch.allclose(mask[1, :10], net(x[1:, :10])[0], atol=1e-6), float(mask[1, 10:].detach().abs().sum())
    (True, 0.0)
    """

    def __init__(self, input_size, output_size=201, proj_size=256, hidden_size=256, num_layers=2, dropout=0.0):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj = nn.Linear(input_size, proj_size)
        self.blstm = nn.LSTM(proj_size, hidden_size, num_layers=num_layers, batch_first=True,
                             dropout=dropout if num_layers > 1 else 0.0, bidirectional=True)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, x, lengths=None):
        """The mask of a padded batch.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, frames, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (SpeechBrain convention); None: all frames valid.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, output_size]`` in ``(0, 1)``, 0 on padded frames.
        """
        frames = x.shape[1]
        h = self.proj(x)
        counts = frame_counts(lengths, frames)
        if counts is None:
            h, _ = self.blstm(h)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(h, counts.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.blstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=frames)
        h = h[..., : self.hidden_size] + h[..., self.hidden_size :]  # forward + backward, summed
        mask = torch.sigmoid(self.out(h))
        return apply_mask(mask, relative_lengths_to_mask(lengths, frames, device=x.device), time_dim=1)
