"""Writing SpeechBrain CSV manifests.

Two flavours:

- data manifests (``train_clean.csv``, ``valid.csv``...): ``ID, duration`` then named columns, read
  with ``speechbrain.dataio.dataset.DynamicItemDataset.from_csv``;
- noise / RIR lists for ``speechbrain.augment.time_domain.AddNoise(csv_file=...)`` and
  ``AddReverb(csv_file=...)``, which read them through the legacy ``ExtendedCSVDataset``: that needs
  ``ID, duration`` followed by triplets ``<name>, <name>_format, <name>_opts``, and with
  ``csv_keys=None`` exactly one triplet, hence ``ID, duration, wav, wav_format, wav_opts``.

Paths are written absolute. Text fields must not contain ``$`` (SpeechBrain substitutes
``$variables`` in every field), which :func:`write_manifest` checks.
"""

import csv
import math
import os

import soundfile

#: Columns of the noise / RIR lists read by AddNoise / AddReverb.
AUDIO_LIST_COLUMNS = ("ID", "duration", "wav", "wav_format", "wav_opts")


def audio_duration(path):
    """Duration in seconds of an audio file from its header, or None when missing/unreadable/empty.

    Used to verify existing outputs cheaply (no decoding).

    Arguments
    ---------
    path : str
        The audio file.

    Returns
    -------
    float or None
        Seconds, or None.

    Example
    -------
    >>> audio_duration("/nonexistent.wav") is None
    True
    """
    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError, ValueError, TypeError):  # soundfile's errors for bad files
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return info.frames / info.samplerate


def _format(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(round(value, 4))
    return str(value)


def write_manifest(path, rows, columns):
    """Writes a SpeechBrain CSV (``ID, duration`` first) atomically.

    Arguments
    ---------
    path : str
        Output file.
    rows : list of dict
        One dict per item; keys beyond ``columns`` are ignored, missing ones written empty.
    columns : sequence of str
        Column order; must start with ``ID, duration``.

    Returns
    -------
    str
        The absolute path written.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = write_manifest(path, [{"ID": "u1", "duration": 1.25, "wav": "/x.wav"}], ["ID", "duration", "wav"])
    >>> open(path).read().splitlines()
    ['ID,duration,wav', 'u1,1.25,/x.wav']
    """
    columns = list(columns)
    if columns[:2] != ["ID", "duration"]:
        raise ValueError("a SpeechBrain manifest starts with the columns ID, duration")
    ids = set()
    for row in rows:
        if row["ID"] in ids:
            raise ValueError(f"{path}: duplicate ID {row['ID']}")
        ids.add(row["ID"])
        for column in columns:
            if "$" in str(row.get(column, "")):
                raise ValueError(f"{path}: '$' in column {column} of {row['ID']} (SpeechBrain reads it as a variable)")
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # One temporary file per process: two recipes preparing the same data folder at once (two
    # experiments launched together) must not rename each other's half-written file.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row.get(column, "")) for column in columns])
    os.replace(tmp, path)
    return path


def write_audio_list(path, rows):
    """Writes a noise or RIR list usable by SpeechBrain's ``AddNoise`` / ``AddReverb``.

    Arguments
    ---------
    path : str
        Output file.
    rows : list of dict
        With keys ``ID``, ``duration`` and ``wav`` (absolute path).

    Returns
    -------
    str
        The absolute path written.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "noise.csv")
    >>> _ = write_audio_list(path, [{"ID": "n1", "duration": 2.0, "wav": "/n1.wav"}])
    >>> open(path).read().splitlines()[1]
    'n1,2.0,/n1.wav,wav,'
    """
    full = [dict(row, wav_format=os.path.splitext(row["wav"])[1].lstrip(".").lower(), wav_opts="") for row in rows]
    return write_manifest(path, full, AUDIO_LIST_COLUMNS)


def read_manifest(path):
    """Reads a manifest back as a list of dicts (strings), in file order.

    Arguments
    ---------
    path : str
        A CSV written by :func:`write_manifest`.

    Returns
    -------
    list of dict
        The rows.

    Example
    -------
    >>> import tempfile, os
    >>> path = write_manifest(os.path.join(tempfile.mkdtemp(), "a.csv"), [{"ID": "u", "duration": 1.0}], ["ID", "duration"])
    >>> read_manifest(path)
    [{'ID': 'u', 'duration': '1.0'}]
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
