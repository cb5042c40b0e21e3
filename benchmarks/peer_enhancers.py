"""Off-the-shelf speech enhancers a user would pick instead of the VQ enhancer (benchmark peers).

Each peer is a function ``name(wav) -> wav``: a ``[time]`` float tensor at 16 kHz in, a
``[time]`` float32 tensor of the same length at 16 kHz out, aligned in time with the input (the
algorithmic delays of the streaming peers are compensated). :data:`PEERS` maps the benchmark's
system names to them.

============= ===================== ==================================================================
name          package               how it is called
============= ===================== ==================================================================
noisereduce   ``noisereduce``       ``reduce_noise(y=wav, sr=16000)``: its defaults, i.e. the
                                    non-stationary spectral gate (``stationary=False``,
                                    ``prop_decrease=1.0``, ``time_constant_s=2.0``, ``n_fft=1024``,
                                    ``thresh_n_mult_nonstationary=2``,
                                    ``sigmoid_slope_nonstationary=10``)
wiener        ``pyroomacoustics``   ``denoise.apply_iterative_wiener`` with its defaults
                                    (``frame_len=512``, ``lpc_order=20``, ``iterations=2``,
                                    ``alpha=0.8``, ``thresh=0.01``) on the input scaled to a peak of
                                    1, as ``pyroomacoustics.create_noisy_signal`` and the package's
                                    Wiener example prepare it (the voice activity threshold is an
                                    absolute frame energy); output scaled back (and by
                                    ``sqrt(frame_len)``, a scale the package leaves on its output),
                                    its 256-sample delay removed
rnnoise       ``pyrnnoise``         the RNNoise C library shipped in the wheel (its model built in),
                                    frame by frame (480 samples at 48 kHz) on float samples in the
                                    16-bit range: the input is resampled 16 -> 48 kHz and the output
                                    48 -> 16 kHz with ``torchaudio.functional.resample``; its
                                    960-sample (20 ms) delay at 48 kHz is removed
============= ===================== ==================================================================

Install them with the ``bench`` extra: ``pip install -e .[bench]``.
"""

import ctypes
import importlib

import numpy as np
import torch

#: The rate the peers take and return.
SAMPLE_RATE = 16000
#: What to run where a peer's package is missing.
INSTALL_HINT = "pip install -e .[bench]"
#: Python module and PyPI distribution of each peer.
PACKAGES = {"noisereduce": ("noisereduce", "noisereduce"),
            "wiener": ("pyroomacoustics", "pyroomacoustics"),
            "rnnoise": ("pyrnnoise", "pyrnnoise")}

#: pyroomacoustics ``apply_iterative_wiener`` defaults, used as they are.
WIENER_PARAMS = {"frame_len": 512, "lpc_order": 20, "iterations": 2, "alpha": 0.8, "thresh": 0.01}
#: The rate RNNoise works at.
RNNOISE_RATE = 48000
#: RNNoise's algorithmic delay at 48 kHz, in samples (two 10 ms frames, measured).
RNNOISE_DELAY = 960


def _import(module, peer):
    """Imports a peer's module, or raises an ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = PACKAGES[peer][1]
        raise ImportError(
            f"the {peer!r} peer enhancer needs the {package!r} package ({error}); "
            f"install the benchmark extra: {INSTALL_HINT}"
        ) from error


def _as_numpy(wav):
    """A ``[time]`` float64 numpy copy of a tensor or array."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"expected a waveform [time], got shape {wav.shape}")
    return wav


def _as_output(enhanced, length):
    """The enhanced signal as a ``[time]`` float32 tensor of exactly ``length`` samples."""
    enhanced = np.asarray(enhanced, dtype=np.float32)[:length]
    if enhanced.shape[0] < length:
        enhanced = np.pad(enhanced, (0, length - enhanced.shape[0]))
    return torch.from_numpy(np.ascontiguousarray(enhanced))


def noisereduce_enhance(wav):
    """Enhances with ``noisereduce`` (non-stationary spectral gating, the package's defaults).

    Arguments
    ---------
    wav : torch.Tensor
        Noisy waveform ``[time]`` at 16 kHz.

    Returns
    -------
    torch.Tensor
        Enhanced waveform ``[time]`` (float32, same length) at 16 kHz.

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("noisereduce")
    >>> noisereduce_enhance(torch.randn(16000) * 0.01).shape
    torch.Size([16000])
    """
    noisereduce = _import("noisereduce", "noisereduce")
    x = _as_numpy(wav)
    if not np.any(x):  # the non-stationary gate divides by the smoothed magnitude: NaN on zeros
        return _as_output(x, x.shape[0])
    enhanced = noisereduce.reduce_noise(y=x, sr=SAMPLE_RATE)
    # Digital silence inside a file gives 0/0 in the gate; its output there is silence.
    return _as_output(np.nan_to_num(enhanced, nan=0.0, posinf=0.0, neginf=0.0), x.shape[0])


def wiener_enhance(wav, **params):
    """Enhances with pyroomacoustics' iterative Wiener filter (Lim and Oppenheim, 1978).

    The input is scaled to a peak of 1 first, as in the package's own Wiener example (its voice
    activity detector compares each frame's energy with the absolute threshold ``thresh``), and
    the output is scaled back. The streaming STFT delays the output by ``frame_len // 2`` samples;
    that delay is removed, and so is the ``1 / sqrt(frame_len)`` scale of its output.

    Arguments
    ---------
    wav : torch.Tensor
        Noisy waveform ``[time]`` at 16 kHz.
    **params : dict
        Changes to :data:`WIENER_PARAMS` (``frame_len``, ``lpc_order``, ``iterations``,
        ``alpha``, ``thresh``).

    Returns
    -------
    torch.Tensor
        Enhanced waveform ``[time]`` (float32, same length) at 16 kHz.

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("pyroomacoustics")
    >>> wiener_enhance(torch.randn(8000) * 0.01).shape
    torch.Size([8000])
    """
    denoise = _import("pyroomacoustics.denoise", "wiener")
    params = {**WIENER_PARAMS, **params}
    x = _as_numpy(wav)
    length = x.shape[0]
    peak = float(np.max(np.abs(x))) if length else 0.0
    if peak == 0.0:
        return _as_output(x, length)
    hop = params["frame_len"] // 2
    # Zeros after the end flush the delayed tail out of the streaming STFT.
    padded = np.concatenate([x / peak, np.zeros(hop + params["frame_len"])])
    enhanced = denoise.apply_iterative_wiener(padded, **params)
    # IterativeWiener divides each frame's DFT by sqrt(frame_len) in place and returns the
    # filtered DFT at that scale: the output is sqrt(frame_len) too quiet (its example hides
    # this by peak-normalising the output). Undo the factor.
    gain = peak * np.sqrt(params["frame_len"])
    return _as_output(enhanced[hop:hop + length] * gain, length)


def rnnoise_enhance(wav):
    """Enhances with RNNoise (Valin, 2018) through the library shipped by ``pyrnnoise``.

    RNNoise works on 10 ms frames at 48 kHz on samples in the 16-bit range: the input is
    resampled to 48 kHz with ``torchaudio.functional.resample``, scaled by 32768, denoised frame
    by frame by ``rnnoise_process_frame`` (a fresh state per call), scaled back, shifted by the
    model's 20 ms delay and resampled to 16 kHz. The C function is called directly on float
    frames rather than through ``pyrnnoise.RNNoise`` (which resamples with FFmpeg and converts
    to 16-bit integers without clipping).

    Arguments
    ---------
    wav : torch.Tensor
        Noisy waveform ``[time]`` at 16 kHz.

    Returns
    -------
    torch.Tensor
        Enhanced waveform ``[time]`` (float32, same length) at 16 kHz.

    Example
    -------
    >>> import pytest; _ = pytest.importorskip("pyrnnoise")
    >>> rnnoise_enhance(torch.randn(16000) * 0.01).shape
    torch.Size([16000])
    """
    import torchaudio

    rnnoise = _import("pyrnnoise.rnnoise", "rnnoise")
    x = torch.as_tensor(_as_numpy(wav), dtype=torch.float32)
    length = x.shape[0]
    x48 = torchaudio.functional.resample(x, SAMPLE_RATE, RNNOISE_RATE).numpy()
    frame_size = rnnoise.FRAME_SIZE
    total = x48.shape[0] + RNNOISE_DELAY
    total += (-total) % frame_size
    signal = np.zeros(total, dtype=np.float32)
    signal[:x48.shape[0]] = x48 * 32768.0
    frame = np.zeros(frame_size, dtype=np.float32)
    pointer = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    state = rnnoise.create()
    try:
        for start in range(0, total, frame_size):
            frame[:] = signal[start:start + frame_size]
            rnnoise.lib.rnnoise_process_frame(state, pointer, pointer)
            signal[start:start + frame_size] = frame
    finally:
        rnnoise.destroy(state)
    out48 = torch.from_numpy(signal[RNNOISE_DELAY:RNNOISE_DELAY + x48.shape[0]] / 32768.0)
    enhanced = torchaudio.functional.resample(out48, RNNOISE_RATE, SAMPLE_RATE)
    return _as_output(enhanced.numpy(), length)


#: The peers by benchmark system name, in table order.
PEERS = {"noisereduce": noisereduce_enhance, "wiener": wiener_enhance, "rnnoise": rnnoise_enhance}


def check_peers(names=None):
    """Tells which peers can run here.

    Arguments
    ---------
    names : list of str, optional
        Peer names (default: all of :data:`PEERS`).

    Returns
    -------
    dict
        Name to ``""`` (available) or the ImportError message.

    Example
    -------
    >>> sorted(check_peers())
    ['noisereduce', 'rnnoise', 'wiener']
    """
    status = {}
    for name in names or PEERS:
        module = {"wiener": "pyroomacoustics.denoise", "rnnoise": "pyrnnoise.rnnoise"}.get(name, name)
        try:
            _import(module, name)
        except (ImportError, OSError) as error:  # pyrnnoise raises OSError without its library
            status[name] = str(error)
        else:
            status[name] = ""
    return status


def peer_versions(names=None):
    """Installed version of each peer's package.

    Arguments
    ---------
    names : list of str, optional
        Peer names (default: all of :data:`PEERS`).

    Returns
    -------
    dict
        Peer name to ``"package version"`` (``"package (not installed)"`` where absent).

    Example
    -------
    >>> peer_versions(["wiener"])["wiener"].startswith("pyroomacoustics")
    True
    """
    from importlib import metadata

    versions = {}
    for name in names or PEERS:
        package = PACKAGES[name][1]
        try:
            versions[name] = f"{package} {metadata.version(package)}"
        except metadata.PackageNotFoundError:
            versions[name] = f"{package} (not installed)"
    return versions
