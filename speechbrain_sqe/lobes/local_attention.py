"""Local self-attention for PyTorch ``TransformerEncoder`` stacks: the frames are cut into equal
chunks and each chunk's queries attend to a window of keys around it (the chunk plus ``halo`` frames
on each side, shifted inside the input at its ends), so attention costs ``time x window`` instead of
``time^2``. With ``stride``, each chunk also attends to every ``stride``-th frame of the whole input
outside its window, each such key's score raised by ``log(stride)``: where neighbouring frames are
alike, that key's softmax weight is what the ``stride`` frames it stands for would have had together,
so the whole input's attention is approximated at ``time x (window + time / stride)``. (A model
without positional encoding, such as the VQ enhancer's, pools statistics of the whole file this
way; the window alone loses them.)

Written here: PyTorch has no such layer (``nn.MultiheadAttention`` takes a full ``[time, time]`` mask,
which still computes every score) and SpeechBrain limits context the same way (its streaming
Conformer's ``make_transformer_src_mask`` with a ``DynChunkTrainConfig``); so this module runs the layers of
an ``nn.TransformerEncoder`` itself with the layer's own weights: the same in-projection, scaled dot
products (``F.scaled_dot_product_attention``), out-projection, residuals, post-norms and
feed-forward block as ``TransformerEncoderLayer`` (post-LN, ``norm_first=False``, the layout of
:func:`speechbrain_sqe.lobes.conv_stack._transformer`), so a state dict trained with whole-input
attention loads unchanged. With ``halo=0`` each chunk attends only to itself; with a window as long
as the input it is the whole-input transformer (up to float rounding).

Authors: speechbrain-sqe contributors
"""

import math

import torch
import torch.nn.functional as F

__all__ = ["chunk_layout", "local_keys", "local_self_attention", "local_transformer"]


def chunk_layout(time, chunk, halo=0):
    """Equal chunks of at most ``chunk`` frames over ``time`` frames, and each chunk's key window.

    Arguments
    ---------
    time : int
        Frames of the input.
    chunk : int
        Most frames per chunk (>= 1).
    halo : int
        Frames of context on each side of a chunk (>= 0).

    Returns
    -------
    size : int
        Frames per chunk (``ceil(time / ceil(time / chunk))``; the last chunk may run past ``time``).
    starts : torch.Tensor
        First key frame of each chunk's window ``[chunks]``; windows are ``size + 2 * halo`` frames
        (at most ``chunks * size``), shifted to stay inside the padded input, so every window holds
        its whole chunk (with ``halo=0``, exactly its chunk).

    Example
    -------
    >>> size, starts = chunk_layout(10, chunk=4, halo=1)
    >>> size, starts.tolist()  # 3 chunks of 4 (the last one padded), windows of 6 keys
    (4, [0, 3, 6])
    """
    if chunk < 1 or halo < 0:
        raise ValueError(f"chunk must be >= 1 and halo >= 0, got chunk={chunk}, halo={halo}")
    chunks = -(-time // chunk)
    size = -(-time // chunks)
    window = min(size + 2 * halo, chunks * size)
    starts = (torch.arange(chunks) * size - halo).clamp(min=0, max=chunks * size - window)
    return size, starts


def local_keys(time, chunk, halo=0, stride=0):
    """Keys each query of :func:`local_self_attention` sees over ``time`` frames (to compare with
    ``time``, the whole input's).

    Arguments
    ---------
    time : int
        Frames of the input.
    chunk : int
        Most frames per chunk.
    halo : int
        Frames of context on each side of a chunk.
    stride : int
        Every ``stride``-th frame of the input is a key too (0: none).

    Returns
    -------
    int
        Window plus sampled frames.

    Example
    -------
    >>> local_keys(1000, 125, 125), local_keys(1000, 125, 125, stride=4), local_keys(300, 125, 125)
    (375, 625, 300)
    """
    size, starts = chunk_layout(time, chunk, halo)
    return min(size + 2 * halo, len(starts) * size) + (-(-time // stride) if stride else 0)


def local_self_attention(attention, x, valid, chunk, halo=0, stride=0):
    """Self-attention of an ``nn.MultiheadAttention`` (``batch_first``, packed in-projection) where
    each chunk's queries see only its key window (:func:`chunk_layout`) and, with ``stride``, every
    ``stride``-th frame of the input outside it (scores raised by ``log(stride)``).

    Arguments
    ---------
    attention : torch.nn.MultiheadAttention
        The layer whose weights are used (its dropout applies in training).
    x : torch.Tensor
        ``[batch, time, d]``.
    valid : torch.Tensor or None
        ``[batch, time]`` True on real frames (keys beyond an utterance's end are masked); None:
        all real.
    chunk : int
        Most query frames per chunk.
    halo : int
        Key frames on each side of a chunk.
    stride : int
        Every ``stride``-th frame is a key of every chunk too (0: none).

    Returns
    -------
    torch.Tensor
        ``[batch, time, d]``, after the out-projection.

    Example
    -------
    >>> mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    >>> local_self_attention(mha, torch.rand(2, 30, 16), None, chunk=8, halo=4).shape
    torch.Size([2, 30, 16])
    >>> local_self_attention(mha, torch.rand(2, 30, 16), None, chunk=8, halo=2, stride=4).shape
    torch.Size([2, 30, 16])
    """
    batch, time, dim = x.shape
    heads = attention.num_heads
    size, starts = chunk_layout(time, chunk, halo)
    chunks, window = len(starts), min(size + 2 * halo, len(starts) * size)
    extra = chunks * size - time
    q, k, v = F.pad(F.linear(x, attention.in_proj_weight, attention.in_proj_bias), (0, 0, 0, extra)).chunk(3, dim=-1)
    keys = (starts[:, None] + torch.arange(window)).to(x.device)  # [chunks, window]
    if stride:  # every stride-th frame of the whole input too, outside the window
        sampled = torch.arange(0, time, stride, device=x.device)
        inside = (sampled[None] >= keys[:, :1]) & (sampled[None] < keys[:, :1] + window)  # [chunks, sampled]
        keys = torch.cat([keys, sampled.expand(chunks, -1)], dim=1)
    width = keys.shape[1]

    def windows(t):  # [batch, time, d] -> [batch * chunks, heads, keys, d / heads]
        return t[:, keys].reshape(batch, chunks, width, heads, -1).transpose(2, 3).flatten(0, 1)

    q = q.reshape(batch, chunks, size, heads, -1).transpose(2, 3).flatten(0, 1)
    mask = None
    if stride or extra or (valid is not None and not bool(valid.all())):
        valid = torch.ones(batch, time, dtype=torch.bool, device=x.device) if valid is None else valid
        mask = F.pad(valid, (0, extra), value=False)[:, keys]  # [batch, chunks, keys]
        if stride:
            mask[..., window:] &= ~inside
        # a window of padding only attends to all of itself (no row of -inf scores); its
        # queries are padding too, zeroed by the caller
        mask = (mask | ~mask.any(dim=-1, keepdim=True)).reshape(batch * chunks, 1, 1, width)
        if stride:  # each sampled key stands for the stride frames around it
            bias = torch.zeros(width, device=x.device)
            bias[window:] = math.log(stride)
            mask = torch.where(mask, bias.to(x.dtype), torch.tensor(float("-inf"), dtype=x.dtype, device=x.device))
    out = F.scaled_dot_product_attention(
        q, windows(k), windows(v), attn_mask=mask, dropout_p=attention.dropout if attention.training else 0.0)
    out = out.reshape(batch, chunks, heads, size, -1).transpose(2, 3).reshape(batch, chunks * size, dim)
    return attention.out_proj(out[:, :time])


def local_transformer(transformer, x, valid, chunk, halo=0, stride=0):
    """Runs every layer of a post-LN ``nn.TransformerEncoder`` with :func:`local_self_attention`.

    Arguments
    ---------
    transformer : torch.nn.TransformerEncoder
        Layers built with ``batch_first=True`` and ``norm_first=False``.
    x : torch.Tensor
        ``[batch, time, d]``.
    valid : torch.Tensor or None
        ``[batch, time]`` True on real frames, or None.
    chunk : int
        Most query frames per chunk.
    halo : int
        Key frames on each side of a chunk.
    stride : int
        Every ``stride``-th frame is a key of every chunk too (0: none).

    Returns
    -------
    torch.Tensor
        ``[batch, time, d]`` (padded frames are not zeroed here).

    Example
    -------
    >>> layer = torch.nn.TransformerEncoderLayer(16, 4, 16, batch_first=True)
    >>> stack = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    >>> x = torch.rand(1, 30, 16)
    >>> torch.allclose(local_transformer(stack, x, None, chunk=8, halo=30), stack(x), atol=1e-5)
    True
    """
    for layer in transformer.layers:
        if layer.norm_first or not layer.self_attn.batch_first:
            raise ValueError("local attention needs post-LN layers built with batch_first=True")
        x = layer.norm1(x + layer.dropout1(local_self_attention(layer.self_attn, x, valid, chunk, halo, stride)))
        x = layer.norm2(x + layer._ff_block(x))
    if transformer.norm is not None:
        x = transformer.norm(x)
    return x
