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

__all__ = ["MAX_BATCH_SECONDS", "AudioFileDataset", "budget_batches", "collate_padded", "duration_seconds",
           "length_sorted_loader"]


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


#: Most padded audio in one batch, in seconds (files x the longest): a batch of long recordings is
#: split so that memory does not grow with the length of the files times the batch size.
MAX_BATCH_SECONDS = 600.0


def budget_batches(durations, batch_size, max_seconds=MAX_BATCH_SECONDS):
    """Batches of length-sorted files: consecutive groups of ``batch_size``, each split further
    (greedily, in order) where its padded audio (files x the longest) would exceed ``max_seconds``;
    a file longer than that is a batch alone.

    The split happens inside each group of ``batch_size``, so any run of whole groups (a rank's share
    in :func:`~speechbrain_sqe.inference.distributed_jobs.batch_shard`) batches the same way alone.
    Written here: SpeechBrain's ``DynamicBatchSampler`` buckets and shuffles for training and does
    not keep this order.

    Arguments
    ---------
    durations : list of float
        Durations of the files, sorted (ascending).
    batch_size : int
        Most files per batch.
    max_seconds : float, optional
        Most padded seconds per batch (None: no limit).

    Returns
    -------
    list of list of int
        Positions of each batch's files.

    Example
    -------
    >>> budget_batches([5.0, 5.0, 5.0, 200.0, 300.0, 400.0], 3, max_seconds=600.0)
    [[0, 1, 2], [3, 4], [5]]
    """
    batches = []
    for start in range(0, len(durations), batch_size):
        current = []
        for index in range(start, min(start + batch_size, len(durations))):
            if current and max_seconds is not None and (len(current) + 1) * durations[index] > max_seconds:
                batches.append(current)
                current = []
            current.append(index)
        batches.append(current)
    return batches


def length_sorted_loader(paths, load, batch_size, num_workers=0, source_of=None, max_batch_seconds=MAX_BATCH_SECONDS):
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
    max_batch_seconds : float, optional
        Most padded seconds of audio per batch (:func:`budget_batches`; None: ``batch_size`` files
        whatever their length).

    Returns
    -------
    torch.utils.data.DataLoader
        Batches ``(paths, wavs, lens, failures)``.
    """
    duration = {key: duration_seconds(key if source_of is None else source_of[key]) for key in paths}
    ordered = sorted(paths, key=duration.__getitem__)
    if source_of is not None:
        load = _LoadSource(load, source_of)
    batches = budget_batches([duration[key] for key in ordered], batch_size, max_batch_seconds)
    return DataLoader(AudioFileDataset(ordered, load), batch_sampler=batches, collate_fn=collate_padded,
                      num_workers=num_workers)


class _LoadSource:
    """Loads the input file of a key (a picklable callable, for worker processes)."""

    def __init__(self, load, source_of):
        self.load = load
        self.source_of = source_of

    def __call__(self, key):
        return self.load(self.source_of[key])
