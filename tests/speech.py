"""Test helpers: real synthesized speech and white noise at a given SNR."""

import shutil
import subprocess

import numpy as np
import pytest


def synthesize(path, text="Objective measures should fall as the noise grows louder."):
    """Speaks ``text`` into ``path`` with espeak-ng (or flite); skips the test without either."""
    if shutil.which("espeak-ng"):
        command = ["espeak-ng", "-w", str(path), text]
    elif shutil.which("flite"):
        command = ["flite", "-t", text, "-o", str(path)]
    else:
        pytest.skip("neither espeak-ng nor flite is installed")
    subprocess.run(command, check=True, capture_output=True)
    return path


def add_white_noise(clean, snr_db, seed=0):
    """``clean`` plus white noise at ``snr_db`` (numpy, same shape)."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape[0])
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise
