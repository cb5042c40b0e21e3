"""What every batch job of the interfaces shares: read files with the interface's loader, sort them by
length, pad them into batches, and report unreadable files instead of stopping.

Files are decoded in a DataLoader (optionally in worker processes) while the model works on the
previous batch. Batches hold files of similar length so padding costs little; the interfaces' masked
processing makes a padded batch give each file exactly its result alone.
"""

import soundfile
import torch
from torch.utils.data import DataLoader, Dataset

from speechbrain_sqe.dataio.audio import AudioLoadError

__all__ = ["AudioFileDataset", "collate_padded", "duration_seconds", "length_sorted_loader"]


class AudioFileDataset(Dataset):
    """Reads files with a loader; a bad file yields its error instead of audio.

    Arguments
    ---------
    paths : list of str
        The files.
    load : callable
        ``path -> waveform [time]`` (an interface's ``load_file``), raising ``AudioLoadError``.

    Example
    -------
    >>> data = AudioFileDataset(["missing.wav"], lambda path: torch.zeros(4))
    >>> data[0]
    ('missing.wav', tensor([0., 0., 0., 0.]), None)
    """

    def __init__(self, paths, load):
        self.paths = paths
        self.load = load

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            return path, self.load(path), None
        except AudioLoadError as error:
            return path, None, str(error)
        except (RuntimeError, OSError, MemoryError) as error:  # decoding or resampling gave out
            return path, None, f"{path}: cannot read ({type(error).__name__}: {str(error).strip()[:200]})"


def collate_padded(items):
    """Pads the readable items into ``[batch, time]`` with relative lengths; keeps the failures.

    Arguments
    ---------
    items : list of tuple
        ``(path, waveform or None, error or None)`` from :class:`AudioFileDataset`.

    Returns
    -------
    paths : list of str
        The readable files.
    wavs : torch.Tensor or None
        ``[batch, time]``.
    lens : torch.Tensor or None
        Relative lengths ``[batch]``.
    failures : list of tuple
        ``(path, error)`` of the unreadable files.

    Example
    -------
    >>> paths, wavs, lens, bad = collate_padded([("a", torch.ones(4), None), ("b", torch.ones(2), None),
    ...                                           ("c", None, "corrupt")])
    >>> wavs.shape, lens.tolist(), bad
    (torch.Size([2, 4]), [1.0, 0.5], [('c', 'corrupt')])
    """
    good = [(path, wav) for path, wav, _ in items if wav is not None]
    bad = [(path, error) for path, _, error in items if error is not None]
    if not good:
        return [], None, None, bad
    longest = max(wav.shape[0] for _, wav in good)
    wavs = torch.zeros(len(good), longest)
    for row, (_, wav) in enumerate(good):
        wavs[row, : wav.shape[0]] = wav
    lens = torch.tensor([wav.shape[0] / longest for _, wav in good])
    return [path for path, _ in good], wavs, lens, bad


def duration_seconds(path):
    """A file's duration from its header (0 for an unreadable file, reported when read).

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    float
        Seconds.

    Example
    -------
    >>> duration_seconds("missing.wav")
    0.0
    """
    try:
        info = soundfile.info(path)
        return info.frames / max(info.samplerate, 1)
    except (RuntimeError, OSError, ValueError):
        return 0.0


def length_sorted_loader(paths, load, batch_size, num_workers=0, source_of=None):
    """A DataLoader over ``paths`` sorted by duration, giving ``collate_padded`` batches.

    Arguments
    ---------
    paths : list of str
        The files.
    load : callable
        The interface's ``load_file``.
    batch_size : int
        Files per batch.
    num_workers : int
        Decoding processes (0: decode in this process).
    source_of : dict, optional
        ``key -> input file`` when ``paths`` are keys (e.g. output paths) rather than the files.

    Returns
    -------
    torch.utils.data.DataLoader
        Batches ``(paths, wavs, lens, failures)``.
    """
    if source_of is not None:
        ordered = sorted(paths, key=lambda key: duration_seconds(source_of[key]))
        load = _LoadSource(load, source_of)
    else:
        ordered = sorted(paths, key=duration_seconds)
    return DataLoader(AudioFileDataset(ordered, load), batch_size=batch_size, collate_fn=collate_padded,
                      num_workers=num_workers)


class _LoadSource:
    """Loads the input file of a key (a picklable callable, for worker processes)."""

    def __init__(self, load, source_of):
        self.load = load
        self.source_of = source_of

    def __call__(self, key):
        return self.load(self.source_of[key])
