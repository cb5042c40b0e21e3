"""What every batch job of the interfaces shares: read files with the interface's loader, sort them by
length, pad them into batches, and report unreadable files instead of stopping.

Batches hold files of similar length so padding costs little; the interfaces' masked processing
makes a padded batch give each file exactly its result alone. :func:`map_batches` runs a job's
per-batch work over them in one of two ways:

- **batch threads** (the default on a multi-core CPU): ``N`` threads each decode and process whole
  batches with one torch thread apiece (torch releases the GIL inside its operators). Small models
  on short frames scale poorly inside one operator (one 2-thread convolution, norm or STFT waits
  for its slower half); whole batches side by side keep every core busy, and decoding overlaps the
  model. Each batch's numbers are those of a one-thread run (the same within float rounding as
  any thread count);
- **serial** (one batch at a time, the operators using every torch thread; decoding optionally in
  DataLoader worker processes): on a GPU, with ``num_workers``, or where there is one batch.

An interface may ask for each batch's length to be padded up to a multiple of some samples
(``length_multiple``; VQScore: 16 frames): the convolutions' oneDNN kernels are built for each input
shape the first time it is seen (1.5-3 ms per layer here, about 14 % of a first pass over files of
new lengths), so fewer distinct lengths let a long job reuse them (benchmarks/RESULTS.md, session 28).
"""

import collections
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

import soundfile
import torch
from torch.utils.data import DataLoader, Dataset

from speechbrain_sqe.dataio.audio import AudioLoadError

__all__ = ["MAX_BATCH_SECONDS", "AudioFileDataset", "batch_threads", "budget_batches", "collate_padded",
           "duration_seconds", "length_sorted_loader", "map_batches"]


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


#: Longest batch (samples) that ``length_multiple`` pads: relative lengths are float32, so beyond
#: 2**24 samples a file's length read back from them can be off by one; the longest file of an
#: unpadded batch is exactly 1.0. (Kernel reuse is worth nothing to a batch of minutes anyway.)
MAX_PADDED_SAMPLES = 2**23


def collate_padded(items, length_multiple=1):
    """Pads the readable items into ``[batch, time]`` with relative lengths; keeps the failures.

    Arguments
    ---------
    items : list of tuple
        ``(path, waveform or None, error or None)`` from :class:`AudioFileDataset`.
    length_multiple : int
        The batch's length is padded up to a multiple of this many samples (1: the longest item's);
        not beyond :data:`MAX_PADDED_SAMPLES`.

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
    >>> collate_padded([("a", torch.ones(5), None)], length_multiple=4)[1:3]  # padded to 8 samples
    (tensor([[1., 1., 1., 1., 1., 0., 0., 0.]]), tensor([0.6250]))
    """
    if not isinstance(length_multiple, int) or isinstance(length_multiple, bool) or length_multiple < 1:
        raise ValueError(f"length_multiple must be a positive number of samples, got {length_multiple!r}")
    good = [(path, wav) for path, wav, _ in items if wav is not None]
    bad = [(path, error) for path, _, error in items if error is not None]
    if not good:
        return [], None, None, bad
    longest = max(wav.shape[0] for _, wav in good)
    if longest <= MAX_PADDED_SAMPLES:
        longest = -(-longest // length_multiple) * length_multiple
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
#: split so that memory does not grow with the length of the files times the batch size. Two
#: minutes, not ten as before session 22: with batches side by side, ten-minute batches of
#: one-minute files fragmented the allocator's heaps (the peak RSS of a 20-hour job kept rising,
#: VQScore 1.46 -> 1.62 GB, BSSE 1.94 -> 2.05 GB from 0.5 to 20 hours), two-minute ones keep it
#: flat (1.04-1.05 GB and 1.18-1.19 GB from 0.5 to 10 hours) and run as fast or faster (cache-sized
#: work; the VQ enhancer 1.15 times faster on real files of 1.6-17 s); batches of short files
#: (16 x 5 s) are unchanged (benchmarks/RESULTS.md).
MAX_BATCH_SECONDS = 120.0


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


def length_sorted_loader(paths, load, batch_size, num_workers=0, source_of=None, max_batch_seconds=MAX_BATCH_SECONDS,
                         length_multiple=1):
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
    length_multiple : int
        Each batch's length is padded up to a multiple of this many samples (:func:`collate_padded`).

    Returns
    -------
    torch.utils.data.DataLoader
        Batches ``(paths, wavs, lens, failures)``.
    """
    dataset, batches = _sorted_batches(paths, load, batch_size, source_of, max_batch_seconds)
    collate = functools.partial(collate_padded, length_multiple=length_multiple)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)


def _sorted_batches(paths, load, batch_size, source_of, max_batch_seconds):
    """The dataset of ``paths`` sorted by duration and its batches (positions), as the loader uses,
    the batch of the longest files first: batches side by side then end together (with the longest
    last, one thread ran it alone while the others idled; VQScore on 576 real files of 1.6-17 s, 2
    threads: 1,916-1,942 x against 1,896-1,912 x, alternating runs, session 27). The groups are those
    of the ascending order (a partial group holds the longest files), as a rank's share of
    :func:`~speechbrain_sqe.inference.distributed_jobs.batch_shard` batches them."""
    duration = {key: duration_seconds(key if source_of is None else source_of[key]) for key in paths}
    ordered = sorted(paths, key=duration.__getitem__)
    if source_of is not None:
        load = _LoadSource(load, source_of)
    batches = budget_batches([duration[key] for key in ordered], batch_size, max_batch_seconds)
    return AudioFileDataset(ordered, load), batches[::-1]


def batch_threads(threads, device="cpu", num_workers=0, side_by_side=True):
    """How many batch threads :func:`map_batches` uses for a ``threads`` setting.

    Arguments
    ---------
    threads : int or str
        ``"auto"``: one per torch thread (``torch.get_num_threads()``) on a CPU; 1 on a GPU, with
        decoding processes (``num_workers``) or for a model that prefers one batch at a time
        (``side_by_side``); a number: that many (1: serial).
    device : str or torch.device
        The model's device.
    num_workers : int
        DataLoader decoding processes asked for (they take the serial path).
    side_by_side : bool
        The interface's ``SIDE_BY_SIDE_BATCHES`` (what ``"auto"`` does for it on a CPU).

    Returns
    -------
    int
        Batch threads (1: serial).

    Example
    -------
    >>> batch_threads(3), batch_threads("auto", "cuda:0"), batch_threads("auto", num_workers=2)
    (3, 1, 1)
    >>> batch_threads("auto", side_by_side=False)
    1
    """
    if threads == "auto":
        if torch.device(device).type != "cpu" or num_workers or not side_by_side:
            return 1
        return max(1, torch.get_num_threads())
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"batch threads must be 'auto' or a positive number, got {threads!r}")
    return threads


@contextlib.contextmanager
def _one_torch_thread():
    """Runs the block with one intra-op torch thread (the batch threads' setting), then restores the
    previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def map_batches(paths, load, work, batch_size, threads=1, num_workers=0, source_of=None,
                max_batch_seconds=MAX_BATCH_SECONDS, length_multiple=1):
    """Yields ``work(names, wavs, lens, failures)`` of every length-sorted padded batch, in batch order
    (the batch of the longest files first).

    With ``threads`` > 1 and more than one batch, that many threads each decode and process whole
    batches, one torch thread each (see the module docstring); at most ``2 * threads`` batches are
    in flight (memory stays flat over any folder), and the results come back in order. Otherwise
    the batches come one at a time from a DataLoader (as :func:`length_sorted_loader`'s;
    ``num_workers`` decoding processes) and ``work`` runs here.

    ``work`` must be safe to call from several threads at once (an interface's inference in eval
    mode is). torch's thread count is process-wide: while batch threads run it is 1 for the whole
    process (another thread of the caller using torch meanwhile gets one thread too) and it is
    restored at the end. Where the caller stops early (an exception, ``close()``), batches not started are
    dropped and those running are finished first.

    Arguments
    ---------
    paths : list of str
        The files (or keys, with ``source_of``).
    load : callable
        The interface's ``load_file``.
    work : callable
        ``(names, wavs, lens, failures) -> result`` of one :func:`collate_padded` batch.
    batch_size : int
        Files per batch.
    threads : int
        Batch threads (:func:`batch_threads` turns ``"auto"`` into a number); 1: serial.
    num_workers : int
        Decoding processes of the serial path.
    source_of : dict, optional
        ``key -> input file`` when ``paths`` are keys.
    max_batch_seconds : float, optional
        As in :func:`length_sorted_loader`.
    length_multiple : int
        As in :func:`length_sorted_loader` (an interface's ``batch_length_multiple``).

    Yields
    ------
    object
        ``work``'s result of each batch.

    Example
    -------
    >>> load = lambda name: torch.ones(len(name))  # names, not files: each reads as 0 s, order kept
    >>> shapes = lambda names, wavs, lens, bad: (names, tuple(wavs.shape))  # wavs: [batch, time]
    >>> list(map_batches(["a", "bbb", "cc", "dddd"], load, shapes, batch_size=2, threads=2))
    [(['cc', 'dddd'], (2, 4)), (['a', 'bbb'], (2, 3))]
    """
    dataset, batches = _sorted_batches(paths, load, batch_size, source_of, max_batch_seconds)
    collate = functools.partial(collate_padded, length_multiple=length_multiple)
    if threads > 1 and len(batches) > 1:
        yield from _threaded(dataset, batches, work, threads, collate)
        return
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    for batch in loader:
        yield work(*batch)


def _threaded(dataset, batches, work, threads, collate):
    """:func:`map_batches`' batch threads (written here: torch's DataLoader decodes in threads or
    processes but runs the model in the caller's thread only)."""

    def task(positions):
        return work(*collate([dataset[index] for index in positions]))

    with _one_torch_thread():
        pool = ThreadPoolExecutor(threads, thread_name_prefix="sqe-batch")
        pending = collections.deque()
        try:
            for positions in batches:
                pending.append(pool.submit(task, positions))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _LoadSource:
    """Loads the input file of a key (a picklable callable, for worker processes)."""

    def __init__(self, load, source_of):
        self.load = load
        self.source_of = source_of

    def __call__(self, key):
        return self.load(self.source_of[key])
