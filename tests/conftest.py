"""Shared test fixtures."""

import os

import pytest
import torch
from disk_faults import tiny_disk  # noqa: F401  (the fixture, for every test module)

torch.set_num_threads(1)

#: Real recordings made by others, beside the repository (never copied into it).
SHARED_REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real")


@pytest.fixture
def shared_real():
    """Path of ../shared/data/real; skips the test cleanly where it is absent."""
    if not os.path.isdir(SHARED_REAL):
        pytest.skip("../shared/data/real is absent (real recordings are only beside the repository)")
    return os.path.abspath(SHARED_REAL)
