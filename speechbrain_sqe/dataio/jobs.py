"""Running preparation jobs: per-job seeds, balanced condition designs, the parallel runner, stamps.

A preparation is first *planned* in the main process (a list of small picklable job dicts, each
naming its output files and carrying its own seed), then *executed* by a job function, in
parallel when ``num_workers > 1``. Because every job draws from its own seed, the result does not
depend on the number of workers or on the order in which jobs finish.

Idempotency: :func:`execute_plan` first checks every job's outputs (:func:`existing_durations`,
a header read); jobs whose outputs are all present and readable are not run again. A JSON stamp
records the configuration; when it changes, every output is regenerated (``force``).
"""

import json
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from tqdm import tqdm

from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.dataio.manifest import audio_duration

#: Codes keeping the random streams of the splits apart (disjoint noise between splits).
SPLIT_CODES = {
    "plan": 0, "train_clean": 1, "valid": 2, "test": 3, "unpaired_noisy": 4,
    "noise_train": 5, "noise_valid": 6, "noise_test": 7, "rirs_train": 8, "rirs_valid": 9, "rirs_test": 10,
}


def job_rng(seed, split, index):
    """The random generator of one job: a pure function of (seed, split, index).

    Arguments
    ---------
    seed : int
        Corpus seed.
    split : str
        Split name (a key of :data:`SPLIT_CODES`, or any other name).
    index : int
        Job index in the split.

    Returns
    -------
    numpy.random.Generator
        An independent stream.

    Example
    -------
    >>> float(job_rng(1, "test", 3).random()) == float(job_rng(1, "test", 3).random())
    True
    """
    code = SPLIT_CODES.get(split, zlib.crc32(split.encode()))  # other names: a stable hash
    return np.random.default_rng(np.random.SeedSequence([int(seed), code, int(index)]))


def balanced_design(count, factors, rng):
    """Draws ``count`` conditions from the product of ``factors``, balanced for every prefix.

    Each next condition is an unused combination whose levels have been used least so far
    (random tie-breaks), so the marginal counts of every factor differ by at most about one
    and the full product is covered exactly once per cycle.

    Arguments
    ---------
    count : int
        Number of conditions.
    factors : dict
        ``name -> list of levels``.
    rng : numpy.random.Generator
        Tie-breaking.

    Returns
    -------
    list of dict
        ``count`` dicts ``name -> level``.

    Example
    -------
    >>> import collections
    >>> design = balanced_design(12, {"snr": [0, 5, 10], "reverb": [False, True]}, np.random.default_rng(0))
    >>> sorted(collections.Counter(d["snr"] for d in design).values())
    [4, 4, 4]
    """
    import itertools

    names = list(factors)
    combos = list(itertools.product(*(range(len(factors[n])) for n in names)))
    counts = [np.zeros(len(factors[n])) for n in names]
    out, unused = [], []
    for _ in range(count):
        if not unused:
            unused = list(combos)
        cost = np.array([sum(counts[f][c[f]] for f in range(len(names))) for c in unused])
        best = np.flatnonzero(cost == cost.min())
        combo = unused.pop(int(best[rng.integers(len(best))]))
        for f, level in enumerate(combo):
            counts[f][level] += 1
        out.append({n: factors[n][level] for n, level in zip(names, combo)})
    return out


def existing_durations(paths):
    """Durations of files that already exist and are readable; None if any is missing or bad.

    Arguments
    ---------
    paths : list of str
        Output files of one job.

    Returns
    -------
    list of float or None
        Their durations in seconds.

    Example
    -------
    >>> existing_durations(["/nonexistent.wav"]) is None
    True
    """
    durations = [audio_duration(path) for path in paths]
    return None if any(d is None for d in durations) else durations


def save_atomic(path, wav, sample_rate=16000):
    """Writes a wav through a temporary file, so an interrupted run never leaves a truncated file.

    Arguments
    ---------
    path : str
        Output ``.wav`` file.
    wav : numpy.ndarray
        Waveform, shape ``[time]``.
    sample_rate : int
        Its rate.

    Returns
    -------
    float
        The duration written, in seconds.

    Example
    -------
    >>> import tempfile, os
    >>> save_atomic(os.path.join(tempfile.mkdtemp(), "x.wav"), np.zeros(8000), 16000)
    0.5
    """
    stem = path.removesuffix(".wav")
    tmp = f"{stem}.{os.getpid()}.tmp.wav"  # per process: concurrent preparations of one folder
    save_audio(tmp, wav, sample_rate)
    os.replace(tmp, path)
    return len(wav) / sample_rate


def execute_plan(func, jobs, num_workers=2, force=False, desc=None):
    """Runs the jobs whose outputs are missing or unreadable, and returns one row per job.

    Every job is a dict with ``outputs`` (absolute paths; the first one gives the duration) and
    ``row`` (the manifest columns known in advance). ``func(job)`` writes the outputs and returns
    the duration in seconds. Jobs whose outputs all exist and are readable are not run again
    (unless ``force``): their duration is read from the file header.

    Arguments
    ---------
    func : callable
        Module-level job function ``func(job) -> float``.
    jobs : list of dict
        The plan.
    num_workers : int
        Worker processes (0 or 1: in this process).
    force : bool
        Regenerate every output.
    desc : str, optional
        Progress-bar label.

    Returns
    -------
    rows : list of dict
        ``job["row"]`` plus ``duration``, in job order.
    generated : int
        How many jobs ran.

    Example
    -------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "z.wav")
    >>> job = {"outputs": [out], "row": {"ID": "z", "wav": out}, "samples": 1600}
    >>> rows, ran = execute_plan(_zeros_job, [job], num_workers=1)
    >>> rows[0]["duration"], ran
    (0.1, 1)
    >>> execute_plan(_zeros_job, [job], num_workers=1)[1]  # second call: nothing to do
    0
    """
    durations, pending = [None] * len(jobs), []
    for index, job in enumerate(jobs):
        found = None if force else existing_durations(job["outputs"])
        if found is None:
            pending.append(index)
        else:
            durations[index] = found[0]
    results = run_jobs(func, [jobs[i] for i in pending], num_workers, desc)
    for index, duration in zip(pending, results):
        durations[index] = duration
    rows = [dict(job["row"], duration=round(float(d), 3)) for job, d in zip(jobs, durations)]
    return rows, len(pending)


def _zeros_job(job):
    """Doctest helper: writes ``job["samples"]`` zeros."""
    return save_atomic(job["outputs"][0], np.zeros(job["samples"]), 16000)


def _init_worker():
    import torch

    torch.set_num_threads(1)  # one process per core already; avoid oversubscription


def _call(args):
    func, job = args
    return func(job)


def run_jobs(func, jobs, num_workers=2, desc=None):
    """Runs ``func(job)`` for every job, in worker processes, with a progress bar.

    Arguments
    ---------
    func : callable
        A module-level function (picklable) returning one result per job.
    jobs : list
        The jobs (picklable).
    num_workers : int
        Processes; 0 or 1 runs in this process.
    desc : str, optional
        Progress-bar label.

    Returns
    -------
    list
        Results in job order.

    Example
    -------
    >>> run_jobs(abs, [-7, 9], num_workers=1)
    [7, 9]
    """
    tasks = [(func, job) for job in jobs]
    bar = {"total": len(tasks), "desc": desc, "mininterval": 1.0, "leave": False, "disable": not tasks}
    if num_workers <= 1 or len(tasks) <= 1:
        return [_call(task) for task in tqdm(tasks, **bar)]
    # spawn, not fork: forking a process that already ran torch ops can deadlock in OpenMP.
    # concurrent.futures, not multiprocessing.Pool: a worker that dies (a crash in native code,
    # the OOM killer, a script re-run by spawn without a __main__ guard) breaks the pool with an
    # error here; Pool replaces the worker and waits forever for the lost job.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(num_workers, len(tasks)), mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(_call, task) for task in tasks]
        results = []
        try:
            for future in tqdm(futures, **bar):
                results.append(future.result())
        except BrokenProcessPool as error:
            index = len(results)
            raise RuntimeError(
                f"{desc or 'jobs'}: a worker process died (crashed, was killed, or could not start: a "
                f"script run with num_workers > 1 needs an `if __name__ == '__main__':` guard); "
                f"{index} of {len(tasks)} jobs finished, the first unfinished one: {jobs[index]!r}"
            ) from error
        finally:  # an error or Ctrl-C: the queued jobs are dropped, not run before the pool closes
            for future in futures:
                future.cancel()
        return results


def read_stamp(path):
    """Reads a preparation stamp (JSON), or returns None when absent or unreadable.

    Arguments
    ---------
    path : str
        The stamp file.

    Returns
    -------
    dict or None
        The stamp.

    Example
    -------
    >>> read_stamp("/nonexistent.json") is None
    True
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_stamp(path, config, complete, counts=None, seconds=None):
    """Writes a preparation stamp: the configuration, whether it finished, file counts, timing.

    Arguments
    ---------
    path : str
        The stamp file.
    config : dict
        JSON-serialisable configuration of the preparation.
    complete : bool
        True once every output and manifest is written.
    counts : dict, optional
        Files per split.
    seconds : float, optional
        Wall time of the preparation.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stamp.json")
    >>> write_stamp(path, {"seed": 1}, True, {"test": 2})
    >>> read_stamp(path)["counts"]
    {'test': 2}
    """
    stamp = {"config": config, "complete": complete, "counts": counts or {}, "seconds": seconds}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # per process: concurrent preparations of one folder
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def normalize_config(config):
    """Turns tuples into lists etc. so that a config compares equal to its JSON round trip.

    Arguments
    ---------
    config : dict
        Configuration.

    Returns
    -------
    dict
        ``json.loads(json.dumps(config))``.

    Example
    -------
    >>> normalize_config({"snrs": (0, 5)})
    {'snrs': [0, 5]}
    """
    return json.loads(json.dumps(config, sort_keys=True))


def remove_stale(folders, keep):
    """Deletes ``*.wav`` files under ``folders`` that are not in ``keep`` (outputs of an older plan).

    Arguments
    ---------
    folders : list of str
        Output folders owned by the preparation.
    keep : set of str
        Absolute paths to keep.

    Returns
    -------
    int
        Number of files removed.

    Example
    -------
    >>> remove_stale(["/nonexistent"], set())
    0
    """
    removed = 0
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.abspath(os.path.join(folder, name))
            if name.endswith(".wav") and path not in keep:  # includes leftover *.tmp.wav
                os.remove(path)
                removed += 1
    return removed
