"""TERA (Liu et al., "TERA: Self-Supervised Learning of Transformer Encoder Representation for
Speech", IEEE/ACM TASLP 2021): a BERT-style Transformer encoder pretrained to reconstruct log-mel
frames altered along time, frequency and magnitude (see :mod:`speechbrain_sqe.lobes.alteration`).

Layout (base model = s3prl's ``logMelBase-T-F-M``; sizes are constructor arguments)::

    wav [B, N] -> TERAFeatures -> log-mel [B, T, 80], per-utterance CMVN
    h0 = dropout(LayerNorm(Linear(80 -> H)(x) + sinusoid_position(T, H)))   input representation
    h_i = post-LN Transformer layer (self-attention, add & LayerNorm,
          Linear H -> F, GELU, Linear F -> H, add & LayerNorm),  i = 1..L
    pred = Linear(H -> 80)(LayerNorm(GELU(Linear(H -> H)(h_L))))             prediction head

The hidden states are ``[h0, h1, ..., hL]`` (``L + 1`` tensors ``[B, T, H]``, input representation
first), as s3prl's ``TransformerModel`` returns them with ``output_all_encoded_layers=True``.

What matches s3prl (``upstream/mockingjay``, ``pretrain/mockingjay/task.py``,
``upstream/baseline/preprocessor.py``):

- layer structure, parameter layout, TF-style LayerNorm (``eps`` 1e-12 inside the square root,
  identical to ``nn.LayerNorm``), exact (erf) GELU, attention scaling ``1/sqrt(head_dim)``, padded
  keys masked with an additive ``-10000`` as in s3prl, sinusoidal table ``pos / 10000^(2(i//2)/H)``
  with sin on even and cos on odd channels (computed in float64, then cast, like s3prl's numpy
  table), weight init ``N(0, 0.02)`` with zero biases;
- log-mel features of s3prl's ``OnlinePreprocessor`` (used by the TERA ``logMel*`` configs, not
  the Kaldi ``extracter``; :class:`TERAFeatures`, defined with the other front ends in
  :mod:`speechbrain_sqe.lobes.frontend` and importable from here): waveform scaled to
  ``target_level`` dB RMS (``-25``), ``torch.stft`` with ``n_fft = 400``, 25 ms periodic Hann window, 10 ms hop, ``center=True`` with reflect
  padding, power spectrum, torchaudio's HTK mel filterbank (0-8 kHz, no norm, 80 bins),
  ``log(mel + 1e-10)``, then per-utterance CMVN ``(x - mean) / (std + 1e-10)`` with the unbiased
  std over the valid frames.

What differs:

- SpeechBrain's ``Fbank`` is not used: it has its own filterbank and a dB scale with ``top_db``, so
  it does not reproduce s3prl's log-mel.
- Padded batches: s3prl runs the STFT on the zero-padded batch, so the last two frames of a
  shorter utterance see zeros instead of the reflect padding it gets alone, and its frame count
  comes from a rounded ratio. Here each utterance is featurized on its own valid samples
  (``1 + n // hop`` frames), which equals s3prl on a single utterance, and padded frames are 0.
- Hidden states are set to 0 on padded frames (s3prl leaves them as computed; valid frames are
  unaffected either way).
- s3prl's upstream splits inputs longer than ``sequence_length`` (1500 frames) into chunks that
  are encoded separately; this encoder does not chunk (``max_positions`` only bounds the length).
- Only post-LN (``pre_layer_norm: False``) models are implemented, as in all TERA checkpoints.

Authors: speechbrain-sqe contributors
"""

import math

import torch
from torch import nn

from speechbrain_sqe.lobes.frontend import TERAFeatures
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.masking import relative_lengths_to_mask

__all__ = [
    "TERA_BASE_CONFIG",
    "TERA_SMALL_CONFIG",
    "TERAEncoder",
    "TERAFeatures",
    "TERALayer",
    "TERAModel",
    "TERAPredictionHead",
    "sinusoid_position_encoding",
]

#: Base TERA (s3prl ``logMelBase-T-F-M``): about 21 M parameters, the GPU default.
TERA_BASE_CONFIG = {
    "hidden_size": 768, "num_layers": 3, "num_heads": 12, "intermediate_size": 3072,
}
#: Small TERA for CPU experiments and tests: about 1.4 M parameters.
TERA_SMALL_CONFIG = {
    "hidden_size": 192, "num_layers": 3, "num_heads": 4, "intermediate_size": 768,
}

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU}
_MASK_VALUE = -10000.0


def sinusoid_position_encoding(length, hidden_size, device=None, dtype=torch.float32):
    """Sinusoidal position table of s3prl's TERA/Mockingjay.

    ``table[pos, i] = sin(pos / 10000^(2 (i // 2) / H))`` for even ``i`` and ``cos`` for odd ``i``.

    Arguments
    ---------
    length : int
        Number of frames.
    hidden_size : int
        Number of channels ``H``.
    device : torch.device, optional
        Device of the table.
    dtype : torch.dtype
        Output dtype (computed in float64 first).

    Returns
    -------
    torch.Tensor
        ``[length, hidden_size]``.

    Example
    -------
    >>> sinusoid_position_encoding(5, 8).shape
    torch.Size([5, 8])
    """
    pos = torch.arange(length, dtype=torch.float64, device=device).unsqueeze(1)
    idx = torch.arange(hidden_size, dtype=torch.float64, device=device)
    angle = pos / torch.pow(10000.0, 2 * torch.div(idx, 2, rounding_mode="floor") / hidden_size)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.to(dtype)


class TERASelfAttention(nn.Module):
    """Multi-head self-attention with separate query/key/value projections (BERT layout)."""

    def __init__(self, hidden_size, num_heads, attention_dropout):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(attention_dropout)

    def _split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, additive_mask=None):
        """``x`` ``[B, T, H]``, ``additive_mask`` ``[B, 1, 1, T]`` -> context ``[B, T, H]``."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if additive_mask is not None:
            scores = scores + additive_mask
        probs = self.dropout(scores.softmax(dim=-1))
        context = (probs @ v).transpose(1, 2).reshape(x.shape)
        return context


class TERALayer(nn.Module):
    """Post-LN Transformer layer (BERT): attention, add & norm, feed-forward, add & norm.

    Arguments
    ---------
    hidden_size : int
        Model width.
    num_heads : int
        Attention heads.
    intermediate_size : int
        Feed-forward width.
    dropout : float
        Dropout after the attention output and feed-forward projections.
    attention_dropout : float
        Dropout on the attention probabilities.
    activation : str
        ``gelu`` (exact), ``relu`` or ``swish``.
    layer_norm_eps : float
        LayerNorm epsilon.

    Example
    -------
    >>> layer = TERALayer(16, 4, 32, 0.0, 0.0)
    >>> layer(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, dropout, attention_dropout, activation="gelu",
                 layer_norm_eps=1e-12):
        super().__init__()
        self.attention = TERASelfAttention(hidden_size, num_heads, attention_dropout)
        self.attention_output = nn.Linear(hidden_size, hidden_size)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.intermediate = nn.Linear(hidden_size, intermediate_size)
        self.activation = _ACTIVATIONS[activation]()
        self.output = nn.Linear(intermediate_size, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, additive_mask=None):
        """``x`` ``[B, T, H]`` -> ``[B, T, H]``."""
        att = self.attention_norm(x + self.dropout(self.attention_output(self.attention(x, additive_mask))))
        return self.output_norm(att + self.dropout(self.output(self.activation(self.intermediate(att)))))


class TERAEncoder(nn.Module):
    """TERA input representation and post-LN Transformer; returns all hidden states.

    Arguments
    ---------
    input_dim : int
        Feature size (80 log-mel bins).
    hidden_size : int
        Model width (base 768).
    num_layers : int
        Transformer layers (base 3).
    num_heads : int
        Attention heads (base 12).
    intermediate_size : int
        Feed-forward width (base 3072).
    dropout : float
        Dropout of the input representation and the layers (s3prl's TERA configs train with 0.3).
    attention_dropout : float, optional
        Dropout on attention probabilities (default: ``dropout``).
    activation : str
        ``gelu``, ``relu`` or ``swish``.
    layer_norm_eps : float
        LayerNorm epsilon (s3prl: 1e-12).
    max_positions : int
        Longest accepted input in frames (s3prl's upstream table has 24000 positions).
    initializer_range : float
        Std of the normal init of the linear weights (biases 0).

    Example
    -------
    >>> enc = TERAEncoder(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    >>> states = enc(torch.randn(2, 50, 80), torch.tensor([1.0, 0.6]))
    >>> len(states), states[0].shape
    (3, torch.Size([2, 50, 32]))
    """

    def __init__(self, input_dim=80, hidden_size=768, num_layers=3, num_heads=12, intermediate_size=3072,
                 dropout=0.1, attention_dropout=None, activation="gelu", layer_norm_eps=1e-12,
                 max_positions=24000, initializer_range=0.02):
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.max_positions = max_positions
        self.input_proj = nn.Linear(input_dim, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([
            TERALayer(hidden_size, num_heads, intermediate_size, dropout, attention_dropout, activation,
                      layer_norm_eps)
            for _ in range(num_layers)
        ])
        _init_weights(self, initializer_range)

    def forward(self, feats, lengths=None):
        """Hidden states of all layers.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, frames, input_dim]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``; padded frames are masked out of the attention.

        Returns
        -------
        list of torch.Tensor
            ``num_layers + 1`` tensors ``[batch, frames, hidden_size]`` (input representation first),
            0 on padded frames.
        """
        _, time, _ = feats.shape
        if time > self.max_positions:
            raise ValueError(f"{time} frames exceed max_positions={self.max_positions}; split the input")
        mask = relative_lengths_to_mask(lengths, time, device=feats.device)
        additive = None
        if mask is not None:
            additive = (~mask).to(feats.dtype)[:, None, None, :] * _MASK_VALUE
        pos = sinusoid_position_encoding(time, self.hidden_size, feats.device, feats.dtype)
        h = self.input_dropout(self.input_norm(self.input_proj(feats) + pos))
        states = [h]
        for layer in self.layers:
            h = layer(h, additive)
            states.append(h)
        if mask is not None:
            keep = mask.unsqueeze(-1).to(feats.dtype)
            states = [s * keep for s in states]
        return states


class TERAPredictionHead(nn.Module):
    """Reconstruction head: Linear -> activation -> LayerNorm -> Linear.

    Arguments
    ---------
    hidden_size : int
        Encoder width.
    output_dim : int
        Predicted feature size (80).
    activation : str
        ``gelu``, ``relu`` or ``swish``.
    layer_norm_eps : float
        LayerNorm epsilon.

    Example
    -------
    >>> TERAPredictionHead(32, 80)(torch.randn(2, 7, 32)).shape
    torch.Size([2, 7, 80])
    """

    def __init__(self, hidden_size, output_dim=80, activation="gelu", layer_norm_eps=1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = _ACTIVATIONS[activation]()
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.output = nn.Linear(hidden_size, output_dim)

    def forward(self, h):
        """``[B, T, hidden]`` -> ``[B, T, output_dim]``."""
        return self.output(self.norm(self.activation(self.dense(h))))


@record_init_args
class TERAModel(nn.Module):
    """TERA: log-mel front end, Transformer encoder and reconstruction head.

    Pretraining (with :class:`speechbrain_sqe.lobes.alteration.TERAAlteration`)::

        feats, flens = model.extract_features(wav, lens)
        altered, mask = alteration(feats, flens)
        loss = masked_l1_loss(model(altered, flens), feats, mask)

    Arguments
    ---------
    input_dim : int
        Number of mel bins (input and predicted feature size).
    hidden_size, num_layers, num_heads, intermediate_size : int
        Encoder sizes (see :data:`TERA_BASE_CONFIG`, :data:`TERA_SMALL_CONFIG`).
    dropout : float
        Encoder dropout.
    attention_dropout : float, optional
        Attention-probability dropout (default: ``dropout``).
    activation : str
        ``gelu``, ``relu`` or ``swish``.
    layer_norm_eps : float
        LayerNorm epsilon.
    max_positions : int
        Longest input in frames.
    initializer_range : float
        Init std of linear weights.
    sample_rate, win_ms, hop_ms, n_fft, target_level, cmvn : see :class:`TERAFeatures`.

    Example
    -------
    >>> model = TERAModel.small()
    >>> wav = torch.randn(2, 8000)
    >>> feats, flens = model.extract_features(wav)
    >>> model(feats, flens).shape
    torch.Size([2, 51, 80])
    >>> states = model.hidden_states(wav, torch.tensor([1.0, 0.5]))
    >>> len(states), states[-1].shape, model.layer_count
    (4, torch.Size([2, 51, 192]), 4)
    >>> model.init_args["hidden_size"], model.init_args["n_fft"]
    (192, 400)
    """

    def __init__(self, input_dim=80, hidden_size=768, num_layers=3, num_heads=12, intermediate_size=3072,
                 dropout=0.1, attention_dropout=None, activation="gelu", layer_norm_eps=1e-12,
                 max_positions=24000, initializer_range=0.02, sample_rate=16000, win_ms=25, hop_ms=10,
                 n_fft=400, target_level=-25.0, cmvn=True):
        super().__init__()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.features = TERAFeatures(input_dim, sample_rate, win_ms, hop_ms, n_fft, target_level, cmvn=cmvn)
        self.encoder = TERAEncoder(input_dim, hidden_size, num_layers, num_heads, intermediate_size, dropout,
                                   attention_dropout, activation, layer_norm_eps, max_positions,
                                   initializer_range)
        self.head = TERAPredictionHead(hidden_size, input_dim, activation, layer_norm_eps)
        _init_weights(self.head, initializer_range)

    @property
    def layer_count(self):
        """Hidden states :meth:`hidden_states` gives: the input representation and each layer."""
        return self.num_layers + 1

    @property
    def config(self):
        """The constructor arguments (a copy of ``init_args``), for ``TERAModel(**model.config)``."""
        return dict(self.init_args)

    @classmethod
    def small(cls, **overrides):
        """CPU preset: hidden 192, 3 layers, 4 heads, feed-forward 768 (:data:`TERA_SMALL_CONFIG`)."""
        return cls(**{**TERA_SMALL_CONFIG, **overrides})

    @classmethod
    def base(cls, **overrides):
        """GPU default = s3prl's base TERA: hidden 768, 3 layers, 12 heads, feed-forward 3072."""
        return cls(**{**TERA_BASE_CONFIG, **overrides})

    def extract_features(self, wav, lengths=None):
        """``wav`` ``[B, N]`` -> (log-mel ``[B, T, input_dim]``, frame relative lengths ``[B]``)."""
        return self.features(wav, lengths)

    def forward(self, feats, lengths=None):
        """Pretraining forward: reconstruction of (altered) features.

        Arguments
        ---------
        feats : torch.Tensor
            ``[batch, frames, input_dim]`` features (altered during pretraining).
        lengths : torch.Tensor, optional
            Relative lengths in frames.

        Returns
        -------
        torch.Tensor
            Predicted clean features ``[batch, frames, input_dim]``.
        """
        return self.head(self.encoder(feats, lengths)[-1])

    def hidden_states(self, wav, lengths=None):
        """``wav`` ``[B, N]`` -> list of ``num_layers + 1`` hidden states ``[B, T, hidden_size]``."""
        feats, frame_lengths = self.features(wav, lengths)
        return self.encoder(feats, None if lengths is None else frame_lengths)


def _init_weights(module, std):
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

