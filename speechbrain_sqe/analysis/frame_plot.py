"""A picture of where quality drops in a file: its spectrogram with the frame score curve under it."""

import torch


def plot_frame_scores(wav, sample_rate, times, scores, path, title=None, n_fft=512, hop_length=256):
    """Saves a PNG: log spectrogram on top, per-frame quality scores below on the same time axis.

    Arguments
    ---------
    wav : torch.Tensor
        The waveform, ``[time]``.
    sample_rate : int
        Its rate.
    times : torch.Tensor
        Frame centre times in seconds, ``[frames]``.
    scores : torch.Tensor
        Frame scores, ``[frames]``.
    path : str
        The PNG file.
    title : str, optional
        Figure title (e.g. the file name and its mean score).
    n_fft, hop_length : int
        Spectrogram resolution.

    Example
    -------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "frames.png")
    >>> plot_frame_scores(torch.randn(16000), 16000, torch.arange(63) * 0.016, torch.rand(63), out)
    >>> os.path.getsize(out) > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = torch.hann_window(n_fft)
    spec = torch.stft(wav.float(), n_fft, hop_length, window=window, return_complex=True).abs()
    log_spec = 20 * torch.log10(spec.clamp(min=1e-5))
    duration = wav.shape[0] / sample_rate
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    top.imshow(log_spec.numpy(), origin="lower", aspect="auto", cmap="magma",
               extent=[0, duration, 0, sample_rate / 2000], vmin=float(log_spec.max()) - 80)
    top.set_ylabel("kHz")
    if title:
        top.set_title(title)
    bottom.plot(times.numpy(), scores.numpy(), color="tab:blue", linewidth=1)
    bottom.axhline(float(scores.mean()), color="tab:red", linestyle="--", linewidth=0.8, label="mean")
    bottom.set_ylabel("frame score")
    bottom.set_xlabel("time (s)")
    bottom.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
