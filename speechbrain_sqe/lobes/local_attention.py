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

__all__ = ["chunk_layout", "local_keys", "local_self_attention", "local_transformer", "whole_input_transformer"]

#: Devices on which the keys' score offsets ride in one more head dimension instead of a float
#: mask (:func:`local_self_attention`): CPU flash attention takes any head size, and a mask costs it
#: about 7 %; GPU kernels want head sizes that are multiples of 8, so they get the mask.
OFFSETS_AS_A_DIMENSION = ("cpu",)

#: Head size below which the CPU heads are zero-padded to it (:func:`local_self_attention`): the
#: CPU flash kernel is fastest at 16 dimensions (the width of one AVX-512 vector), and 8 or 9 cost
#: it more (one thread, 320 heads x 125 queries x 469 keys on an AVX-512 AMD EPYC: 38.7 ms with 8, 45.5 ms
#: with 9, 28.7 ms with 16; 17-65 grow about linearly, so larger heads are left as they are;
#: ``benchmarks/bench_attention_heads.py`` measures it again). Zeros add nothing to a score or an
#: output.
CPU_HEAD_WIDTH = 16

#: Bytes of each of the two buffers the CPU path gathers keys and values into (:func:`_gathered_keys`):
#: the (batch row, chunk) units go through the kernel in groups that fit, and glibc's heap reuses
#: buffers of one size from call to call instead of mapping (and page-faulting) them afresh
#: (:mod:`speechbrain_sqe.utils.allocator`).
GATHER_BYTES = 16 * 1024 * 1024


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
    head_dim = dim // heads
    size, starts = chunk_layout(time, chunk, halo)
    chunks, window = len(starts), min(size + 2 * halo, len(starts) * size)
    extra = chunks * size - time
    keys = (starts[:, None] + torch.arange(window)).to(x.device)  # [chunks, window]
    if stride:  # every stride-th frame of the whole input too, outside the window
        sampled = torch.arange(0, time, stride, device=x.device)
        inside = (sampled[None] >= keys[:, :1]) & (sampled[None] < keys[:, :1] + window)  # [chunks, sampled]
        # Only the frames outside each window (those inside would be masked: computed for nothing),
        # first in each row; chunks with one fewer are filled up with a masked key.
        order = torch.argsort(inside.to(torch.uint8), dim=1, stable=True)[:, : int((~inside).sum(1).max())]
        filler = inside.gather(1, order)
        keys = torch.cat([keys, sampled[order]], dim=1)
    width = keys.shape[1]
    projected = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).view(batch, time, 3, heads, head_dim)
    dropout = attention.dropout if attention.training else 0.0
    bias = None  # each key's score offset [batch, chunks, keys], where one is needed
    if stride or extra or (valid is not None and not bool(valid.all())):
        # log(stride) for a sampled key, -1e4 for padding and fillers (a softmax weight of exactly 0,
        # and never a row of -inf: a window of padding only attends evenly to itself; its queries
        # are padding too, zeroed by the caller)
        valid = torch.ones(batch, time, dtype=torch.bool, device=x.device) if valid is None else valid
        usable = F.pad(valid, (0, extra), value=False)[:, keys]  # [batch, chunks, keys]
        offset = torch.zeros(width, dtype=x.dtype, device=x.device)
        if stride:
            usable[..., window:] &= ~filler
            offset[window:] = math.log(stride)
        bias = torch.where(usable, offset, -1e4)
    on_cpu = x.device.type in OFFSETS_AS_A_DIMENSION
    if not on_cpu or (bias is None and head_dim >= CPU_HEAD_WIDTH):
        q, k, v = (F.pad(projected, (0, 0, 0, 0, 0, 0, 0, extra)) if extra else projected).unbind(2)
        q = q.reshape(batch, chunks, size, heads, -1).transpose(2, 3).flatten(0, 1)
        k, v = (t[:, keys].transpose(2, 3).flatten(0, 1) for t in (k, v))
        mask = None if bias is None else bias.reshape(batch * chunks, 1, 1, width)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    else:
        # The offsets ride in one more dimension of the heads (the queries' 1, the values' 0)
        # instead of a float mask, which made the CPU flash kernel about 7 % slower (and building
        # the mask cost as much again); heads below CPU_HEAD_WIDTH are zero-padded to it.
        width_of_heads = max(CPU_HEAD_WIDTH, head_dim + (bias is not None))
        packed = projected.new_zeros(batch, chunks * size, 3, heads, width_of_heads)
        packed[:, :time, :, :, :head_dim] = projected
        if bias is not None:
            packed[:, :, 0, :, head_dim] = 1.0
        q, k, v = packed.unbind(2)
        q = q.reshape(batch, chunks, size, heads, -1).transpose(2, 3).flatten(0, 1)  # a view
        scale = head_dim**-0.5
        offsets = None if bias is None else (bias / scale).flatten(0, 1).unsqueeze(-1)
        out = torch.cat([
            F.scaled_dot_product_attention(q[units], *kv, dropout_p=dropout, scale=scale)
            for units, kv in _gathered_keys(k, v, keys, offsets, head_dim)
        ])[..., :head_dim]
    out = out.reshape(batch, chunks, heads, size, -1).transpose(2, 3).reshape(batch, chunks * size, dim)
    return attention.out_proj(out[:, :time])


def _gathered_keys(k, v, keys, offsets, head_dim):
    """Yields (unit slice, (keys, values) ``[units, heads, width, head width]``) of the key windows
    of the (batch row, chunk) units, a group of units at a time, each key's score offset
    (``offsets`` ``[units, width, 1]``, or None) in head dimension ``head_dim``.

    Without autograd every group is gathered into the same two buffers of :data:`GATHER_BYTES`
    (more only where one unit's window needs more, less where all units need less), whatever the
    input's length. Gathered for the whole batch at once, a batch of eight 15-17 s files took 73 MB
    each, fresh memory mappings for glibc (above its 32 MiB mmap threshold) page-faulted in at
    every call (23 ms a gather, against 3.5 ms into an existing buffer); and buffers whose size
    follows the input's fragment the heap of batches side by side (in one 10-hour job, peak memory
    rose by 110 MB with groups of whole rows; session 44, benchmarks/RESULTS.md)."""
    batch, frames, heads, width_of_heads = k.shape
    chunks, width = keys.shape
    unit_size = width * heads * width_of_heads
    units = batch * chunks
    step = max(1, min(units, GATHER_BYTES // (unit_size * k.element_size())))
    # row b's key t is row b * frames + t of the batch's frames laid end to end (a view of packed)
    flat_keys = (torch.arange(batch, device=keys.device)[:, None, None] * frames + keys).reshape(-1)
    k, v = k.flatten(0, 1), v.flatten(0, 1)
    reuse = not (torch.is_grad_enabled() and (k.requires_grad or v.requires_grad))
    if reuse:
        size = min(max(step * unit_size, GATHER_BYTES // k.element_size()), units * unit_size)
        buffers = [k.new_empty(size) for _ in range(2)]
    for first in range(0, units, step):
        part = slice(first, min(first + step, units))
        count = part.stop - part.start
        index = flat_keys[part.start * width : part.stop * width]
        if reuse:
            shape = (count * width, heads, width_of_heads)
            gathered = [torch.index_select(t, 0, index, out=buffer[: count * unit_size].view(shape))
                        for t, buffer in zip((k, v), buffers)]
        else:
            gathered = [t[index] for t in (k, v)]
        key, value = (t.view(count, width, heads, width_of_heads) for t in gathered)
        if offsets is not None:
            key[..., head_dim] = offsets[part]
        yield part, (key.transpose(1, 2), value.transpose(1, 2))


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


def whole_input_transformer(transformer, x, valid=None):
    """A post-LN ``nn.TransformerEncoder`` over the whole input with padded frames as keys of no
    one: ``transformer(x, src_key_padding_mask=~valid)``, but at inference (not training, no
    autograd) run as one chunk of :func:`local_transformer`. The scores are the same; torch checks a
    key padding mask with ``torch._check_with``, whose first call in a process imports sympy and
    torch.fx's symbolic shapes (0.3 s: a tenth of enhancing 10 minutes of audio with the VQ
    enhancer, or of scoring one file from the command line).

    Arguments
    ---------
    transformer : torch.nn.TransformerEncoder
        Any; layers built with ``batch_first=True`` and ``norm_first=False`` take the local path.
    x : torch.Tensor
        ``[batch, time, d]``.
    valid : torch.Tensor or None
        ``[batch, time]`` True on real frames, or None (all real).

    Returns
    -------
    torch.Tensor
        ``[batch, time, d]`` (padded frames are not zeroed here).

    Example
    -------
    >>> layer = torch.nn.TransformerEncoderLayer(16, 4, 16, batch_first=True)
    >>> stack = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    >>> x, valid = torch.rand(2, 30, 16), torch.arange(30) < torch.tensor([[30], [20]])
    >>> with torch.no_grad():
    ...     out = whole_input_transformer(stack, x, valid)
    ...     reference = stack(x, src_key_padding_mask=~valid)
    >>> out.shape, bool(torch.allclose(out[1, :20], reference[1, :20], atol=1e-5))
    (torch.Size([2, 30, 16]), True)
    """
    if valid is None or bool(valid.all()):
        return transformer(x)
    supported = all(layer.self_attn.batch_first and not layer.norm_first for layer in transformer.layers)
    if transformer.training or torch.is_grad_enabled() or not supported:
        return transformer(x, src_key_padding_mask=~valid)
    return local_transformer(transformer, x, valid, x.shape[1])
