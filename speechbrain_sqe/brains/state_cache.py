"""Per-file hidden states of a frozen upstream, computed once and kept in memory for later epochs.

A head trained over a frozen upstream (the learned quality predictor) sees every file many times,
and the upstream's pass costs far more than the head's: the Distill-MOS encoder runs at about 30x
real time on 2 CPU cores, so 4,000 files cost 13 minutes per epoch in the upstream alone. The states
never change while the upstream is frozen, so each file's states are computed on its first pass
(whole file, as the exported interface sees it) and reused; training crops are then cut from the
states (a random window of ``crop_frames``) together with the matching samples of the waveform (for
a head that also reads the waveform, such as the predictor's spectral branch).

Written here because SpeechBrain has no feature cache for frozen upstreams (its recipes recompute
SSL features every epoch, or precompute them to disk with a separate script).

Authors: speechbrain-sqe contributors
"""

import torch

from speechbrain_sqe.lobes.bsse import ssl_hidden_states

__all__ = ["UpstreamStateCache"]


class UpstreamStateCache:
    """Whole-file states of a frozen upstream, by file ID, in memory (``dtype``, CPU).

    Arguments
    ---------
    upstream : torch.nn.Module
        The frozen upstream (SSL encoder contract: :func:`~speechbrain_sqe.lobes.bsse.ssl_hidden_states`).
    hop_samples : int
        The upstream's frame hop in samples (aligns a crop of states with its samples).
    dtype : torch.dtype
        Storage type (float16 halves the memory; the states are then cast back to the batch's type).

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32).eval()
    >>> cache = UpstreamStateCache(tera, hop_samples=160)
    >>> wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.5])
    >>> states, counts, crops, crop_lens = cache.batch(["a", "b"], wavs, lens, crop_frames=40)
    >>> states.shape, counts.tolist(), crops.shape, len(cache)     # [layers, batch, frames, dim]
    (torch.Size([2, 2, 40, 16]), [40, 40], torch.Size([2, 6400]), 2)
    >>> whole, counts, _, _ = cache.batch(["b"], wavs[1:, :8000])  # cached: the upstream is not run
    >>> whole.shape, counts.tolist(), cache.misses
    (torch.Size([2, 1, 51, 16]), [51], 2)
    """

    def __init__(self, upstream, hop_samples, dtype=torch.float16):
        self.upstream = upstream
        self.hop_samples = int(hop_samples)
        self.dtype = dtype
        self.states = {}
        self.misses = 0

    def __len__(self):
        return len(self.states)

    def _fill(self, ids, wavs, lengths):
        """Runs the upstream on the files of ``ids`` not cached yet (one padded batch)."""
        missing = [index for index, key in enumerate(ids) if key not in self.states]
        if not missing:
            return
        rows = torch.tensor(missing, device=wavs.device)
        sub_wavs = wavs.index_select(0, rows)
        sub_lens = None if lengths is None else lengths.index_select(0, rows.to(lengths.device))
        if sub_lens is not None:  # the batch of misses is as long as its longest file
            longest = float(sub_lens.max())
            keep = max(1, round(longest * sub_wavs.shape[1]))
            sub_wavs, sub_lens = sub_wavs[:, :keep], (sub_lens / longest).clamp(max=1.0)
        with torch.no_grad():
            states, counts = ssl_hidden_states(self.upstream, sub_wavs, sub_lens)
        for position, index in enumerate(missing):
            count = states.shape[2] if counts is None else int(counts[position])
            self.states[ids[index]] = states[:, position, :count].detach().to("cpu", self.dtype).clone()
        self.misses += len(missing)

    def batch(self, ids, wavs, lengths=None, crop_frames=None):
        """The states of a padded batch, from the cache (computed where missing), optionally cropped.

        Arguments
        ---------
        ids : list of str
            One key per file (the dataset's ``id``).
        wavs : torch.Tensor
            The whole files ``[batch, samples]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        crop_frames : int, optional
            A random window of this many frames of each longer file (and its samples); None: whole.

        Returns
        -------
        states : torch.Tensor
            ``[layers, batch, frames, dim]`` on ``wavs``'s device and type (0 past each file).
        counts : torch.Tensor
            Valid frames per file ``[batch]``.
        wavs : torch.Tensor
            The samples of the kept frames ``[batch, samples]`` (0-padded).
        lengths : torch.Tensor
            Their relative lengths ``[batch]``.
        """
        self._fill(ids, wavs, lengths)
        total = wavs.shape[1]
        valid = [total] * len(ids) if lengths is None else \
            torch.round(lengths.float() * total).long().clamp(1, total).tolist()
        pieces, signals = [], []
        for index, key in enumerate(ids):
            states = self.states[key]
            samples = wavs[index, : valid[index]]
            frames = states.shape[1]
            if crop_frames is not None and frames > crop_frames:
                start = int(torch.randint(0, frames - crop_frames + 1, (1,)))
                states = states[:, start: start + crop_frames]
                samples = samples[start * self.hop_samples: (start + crop_frames) * self.hop_samples]
            pieces.append(states)
            signals.append(samples)
        layers, _, dim = pieces[0].shape
        counts = torch.tensor([piece.shape[1] for piece in pieces], device=wavs.device)
        out = wavs.new_zeros(layers, len(ids), int(counts.max()), dim)
        for index, piece in enumerate(pieces):
            out[:, index, : piece.shape[1]] = piece.to(out.device, out.dtype)
        longest = max(signal.shape[0] for signal in signals)
        crops = wavs.new_zeros(len(ids), longest)
        for index, signal in enumerate(signals):
            crops[index, : signal.shape[0]] = signal
        crop_lens = torch.tensor([signal.shape[0] / longest for signal in signals], device=wavs.device)
        return out, counts, crops, crop_lens
