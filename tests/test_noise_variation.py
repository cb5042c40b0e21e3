"""Noise variation (dataio/noise_variation.py): each kind does what it says, the power (so the SNR)
is kept, draws are reproducible, bad settings are refused, and the BSSE recipe's mixtures keep their
SNR with the variation on."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_sqe.dataio.noise_variation import NoiseVariation

SR = 16000


def _band_power(wav, low, high):
    spectrum = torch.fft.rfft(wav).abs().pow(2)
    freqs = torch.fft.rfftfreq(wav.shape[-1], 1 / SR)
    return float(spectrum[..., (freqs >= low) & (freqs < high)].mean())


def test_power_kept_and_unpicked_rows_untouched():
    noise = torch.randn(6, SR) * torch.tensor([0.01, 0.1, 1.0, 0.5, 0.2, 0.05])[:, None]
    varied = NoiseVariation(prob=1.0)(noise, generator=torch.Generator().manual_seed(0))
    assert varied.shape == noise.shape and torch.isfinite(varied).all()
    assert torch.allclose(varied.pow(2).mean(1), noise.pow(2).mean(1), rtol=1e-4)
    assert all(not torch.allclose(varied[row], noise[row]) for row in range(6))
    assert torch.equal(NoiseVariation(prob=0.0)(noise), noise)


def test_equalizer_colours_white_noise_within_its_gain_range():
    vary = NoiseVariation(prob=1.0, eq_db=12.0, max_speed=1.0, max_modulation=0.0)
    white = torch.randn(1, 4 * SR, generator=torch.Generator().manual_seed(1))
    tilts = []
    for seed in range(6):
        coloured = vary(white, generator=torch.Generator().manual_seed(seed))
        ratio_db = 10 * math.log10(_band_power(coloured, 4000, 8000) / _band_power(coloured, 100, 400))
        assert abs(ratio_db) < 2 * 12.0 + 1.0  # two bands can differ by at most twice the largest gain
        tilts.append(ratio_db)
    assert max(tilts) - min(tilts) > 3.0  # the colour really changes from draw to draw


def test_speed_moves_a_tone_by_a_factor_within_range():
    vary = NoiseVariation(prob=1.0, eq_db=0.0, max_speed=1.5, max_modulation=0.0)
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(SR) / SR)[None]
    peaks = []
    for seed in range(8):
        moved = vary(tone, generator=torch.Generator().manual_seed(seed))
        peak_hz = float(torch.fft.rfftfreq(SR, 1 / SR)[torch.fft.rfft(moved[0]).abs().argmax()])
        assert 1000 / 1.5 - 5 <= peak_hz <= 1000 * 1.5 + 5
        peaks.append(peak_hz)
    assert max(peaks) - min(peaks) > 50  # not always the same factor


def test_level_fluctuation_stays_within_its_depth():
    vary = NoiseVariation(prob=1.0, eq_db=0.0, max_speed=1.0, max_modulation=1.0)
    steady = torch.ones(1, 2 * SR)
    for seed in range(5):
        env = vary(steady, generator=torch.Generator().manual_seed(seed))[0]
        # exp(depth * m), |m| <= 1, rescaled to the input's power: the spread is at most e^(2 depth)
        assert float(env.min()) > 0 and float(env.max() / env.min()) <= math.exp(2.0) + 1e-3


def test_same_generator_same_variation():
    noise = torch.randn(3, SR)
    vary = NoiseVariation(prob=0.7)
    first = vary(noise, generator=torch.Generator().manual_seed(5))
    again = vary(noise, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)


@pytest.mark.parametrize("kwargs", [{"prob": 1.5}, {"max_speed": 0.5}, {"eq_db": -1.0}, {"eq_bands": 1},
                                    {"max_modulation": -0.1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        NoiseVariation(**kwargs)


def test_a_batch_that_is_not_two_dimensional_is_refused():
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        NoiseVariation()(torch.randn(SR))


def test_bsse_training_mixtures_keep_their_snr_with_the_variation(tmp_path):
    from speechbrain.augment.time_domain import AddNoise

    from speechbrain_sqe.brains.bsse import BSSEBrain

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noise.wav", (0.1 * rng.standard_normal(2 * SR)).astype("float32"), SR)
    (tmp_path / "noise.csv").write_text(f"ID,duration,wav,wav_format,wav_opts\nn1,2.0,{tmp_path / 'noise.wav'},wav,\n")
    clean = 0.3 * torch.sin(2 * math.pi * 220 * torch.arange(SR) / SR).repeat(2, 1)
    lens = torch.ones(2)
    measured = {}
    for prob in (0.0, 1.0):
        torch.manual_seed(0)  # the same draws of AddNoise for both
        brain = BSSEBrain(modules={}, hparams={"reverb_prob": 0.0, "noise_variation": NoiseVariation(prob=prob)})
        brain.add_reverb = None
        brain.add_noise = AddNoise(csv_file=str(tmp_path / "noise.csv"), snr_low=5, snr_high=5)
        noise = brain.corrupt(clean, lens) - clean
        measured[prob] = noise
    assert torch.allclose(measured[1.0].pow(2).mean(1), measured[0.0].pow(2).mean(1), rtol=1e-3)
    assert not torch.allclose(measured[1.0], measured[0.0], atol=1e-3)
