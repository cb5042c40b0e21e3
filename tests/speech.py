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


def speech_like(seconds=3.0, sample_rate=16000, seed=0):
    """A deterministic speech-like signal (no TTS needed): voiced syllables with a gliding pitch,
    three formant-like resonances, and pauses between words; peak about 0.5 (float64, numpy).

    Pinned metric and model values are computed on it, so it must not change.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    # Syllables of 120-260 ms with 40-150 ms gaps; the pitch glides 100-220 Hz within each.
    envelope = np.zeros(n)
    pitch = np.full(n, 150.0)
    formants = np.zeros((n, 3))
    start = int(0.15 * sample_rate)
    while start < n - int(0.2 * sample_rate):
        length = int(rng.uniform(0.12, 0.26) * sample_rate)
        stop = min(start + length, n)
        window = np.sin(np.linspace(0, np.pi, stop - start)) ** 2
        envelope[start:stop] = window * rng.uniform(0.5, 1.0)
        pitch[start:stop] = np.linspace(rng.uniform(100, 220), rng.uniform(100, 220), stop - start)
        formants[start:stop] = [rng.uniform(300, 900), rng.uniform(900, 2300), rng.uniform(2300, 3500)]
        start = stop + int(rng.uniform(0.04, 0.15) * sample_rate)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = np.zeros(n)
    for harmonic in range(1, 30):
        frequency = harmonic * pitch
        gain = sum(1.0 / (1.0 + ((frequency - formants[:, k]) / (80.0 + 40 * k)) ** 2) for k in range(3))
        voiced += np.where(frequency < sample_rate / 2 - 500, gain / harmonic**0.5, 0.0) * np.sin(harmonic * phase)
    signal = envelope * (voiced + 0.05 * rng.standard_normal(n)) * (1.0 + 0.1 * np.sin(2 * np.pi * 4.0 * t))
    return 0.5 * signal / np.max(np.abs(signal))


def pink_noise(n, seed=0):
    """Deterministic pink (1/f power) noise of ``n`` samples, unit RMS."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1.0))
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def add_noise(clean, snr_db, kind="white", seed=0):
    """``clean`` plus white or pink noise at ``snr_db`` (numpy, same shape)."""
    if kind == "white":
        return add_white_noise(clean, snr_db, seed)
    noise = pink_noise(clean.shape[0], seed)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + noise
