"""The voices of the embedded corpus: Debian's ``flite`` and ``espeak-ng`` called as programs.

Each :class:`Voice` is one "speaker". Per utterance the speaking rate and the pitch vary a little
(``flite --setf duration_stretch / int_f0_target_mean``; ``espeak-ng -s / -p``), so one voice does
not always sound the same. Output is read back through :func:`~speechbrain_sqe.dataio.audio.load_audio`,
which resamples espeak-ng's 22.05 kHz to 16 kHz.

Voices are split in two groups: :data:`TRAIN_VOICES` speak the training material, and
:data:`HELDOUT_VOICES` (flite ``kal16`` and a few espeak-ng accents/variants never used for
training) speak the valid/test utterances, so evaluation measures generalisation to new speakers.
"""

import dataclasses
import os
import shutil
import subprocess
import tempfile

from speechbrain_sqe.dataio.audio import load_audio

INSTALL_HINT = "apt-get install flite espeak-ng"


class MissingToolError(RuntimeError):
    """Raised when ``flite`` or ``espeak-ng`` (or a flite voice) is not installed."""


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Arguments
    ---------
    engine : str
        ``"flite"`` or ``"espeak"``.
    name : str
        The flite voice (``slt``) or the espeak-ng voice with optional variant (``en-us+f3``).
    base_f0 : float
        Typical F0 in Hz (flite's pitch target is set relative to it; informative for espeak).
    weight : float
        Relative probability of the voice when utterances pick a voice.

    Example
    -------
    >>> Voice("espeak", "en-us+f3", 215.0).id
    'espeak_en-us-f3'
    """

    engine: str
    name: str
    base_f0: float = 120.0
    weight: float = 1.0

    @property
    def id(self):
        """A file-name-safe identifier such as ``flite_slt`` (the ``voice`` manifest column)."""
        return f"{self.engine}_{self.name}".replace("+", "-").replace("/", "-")


# flite's clustergen voices sound more natural than espeak-ng's formant voices: weight them more.
TRAIN_VOICES = (
    Voice("flite", "slt", 170.0, 2.0),
    Voice("flite", "rms", 101.0, 2.0),
    Voice("flite", "awb", 125.0, 2.0),
    Voice("espeak", "en-us", 104.0),
    Voice("espeak", "en-us+f3", 215.0),
    Voice("espeak", "en", 104.0),  # British; note "en-gb+variant" ignores the variant, "en+f4" works
    Voice("espeak", "en+f4", 200.0),
    Voice("espeak", "en-029+m3", 108.0),
    Voice("espeak", "en-gb-x-rp+f2", 200.0),
    Voice("espeak", "en-us-nyc+m2", 103.0),
    Voice("espeak", "en-gb-x-gbclan+f2", 200.0),
)
HELDOUT_VOICES = (
    Voice("flite", "kal16", 90.0, 2.0),
    Voice("espeak", "en-gb-scotland", 104.0),
    Voice("espeak", "en-gb-scotland+f5", 208.0),
    Voice("espeak", "en-gb-x-gbcwmd+f1", 181.0),
    Voice("espeak", "en-us-nyc+f2", 200.0),
)
ALL_VOICES = TRAIN_VOICES + HELDOUT_VOICES
FLITE_VOICES = tuple(sorted({v.name for v in ALL_VOICES if v.engine == "flite"}))


def check_tts_tools():
    """Checks that ``flite`` (with its voices) and ``espeak-ng`` are installed.

    Raises
    ------
    MissingToolError
        Naming what is missing and the command that installs it.

    Example
    -------
    >>> check_tts_tools()  # silent when both are installed
    """
    missing = [tool for tool in ("flite", "espeak-ng") if shutil.which(tool) is None]
    if missing:
        raise MissingToolError(
            f"{' and '.join(missing)} not found on PATH; the embedded corpus is spoken by Debian's "
            f"flite and espeak-ng. Install them with: {INSTALL_HINT}"
        )
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    absent = [name for name in FLITE_VOICES if name not in listed.split()]
    if absent:
        raise MissingToolError(
            f"flite lacks the voices {absent}; Debian's flite package has them: {INSTALL_HINT}"
        )


def synthesize(voice, text, speed=1.0, semitones=0.0, sample_rate=16000):
    """Speaks ``text`` with ``voice`` and returns the waveform at ``sample_rate``.

    Arguments
    ---------
    voice : Voice
        The speaker.
    text : str
        What to say.
    speed : float
        Speaking-rate factor (1 = the voice's normal rate; 1.2 = 20% faster).
    semitones : float
        Pitch shift of the voice's F0 target in semitones.
    sample_rate : int
        Output rate.

    Returns
    -------
    numpy.ndarray
        float32 waveform, shape ``[time]``.

    Example
    -------
    >>> wav = synthesize(Voice("espeak", "en-us"), "Hello.", speed=1.1, semitones=2)
    >>> 0.2 < len(wav) / 16000 < 2.0
    True
    """
    with tempfile.TemporaryDirectory(prefix="sqe_tts_") as tmp:
        path = os.path.join(tmp, "out.wav")
        if voice.engine == "flite":
            f0 = voice.base_f0 * 2.0 ** (semitones / 12.0)
            cmd = [
                "flite", "-voice", voice.name,
                "--setf", f"duration_stretch={1.0 / speed:.4f}",
                "--setf", f"int_f0_target_mean={f0:.2f}",
                "-t", text, "-o", path,
            ]
        elif voice.engine == "espeak":
            # espeak-ng: -s words per minute (default 175), -p pitch 0-99 (default 50).
            pitch = min(99, max(0, round(50 + 4.0 * semitones)))
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(round(175 * speed)), "-p", str(pitch), "-w", path, text]
        else:
            raise ValueError(f"unknown TTS engine {voice.engine!r}")
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except FileNotFoundError as error:
            raise MissingToolError(f"{cmd[0]} is not installed: {INSTALL_HINT}") from error
        if result.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {result.stderr.strip()}")
        return load_audio(path, sample_rate, warn=False).numpy()
