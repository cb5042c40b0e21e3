"""Magnitude-spectrogram features of VQScore (Fu et al., ICLR 2024): the names of the former
``spectral`` module, now defined in :mod:`speechbrain_sqe.lobes.frontend` (same objects, same
numbers). Hub folders and recipes name ``speechbrain_sqe.lobes.spectral.STFTMagnitude``, which
keeps working; new code should use :class:`speechbrain_sqe.lobes.frontend.SpectralFrontEnd`.

What matches and what differs from the authors' features is described in
:mod:`speechbrain_sqe.lobes.frontend`.

Example
-------
>>> import torch
>>> STFTMagnitude()(torch.randn(2, 16000)).shape  # [batch, time, channels]
torch.Size([2, 63, 257])

Authors: speechbrain-sqe contributors
"""

from speechbrain_sqe.lobes.frontend import (
    MAGNITUDE_FLOOR,
    STFTMagnitude,
    frame_lengths,
    num_frames,
    stft_magnitude,
)

__all__ = ["MAGNITUDE_FLOOR", "STFTMagnitude", "frame_lengths", "num_frames", "stft_magnitude"]
