"""The one audio loader of the package (training, inference and CLI all read through it).

It reads with soundfile (as ``speechbrain.dataio.audio_io`` does; 16-bit PCM through int16, see
:func:`_read_channels_first`; never ``torchaudio.load``, which needs FFmpeg), then:

- downmixes multi-channel audio to mono by averaging the channels (documented behaviour);
- resamples to the requested rate with ``torchaudio.functional.resample``;
- refuses, with an :class:`AudioLoadError` naming the file, a missing file, an unreadable or
  unsupported file, zero-length audio, a sample rate below :data:`MIN_FILE_RATE`, audio shorter
  than the model needs, and NaN/Inf samples;
- warns (``logging``) on digital silence and on clipping.
"""

import io
import logging
import os

import numpy as np
import soundfile
import torch
import torchaudio

logger = logging.getLogger(__name__)

#: Absolute sample value at or above which a sample counts as clipped.
CLIP_LEVEL = 0.999
#: Fraction of clipped samples above which a warning is given.
CLIP_FRACTION = 0.001
#: Lowest file sample rate taken (Hz): below it a file cannot hold speech (a broken or odd header).
MIN_FILE_RATE = 2000
#: Peak below which a file counts as digital silence.
SILENCE_PEAK = 1e-5


class AudioLoadError(ValueError):
    """Raised when an audio file cannot be used; the message names the file and the problem."""


class AudioBytes(str):
    """An audio file's content in memory, named like a path (what messages show).

    :func:`load_audio` reads it as it reads the file it came from (a shard member of
    :mod:`speechbrain_sqe.dataio.shards`); everything else sees the name.

    Arguments
    ---------
    name : str
        Where the bytes came from (``<shard>.tar/<member>``).
    data : bytes
        The file's content.

    Example
    -------
    >>> audio = AudioBytes("shard-000000.tar/000000000.wav.wav", wav_bytes(torch.zeros(1600)))
    >>> load_audio(audio, warn=False).shape, audio
    (torch.Size([1600]), 'shard-000000.tar/000000000.wav.wav')
    """

    def __new__(cls, name, data):
        text = super().__new__(cls, name)
        text.data = data
        return text


def load_audio(path, sample_rate=16000, min_duration=None, warn=True):
    """Loads one audio file as a mono float tensor at ``sample_rate``.

    Arguments
    ---------
    path : str or os.PathLike or AudioBytes
        The audio file (any format libsndfile reads: wav, flac, ogg...), or its content in memory.
    sample_rate : int
        The rate the caller needs; other rates are resampled.
    min_duration : float, optional
        Minimum duration in seconds the caller needs (for example one STFT window).
    warn : bool
        Log a warning for digital silence and clipping.

    Returns
    -------
    torch.Tensor
        The waveform, shape ``[time]``, float32, at ``sample_rate``.

    Raises
    ------
    AudioLoadError
        For a missing, unreadable, empty, too short or non-finite file.

    Example
    -------
    >>> import tempfile, os, soundfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> stereo_8k = np.stack([np.sin(np.arange(8000) / 5.0)] * 2, axis=1) * 0.5
    >>> soundfile.write(path, stereo_8k, 8000)
    >>> wav = load_audio(path, sample_rate=16000)
    >>> wav.shape
    torch.Size([16000])
    """
    source = io.BytesIO(path.data) if isinstance(path, AudioBytes) else os.fspath(path)
    path = os.fspath(path)
    try:
        audio, file_rate = _read_channels_first(source)
    except Exception as error:  # soundfile raises several types for bad files
        # What is wrong is asked only now: the checks cost two file-system calls per good file.
        if not isinstance(source, io.BytesIO) and not os.path.exists(path):
            raise AudioLoadError(f"{path}: file not found") from None
        if os.path.isdir(path):
            raise AudioLoadError(f"{path}: is a folder, not an audio file") from None
        known = ", ".join(sorted(soundfile.available_formats()))
        raise AudioLoadError(
            f"{path}: cannot read as audio ({_root_cause(error)}). "
            f"Readable formats: {known}"
        ) from error
    if audio.numel() == 0 or audio.shape[-1] == 0:
        raise AudioLoadError(f"{path}: file holds no audio samples (zero length)")
    if file_rate < MIN_FILE_RATE:
        raise AudioLoadError(f"{path}: sample rate {file_rate} Hz is below {MIN_FILE_RATE} Hz "
                             "(a damaged header, or not speech audio)")
    audio = audio.float()
    # One sum first (the sum of finite audio is finite); the per-sample test, 10 times slower,
    # runs only when it is not.
    if not torch.isfinite(audio.sum()):
        bad = int((~torch.isfinite(audio)).sum())
        if bad:
            raise AudioLoadError(f"{path}: {bad} samples are NaN or Inf")
    if audio.shape[0] > 1:  # downmix: mean of channels
        audio = audio.mean(dim=0, keepdim=True)
    wav = audio[0]
    if file_rate != sample_rate:
        wav = torchaudio.functional.resample(wav, file_rate, sample_rate)
    if min_duration is not None and wav.shape[0] < round(min_duration * sample_rate):
        raise AudioLoadError(
            f"{path}: audio is {wav.shape[0] / sample_rate:.3f} s long; "
            f"at least {min_duration:.3f} s is needed"
        )
    if warn:
        _warn_on_level(path, wav)
    return wav


def _read_channels_first(source):
    """``[channels, frames]`` float32 samples and the rate, as SpeechBrain's
    ``speechbrain.dataio.audio_io.load(source, channels_first=True, always_2d=True)`` (soundfile)
    gives them, with one difference in how: 16-bit PCM (most speech files) is read as int16 and
    scaled by 2^-15 in torch, the same values as libsndfile's float conversion (its normalisation
    is that product) at 2.2 times the speed (200 real 16 kHz files: 24 against 52 ms; session 27).
    Other encodings are read as float32 as SpeechBrain reads them."""
    with soundfile.SoundFile(source) as handle:
        if handle.subtype == "PCM_16":
            samples = torch.from_numpy(handle.read(dtype="int16", always_2d=True)).float().mul_(2.0 ** -15)
        else:
            samples = torch.from_numpy(handle.read(dtype="float32", always_2d=True))
        return samples.T, handle.samplerate


def _warn_on_level(path, wav):
    low, high = torch.aminmax(wav)  # one pass, no |wav| buffer
    peak = max(-float(low), float(high))
    if peak < SILENCE_PEAK:
        logger.warning("%s: digital silence (peak %.2e); scores will be meaningless", path, peak)
        return
    if peak < CLIP_LEVEL:  # nothing can be clipped: spare the count
        return
    clipped = float((wav.abs() >= CLIP_LEVEL).float().mean())
    if clipped > CLIP_FRACTION:
        logger.warning("%s: %.2f%% of samples are clipped", path, 100 * clipped)


def _root_cause(error):
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).strip() or type(error).__name__


def wav_bytes(wav, sample_rate=16000):
    """A mono waveform encoded as a complete 16-bit PCM wav file, in memory.

    Writing these bytes with ordinary file I/O reports a full or read-only disk as the ``OSError``
    it is (libsndfile reports it as "System error.").

    Arguments
    ---------
    wav : torch.Tensor or numpy.ndarray
        The waveform, shape ``[time]`` (clipped to ``[-1, 1]``).
    sample_rate : int
        Its sampling rate.

    Returns
    -------
    bytes
        The file's content.

    Example
    -------
    >>> data = wav_bytes(torch.zeros(160), 16000)
    >>> data[:4], len(data)
    (b'RIFF', 364)
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sample_rate,
                    subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def save_audio(path, wav, sample_rate=16000):
    """Writes a mono waveform (``[time]`` tensor or array) as 16-bit PCM, creating folders.

    Arguments
    ---------
    path : str
        The output file.
    wav : torch.Tensor or numpy.ndarray
        The waveform, shape ``[time]``.
    sample_rate : int
        Its sampling rate.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "b.wav")
    >>> save_audio(path, torch.zeros(160), 16000)
    >>> load_audio(path, warn=False).shape
    torch.Size([160])
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    soundfile.write(path, np.clip(np.asarray(wav, dtype=np.float32), -1, 1), sample_rate, subtype="PCM_16")
