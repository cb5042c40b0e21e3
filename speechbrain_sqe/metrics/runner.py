"""The parallel evaluation runner: pairs files, computes metrics in worker processes, reports.

Pairing rules (:func:`pair_files`):

- two single files (not folders) pair with each other, whatever their names;
- a folder contributes every audio file below it, named by its path relative to the folder
  (``spk1/a.wav``); a file given directly is named by its base name; reference and degraded
  files with the same name pair up (so two folders pair by relative path, two lists of files
  by base name);
- a name on one side only is reported as unpaired (``unpaired_ref`` / ``unpaired_deg``).

Every file that yields no scores is reported in the failures with its reason (``unpaired_ref``,
``unpaired_deg``, ``unreadable``, ``too_short``, ``metric_error``): nothing is dropped silently.
A metric that fails on a file leaves an empty cell in that file's row and a ``metric_error``
failure naming the metric; its other metrics are kept.

Files are scored in supervised worker processes (:func:`evaluate_pairs`), so that native code
that segfaults, hangs or exhausts memory costs one metric of one file (``crashed``,
``timed_out``, ``out_of_memory``), never the run; finished rows can be saved as they come
(``on_row``, used by ``sqe evaluate --csv`` and the recipes' reference-metric caches).
"""

import csv
import logging
import math
import os
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

from speechbrain_sqe.dataio.files import AUDIO_EXTENSIONS, find_audio_files
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import intrusive
from speechbrain_sqe.metrics.intrusive import MetricUnavailableError
from speechbrain_sqe.metrics.registry import (
    METRICS,
    finite_values,
    require_available,
    resolve_metrics,
    try_compute_metrics,
)

logger = logging.getLogger(__name__)

#: Default shortest usable duration in seconds (PESQ needs 0.25 s, STOI about 0.4 s of speech).
DEFAULT_MIN_DURATION = 0.5
#: Columns of the per-file table before the metric columns.
FIXED_COLUMNS = ("file", "ref", "deg", "duration_s")
#: Failure reasons.
REASONS = ("unpaired_ref", "unpaired_deg", "unreadable", "too_short", "metric_error", "crashed",
           "timed_out", "out_of_memory")

#: One file to evaluate: its name and the two paths (``ref`` is None for non-intrusive metrics).
Pair = namedtuple("Pair", ["file", "ref", "deg"])
#: One file that gave no (or incomplete) scores: its name, a reason of :data:`REASONS`, details.
Failure = namedtuple("Failure", ["file", "reason", "message"])


class PairingError(ValueError):
    """Raised for inputs that cannot be paired at all (for example two files of the same name)."""


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns: per-file rows, failures and the metric names."""

    rows: list
    failures: list
    metrics: list
    pairs: list = field(default_factory=list)

    @property
    def ok(self):
        """True when every file was paired, read and scored."""
        return not self.failures


def _as_list(paths):
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(path) for path in paths]


def _named_files(paths, side, extensions):
    named = {}
    for path in paths:
        entries = (
            find_audio_files(path, extensions).items()
            if os.path.isdir(path)
            else [(os.path.basename(os.path.normpath(path)), path)]
        )
        for name, file_path in entries:
            previous = named.get(name)
            if previous is not None and os.path.abspath(previous) != os.path.abspath(file_path):
                raise PairingError(
                    f"two {side} files are named {name!r} ({previous} and {file_path}); "
                    "files are paired by name, so names must be unique on each side"
                )
            named[name] = file_path
    return named


def pair_files(ref, deg, extensions=AUDIO_EXTENSIONS):
    """Pairs reference and degraded files by name (see the module notes for the rules).

    Arguments
    ---------
    ref : str or list of str or None
        Reference folder(s) and/or file(s); ``None`` or empty for non-intrusive evaluation
        (every degraded file then forms a pair with no reference).
    deg : str or list of str
        Degraded folder(s) and/or file(s).
    extensions : tuple of str
        File name endings taken from folders.

    Returns
    -------
    tuple
        ``(pairs, failures)``: a list of :data:`Pair` sorted by name and a list of
        :data:`Failure` for the unpaired names.

    Raises
    ------
    PairingError
        When two files of one side have the same name.

    Example
    -------
    >>> pairs, failures = pair_files(["c/a.wav", "c/b.wav"], ["e/b.wav", "e/z.wav"])
    >>> [p.file for p in pairs], [(f.file, f.reason) for f in failures]
    (['b.wav'], [('a.wav', 'unpaired_ref'), ('z.wav', 'unpaired_deg')])
    >>> pair_files("clean.wav", "enhanced.wav")[0]
    [Pair(file='enhanced.wav', ref='clean.wav', deg='enhanced.wav')]
    """
    refs, degs = _as_list(ref), _as_list(deg)
    if not degs:
        raise PairingError("no degraded files or folders given")
    if not refs:
        named = _named_files(degs, "degraded", extensions)
        return [Pair(name, None, named[name]) for name in sorted(named)], []
    if len(refs) == 1 and len(degs) == 1 and not os.path.isdir(refs[0]) and not os.path.isdir(degs[0]):
        return [Pair(os.path.basename(degs[0]), refs[0], degs[0])], []
    ref_named = _named_files(refs, "reference", extensions)
    deg_named = _named_files(degs, "degraded", extensions)
    pairs, failures = [], []
    for name in sorted(set(ref_named) | set(deg_named)):
        if name not in deg_named:
            failures.append(Failure(
                name, "unpaired_ref",
                f"{ref_named[name]}{_missing(ref_named[name])}: no degraded file named {name}",
            ))
        elif name not in ref_named:
            failures.append(Failure(
                name, "unpaired_deg",
                f"{deg_named[name]}{_missing(deg_named[name])}: no reference file named {name}",
            ))
        else:
            pairs.append(Pair(name, ref_named[name], deg_named[name]))
    return pairs, failures


def _missing(path):
    return "" if os.path.exists(path) else " (no such file or folder)"


def _init_worker(specs=()):
    """Runs once in each worker process: one torch and one BLAS thread (the processes are the
    parallelism; several threads per worker oversubscribe the cores and slow everything down).

    ``specs`` are the metric specs asked for: a ``spawn``-ed worker imports a fresh registry
    without the metrics registered at run time in the parent, so they are added here."""
    for spec in specs:
        METRICS.setdefault(spec.name, spec)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    limit_blas_threads(1)
    dnsmos_module.set_session_threads(1)


#: Thread-count setters exported by the OpenBLAS builds of numpy, scipy and distributions.
_OPENBLAS_SETTERS = (
    "openblas_set_num_threads", "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
)


def limit_blas_threads(count=1):
    """Limits the threads of the BLAS libraries already loaded (numpy's and scipy's OpenBLAS).

    Uses ``threadpoolctl`` where installed; otherwise, on Linux, calls the OpenBLAS setters of
    the libraries mapped in this process. Environment variables such as
    ``OPENBLAS_NUM_THREADS`` have no effect once numpy is imported, hence this function.

    Arguments
    ---------
    count : int
        Threads per library.

    Returns
    -------
    int
        How many libraries were limited (0 where none could be, which is harmless).

    Example
    -------
    >>> limit_blas_threads(1) >= 0
    True
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=count, user_api="blas")
        return 1
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return 0
    limited = 0
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _OPENBLAS_SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(ctypes.c_int(count))
                limited += 1
                break
    return limited


def _evaluate_pair(task, on_stage=None):
    """Loads and scores one pair; returns ``(row or None, [Failure, ...])``.

    ``task`` is ``(pair, metrics, sample_rate, min_duration)`` or, with a fifth item, the PESQ
    segment length (see :func:`~speechbrain_sqe.metrics.intrusive.set_pesq_segments`).
    ``on_stage(name, metrics)`` is called before reading (``"reading"``) and before each metric
    group, so that a supervisor can name what a dead worker was doing."""
    from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio

    pair, metrics, sample_rate, min_duration = task[:4]
    pesq_segment = task[4] if len(task) > 4 else None
    if on_stage is not None:
        on_stage("reading", [])
    wavs, failures = {}, []
    for side in ("ref", "deg"):
        path = getattr(pair, side)
        if path is None:
            continue
        try:
            wavs[side] = load_audio(path, sample_rate=sample_rate).numpy()
        except AudioLoadError as error:
            failures.append(Failure(pair.file, "unreadable", str(error)))
        except MemoryError:
            failures.append(Failure(pair.file, "out_of_memory", f"{path}: out of memory while reading"))
        except Exception as error:  # noqa: BLE001 - reported, never dropped
            failures.append(Failure(pair.file, "unreadable", f"{path}: {type(error).__name__}: {error}"))
    if failures:
        return None, failures
    shortest = min(wavs, key=lambda side: wavs[side].shape[0])
    duration = wavs[shortest].shape[0] / sample_rate
    if min_duration and duration < min_duration:
        return None, [Failure(
            pair.file, "too_short",
            f"{getattr(pair, shortest)}: {duration:.3f} s long; at least {min_duration:.3f} s is needed",
        )]
    row = {"file": pair.file, "ref": pair.ref or "", "deg": pair.deg, "duration_s": round(duration, 4)}
    if not metrics:
        return row, failures
    intrusive.set_pesq_segments(pesq_segment)
    intrusive.pop_notes()
    values, errors = try_compute_metrics(wavs.get("ref"), wavs["deg"], metrics, sample_rate, on_group=on_stage)
    notes = intrusive.pop_notes()
    if notes:
        row["note"] = "; ".join(notes[name] for name in sorted(notes))
    row.update(values)
    memory = {name: message for name, message in errors.items() if _is_out_of_memory(message)}
    if memory:
        failures.append(Failure(pair.file, "out_of_memory",
                                f"{pair.deg}: out of memory in {', '.join(memory)}"))
        errors = {name: message for name, message in errors.items() if name not in memory}
    if errors:
        by_message = {}
        for name, message in errors.items():
            by_message.setdefault(message, []).append(name)
        parts = []
        for message, names in by_message.items():
            for name in names:  # drop a leading "name: " already naming one of the metrics
                if message.startswith(name + ": "):
                    message = message[len(name) + 2:]
                    break
            parts.append(f"{', '.join(names)}: {message}")
        text = "; ".join(parts)
        failures.append(Failure(pair.file, "metric_error", f"{pair.deg}: {text}"))
    return row, failures


def _is_out_of_memory(message):
    """Whether a metric's error message is an allocation failure (Python's, torch's, C++'s)."""
    return any(sign in message for sign in ("MemoryError", "can't allocate memory", "bad_alloc",
                                            "Cannot allocate memory", "out of memory"))


def _worker_main(connection, specs, max_memory_mb):
    """A supervised worker: limits its memory, then scores the tasks it receives until ``None``.

    It reports each stage before starting it (``("stage", index, name, metrics)``) and each
    result (``("done", index, row, failures)``); the supervisor blames the last stage when the
    process dies. After an out-of-memory error it exits, as the heap may be damaged."""
    import faulthandler
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    faulthandler.disable()  # a crash is reported by the supervisor, in one line
    _die_with_parent()
    if max_memory_mb:
        import resource

        limit = int(max_memory_mb * 1024 * 1024)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _init_worker(specs)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, work = task

        def on_stage(name, names, index=index):
            connection.send(("stage", index, name, list(names)))

        try:
            try:
                row, failures = _evaluate_pair(work, on_stage)
            except MetricUnavailableError as error:  # cannot run here at all: stops the evaluation
                connection.send(("fatal", index, type(error), str(error)))
                continue
            connection.send(("done", index, row, failures))
        except (BrokenPipeError, EOFError):  # the supervisor is gone (killed): nothing to report to
            return
        if any(failure.reason == "out_of_memory" for failure in failures):
            return


def _die_with_parent():
    """On Linux, asks the kernel to SIGKILL this worker when its supervisor dies (a SIGKILLed
    ``sqe evaluate`` leaves no worker behind, even one stuck in native code)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Worker:
    """One supervised worker process and the task it is running (see :func:`evaluate_pairs`)."""

    def __init__(self, context, specs, max_memory_mb):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, specs, max_memory_mb), daemon=True)
        self.process.start()
        child.close()
        self.task = None  # index of the task it runs
        self.started = None
        self.stage = (None, [])

    def submit(self, index, work):
        import time

        self.task, self.started, self.stage = index, time.monotonic(), ("starting", [])
        self.connection.send((index, work))

    def messages(self):
        """The messages waiting, stopping at the end of the pipe (a dead worker)."""
        out = []
        try:
            while self.connection.poll():
                out.append(self.connection.recv())
        except (EOFError, OSError):
            pass
        return out

    def stop(self, kill=False):
        if self.process.is_alive():
            if kill:
                self.process.kill()
            else:
                try:
                    self.connection.send(None)
                except (OSError, ValueError):
                    pass
                self.process.join(2.0)
                if self.process.is_alive():
                    self.process.kill()
        self.process.join(5.0)
        self.connection.close()


def _death_reason(exitcode, stage, timeout=None, max_memory_mb=None):
    """``(reason, message)`` for a worker that died (or was killed after ``timeout``) in ``stage``."""
    import signal

    where = "while reading the audio" if stage[0] == "reading" else (
        f"in {', '.join(stage[1]) or stage[0]}" if stage[0] not in (None, "starting") else "while starting")
    if timeout is not None:
        return "timed_out", f"timed out after {timeout:g} s {where}"
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            label = signal.Signals(number).name
        except ValueError:
            label = "unknown signal"
        if number == signal.SIGKILL:
            memory = f" (--max-memory {max_memory_mb:g} MB)" if max_memory_mb else ""
            return "out_of_memory", f"killed {where} (signal 9, SIGKILL): out of memory{memory} or killed from outside"
        return "crashed", f"crashed {where} (signal {number}, {label})"
    return "crashed", f"worker exited {where} with status {exitcode}"


def evaluate_pairs(
    pairs,
    metrics=None,
    sample_rate=16000,
    jobs=1,
    min_duration=DEFAULT_MIN_DURATION,
    progress=True,
    chunksize=None,
    start_method=None,
    timeout=None,
    max_memory_mb=None,
    pesq_segment=None,
    on_row=None,
    isolate=True,
):
    """Scores pairs of files in supervised worker processes, with a progress bar.

    Each file runs in a worker process that may die: a native crash (segfault), a hang longer
    than ``timeout`` or a memory blow-up past ``max_memory_mb`` fails that file's metric only
    (reasons ``crashed``, ``timed_out``, ``out_of_memory``, naming the metric); the worker is
    replaced, the file's other metrics are computed in a fresh one, and every other file goes on.

    Arguments
    ---------
    pairs : list of Pair
        From :func:`pair_files`.
    metrics : list of str, optional
        Metric names; default :data:`~speechbrain_sqe.metrics.registry.DEFAULT_METRICS`. Learned
        predictors load their model once per worker process.
    sample_rate : int
        Rate the files are loaded (resampled) at.
    jobs : int
        Worker processes (0 or less: one per CPU). Each worker uses one torch thread.
    min_duration : float
        Files shorter than this (seconds) are reported ``too_short``.
    progress : bool
        Show a tqdm progress bar (on stderr).
    chunksize : int, optional
        Unused (files are handed out one at a time so that a death loses one file); kept for
        callers of the earlier pool-based runner.
    start_method : str, optional
        Multiprocessing start method; default :func:`default_start_method` (``forkserver``
        where available, else ``spawn``).
    timeout : float, optional
        Seconds one file may take in a worker (reading and all its metrics); ``None``: no limit.
    max_memory_mb : float, optional
        Address-space limit of each worker (``resource.RLIMIT_AS``), in MiB; ``None``: no limit.
        It counts everything mapped, libraries included (a worker with torch loaded maps about
        3.3 GiB before it reads a file).
    pesq_segment : float, optional
        Measure PESQ of files longer than
        :data:`~speechbrain_sqe.metrics.intrusive.PESQ_MAX_SECONDS` in segments of this length
        (the row's ``note`` says so); ``None``: such files get a ``metric_error`` for PESQ.
    on_row : callable, optional
        Called in this process with each finished row, as it finishes (to save it at once).
    isolate : bool
        ``False`` runs everything in this process (no protection; for debugging).

    Returns
    -------
    tuple
        ``(rows, failures)``: per-file dicts (:data:`FIXED_COLUMNS` and the metrics) in pair
        order, and :data:`Failure` entries.

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.1
    >>> save_audio(os.path.join(root, "ref.wav"), x); save_audio(os.path.join(root, "deg.wav"), x / 2)
    >>> pairs, _ = pair_files(os.path.join(root, "ref.wav"), os.path.join(root, "deg.wav"))
    >>> rows, failures = evaluate_pairs(pairs, ["stoi"], progress=False)
    >>> round(rows[0]["stoi"], 3), failures
    (1.0, [])
    """
    from tqdm import tqdm

    metrics = resolve_metrics(metrics)
    if pesq_segment is not None:
        intrusive.set_pesq_segments(pesq_segment)  # checks the value here, before any worker
        intrusive.set_pesq_segments(None)
    tasks = [(pair, metrics, sample_rate, min_duration, pesq_segment) for pair in pairs]
    if not tasks:
        return [], []
    if jobs is None or jobs <= 0:
        jobs = os.cpu_count() or 1
    jobs = max(1, min(int(jobs), len(tasks)))
    results = {}
    bar = tqdm(total=len(tasks), desc="evaluate", unit="file", disable=not progress, dynamic_ncols=True)

    def finish(index, row, problems):
        results[index] = (row, problems)
        if row is not None and on_row is not None:
            on_row(row)
        bar.update(1)

    try:
        if not isolate:
            for index, task in enumerate(tasks):
                finish(index, *_evaluate_pair(task))
        else:
            _supervise(tasks, jobs, start_method, timeout, max_memory_mb, finish)
    finally:
        bar.close()
    rows, failures = [], []
    for index in range(len(tasks)):
        row, problems = results[index]
        if row is not None:
            rows.append(row)
        failures.extend(problems)
    return rows, failures


#: Modules the ``forkserver`` process imports once, so that each worker starts in milliseconds. The
#: PESQ and STOI packages too (STOI's import pulls in scipy.signal, about a second): the label
#: recipes start fresh workers for every chunk of 32 files (measured: 8 % less time per chunk of
#: the four reference metrics). A package that is not installed is skipped by the fork server.
#: DNSMOS's and Distill-MOS's stacks are not preloaded: onnxruntime and numba may start threads,
#: and the server must stay single-threaded to fork safely.
FORKSERVER_PRELOAD = ("numpy", "torch", "speechbrain_sqe.dataio.audio", "speechbrain_sqe.metrics.runner",
                      "pystoi", "pesq")


def default_start_method(specs=()):
    """The start method of the supervised workers: ``forkserver`` where available, else ``spawn``.

    Workers are not forked from the calling process because it is usually multi-threaded by then
    (torch's OpenMP pool, OpenBLAS, onnxruntime, a caller's own threads): ``fork`` copies
    whatever locks those threads held, and a CI run of the test suite once hung for over an hour
    in such a forked worker. The fork server is a fresh single-threaded process that forks clean
    workers. Metrics registered at run time travel to the workers by pickling; a metric whose
    function cannot be pickled (a lambda, a closure) or is defined in the ``__main__`` script
    keeps the old ``fork`` (with a warning).

    Arguments
    ---------
    specs : list of MetricSpec
        The metrics the workers will compute.

    Returns
    -------
    str
        ``"forkserver"``, ``"spawn"`` or ``"fork"``.

    Example
    -------
    >>> from speechbrain_sqe.metrics.registry import METRICS
    >>> default_start_method([METRICS["stoi"]]) in ("forkserver", "spawn")
    True
    """
    import multiprocessing
    import pickle

    problem = None
    for spec in specs:
        for function in (spec.compute, spec.available):
            if getattr(function, "__module__", None) == "__main__":  # a fresh process has another __main__
                problem = f"{spec.name}: {function.__qualname__} is defined in __main__"
    if problem is None:
        try:
            pickle.dumps(list(specs))
        except Exception as error:  # noqa: BLE001 - any pickling failure means the same thing
            problem = str(error)
    if problem is not None:
        if "fork" in multiprocessing.get_all_start_methods():
            logger.warning("a metric cannot be sent to a fresh worker (%s): forking this process instead",
                           problem)
            return "fork"
        raise ValueError(f"the metrics cannot be sent to a worker process: {problem}")
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _supervise(tasks, jobs, start_method, timeout, max_memory_mb, finish):
    """Runs ``tasks`` in ``jobs`` supervised workers; calls ``finish(index, row, failures)``."""
    import multiprocessing
    import time
    from multiprocessing.connection import wait

    metrics = tasks[0][1]
    specs = [METRICS[name] for name in metrics]
    start_method = start_method or default_start_method(specs)
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":  # the server imports the audio stack once; workers inherit it
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    elif start_method == "fork":  # workers inherit the loaded audio stack instead of importing it
        import speechbrain_sqe.dataio.audio  # noqa: F401
    if start_method == "fork":  # a forked worker inherits the registry as it is
        specs = []
    pending = list(range(len(tasks)))[::-1]  # a stack: pop() gives the next in order
    work = {index: task for index, task in enumerate(tasks)}
    lost = {}  # index -> ([metric names lost to deaths], [Failure, ...])
    restarted = set()  # files retried once after a worker died before starting them
    workers = []
    try:
        while pending or any(worker.task is not None for worker in workers):
            workers = [worker for worker in workers if worker.task is not None
                       or (worker.process.is_alive() and not worker.connection.closed)]
            for worker in workers:
                if worker.task is None and pending:
                    index = pending.pop()
                    worker.submit(index, work[index])
            while pending and len(workers) < jobs:
                worker = _Worker(context, specs, max_memory_mb)
                workers.append(worker)
                index = pending.pop()
                worker.submit(index, work[index])
            busy = [worker for worker in workers if worker.task is not None]
            wait_for = None
            if timeout is not None:
                now = time.monotonic()
                wait_for = max(0.0, min(worker.started + timeout - now for worker in busy))
            wait([w.connection for w in busy] + [w.process.sentinel for w in busy], wait_for)
            for worker in busy:
                done = False
                for message in worker.messages():
                    if message[0] == "stage" and message[1] == worker.task:
                        worker.stage = (message[2], message[3])
                    elif message[0] == "fatal":
                        kind, text = message[2], message[3]
                        raise kind(text) if issubclass(kind, MetricUnavailableError) else MetricUnavailableError(text)
                    elif message[0] == "done" and message[1] == worker.task:
                        index, row, problems = message[1], message[2], message[3]
                        names, extra = lost.pop(index, ([], []))
                        if row is not None:
                            row.update({name: math.nan for name in names})
                        finish(index, row, extra + problems)
                        worker.task, done = None, True
                        if any(problem.reason == "out_of_memory" for problem in problems):
                            worker.stop()  # it exits after a memory error: replace it
                if done:
                    continue
                expired = timeout is not None and time.monotonic() - worker.started >= timeout
                if worker.process.is_alive() and not expired:
                    continue
                if expired and worker.process.is_alive():
                    worker.stop(kill=True)
                    reason, message = _death_reason(None, worker.stage, timeout, max_memory_mb)
                else:
                    worker.process.join(5.0)
                    reason, message = _death_reason(worker.process.exitcode, worker.stage, None, max_memory_mb)
                    worker.stop(kill=True)
                index, (stage, names) = worker.task, worker.stage
                worker.task = None
                if stage == "starting" and index not in restarted:  # the worker's fault, not the file's
                    restarted.add(index)
                    pending.append(index)
                    continue
                pair, wanted = work[index][0], work[index][1]
                lost_names, extra = lost.setdefault(index, ([], []))
                extra.append(Failure(pair.file, reason, f"{pair.deg}: {message}"))
                blamed = [name for name in names if name in wanted] if stage not in ("reading", "starting", None) else []
                if not blamed:  # died reading (or before): the file gives no row
                    lost.pop(index)
                    finish(index, None, extra)
                    continue
                lost_names.extend(blamed)
                left = [name for name in wanted if name not in blamed]
                work[index] = (pair, left) + tuple(work[index][2:])
                pending.append(index)  # the file's other metrics, in a fresh worker, next
    finally:
        for worker in workers:
            worker.stop(kill=worker.task is not None)


def plan_evaluation(ref, deg, metrics=None, sample_rate=16000):
    """Checks the metrics against the inputs and pairs the files: what :func:`evaluate` scores.

    Arguments
    ---------
    ref : str or list of str or None
        Reference folder(s)/file(s); ignored when every metric is non-intrusive.
    deg : str or list of str
        Degraded folder(s)/file(s).
    metrics : list of str, optional
        Metric names or aliases.
    sample_rate : int
        The rate files are loaded at.

    Returns
    -------
    metrics : list of str
        The resolved metric names.
    pairs : list of Pair
        The files to score, in pairing order.
    failures : list of Failure
        The files that could not be paired.

    Raises
    ------
    PairingError, ValueError, MetricUnavailableError
        As :func:`evaluate`.

    Example
    -------
    >>> plan_evaluation(None, "/nonexistent", ["stoi"])
    Traceback (most recent call last):
     ...
    ValueError: metrics stoi need reference files (--ref)
    """
    metrics = resolve_metrics(metrics)
    refs = _as_list(ref)
    intrusive = [name for name in metrics if METRICS[name].needs_reference]
    if intrusive and not refs:
        raise ValueError(f"metrics {', '.join(intrusive)} need reference files (--ref)")
    if "pesq_wb" in metrics and sample_rate != 16000:
        raise ValueError(f"pesq_wb needs a sample rate of 16000 Hz, not {sample_rate}")
    require_available(metrics)  # e.g. DnsmosUnavailableError with the install hint
    if not intrusive:
        refs = []  # non-intrusive only: the degraded files alone are scored
    pairs, failures = pair_files(refs, deg)
    return metrics, pairs, failures


def evaluate(
    ref,
    deg,
    metrics=None,
    sample_rate=16000,
    jobs=1,
    min_duration=DEFAULT_MIN_DURATION,
    progress=True,
    start_method=None,
    timeout=None,
    max_memory_mb=None,
    pesq_segment=None,
    on_row=None,
    skip=(),
):
    """Pairs reference and degraded files by name and scores every pair.

    Arguments
    ---------
    ref : str or list of str or None
        Reference folder(s)/file(s); ``None`` when all metrics are non-intrusive.
    deg : str or list of str
        Degraded (noisy or enhanced) folder(s)/file(s).
    metrics : list of str, optional
        Metric names (or aliases, see :func:`~speechbrain_sqe.metrics.registry.resolve_metrics`).
    sample_rate : int
        Rate the files are loaded (resampled) at: 16000, or 8000 for narrow band PESQ.
    jobs : int
        Worker processes (see :func:`evaluate_pairs`).
    min_duration : float
        Shortest usable duration in seconds.
    progress : bool
        Show a progress bar.
    start_method : str, optional
        Multiprocessing start method (see :func:`evaluate_pairs`).
    timeout, max_memory_mb, pesq_segment, on_row
        Per-file limits, long-file PESQ and the row callback (see :func:`evaluate_pairs`).
    skip : collection of str
        File names already scored (a resumed run): they are paired but not scored again.

    Returns
    -------
    EvaluationResult
        ``rows`` (per file), ``failures`` (pairing, reading, length and metric problems, sorted
        by file), ``metrics`` and ``pairs``.

    Raises
    ------
    PairingError
        When the inputs cannot be paired at all.
    ValueError
        For unknown metrics, or intrusive metrics without a reference.
    MetricUnavailableError
        When a metric cannot run here (e.g. ``DnsmosUnavailableError``: DNSMOS without the
        ``eval`` extra; a learned predictor whose model folder is missing).

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.1
    >>> for name in ("a.wav", "b.wav"):
    ...     save_audio(os.path.join(root, "clean", name), x)
    >>> save_audio(os.path.join(root, "enh", "a.wav"), x)
    >>> result = evaluate(os.path.join(root, "clean"), os.path.join(root, "enh"), ["si_sdr"],
    ...                   progress=False)
    >>> [r["file"] for r in result.rows], [(f.file, f.reason) for f in result.failures]
    (['a.wav'], [('b.wav', 'unpaired_ref')])
    """
    metrics, pairs, failures = plan_evaluation(ref, deg, metrics, sample_rate)
    skip = set(skip)
    rows, problems = evaluate_pairs(
        [pair for pair in pairs if pair.file not in skip], metrics, sample_rate, jobs, min_duration,
        progress, start_method=start_method, timeout=timeout, max_memory_mb=max_memory_mb,
        pesq_segment=pesq_segment, on_row=on_row,
    )
    failures = sorted(failures + problems, key=lambda f: (f.file, REASONS.index(f.reason)))
    return EvaluationResult(rows=rows, failures=failures, metrics=metrics, pairs=pairs)


def _cell(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return value


def csv_columns(metrics, note=False):
    """The columns of the per-file table: :data:`FIXED_COLUMNS`, the metrics, then ``note``
    (how a value was measured, e.g. PESQ in segments) when asked.

    Arguments
    ---------
    metrics : list of str
        The metric columns, in order.
    note : bool
        Add the ``note`` column.

    Returns
    -------
    list of str
        The columns.

    Example
    -------
    >>> csv_columns(["stoi"], note=True)
    ['file', 'ref', 'deg', 'duration_s', 'stoi', 'note']
    """
    return list(FIXED_COLUMNS) + list(metrics) + (["note"] if note else [])


def write_csv(rows, path, metrics):
    """Writes the per-file table: :data:`FIXED_COLUMNS` then one column per metric.

    Failed metric values are written as empty cells; floats with full precision.

    Arguments
    ---------
    rows : list of dict
        From :func:`evaluate`.
    path : str
        Output CSV (parent folders are created).
    metrics : list of str
        The metric columns, in order.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out", "scores.csv")
    >>> write_csv([{"file": "a.wav", "ref": "r", "deg": "d", "duration_s": 1.0, "stoi": 0.9}],
    ...           path, ["stoi"])
    >>> print(open(path).read().strip())
    file,ref,deg,duration_s,stoi
    a.wav,r,d,1.0,0.9
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    columns = csv_columns(metrics, note=any(row.get("note") for row in rows))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: _cell(row.get(column, "")) for column in columns})


def write_failures_csv(failures, path):
    """Writes the failures (``file``, ``reason``, ``message``) as CSV.

    Arguments
    ---------
    failures : list of Failure
        From :func:`evaluate`.
    path : str
        Output CSV.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "failures.csv")
    >>> write_failures_csv([Failure("a.wav", "too_short", "a.wav: 0.1 s")], path)
    >>> open(path).read().splitlines()[1]
    'a.wav,too_short,a.wav: 0.1 s'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(Failure._fields)
        writer.writerows(failures)


def summarize(rows, metrics):
    """Mean, standard deviation (population, ``ddof=0``) and count of each metric.

    Non-finite and blank values (failed metrics) are left out; ``n`` counts the values used.

    Arguments
    ---------
    rows : list of dict
        Per-file rows (numbers or numeric strings, as read back from the CSV).
    metrics : list of str
        Metric columns.

    Returns
    -------
    list of dict
        ``{"metric", "mean", "std", "n"}`` per metric, in order.

    Example
    -------
    >>> summarize([{"stoi": 0.8}, {"stoi": 1.0}, {"stoi": float("nan")}], ["stoi"])
    [{'metric': 'stoi', 'mean': 0.9, 'std': 0.1, 'n': 2}]
    """
    summary = []
    for metric in metrics:
        values = finite_values([row.get(metric) for row in rows])
        if values.size:
            mean, std = float(np.round(values.mean(), 12)), float(np.round(values.std(), 12))
        else:
            mean = std = math.nan
        summary.append({"metric": metric, "mean": mean, "std": std, "n": int(values.size)})
    return summary


def format_summary(summary, digits=4):
    """Formats :func:`summarize` output as a Markdown table.

    Arguments
    ---------
    summary : list of dict
        From :func:`summarize`.
    digits : int
        Decimals shown.

    Returns
    -------
    str
        The table.

    Example
    -------
    >>> print(format_summary([{"metric": "stoi", "mean": 0.9, "std": 0.1, "n": 2}]))
    | metric | mean   | std    | n |
    |--------|--------|--------|---|
    | stoi   | 0.9000 | 0.1000 | 2 |
    """
    header = ["metric", "mean", "std", "n"]
    body = [
        [
            entry["metric"],
            f"{entry['mean']:.{digits}f}" if math.isfinite(entry["mean"]) else "nan",
            f"{entry['std']:.{digits}f}" if math.isfinite(entry["std"]) else "nan",
            str(entry["n"]),
        ]
        for entry in summary
    ]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_failures(failures):
    """Formats failures as one line each: ``file [reason] message``.

    Arguments
    ---------
    failures : list of Failure
        From :func:`evaluate`.

    Returns
    -------
    str
        The lines.

    Example
    -------
    >>> print(format_failures([Failure("b.wav", "unpaired_ref", "clean/b.wav: no degraded file")]))
      b.wav [unpaired_ref] clean/b.wav: no degraded file
    """
    return "\n".join(f"  {f.file} [{f.reason}] {f.message}" for f in failures)
