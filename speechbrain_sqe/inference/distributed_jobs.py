"""Batch jobs over many processes and machines with ``torch.distributed`` (what SpeechBrain uses).

``torchrun --nproc_per_node=N -m speechbrain_sqe.cli score|enhance|evaluate ...`` starts N copies of
the command; each one finds itself here (``WORLD_SIZE``, ``RANK`` from the launcher, read with
SpeechBrain's :mod:`speechbrain.utils.distributed` helpers), joins a ``gloo`` process group and:

1. rank 0 plans (lists the files, reads what an earlier run finished) and broadcasts the plan;
2. every rank takes its share of the remaining files, :func:`shard` (balanced by file size, the same
   on every rank) and writes its own resumable partial results;
3. :meth:`DistributedJob.run` runs a rank's work while the ranks exchange heartbeats, so that a rank
   that dies or hangs is noticed within ``timeout`` seconds however long the work takes, and a rank
   whose work raised reports the error instead of leaving the others waiting;
4. rank 0 merges the partial results into exactly what one process writes and removes them.

The process group is ``gloo`` on CPU and GPU machines alike: the batch jobs exchange small Python
objects (file lists, counts, failures), never tensors, so NCCL's one-GPU-per-rank setup would buy
nothing; each rank still runs its model on ``cuda:LOCAL_RANK`` when asked for ``--device cuda``.

Without ``WORLD_SIZE > 1`` nothing here starts a process group: :class:`DistributedJob` then runs the
work in this process and its collectives return their input (a single-process run is unchanged).

Example
-------
>>> with DistributedJob("score") as job:       # not launched by torchrun: one process
...     job.rank, job.world_size, job.broadcast(["a.wav"]), job.run(lambda: 3)
(0, 1, ['a.wav'], [('ok', 3)])
"""

import datetime
import glob
import logging
import os
import re
import sys
import threading
import time

logger = logging.getLogger(__name__)

#: Seconds a rank may go silent (dead, hung, unreachable) before the others stop with an error.
DEFAULT_TIMEOUT = 600.0
#: Seconds between two heartbeats of a rank that is still working.
HEARTBEAT_INTERVAL = 2.0


class DistributedJobError(RuntimeError):
    """Raised when the ranks of a batch job lose each other (a rank died, hung or cannot be reached)."""


def launched_world_size():
    """The number of processes the launcher started (``WORLD_SIZE``; 1 when not launched by torchrun).

    Returns
    -------
    int
        The world size.

    Example
    -------
    >>> launched_world_size() if "WORLD_SIZE" not in os.environ else 1
    1
    """
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise DistributedJobError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def shard(sizes, world_size):
    """Splits items over ranks with balanced total size, the same way on every rank.

    Greedy longest-first: items by decreasing size (ties by position) each go to the rank with the
    least total so far (ties: the lower rank). Every rank computes the same split from the same
    sizes, with no communication.

    Arguments
    ---------
    sizes : list of int
        The size of each item (bytes of each file).
    world_size : int
        Number of ranks.

    Returns
    -------
    list of list of int
        For each rank, the positions of its items in increasing order.

    Example
    -------
    >>> shard([100, 10, 10, 50, 40, 10], 2)
    [[0, 2], [1, 3, 4, 5]]
    >>> shard([5, 5, 5], 4)
    [[0], [1], [2], []]
    """
    loads, parts = [0] * world_size, [[] for _ in range(world_size)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        parts[rank].append(index)
        loads[rank] += sizes[index]
    return [sorted(part) for part in parts]


def batch_shard(durations, batch_size, world_size):
    """Splits length-sorted batches over ranks, so that every rank runs exactly the batches one
    process runs (the same files padded together: the same arithmetic, the same results).

    The files are sorted by duration as :func:`~speechbrain_sqe.inference.batching.length_sorted_loader`
    sorts them (stable: ties keep their input order), cut into batches of ``batch_size``, and the
    batches are shared by :func:`shard` weighted by their padded length (files x longest). A rank's
    files, given in input order, sort and batch into exactly its batches again: they are contiguous
    runs of the global order, and only the last (longest) batch can be short.

    Arguments
    ---------
    durations : list of float
        Each file's duration (0 for an unreadable one, as the loader sorts it).
    batch_size : int
        Files per batch.
    world_size : int
        Number of ranks.

    Returns
    -------
    list of list of int
        For each rank, the positions of its files in increasing order.

    Example
    -------
    >>> batch_shard([3.0, 1.0, 2.0, 1.0, 5.0], 2, 2)
    [[0, 2], [1, 3, 4]]
    """
    order = sorted(range(len(durations)), key=lambda index: durations[index])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    weights = [len(batch) * max((durations[i] for i in batch), default=0.0) for batch in batches]
    return [sorted(i for b in part for i in batches[b]) for part in shard(weights, world_size)]


def file_durations(paths):
    """Durations in seconds from the headers (0 for an unreadable file), as the batch loader reads them.

    Arguments
    ---------
    paths : list of str
        Files.

    Returns
    -------
    list of float
        Their durations.

    Example
    -------
    >>> file_durations(["/nonexistent.wav"])
    [0.0]
    """
    from speechbrain_sqe.inference.batching import duration_seconds

    return [duration_seconds(path) for path in paths]


def file_sizes(paths):
    """Sizes of files in bytes (0 for a missing or unreadable one, which its rank then reports).

    Arguments
    ---------
    paths : list of str
        Files.

    Returns
    -------
    list of int
        Their sizes.

    Example
    -------
    >>> file_sizes(["/nonexistent.wav"])
    [0]
    """
    sizes = []
    for path in paths:
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            sizes.append(0)
    return sizes


def partial_path(path, rank, world_size):
    """The partial results file of one rank next to the final ``path``.

    Arguments
    ---------
    path : str
        The final CSV.
    rank, world_size : int
        The rank and the number of ranks.

    Returns
    -------
    str
        ``<stem>.rank<R>-of-<W>.partial<ext>``.

    Example
    -------
    >>> partial_path("out/scores.csv", 1, 2)
    'out/scores.rank1-of-2.partial.csv'
    """
    stem, ext = os.path.splitext(os.fspath(path))
    return f"{stem}.rank{rank}-of-{world_size}.partial{ext}"


def existing_partials(path):
    """The partial results files of ``path`` left by any run, whatever its number of ranks.

    Arguments
    ---------
    path : str
        The final CSV.

    Returns
    -------
    list of str
        Existing ``<stem>.rank<R>-of-<W>.partial<ext>`` files, sorted.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("s.rank0-of-2.partial.csv", "s.rank2-of-3.partial.csv", "s.csv", "t.rank0-of-2.partial.csv"):
    ...     _ = open(os.path.join(folder, name), "w")
    >>> [os.path.basename(p) for p in existing_partials(os.path.join(folder, "s.csv"))]
    ['s.rank0-of-2.partial.csv', 's.rank2-of-3.partial.csv']
    """
    stem, ext = os.path.splitext(os.fspath(path))
    pattern = re.compile(re.escape(os.path.basename(stem)) + r"\.rank\d+-of-\d+\.partial" + re.escape(ext) + "$")
    found = glob.glob(f"{glob.escape(stem)}.rank*-of-*.partial{glob.escape(ext)}")
    return sorted(p for p in found if pattern.match(os.path.basename(p)))


def rank_device(device):
    """The device of this rank: ``cuda`` without an index becomes ``cuda:LOCAL_RANK`` under torchrun
    (modulo the number of GPUs, so that more processes than GPUs share them).

    Arguments
    ---------
    device : str
        The ``--device`` given.

    Returns
    -------
    str
        The device this rank uses.

    Example
    -------
    >>> rank_device("cpu")
    'cpu'
    """
    from speechbrain.utils.distributed import get_local_rank

    local_rank = get_local_rank()
    if device == "cuda" and launched_world_size() > 1 and local_rank is not None:
        import torch

        count = torch.cuda.device_count()  # more processes than GPUs: they share them in turn
        return f"cuda:{local_rank % count}" if count else device
    return device


class DistributedJob:
    """One batch job's ranks: process group, plan broadcast, heartbeat-guarded work, result gather.

    Use as a context manager; the process group is joined on entry when launched with
    ``WORLD_SIZE > 1`` and left on exit.

    Arguments
    ---------
    command : str
        The subcommand, for messages (``sqe <command>: rank 1 of 2: ...``).
    timeout : float
        Seconds a rank may go silent before the others give up with :class:`DistributedJobError`
        (also the process group's timeout, e.g. for joining it).
    """

    def __init__(self, command, timeout=DEFAULT_TIMEOUT):
        self.command = command
        self.timeout = float(timeout)
        self.world_size = launched_world_size()
        self.rank = 0
        self._started = False

    @property
    def distributed(self):
        """Whether there are several ranks."""
        return self.world_size > 1

    @property
    def is_main(self):
        """Whether this is rank 0 (plans, merges and reports)."""
        return self.rank == 0

    def __enter__(self):
        if not self.distributed:
            return self
        import torch.distributed as dist
        from speechbrain.utils.distributed import get_rank, is_distributed_initialized

        self.rank = get_rank() or 0
        if not is_distributed_initialized():
            try:
                dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size,
                                        timeout=datetime.timedelta(seconds=self.timeout))
            except Exception as error:  # the rendezvous: a missing MASTER_ADDR, a port in use...
                raise DistributedJobError(
                    f"rank {self.rank} of {self.world_size}: cannot join the other ranks "
                    f"({type(error).__name__}: {error})") from error
            self._started = True
        return self

    def __exit__(self, *exc):
        if self._started:
            import torch.distributed as dist

            try:
                dist.destroy_process_group()
            except (RuntimeError, ValueError) as error:  # a group broken by a dead rank
                logger.debug("leaving the process group: %s", error)
            self._started = False
        return False

    def log(self, message):
        """Prints ``message`` on rank 0 only."""
        if self.is_main:
            print(message, flush=True)

    def error(self, message):
        """Prints an error line naming the command (and the rank when there are several)."""
        where = f"rank {self.rank} of {self.world_size}: " if self.distributed else ""
        print(f"sqe {self.command}: {where}{message}", file=sys.stderr, flush=True)

    def _lost(self, error):
        return DistributedJobError(
            f"rank {self.rank} of {self.world_size}: lost contact with the other ranks "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
            f"a rank died, hung for more than {self.timeout:g} s (--dist-timeout) or cannot be "
            "reached. Finished results are kept in the partial files: rerun the same command with "
            "--resume")

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (SpeechBrain's ``ddp_broadcast``)."""
        if not self.distributed:
            return obj
        from speechbrain.utils.distributed import ddp_broadcast

        try:
            return ddp_broadcast(obj, src=0)
        except RuntimeError as error:
            raise self._lost(error) from error

    def gather(self, obj):
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered = [None] * self.world_size
        try:
            dist.all_gather_object(gathered, obj)
        except RuntimeError as error:
            raise self._lost(error) from error
        return gathered

    def run(self, work):
        """Runs ``work()`` on this rank and returns every rank's outcome, in rank order.

        While the work runs, a thread exchanges a heartbeat with the other ranks every
        :data:`HEARTBEAT_INTERVAL` seconds; a rank that has finished keeps beating until all have.
        A rank that stops beating (killed, hung, its machine gone) makes the others raise
        :class:`DistributedJobError` after ``timeout`` seconds. An exception inside ``work`` is not
        raised: it becomes this rank's outcome ``("error", message)``, so that every rank learns
        of it and rank 0 can report it.

        Arguments
        ---------
        work : callable
            This rank's share of the job; returns a picklable result.

        Returns
        -------
        list of tuple
            ``("ok", result)`` or ``("error", message)`` per rank.
        """
        if not self.distributed:
            return [("ok", work())]
        done, failure = threading.Event(), []
        beater = threading.Thread(target=self._heartbeat, args=(done, failure), daemon=True)
        beater.start()
        try:
            outcome = ("ok", work())
        except Exception as error:  # noqa: BLE001 -- reported by rank 0; KeyboardInterrupt still stops

            outcome = ("error", f"{type(error).__name__}: {error}")
        done.set()
        beater.join()
        if failure:
            raise self._lost(failure[0]) from failure[0]
        return self.gather(outcome)

    def _heartbeat(self, done, failure):
        """All-reduces (finished ranks) every few seconds until every rank has finished."""
        import torch
        import torch.distributed as dist

        try:
            while True:
                finished = done.is_set()
                count = torch.tensor([1 if finished else 0], dtype=torch.int64)
                dist.all_reduce(count)
                if int(count) == self.world_size:
                    return
                if not finished:  # several beats per timeout, so that a slow beat is not taken for a death
                    done.wait(min(HEARTBEAT_INTERVAL, self.timeout / 4))
                else:
                    time.sleep(0.05)
        except Exception as error:  # noqa: BLE001 -- handed to the main thread
            failure.append(error)

    def failures(self, outcomes):
        """The message naming every rank whose work failed (``None`` when none did).

        Arguments
        ---------
        outcomes : list of tuple
            What :meth:`run` returned.

        Returns
        -------
        str or None
            ``rank 1 of 2 failed: ...; ...``, with the advice to resume.
        """
        errors = [f"rank {rank} of {self.world_size} failed: {value}"
                  for rank, (status, value) in enumerate(outcomes) if status != "ok"]
        if not errors:
            return None
        return "; ".join(errors) + "; finished results are kept: rerun the same command with --resume"

    def report_shares(self, parts, amounts, unit):
        """Logs (rank 0) how many files each rank took: ``rank 1 of 2: 11 files (33.0 s of audio)``.

        Arguments
        ---------
        parts : list of list of int
            The positions of each rank's files.
        amounts : list of float
            The size of each file (seconds, bytes...).
        unit : str
            ``"s"`` (seconds of audio) or ``"bytes"``.
        """
        for rank, part in enumerate(parts):
            total = sum(amounts[i] for i in part)
            size = f"{total:.1f} s of audio" if unit == "s" else f"{total / 1e6:.1f} MB"
            self.log(f"rank {rank} of {self.world_size}: {len(part)} files ({size})")
