"""The TERA pretrained interface: the hidden states of a self-supervised speech encoder.

Example (a folder written by ``hparams/tera.yaml`` or :func:`speechbrain_sqe.inference.export.build_tera_hub`)::

    from speechbrain_sqe.inference.tera import TERA
    tera = TERA.from_hparams(source="results/tera/1234/hub")
    states = tera.hidden_states_file("speech.wav")   # tera.layer_count tensors [1, frames, hidden]
"""

import os

import torch

from speechbrain_sqe.inference.safe_pretrained import SafePretrained

#: The small TERA trained by ``hparams/tera.yaml`` and shipped inside the package.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained", "tera")


class TERA(SafePretrained):
    """Extracts TERA hidden states (the input projection, then each Transformer layer).

    Load with ``TERA.from_hparams(source=<folder or hub id>, savedir=...)``. The hyperparams must
    define ``sample_rate``, ``min_seconds`` and the module ``tera``
    (:class:`speechbrain_sqe.lobes.tera.TERAModel`).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.inference.export import build_tera_hub
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> model = TERAModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    >>> tera = TERA.from_hparams(source=build_tera_hub(model, tempfile.mkdtemp()))
    >>> states = tera.hidden_states(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> tera.layer_count, len(states), states[-1].shape
    (3, 3, torch.Size([2, 101, 32]))
    """

    HPARAMS_NEEDED = ("sample_rate", "min_seconds")
    MODULES_NEEDED = ("tera",)
    DEFAULT_SOURCE = DEFAULT_MODEL

    @property
    def layer_count(self):
        """Number of hidden states returned: ``num_layers + 1`` (input projection included)."""
        return self.mods.tera.num_layers + 1

    @torch.no_grad()
    def hidden_states(self, wavs, wav_lens=None):
        """Hidden states of a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms, ``[batch, time]`` (or ``[time]``), at the model's sample rate.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]`` (SpeechBrain convention); None means all full length.
            Each utterance is encoded exactly as alone; frames past its length are padding.

        Returns
        -------
        list of torch.Tensor
            ``layer_count`` tensors ``[batch, frames, hidden]`` (on the CPU).
        """
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, time], got shape {tuple(wavs.shape)}")
        wavs = wavs.float().to(self.device)
        if wav_lens is not None:
            wav_lens = wav_lens.float().to(self.device)
        return [state.cpu() for state in self.mods.tera.hidden_states(wavs, wav_lens)]

    def hidden_states_file(self, path):
        """Hidden states of one audio file.

        Arguments
        ---------
        path : str
            The audio file (any rate or channel count: resampled and downmixed).

        Returns
        -------
        list of torch.Tensor
            ``layer_count`` tensors ``[1, frames, hidden]``.
        """
        wav = self.load_file(path)
        return self.hidden_states(wav.unsqueeze(0))
