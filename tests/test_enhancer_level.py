"""Enhancers keep the speech level: the output's least-squares gain against the clean speech is near 1."""

import numpy as np
import pytest
import torch

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.inference.enhancement import (
    Enhancer,
    VQEnhancer,
    keep_speech_level,
    speech_energy,
)
from tests.speech import add_noise, speech_like, synthesize


def ls_gain(output, reference):
    """Least-squares gain of ``output`` against ``reference`` (no delay: the enhancers keep the timing)."""
    return float(np.dot(output, reference) / np.dot(reference, reference))


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    path = synthesize(tmp_path_factory.mktemp("level") / "tts.wav",
                      "Users expect the enhanced speech to be as loud as the speech they recorded.")
    wav = load_audio(str(path), 16000).numpy().astype(np.float64)
    return wav / np.sqrt(np.mean(wav**2)) * 10 ** (-26 / 20)


def _enhancers():
    """Every enhancer interface with a model shipped in the package."""
    return [cls for cls in (VQEnhancer,) if issubclass(cls, Enhancer) and getattr(cls, "DEFAULT_SOURCE", None)]


@pytest.mark.parametrize("cls", _enhancers(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("level_db", [-26.0, -40.0])
def test_shipped_enhancers_keep_the_speech_level(cls, spoken, level_db):
    enhancer = cls.from_hparams(source=cls.DEFAULT_SOURCE)
    clean = spoken * 10 ** ((level_db + 26) / 20)
    for kind, snr in [("white", 0), ("pink", 5), ("white", 10), ("pink", 20)]:
        noisy = add_noise(clean, snr, kind, seed=3)
        for mix in (0.0, None):
            out = enhancer.enhance_batch(torch.from_numpy(noisy).float(), mix=mix).double().numpy()
            assert 0.7 <= ls_gain(out, clean) <= 1.4, (kind, snr, mix, ls_gain(out, clean))


def test_speech_energy_ignores_stationary_noise():
    clean = speech_like(3.0, seed=4)
    noisy = add_noise(clean, 5, "white", seed=5)
    energy = speech_energy(torch.from_numpy(np.stack([clean, noisy])))
    assert float(energy[1] / energy[0]) == pytest.approx(1.0, abs=0.25)
    assert float(energy[1]) < 0.9 * float((noisy**2).sum())  # the noise's energy is not counted


def test_keep_speech_level_scales_each_file_and_respects_lengths():
    clean = torch.from_numpy(np.stack([speech_like(2.0, seed=6), speech_like(2.0, seed=7)]))
    clean[1, 16000:] = 0.0  # padding of a 1 s file
    noisy = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=clean.dtype)
    noisy[1, 16000:] = 0.0
    lengths = torch.tensor([1.0, 0.5])
    out = keep_speech_level(clean * torch.tensor([[0.1], [3.0]], dtype=clean.dtype), noisy, lengths)
    for row in range(2):
        gain = float((out[row] * clean[row]).sum() / (clean[row] ** 2).sum())
        assert gain == pytest.approx(1.0, abs=0.1), (row, gain)
    assert float(out.abs().max()) <= 0.99 + 1e-9
    silent = keep_speech_level(torch.zeros(1, 8000), torch.randn(1, 8000))
    assert torch.equal(silent, torch.zeros(1, 8000))
