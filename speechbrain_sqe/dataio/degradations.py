"""Degradations of clean speech for quality labels: band limits, clipping, codecs, packet loss, noise, rooms.

Small deterministic functions on 1-D float numpy arrays (16 kHz in this project), each returning a
float32 array of the input's length, time-aligned with it (so a label computed against the clean
reference measures the degradation, not a delay):

- :func:`band_limit`: a narrow-band channel: resampled down to ``2 * cutoff_hz`` and back up
  (the polyphase resampler's anti-aliasing filter removes what is above the cutoff);
- :func:`clip`: hard clipping at a fraction of the peak;
- :func:`codec`: a round trip through a codec that libsndfile writes, in memory (OGG Vorbis, OGG
  Opus and MP3 with ``compression_level`` in [0, 1], higher = smaller file; IMA/MS ADPCM, G.721,
  GSM 6.10, mu-law, A-law in WAV). Codecs add delay (MP3's encoder delay, ADPCM block padding):
  it is **measured by cross-correlation** with the input (within :data:`MAX_CODEC_DELAY` samples)
  and removed, and the output is trimmed or zero-padded to the input length;
- :func:`packet_loss`: frames (20 ms by default) zeroed, as a decoder without concealment does;
- :func:`add_noise` and :func:`add_room`: the project's own mixer
  (:func:`~speechbrain_sqe.dataio.mixing.make_pair`) and reverberation
  (:func:`~speechbrain_sqe.dataio.rooms.reverberate`), not a second implementation.

:func:`degrade` applies a small spec dict (``{"kind": "codec", "name": "opus", "setting": 0.5}``;
``{"kind": "chain", "steps": [...]}`` for combinations), so a label plan is data (JSON).
A codec this libsndfile lacks raises :class:`CodecUnavailable`; :func:`available_codecs` lists the
usable ones (a plan leaves the others out with a warning).
"""

import io
import logging
import math
from fractions import Fraction

import numpy as np
import soundfile
from scipy.signal import fftconvolve, resample_poly

from speechbrain_sqe.dataio.mixing import fit_length, make_pair
from speechbrain_sqe.dataio.rooms import align_rir, reverberate, synthetic_rir

logger = logging.getLogger(__name__)

__all__ = [
    "CODECS",
    "DEGRADATIONS",
    "CodecUnavailable",
    "add_noise",
    "add_room",
    "available_codecs",
    "band_limit",
    "clip",
    "codec",
    "degrade",
    "describe",
    "packet_loss",
]

#: Codec name -> (libsndfile format, subtype, whether it takes a ``compression_level`` setting).
CODECS = {
    "vorbis": ("OGG", "VORBIS", True),
    "opus": ("OGG", "OPUS", True),
    "mp3": ("MP3", "MPEG_LAYER_III", True),
    "ima_adpcm": ("WAV", "IMA_ADPCM", False),
    "ms_adpcm": ("WAV", "MS_ADPCM", False),
    "g721_32": ("WAV", "G721_32", False),
    "gsm610": ("WAV", "GSM610", False),
    "ulaw": ("WAV", "ULAW", False),
    "alaw": ("WAV", "ALAW", False),
}
#: Largest codec delay searched for by the alignment (samples; MP3's is about 1100 at 16 kHz).
MAX_CODEC_DELAY = 4096


class CodecUnavailable(RuntimeError):
    """A codec this libsndfile cannot write or read back."""


def _float(wav):
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {wav.shape}")
    return wav


def band_limit(wav, sample_rate, cutoff_hz):
    """Limits the band to ``cutoff_hz`` by resampling to ``2 * cutoff_hz`` and back (a narrow-band channel).

    Arguments
    ---------
    wav : numpy.ndarray
        Signal, shape ``[time]``.
    sample_rate : int
        Its rate.
    cutoff_hz : float
        The new upper band edge (below ``sample_rate / 2``).

    Returns
    -------
    numpy.ndarray
        float32, same length, no energy above the cutoff (but the filter's transition band).

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> out = band_limit(np.sin(2 * np.pi * 300 * t) + np.sin(2 * np.pi * 6000 * t), 16000, 4000)
    >>> spectrum = np.abs(np.fft.rfft(out))
    >>> bool(spectrum[6000] < 0.01 * spectrum[300]), out.shape
    (True, (16000,))
    """
    wav = _float(wav)
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2:g}), not {cutoff_hz}")
    ratio = Fraction(round(2 * cutoff_hz), int(sample_rate)).limit_denominator(1000)
    low = resample_poly(wav, ratio.numerator, ratio.denominator)
    back = resample_poly(low, ratio.denominator, ratio.numerator)
    return _fit(back, len(wav)).astype(np.float32)


def clip(wav, threshold):
    """Hard clipping at ``threshold`` times the signal's peak.

    Arguments
    ---------
    wav : numpy.ndarray
        Signal, shape ``[time]``.
    threshold : float
        Fraction of the peak in (0, 1] where the signal is cut.

    Returns
    -------
    numpy.ndarray
        float32, same length; its peak is ``threshold`` times the input's.

    Example
    -------
    >>> clip(np.array([0.0, 0.5, -1.0, 0.25]), 0.4).tolist()
    [0.0, 0.4000000059604645, -0.4000000059604645, 0.25]
    """
    wav = _float(wav)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (a fraction of the peak), not {threshold}")
    level = threshold * float(np.max(np.abs(wav))) if wav.size else 0.0
    return np.clip(wav, -level, level).astype(np.float32)


def available_codecs():
    """The codecs of :data:`CODECS` this libsndfile writes.

    Returns
    -------
    list of str
        Codec names.

    Example
    -------
    >>> "ulaw" in available_codecs()
    True
    """
    names = []
    for name, (container, subtype, _) in CODECS.items():
        try:
            if subtype in soundfile.available_subtypes(container):
                names.append(name)
        except (ValueError, TypeError, RuntimeError):
            continue
    return names


def _fit(wav, length):
    if len(wav) >= length:
        return wav[:length]
    return np.concatenate([wav, np.zeros(length - len(wav), dtype=wav.dtype)])


def estimate_delay(reference, delayed, max_delay=MAX_CODEC_DELAY):
    """The delay (samples) of ``delayed`` behind ``reference``: the lag of largest cross-correlation.

    Arguments
    ---------
    reference, delayed : numpy.ndarray
        Signals, shape ``[time]``.
    max_delay : int
        Lags searched: ``-max_delay .. max_delay``.

    Returns
    -------
    int
        The lag (positive: ``delayed`` comes later).

    Example
    -------
    >>> x = np.random.default_rng(0).standard_normal(4000)
    >>> estimate_delay(x, np.concatenate([np.zeros(37), x]))
    37
    """
    reference, delayed = _float(reference), _float(delayed)
    correlation = fftconvolve(delayed, reference[::-1])  # index len(reference) - 1 is lag 0
    zero = len(reference) - 1
    low, high = max(0, zero - max_delay), min(len(correlation), zero + max_delay + 1)
    return int(np.argmax(correlation[low:high]) + low - zero)


def codec(wav, sample_rate, name, setting=None):
    """Encodes and decodes ``wav`` with a libsndfile codec in memory; delay removed, input length kept.

    Arguments
    ---------
    wav : numpy.ndarray
        Signal, shape ``[time]`` (clipped to [-1, 1] before encoding).
    sample_rate : int
        Its rate (Opus takes 8, 12, 16, 24 or 48 kHz).
    name : str
        A codec of :data:`CODECS`.
    setting : float, optional
        ``compression_level`` in [0, 1] (1: smallest file, lowest quality) for ``vorbis``, ``opus``
        and ``mp3`` (default 0.5); must be None for the others (fixed-rate codecs). libsndfile 1.2.2
        refuses MP3 at 16 kHz with a level near 1 (:class:`CodecUnavailable`): use at most 0.9.

    Returns
    -------
    numpy.ndarray
        float32, same length, aligned with the input (the delay found by cross-correlation removed).

    Raises
    ------
    ValueError
        An unknown codec or a setting it does not take.
    CodecUnavailable
        This libsndfile cannot write it.

    Example
    -------
    >>> x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> y = codec(x, 16000, "ima_adpcm")
    >>> y.shape, bool(np.corrcoef(x, y)[0, 1] > 0.99)
    ((16000,), True)
    >>> codec(x, 16000, "ima_adpcm", 0.5)
    Traceback (most recent call last):
    ...
    ValueError: codec 'ima_adpcm' takes no setting (fixed rate), got 0.5
    """
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; one of {', '.join(CODECS)}")
    container, subtype, takes_level = CODECS[name]
    if takes_level:
        setting = 0.5 if setting is None else float(setting)
        if not 0 <= setting <= 1:
            raise ValueError(f"codec {name!r}: setting is a compression_level in [0, 1], not {setting}")
    elif setting is not None:
        raise ValueError(f"codec {name!r} takes no setting (fixed rate), got {setting}")
    if name not in available_codecs():
        raise CodecUnavailable(f"codec {name!r} ({container}/{subtype}) is not available in libsndfile "
                               f"{soundfile.__libsndfile_version__}")
    source = np.clip(_float(wav), -1.0, 1.0)
    buffer = io.BytesIO()
    options = {"compression_level": setting} if takes_level else {}
    if name == "mp3":
        options["bitrate_mode"] = "CONSTANT"
    try:
        soundfile.write(buffer, source, int(sample_rate), format=container, subtype=subtype, **options)
        buffer.seek(0)
        decoded, rate = soundfile.read(buffer, dtype="float64", always_2d=False)
    except (RuntimeError, soundfile.LibsndfileError, TypeError) as error:
        raise CodecUnavailable(f"codec {name!r} failed here: {error}") from None
    if decoded.ndim > 1:
        decoded = decoded.mean(axis=1)
    if rate != sample_rate:
        decoded = resample_poly(decoded, int(sample_rate), int(rate))
    delay = estimate_delay(source, decoded)
    decoded = decoded[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay), decoded])
    return _fit(decoded, len(source)).astype(np.float32)


def packet_loss(wav, sample_rate, loss_rate, frame_ms=20.0, rng=None):
    """Zeroes ``round(loss_rate * frames)`` frames of ``frame_ms``, drawn by ``rng`` (lost packets, no concealment).

    Arguments
    ---------
    wav : numpy.ndarray
        Signal, shape ``[time]``.
    sample_rate : int
        Its rate.
    loss_rate : float
        Fraction of frames lost, in [0, 1].
    frame_ms : float
        Frame (packet) length in milliseconds.
    rng : numpy.random.Generator, optional
        Draws the lost frames (default: seed 0).

    Returns
    -------
    numpy.ndarray
        float32, same length.

    Example
    -------
    >>> out = packet_loss(np.ones(16000), 16000, 0.2, rng=np.random.default_rng(0))  # 50 frames, 10 lost
    >>> float(np.mean(out == 0))
    0.2
    """
    wav = _float(wav)
    if not 0 <= loss_rate <= 1:
        raise ValueError(f"loss_rate must be in [0, 1], not {loss_rate}")
    rng = np.random.default_rng(0) if rng is None else rng
    frame = max(1, round(frame_ms * sample_rate / 1000))
    frames = math.ceil(len(wav) / frame)
    lost = rng.choice(frames, size=round(loss_rate * frames), replace=False)
    out = wav.copy()
    for index in lost:
        out[index * frame : (index + 1) * frame] = 0.0
    return out.astype(np.float32)


def add_noise(wav, noise, snr_db, rng=None):
    """``wav`` plus ``noise`` (from a random offset, looped) at ``snr_db``, by the project's mixer.

    Arguments
    ---------
    wav : numpy.ndarray
        Speech, shape ``[time]``.
    noise : numpy.ndarray
        Noise, any length.
    snr_db : float
        SNR in dB (whole-file powers, :func:`~speechbrain_sqe.dataio.mixing.make_pair`).
    rng : numpy.random.Generator, optional
        Draws the noise offset (None: from the start).

    Returns
    -------
    numpy.ndarray
        float32, same length (scaled down as a whole if it would clip).

    Example
    -------
    >>> from speechbrain_sqe.dataio.mixing import measure_snr
    >>> speech = 0.1 * np.sin(np.arange(16000) / 5.0)
    >>> noisy = add_noise(speech, np.random.default_rng(0).standard_normal(8000), 10.0)
    >>> round(measure_snr(speech, noisy - speech), 1)
    10.0
    """
    wav = _float(wav)
    _, noisy = make_pair(wav, fit_length(np.asarray(noise, dtype=np.float64), len(wav), rng), snr_db)
    return noisy


def add_room(wav, rir):
    """Reverberates ``wav`` with ``rir`` (its direct path found and put at sample 0), same length and RMS.

    Arguments
    ---------
    wav : numpy.ndarray
        Dry speech, shape ``[time]``.
    rir : numpy.ndarray
        A measured or synthetic impulse response.

    Returns
    -------
    numpy.ndarray
        float32, same length.

    Example
    -------
    >>> dry = np.random.default_rng(0).standard_normal(8000)
    >>> add_room(dry, np.array([0.0, 1.0, 0.0, 0.5])).shape
    (8000,)
    """
    return reverberate(_float(wav), align_rir(rir))


def _load(path, sample_rate):
    from speechbrain_sqe.dataio.audio import load_audio

    return load_audio(path, sample_rate, warn=False).numpy().astype(np.float64)


def _noise(wav, spec, rng, sample_rate):
    noise = _load(spec["path"], sample_rate) if "path" in spec else rng.standard_normal(len(wav))
    if spec.get("vary") is None:
        return add_noise(wav, noise, float(spec["snr"]), rng)
    # "vary": the seed of a noise variation (colour, speed, level fluctuation; the training
    # augmentation of the enhancers, speechbrain_sqe/dataio/noise_variation.py) applied to the
    # segment that is mixed in: more kinds of noise from a few real ones, at the same SNR.
    import torch

    from speechbrain_sqe.dataio.noise_variation import NoiseVariation

    segment = torch.from_numpy(fit_length(noise, len(wav), rng).astype(np.float32))[None]
    generator = torch.Generator().manual_seed(int(spec["vary"]))
    varied = NoiseVariation(sample_rate, prob=1.0)(segment, generator)[0].double().numpy()
    return add_noise(wav, varied, float(spec["snr"]))


def _room(wav, spec, rng, sample_rate):
    if "path" in spec:
        rir = _load(spec["path"], sample_rate)
    else:
        rir = synthetic_rir(float(spec["t60"]), rng, sample_rate)
    return add_room(wav, rir)


def _chain(wav, spec, rng, sample_rate):
    for step in spec["steps"]:
        wav = degrade(wav, step, rng, sample_rate)
    return wav


#: Spec kind -> (function of (wav, spec, rng, sample_rate), the spec keys it needs).
DEGRADATIONS = {
    "clean": (lambda wav, spec, rng, sr: _float(wav).astype(np.float32), ()),
    "noise": (_noise, ("snr",)),
    "room": (_room, ()),
    "band_limit": (lambda wav, spec, rng, sr: band_limit(wav, sr, float(spec["cutoff_hz"])), ("cutoff_hz",)),
    "clip": (lambda wav, spec, rng, sr: clip(wav, float(spec["threshold"])), ("threshold",)),
    "codec": (lambda wav, spec, rng, sr: codec(wav, sr, spec["name"], spec.get("setting")), ("name",)),
    "packet_loss": (lambda wav, spec, rng, sr: packet_loss(wav, sr, float(spec["loss_rate"]),
                                                           float(spec.get("frame_ms", 20.0)), rng), ("loss_rate",)),
    "chain": (_chain, ("steps",)),
}


def degrade(wav, spec, rng=None, sample_rate=16000):
    """Applies the degradation a spec dict describes (see :data:`DEGRADATIONS` for the kinds).

    Specs: ``{"kind": "noise", "snr": 5, "path": NOISE}`` (white noise without ``path``; with
    ``"vary": SEED`` the noise segment is recoloured, resampled and made to fluctuate in level by
    :class:`~speechbrain_sqe.dataio.noise_variation.NoiseVariation`, at the same SNR),
    ``{"kind": "room", "path": RIR}`` (or ``"t60": 0.6`` for a synthetic room),
    ``{"kind": "band_limit", "cutoff_hz": 4000}``, ``{"kind": "clip", "threshold": 0.3}``,
    ``{"kind": "codec", "name": "opus", "setting": 0.5}``, ``{"kind": "packet_loss", "loss_rate": 0.1}``,
    ``{"kind": "chain", "steps": [spec, ...]}``, ``{"kind": "clean"}``.

    Arguments
    ---------
    wav : numpy.ndarray
        Clean signal, shape ``[time]``.
    spec : dict
        The degradation.
    rng : numpy.random.Generator, optional
        Random draws (noise offset, lost frames); default seed 0, so a spec alone is deterministic.
    sample_rate : int
        The signal's rate.

    Returns
    -------
    numpy.ndarray
        float32, same length.

    Raises
    ------
    ValueError
        An unknown kind, a missing key or a bad setting.
    CodecUnavailable
        A codec this libsndfile lacks.

    Example
    -------
    >>> x = np.sin(np.arange(1600) / 3.0)
    >>> float(np.max(np.abs(degrade(x, {"kind": "clip", "threshold": 0.5})))) <= 0.5
    True
    >>> degrade(x, {"kind": "reverse"})
    Traceback (most recent call last):
    ...
    ValueError: unknown degradation kind 'reverse'; one of clean, noise, room, band_limit, clip, codec, packet_loss, chain
    """
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation kind {kind!r}; one of {', '.join(DEGRADATIONS)}")
    function, needed = DEGRADATIONS[kind]
    missing = [key for key in needed if key not in spec]
    if kind == "room" and "path" not in spec and "t60" not in spec:
        missing.append("path or t60")
    if missing:
        raise ValueError(f"degradation {kind!r} needs {', '.join(missing)} (got {spec})")
    rng = np.random.default_rng(0) if rng is None else rng
    return function(wav, spec, rng, sample_rate)


def describe(spec):
    """A short condition name for a spec (the label manifest's ``condition`` column).

    Arguments
    ---------
    spec : dict
        A degradation spec.

    Returns
    -------
    str
        For example ``noise_snr12.5+codec_opus_0.9``.

    Example
    -------
    >>> describe({"kind": "chain", "steps": [{"kind": "noise", "snr": 12.54, "path": "a/dishes.wav"},
    ...                                      {"kind": "codec", "name": "opus", "setting": 0.9}]})
    'noise_dishes_snr12.5+codec_opus_0.9'
    """
    import os

    kind = spec["kind"]
    if kind == "chain":
        return "+".join(describe(step) for step in spec["steps"])
    if kind == "noise":
        source = os.path.splitext(os.path.basename(spec["path"]))[0] if "path" in spec else "white"
        varied = "" if spec.get("vary") is None else "_varied"
        return f"noise_{source}{varied}_snr{float(spec['snr']):.1f}"
    if kind == "room":
        return "room_" + (os.path.splitext(os.path.basename(spec["path"]))[0] if "path" in spec
                          else f"t60_{float(spec['t60']):g}")
    if kind == "band_limit":
        return f"band_limit_{float(spec['cutoff_hz']):g}hz"
    if kind == "clip":
        return f"clip_{float(spec['threshold']):.2f}"
    if kind == "codec":
        return f"codec_{spec['name']}" + ("" if spec.get("setting") is None else f"_{float(spec['setting']):g}")
    if kind == "packet_loss":
        return f"packet_loss_{float(spec['loss_rate']):.2f}"
    return kind
