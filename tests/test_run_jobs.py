"""The parallel job runner of the data preparations (``dataio.jobs.run_jobs``): results in job
order with workers, a job's own error raised as it is, and a worker that dies fails the run with a
clear error instead of hanging (``multiprocessing.Pool`` waited forever for the lost job)."""

import os
import time

import pytest

from speechbrain_sqe.dataio.jobs import run_jobs


def test_results_in_job_order_with_workers():
    assert run_jobs(abs, [-3, 1, -7, 2, -5], num_workers=2, desc="abs") == [3, 1, 7, 2, 5]


def test_a_jobs_error_is_raised_as_it_is():
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs(int, ["1", "not a number", "3"], num_workers=2)


def test_a_dead_worker_fails_the_run_with_the_job_named():
    start = time.monotonic()
    # os._exit ends the worker process as a crash in native code would, without a Python error
    with pytest.raises(RuntimeError, match=r"mixes: a worker process died .* first unfinished one: 3"):
        run_jobs(os._exit, [3, 3, 3], num_workers=2, desc="mixes")
    assert time.monotonic() - start < 120
