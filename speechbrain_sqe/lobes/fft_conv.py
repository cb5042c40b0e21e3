"""Same-length ``Conv1d`` by overlap-save, the DFTs computed as matrix products: fewer
multiplications than the direct convolution for wide layers, for CPU inference.

A ``Conv1d`` of kernel ``K`` over ``C_in`` -> ``C_out`` channels costs ``K * C_in * C_out``
multiply-adds per output frame. Cut into blocks of ``L`` frames overlapping by ``K - 1`` and taken
to the frequency domain, it becomes one complex ``C_in x C_out`` product per frequency bin:
``3 L / 2 - 1`` real products of that size for ``L - K + 1`` output frames (3 per complex bin by
Gauss's trick, 1 for each of the two real ones, 0 and ``L / 2``), so ``K = 7``, ``L = 32`` mixes
the channels with 3.9 times fewer multiply-adds (3.1 times with the DFTs, 257 -> 128 channels; 1.7
times at 32 -> 32).
The real DFT of the blocks and its inverse are small matrix products (``L x L`` and
``(L - K + 1) x L``), which
keeps every step a large GEMM and the layout channels-last, with no transposes of complex tensors
(``torch.fft`` plus the permutes it needs ran no faster than oneDNN's direct convolution: 44.7
against 45.6 ms for the VQScore model's widest layer on 16 x 613 frames, one thread, session 29).

Why ours: neither PyTorch nor SpeechBrain has an FFT convolution (cuDNN picks one on GPUs; oneDNN
on CPUs runs the direct algorithm, and builds its kernels anew for each input length). Results are
float32 arithmetic by another algorithm: within a few 1e-6 of ``torch.nn.functional.conv1d`` on
unit-scale inputs, not bit-identical (tests/test_fft_conv.py); VQScore's scores of 576 real test
files within 1.8e-7 (``benchmarks/check_fast_search.py --convolution overlap_save``).

Authors: speechbrain-sqe contributors
"""

import math

import torch

__all__ = ["OverlapSaveConv1d"]


def _dft_matrices(block, kernel_size):
    """The real DFT of a block (``[block, block]``: real parts of bins ``0 .. block/2``, then the
    imaginary parts of bins ``1 .. block/2 - 1``, the others being 0 for a real signal) and the
    inverse restricted to the outputs that overlap-save keeps (``[block - kernel_size + 1, block]``),
    in float64."""
    half = block // 2
    time = torch.arange(block, dtype=torch.float64)
    real_bins = torch.arange(half + 1, dtype=torch.float64)
    imag_bins = torch.arange(1, half, dtype=torch.float64)
    forward = torch.cat([torch.cos(2 * math.pi * real_bins[:, None] * time / block),
                         -torch.sin(2 * math.pi * imag_bins[:, None] * time / block)])
    kept = torch.arange(kernel_size - 1, block, dtype=torch.float64)
    weight = torch.full((half + 1,), 2.0, dtype=torch.float64)
    weight[0] = weight[half] = 1.0  # bins that appear once in the spectrum of a real signal
    inverse = torch.cat([weight * torch.cos(2 * math.pi * kept[:, None] * real_bins / block),
                         -2.0 * torch.sin(2 * math.pi * kept[:, None] * imag_bins / block)], dim=1)
    return forward, inverse / block


class OverlapSaveConv1d:
    """A ``torch.nn.Conv1d`` (stride 1, dilation 1, one group, "same" padding, odd kernel) run by
    overlap-save for inference, its kernel spectra computed once and recomputed when the weights
    change (in place or replaced).

    Arguments
    ---------
    conv : torch.nn.Conv1d
        The convolution (its ``padding`` is ``kernel_size // 2``).
    block : int
        Frames per block (even, larger than the kernel): 32 suits 7-frame kernels over 100-1,000
        frames (64 and 128 were slower on the VQScore model's layers, session 29).
    max_rows : int
        Most blocks transformed at once (a batch of 16 files of 10 s is 384): the temporary
        buffers of a long input (about three of ``block x max_rows x channels`` floats) stay
        bounded.

    Example
    -------
    >>> conv = torch.nn.Conv1d(40, 24, 7, padding=3)
    >>> fast = OverlapSaveConv1d(conv)
    >>> x = torch.randn(2, 40, 100)  # [batch, channels, time]
    >>> with torch.no_grad():
    ...     y = fast(x)
    ...     error = (y - conv(x)).abs().max()
    >>> y.shape, bool(error < 1e-4)
    (torch.Size([2, 24, 100]), True)
    """

    def __init__(self, conv, block=32, max_rows=2048):
        kernel_size = conv.kernel_size[0]
        if (conv.stride[0], conv.dilation[0], conv.groups) != (1, 1, 1) or conv.padding != (kernel_size // 2,):
            raise ValueError("OverlapSaveConv1d runs stride-1, undilated, ungrouped 'same' convolutions")
        if kernel_size % 2 != 1 or block % 2 or block <= kernel_size:
            raise ValueError(f"need an odd kernel and an even block above it, got {kernel_size} and {block}")
        self.conv = conv
        self.block = block
        self.kernel_size = kernel_size
        self.step = block - kernel_size + 1
        self.max_rows = max_rows
        self._key = None

    def _prepare(self):
        """(Re)computes the DFT matrices and the kernel spectra for the current weights. Batch
        threads that meet here at once compute the same tensors (the key is set last)."""
        weight, bias = self.conv.weight, self.conv.bias
        key = (weight.data_ptr(), weight._version, None if bias is None else (bias.data_ptr(), bias._version),
               weight.device, weight.dtype)
        if key == self._key:
            return
        half = self.block // 2
        forward, inverse = _dft_matrices(self.block, self.kernel_size)
        # conv1d correlates: the flipped kernel's spectrum; [bins, C_in, C_out] for batched products
        spectrum = torch.fft.rfft(weight.detach().double().flip(-1), n=self.block, dim=-1).permute(2, 1, 0)
        as_weights = {"dtype": weight.dtype, "device": weight.device}
        self.forward_dft = forward.to(**as_weights)
        self.inverse_dft = inverse.to(**as_weights)
        self.spectrum_real = spectrum.real.to(**as_weights).contiguous()
        self.spectrum_imag = spectrum.imag[1:half].to(**as_weights).contiguous()
        # c + d of the complex bins, for the three-product complex multiplication (_blocks)
        self.spectrum_sum = (spectrum.real[1:half] + spectrum.imag[1:half]).to(**as_weights).contiguous()
        # The bias, added to every output frame, is a DC offset of block * bias in the spectrum.
        self.dc_offset = None if bias is None else (bias.detach() * self.block).to(**as_weights)
        self._key = key

    def __call__(self, x):
        """Convolves ``x`` ``[batch, C_in, time]`` (any layout; channels-last storage is read
        without a copy) into ``[batch, C_out, time]``, a transposed view of channels-last storage.

        Runs in the weights' precision with autocast off: under a caller's ``torch.autocast`` the
        products would come out in bfloat16 and could not fill the float32 buffers (``out=``), and
        an exact convolution is this module's point."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self(x.to(self.conv.weight.dtype))
        self._prepare()
        batch, channels, frames = x.shape
        step, pad = self.step, self.kernel_size // 2
        blocks_per_item = -(-frames // step)
        # [batch, time, C_in], zero-padded so that every block is whole (only the padding zeroed:
        # F.pad fills the whole buffer before copying)
        padded = x.new_empty(batch, blocks_per_item * step + self.kernel_size - 1, channels)
        padded[:, :pad].zero_()
        padded[:, pad + frames :].zero_()
        padded[:, pad : pad + frames].copy_(x.transpose(1, 2))
        windows = padded.unfold(1, self.block, step)  # [batch, blocks, C_in, block], a view
        out = x.new_empty(batch, blocks_per_item * step, self.spectrum_real.shape[-1])
        # At most max_rows blocks at a time: a long input's temporary buffers stay bounded (whole
        # items together, or one item's blocks in groups).
        items = max(1, self.max_rows // blocks_per_item)
        group = min(blocks_per_item, self.max_rows)
        for first_item in range(0, batch, items):
            for first_block in range(0, blocks_per_item, group):
                chosen = windows[first_item : first_item + items, first_block : first_block + group]
                count = chosen.shape[1]
                target = out[first_item : first_item + items, first_block * step : (first_block + count) * step]
                # [step, items, blocks, C_out] into [items, blocks, step, C_out]: one copy
                target.view(chosen.shape[0], count, step, -1).copy_(self._blocks(chosen).permute(1, 2, 0, 3))
        return out[:, :frames].transpose(1, 2)

    def _blocks(self, windows):
        """The valid outputs ``[step, items, blocks, C_out]`` of blocks ``[items, blocks, C_in, block]``."""
        items, count, channels, _ = windows.shape
        half, rows = self.block // 2, items * count
        blocks = windows.permute(3, 0, 1, 2).reshape(self.block, rows * channels)
        spectra = (self.forward_dft @ blocks).view(self.block, rows, channels)
        real, imag = spectra[: half + 1], spectra[half + 1 :]
        out_channels = self.spectrum_real.shape[-1]
        product = torch.empty(self.block, rows, out_channels, dtype=windows.dtype, device=windows.device)
        out_real, out_imag = product[: half + 1], product[half + 1 :]
        # (a + ib)(c + id) with three real products (Gauss): ac, bd and (a + b)(c + d); real part
        # ac - bd, imaginary (a + b)(c + d) - ac - bd. Three matrix products per complex bin instead
        # of four: 10-14 % less time for the VQScore model's wide layers, 0-7 % for the narrow ones
        # (one thread, session 44), with the same size of rounding errors. Bins 0 and block/2 are real.
        torch.bmm(real, self.spectrum_real, out=out_real)
        imag_products = torch.bmm(imag, self.spectrum_imag)
        torch.bmm(real[1:half] + imag, self.spectrum_sum, out=out_imag)
        out_imag.sub_(out_real[1:half]).sub_(imag_products)
        out_real[1:half].sub_(imag_products)
        if self.dc_offset is not None:
            out_real[0].add_(self.dc_offset)
        return (self.inverse_dft @ product.view(self.block, rows * out_channels)).view(self.step, items, count, out_channels)
