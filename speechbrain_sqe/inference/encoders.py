"""Self-supervised speech encoders: the ``SSLEncoder`` contract, TERA, and an adapter for SpeechBrain's
Hugging Face wrappers.

An SSL encoder gives the hidden states of a padded batch (``hidden_states``: ``layer_count`` tensors
``[batch, frames, hidden_size]``, input representation first), its number of layers, its hidden size
and its frame hop. Methods built on SSL features (the weighted-layer enhancers, the learned quality
predictor, ``sqe analyze-ssl``) take any object with this contract.

Example (the model shipped in the package)::

    from speechbrain_sqe.inference.encoders import TERA
    tera = TERA.from_hparams(source=TERA.DEFAULT_SOURCE)
    states = tera.hidden_states_file("speech.wav")   # tera.layer_count tensors [1, frames, hidden]
"""

import torch

from speechbrain_sqe.inference.hub import DEFAULT_SOURCES, TASK_DESCRIPTIONS
from speechbrain_sqe.inference.safe_pretrained import SafePretrained

#: The small TERA trained by ``hparams/tera.yaml`` and shipped inside the package.
DEFAULT_MODEL = DEFAULT_SOURCES["ssl_encoder"]


class SSLEncoderContract:
    """What every SSL encoder gives (the loaded interfaces and :class:`SSLWrapperEncoder`).

    ``hidden_states(wavs, wav_lens)`` -> list of ``layer_count`` tensors ``[batch, frames,
    hidden_size]`` (input representation first); ``layer_count``; ``hidden_size``;
    ``frame_hop_seconds``; ``sample_rate``.
    """

    def hidden_states(self, wavs, wav_lens=None):
        """Hidden states of a padded batch (see the class docstring)."""
        raise NotImplementedError

    def hidden_states_file(self, path):
        """Hidden states of one audio file, ``layer_count`` tensors ``[1, frames, hidden]``.

        Arguments
        ---------
        path : str
            The audio file (any rate or channel count: resampled and downmixed).

        Returns
        -------
        list of torch.Tensor
            The hidden states.
        """
        return self.hidden_states(self.load_file(path).unsqueeze(0))


class SSLEncoder(SSLEncoderContract, SafePretrained):
    """Base of the SSL encoder interfaces loaded from hub folders (the ``ssl_encoder`` task)."""

    TASK = "ssl_encoder"
    TASK_DESCRIPTION = TASK_DESCRIPTIONS["ssl_encoder"]


class TERA(SSLEncoder):
    """Extracts TERA hidden states (the input projection, then each Transformer layer).

    Load with ``TERA.from_hparams(source=<folder or hub id>, savedir=...)``. The hub folder holds
    ``sample_rate``, ``min_seconds`` and the module ``tera``
    (:class:`speechbrain_sqe.lobes.tera.TERAModel`, whose log-mel front end is part of the model, as
    in s3prl).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> model = TERAModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    >>> tera = TERA.from_hparams(source=TERA.export(tempfile.mkdtemp(), {"tera": model}))
    >>> states = tera.hidden_states(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> tera.layer_count, len(states), states[-1].shape, tera.frame_hop_seconds
    (3, 3, torch.Size([2, 101, 32]), 0.01)
    """

    MODULES_NEEDED = ("tera",)
    DEFAULT_SOURCE = DEFAULT_MODEL
    MIN_SECONDS = 0.05
    HUB_TITLE = ("TERA: self-supervised speech representations (Liu et al., 2021), pretrained with\n"
                 "speechbrain-sqe's hparams/tera.yaml.")

    @property
    def layer_count(self):
        """Number of hidden states returned: ``num_layers + 1`` (input projection included)."""
        return self.mods.tera.num_layers + 1

    @property
    def hidden_size(self):
        """Size of each hidden state."""
        return self.mods.tera.hidden_size

    @property
    def frame_hop_seconds(self):
        """Seconds between two frames."""
        return self.mods.tera.features.hop_length / self.mods.tera.features.sample_rate

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
        wavs, wav_lens = self.as_batch(wavs, wav_lens)
        return [state.cpu() for state in self.mods.tera.hidden_states(wavs, wav_lens)]


class SSLWrapperEncoder(SSLEncoderContract, torch.nn.Module):
    """Adapts a SpeechBrain Hugging Face SSL wrapper (or any module giving all hidden states) to the
    SSL encoder contract.

    SpeechBrain's ``speechbrain.lobes.models.huggingface_transformers`` wrappers (``WavLM``,
    ``HuBERT``, ``Wav2Vec2`` built with ``output_all_hiddens=True``) return the hidden states stacked
    ``[layers, batch, frames, hidden]`` from ``forward(wav, wav_lens)``; a module returning a list of
    ``[batch, frames, hidden]`` tensors works too.

    Arguments
    ---------
    model : torch.nn.Module
        The wrapped encoder, ``forward(wav, wav_lens)``.
    layer_count : int
        Hidden states it returns (input representation included).
    hidden_size : int
        Size of each hidden state.
    frame_hop_seconds : float
        Seconds between frames (0.02 for wav2vec 2.0 / HuBERT / WavLM).
    sample_rate : int
        Rate the model expects.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64).eval()
    >>> encoder = SSLWrapperEncoder(_StackedStates(tera), layer_count=3, hidden_size=32, frame_hop_seconds=0.01)
    >>> [state.shape for state in encoder.hidden_states(torch.randn(2, 8000))]
    [torch.Size([2, 51, 32]), torch.Size([2, 51, 32]), torch.Size([2, 51, 32])]
    """

    def __init__(self, model, layer_count, hidden_size, frame_hop_seconds, sample_rate=16000):
        super().__init__()
        self.model = model
        self.layer_count = layer_count
        self.hidden_size = hidden_size
        self.frame_hop_seconds = frame_hop_seconds
        self.sample_rate = sample_rate

    def hidden_states(self, wavs, wav_lens=None):
        """``layer_count`` tensors ``[batch, frames, hidden_size]`` (see the class docstring)."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        states = self.model(wavs, wav_lens)
        states = list(states.unbind(0)) if torch.is_tensor(states) else list(states)
        if len(states) != self.layer_count:
            raise ValueError(f"the wrapped encoder gave {len(states)} hidden states, not {self.layer_count}: "
                             "build it with output_all_hiddens=True")
        return states

    def load_file(self, path):
        """Reads one file at :attr:`sample_rate` (the package's loader)."""
        from speechbrain_sqe.dataio.audio import load_audio

        return load_audio(path, self.sample_rate)


class _StackedStates(torch.nn.Module):
    """Returns a TERA model's hidden states stacked ``[layers, batch, frames, hidden]``, the layout of
    SpeechBrain's Hugging Face wrappers (for the doctest and tests)."""

    def __init__(self, tera):
        super().__init__()
        self.tera = tera

    def forward(self, wav, wav_lens):
        return torch.stack(self.tera.hidden_states(wav, wav_lens))
