"""Test helper: a real, tiny file system that fills up (a full output folder)."""

import subprocess

import pytest


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 kB tmpfs mounted in the test's folder (needs mount rights, e.g. root; skipped otherwise)."""
    folder = tmp_path / "tiny_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)
