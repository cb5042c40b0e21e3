"""The encoder of Distill-MOS (Stahl and Gamper, 2025) as a frozen upstream: its hidden states, for
heads trained on other targets (the learned multi-metric predictor, ``hparams/sqa.yaml
--ssl_upstream=distillmos``).

Distill-MOS is a MOS predictor distilled from an XLS-R based one; its weights ship inside the
``distillmos`` wheel (PyPI; the project's ``eval`` extra), so it runs offline. It is not
self-supervised: its states were trained to tell quality, which is why they are worth trying as a
quality predictor's front end beside TERA (ours, self-supervised on far less speech).

Layout (``distillmos.sqa.ConvTransformerSQAModel``; nothing of it is copied, the wheel's module is
built and run)::

    wav -> 7.68 s windows (zero-padded), each divided by its peak
        -> power-law compressed complex STFT (320 / 160, Hann) -> 6 Conv2d [W, 1024, 384 frames of 20 ms]
        -> BatchNorm -> BatchNorm -> Linear(1024 -> 200) + positional encoding      h0 [W, 384, 200]
        -> 7 Transformer layers (post-LN, 8 heads, FFN 400)                         h1..h7
        (Distill-MOS then: BatchNorm, attention pooling, sigmoid -> MOS)

The hidden states are ``[h0, ..., h7]`` (8 tensors ``[batch, frames, 200]``, 20 ms frames); the
windows of a file longer than 7.68 s are encoded separately and their frames concatenated; frames
past a file's end are cut (``num_frames``) and a padded batch's frames past each file are 0.

What matches Distill-MOS: the windowing of a short file (zero-padded to 7.68 s, peak-normalized
after padding, attention over the whole window as in its training), the weights, eval-mode
BatchNorm. What differs: a longer file is cut into consecutive windows (Distill-MOS uses overlapping
hops and averages window scores; states need one frame per 20 ms, so the windows do not overlap);
the states are taken before Distill-MOS's own pooling and head, which are not used; the compressed
STFT is computed here (``compressed_spectrum``: the same values, and a finite gradient to the input
where the wheel's square root gives NaN), then the wheel's convolutions run on it.

The weights are read from the installed wheel (or ``weights``, a file of the same layout) when the
module is built; the wrapped model is not registered as a child module, so checkpoints and hub
folders do not copy the 16 MB file: they hold a fingerprint of the weights, and loading a checkpoint made with
different Distill-MOS weights stops with an error saying so.

Authors: speechbrain-sqe contributors
"""

import contextlib
import io

import torch
from torch import nn

from speechbrain_sqe.lobes.init_args import record_init_args

__all__ = ["DistillMOSEncoder", "DistillMOSEncoderError"]

INSTALL_HINT = "pip install speechbrain-sqe[eval]"


class DistillMOSEncoderError(RuntimeError):
    """The Distill-MOS package is missing, or a checkpoint was made with other Distill-MOS weights."""


def _package():
    try:
        from distillmos import sqa
    except ImportError as error:  # distillmos itself, or its xls_r_sqa dependency
        raise DistillMOSEncoderError(
            f"the Distill-MOS upstream needs the optional 'distillmos' package (import failed: "
            f"{getattr(error, 'name', None) or error}); install it with: {INSTALL_HINT}") from error
    return sqa


def _fingerprint(module):
    """Sum and sum of squares of every weight (float64): tells one weight file from another."""
    values = [value.double() for value in module.state_dict().values() if value.is_floating_point()]
    return torch.stack([sum(v.sum() for v in values), sum((v * v).sum() for v in values)])


@record_init_args
class DistillMOSEncoder(nn.Module):
    """Distill-MOS's hidden states (see the module notes); frozen, eval mode.

    Meets the SSL encoder contract BSSE and the quality predictor use: ``hidden_states(wavs,
    lengths)``, ``num_frames``, ``layer_count``, ``hidden_size``, ``frame_hop_seconds``.

    Arguments
    ---------
    weights : str, optional
        A Distill-MOS checkpoint (``{"model": state_dict}``, the wheel's layout); None: the wheel's own
        ``distill_mos_v7.pt``.
    sample_rate : int
        The rate of the input (Distill-MOS works at 16 kHz only).

    Example
    -------
    >>> encoder = DistillMOSEncoder()
    >>> states = encoder.hidden_states(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> len(states), states[-1].shape, encoder.num_frames(torch.tensor([16000, 8000])).tolist()
    (8, torch.Size([2, 50, 200]), [50, 25])
    >>> float(states[-1][1, 25:].abs().sum())     # frames past the second file's end
    0.0
    >>> sum(p.numel() for p in encoder.parameters()), list(encoder.state_dict())
    (0, ['weights_fingerprint'])
    """

    #: The weights come with the module (from the wheel): the recipe loads no pretrained file into it.
    PACKAGED_WEIGHTS = True
    WINDOW = 122880  # samples in one window (7.68 s), Distill-MOS's SEQ_LEN
    HOP = 320  # samples per output frame (20 ms)

    def __init__(self, weights=None, sample_rate=16000):
        super().__init__()
        if sample_rate != 16000:
            raise ValueError(f"Distill-MOS works at 16 kHz, got sample_rate={sample_rate}")
        self.sample_rate = sample_rate
        package = _package()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints where it loads weights from
            model = package.ConvTransformerSQAModel(load_weights=False)
        path = weights or package.DEFAULT_WEIGHTS_CHKPT
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state.get("model", state))
        except RuntimeError as error:
            raise DistillMOSEncoderError(f"{path} is not a Distill-MOS checkpoint: {error}") from error
        model.eval().requires_grad_(False)
        # Not a child module: state_dict, load_state_dict, parameters() and train() never reach it
        # (checkpoints hold only the fingerprint); _apply moves it with this module.
        object.__setattr__(self, "model", model)
        self.register_buffer("weights_fingerprint", _fingerprint(model))
        self.layer_count = len(model.transformer_pool_attn.transformer.transformer_encoder.layers) + 1
        self.hidden_size = model.transformer_pool_attn.transformer.linear_proj.out_features
        self.frame_hop_seconds = self.HOP / sample_rate

    def train(self, mode=True):
        """Always eval mode: the BatchNorms keep Distill-MOS's statistics (the module is frozen)."""
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        """Device and type changes (``.to``, ``.cuda``, ``.half``) reach the wrapped model too."""
        self.model._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weights_fingerprint"
        if key in state_dict:
            saved = state_dict[key].to(self.weights_fingerprint)
            if not torch.allclose(saved, self.weights_fingerprint, rtol=1e-6, atol=0.0):
                raise DistillMOSEncoderError(
                    "this checkpoint was made with other Distill-MOS weights than the installed ones "
                    f"(fingerprint {saved.tolist()} vs {self.weights_fingerprint.tolist()}): install the "
                    "distillmos version it was trained with, or give weights= its weight file")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def num_frames(self, samples):
        """Output frames of ``samples`` valid samples (tensor or int): one per started 20 ms."""
        samples = torch.as_tensor(samples)
        return torch.div(samples + self.HOP - 1, self.HOP, rounding_mode="floor").clamp(min=1)

    def compressed_spectrum(self, windows):
        """Distill-MOS's power-law compressed complex STFT of ``[W, samples]`` -> ``[W, 2, 161, frames]``.

        The values of the wheel's ``_complex_compressed`` (reflect padding, 320 / 160 Hann STFT,
        ``X * max(|X|, 1e-12) ** -0.7``) with a gradient: the wheel takes ``|X|`` as the square root
        of the power, whose derivative is infinite where a bin is exactly 0 (a window's zero
        padding always has such bins), so any gradient through it is NaN. Here the power is
        clamped at 1e-24 before the root: the same values, a zero gradient below the clamp.
        """
        cnn = self.model.cnn
        pad = (cnn.win_length - cnn.hop_length) // 2
        padded = torch.nn.functional.pad(windows, (pad, pad), mode="reflect")
        window = torch.hann_window(cnn.win_length, device=windows.device, dtype=windows.dtype)
        spectrum = torch.view_as_real(torch.stft(padded, n_fft=cnn.win_length, hop_length=cnn.hop_length,
                                                 win_length=cnn.win_length, center=False, window=window,
                                                 return_complex=True))
        magnitude = spectrum.pow(2).sum(-1, keepdim=True).clamp_min(1e-24).sqrt()
        return (spectrum * magnitude.pow(-0.7)).permute(0, 3, 1, 2)

    def _window_states(self, windows):
        """The 8 states of a batch of peak-normalized windows ``[W, WINDOW]`` -> list of ``[W, 384, 200]``."""
        model = self.model
        head = model.transformer_pool_attn
        wrapper = head.transformer
        feats = torch.flatten(model.cnn.cnn(self.compressed_spectrum(windows)), 1, -2).permute(0, 2, 1)
        x = head.norm_input(feats.transpose(1, 2)).transpose(1, 2)
        x = wrapper.norm(x.transpose(1, 2)).transpose(1, 2)
        x = wrapper.position_encoding(wrapper.linear_proj(x))
        states = [x]
        for layer in wrapper.transformer_encoder.layers:
            x = layer(x)
            states.append(x)
        return states

    def hidden_states(self, wavs, lengths=None):
        """All hidden states of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at 16 kHz.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``; None: all samples valid.

        Returns
        -------
        list of torch.Tensor
            ``layer_count`` tensors ``[batch, frames, hidden_size]``, ``frames = num_frames(samples)``
            (0 past each file's end).
        """
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, samples], got shape {tuple(wavs.shape)}")
        batch, total = wavs.shape
        if lengths is None:
            valid = torch.full((batch,), total, dtype=torch.long)
        else:
            valid = torch.round(lengths.float().cpu() * total).long().clamp(1, total)
        counts = self.num_frames(valid)
        windows, owners = [], []
        for index in range(batch):
            signal = wavs[index, : int(valid[index])]
            for start in range(0, signal.shape[0], self.WINDOW):
                piece = signal[start: start + self.WINDOW]
                piece = torch.nn.functional.pad(piece, (0, self.WINDOW - piece.shape[0]))
                windows.append(piece / (piece.abs().max() + 1e-8))  # Distill-MOS's peak normalization
                owners.append(index)
        # The weights are frozen; a gradient reaches the input when it asks for one (a quality-guided
        # enhancer's training signal), finite thanks to compressed_spectrum.
        window_states = self._window_states(torch.stack(windows))
        frames = int(counts.max())
        states = [wavs.new_zeros(batch, frames, self.hidden_size) for _ in range(self.layer_count)]
        for layer, values in enumerate(window_states):
            pieces = [[] for _ in range(batch)]
            for window, owner in enumerate(owners):
                pieces[owner].append(values[window])
            for index in range(batch):
                joined = torch.cat(pieces[index])[: int(counts[index])]
                states[layer][index, : joined.shape[0]] = joined
        return states

    def forward(self, wavs, lengths=None):
        """The hidden states stacked ``[layers, batch, frames, hidden_size]``."""
        return torch.stack(self.hidden_states(wavs, lengths))
