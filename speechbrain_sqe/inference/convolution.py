"""The choice of convolution algorithm for interfaces whose model is the VQScore conv stack
(:class:`~speechbrain_sqe.lobes.conv_stack.ConvVQVAE`): VQScore and the VQ enhancer.

``"auto"`` (the default) runs the convolutions by overlap-save
(:class:`~speechbrain_sqe.lobes.fft_conv.OverlapSaveConv1d`) on a CPU, where it needs fewer
products than oneDNN's direct convolution and builds no kernels per input length (VQScore scoring
1.3-1.8 times faster, scores within 2e-7 of the direct algorithm on 576 real files; the VQ enhancer
1.0-1.35 times faster end to end, outputs within one 16-bit step; benchmarks/RESULTS.md, session 29),
and directly on a GPU, where cuDNN picks its own algorithm. ``"direct"`` and ``"overlap_save"`` force one.

Authors: speechbrain-sqe contributors
"""

from speechbrain_sqe.lobes.conv_stack import CONVOLUTIONS

__all__ = ["CONVOLUTION_CHOICES", "ConvolutionChoice", "resolve_convolution"]

#: What ``convolution=`` / ``sqe ... --convolution`` accept.
CONVOLUTION_CHOICES = ("auto", *CONVOLUTIONS)


def resolve_convolution(choice, device):
    """The algorithm ``choice`` means on ``device``.

    Arguments
    ---------
    choice : str
        One of :data:`CONVOLUTION_CHOICES`.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    str
        ``"direct"`` or ``"overlap_save"``.

    Example
    -------
    >>> resolve_convolution("auto", "cpu"), resolve_convolution("auto", "cuda:0")
    ('overlap_save', 'direct')
    >>> resolve_convolution("fft", "cpu")
    Traceback (most recent call last):
        ...
    ValueError: convolution must be one of auto, direct, overlap_save, got 'fft'
    """
    if choice not in CONVOLUTION_CHOICES:
        raise ValueError(f"convolution must be one of {', '.join(CONVOLUTION_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    return "direct" if str(device).startswith("cuda") else "overlap_save"


class ConvolutionChoice:
    """Mixin of an interface whose module ``vqvae`` has ``set_convolution``: :meth:`set_convolution`
    and :attr:`convolution` (the algorithm in use)."""

    #: The algorithm in use (``"direct"`` or ``"overlap_save"``), set by :meth:`set_convolution`.
    convolution = "direct"

    def set_convolution(self, convolution="auto"):
        """Sets the algorithm of the model's convolutions (see the module; ``sqe --convolution``).

        Arguments
        ---------
        convolution : str
            One of :data:`CONVOLUTION_CHOICES`.
        """
        self.convolution = resolve_convolution(convolution, self.device)
        self.mods.vqvae.set_convolution(self.convolution)
