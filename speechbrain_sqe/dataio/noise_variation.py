"""Noise variation: more kinds of noise from the few real training noises there are.

An enhancer trained on eight real noises learns those eight (measured for BSSE: on the validation
pairs, with the training noises, it takes 11.4 dB away in pauses, on the real test noises 4.1 dB).
No noise corpus may be downloaded here, so each training mixture's noise is varied on the fly, per
utterance, in the ways real noises differ from one another:

- **colour**: a random equalizer, gains U[-``eq_db``, ``eq_db``] dB at ``eq_bands`` log-spaced
  frequencies (50 Hz to Nyquist), linear in log frequency between them (zero phase);
- **speed**: resampled by a log-uniform factor in [1/``max_speed``, ``max_speed``] (pitch, spectral
  centre and rhythm move together; the noise is continued by its time reversal when it runs short;
  linear interpolation without an anti-aliasing filter, so a speed-up folds what lies above the new
  Nyquist frequency back into the band: still noise, one more way for it to differ);
- **level fluctuation**: multiplied by ``exp(depth * m(t))``, ``m`` a smooth random modulation of
  unit peak at 0.5-4 Hz, depth U[0, ``max_modulation``] nepers (steady noises come and go).

The varied noise is rescaled to the power the original had, so the mixture's SNR is unchanged.

SpeechBrain's augmenters change the *whole* signal (speed, frequency drops, noise from files) and
have no random equalizer; here only the noise of a mixture changes, which needs the noise apart
from the speech, hence this module (it works on the difference AddNoise made).
"""

import math

import torch
import torch.nn.functional as F


class NoiseVariation(torch.nn.Module):
    """Random colour, speed and level fluctuation of a batch of noise signals (see the module).

    Arguments
    ---------
    sample_rate : int
        Rate of the noise.
    prob : float
        Probability that an utterance's noise is varied at all (each kind then applies).
    eq_db : float
        Largest equalizer gain in dB (each band U[-eq_db, eq_db]).
    eq_bands : int
        Equalizer anchor frequencies, log-spaced from 50 Hz to Nyquist.
    max_speed : float
        Resampling factor drawn log-uniformly in [1 / max_speed, max_speed] (1 turns it off).
    max_modulation : float
        Largest level-fluctuation depth in nepers (0 turns it off).

    Example
    -------
    >>> vary = NoiseVariation(prob=1.0)
    >>> noise = torch.randn(3, 16000)  # [batch, samples]
    >>> varied = vary(noise)
    >>> varied.shape
    torch.Size([3, 16000])
    >>> torch.allclose(varied.pow(2).mean(1), noise.pow(2).mean(1), rtol=1e-4)  # power kept
    True
    """

    def __init__(self, sample_rate=16000, prob=0.8, eq_db=12.0, eq_bands=8, max_speed=1.5, max_modulation=1.0):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if max_speed < 1.0:
            raise ValueError(f"max_speed must be >= 1, got {max_speed}")
        if eq_db < 0 or max_modulation < 0 or eq_bands < 2:
            raise ValueError("eq_db and max_modulation must be >= 0 and eq_bands >= 2")
        self.sample_rate = sample_rate
        self.prob = prob
        self.eq_db = eq_db
        self.eq_bands = eq_bands
        self.max_speed = max_speed
        self.max_modulation = max_modulation

    def forward(self, noise, generator=None):
        """Varies each row of ``noise`` with probability ``prob``; the others are returned as they are.

        Arguments
        ---------
        noise : torch.Tensor
            ``[batch, samples]``.
        generator : torch.Generator, optional
            Source of the random draws (on the CPU), for reproducible variations.

        Returns
        -------
        torch.Tensor
            ``[batch, samples]``, each varied row at its original power.
        """
        if noise.dim() != 2:
            raise ValueError(f"noise must be [batch, samples], got shape {tuple(noise.shape)}")
        batch = noise.shape[0]
        pick = torch.rand(batch, generator=generator) < self.prob
        if not bool(pick.any()):
            return noise
        rows = pick.nonzero().squeeze(1).tolist()
        varied = torch.stack([self._vary_one(noise[row], generator) for row in rows])
        original_power = noise[rows].pow(2).mean(1, keepdim=True)
        varied_power = varied.pow(2).mean(1, keepdim=True).clamp_min(1e-20)
        varied = varied * (original_power / varied_power).sqrt()
        out = noise.clone()
        out[rows] = varied.to(noise.dtype)
        return out

    def _vary_one(self, wav, generator):
        wav = self._speed(wav, generator)
        wav = self._equalize(wav, generator)
        return self._modulate(wav, generator)

    def _uniform(self, low, high, generator, size=()):
        return low + (high - low) * torch.rand(size, generator=generator)

    def _speed(self, wav, generator):
        """Resampled by a log-uniform factor (linear interpolation), continued by its reversal."""
        if self.max_speed == 1.0:
            return wav
        factor = math.exp(float(self._uniform(-math.log(self.max_speed), math.log(self.max_speed), generator)))
        length = wav.shape[0]
        needed = math.ceil(length * factor) + 1
        source = wav
        while source.shape[0] < needed:  # noise reversed in time is still noise of the same kind
            source = torch.cat([source, source.flip(0)])
        source = source[:needed]
        positions = torch.arange(length, dtype=torch.float64, device=wav.device) * factor
        left = positions.floor().long().clamp(max=needed - 2)
        frac = (positions - left.double()).to(wav.dtype)
        return source[left] * (1 - frac) + source[left + 1] * frac

    def _equalize(self, wav, generator):
        """A zero-phase random equalizer: gains at log-spaced anchors, linear in log frequency."""
        if self.eq_db == 0:
            return wav
        spectrum = torch.fft.rfft(wav)
        freqs = torch.linspace(0, self.sample_rate / 2, spectrum.shape[0], device=wav.device)
        gains_db = self._uniform(-self.eq_db, self.eq_db, generator, (self.eq_bands,))
        # Each bin's position among the anchors (50 Hz ... Nyquist, log-spaced): 0 .. eq_bands - 1.
        position = torch.log(freqs.clamp(min=50.0).cpu()) - math.log(50.0)
        position = position / (math.log(self.sample_rate / 2) - math.log(50.0)) * (self.eq_bands - 1)
        low = position.floor().long().clamp(0, self.eq_bands - 2)
        frac = position - low
        curve_db = gains_db[low] * (1 - frac) + gains_db[low + 1] * frac
        gain = (10 ** (curve_db / 20)).to(device=wav.device, dtype=wav.dtype)
        return torch.fft.irfft(spectrum * gain, n=wav.shape[0])

    def _modulate(self, wav, generator):
        """Multiplied by ``exp(depth * m(t))``, ``m`` a smooth random curve of unit peak."""
        if self.max_modulation == 0:
            return wav
        depth = float(self._uniform(0.0, self.max_modulation, generator))
        rate_hz = float(self._uniform(0.5, 4.0, generator))
        seconds = wav.shape[0] / self.sample_rate
        knots = max(2, math.ceil(seconds * rate_hz) + 1)
        values = torch.randn(1, 1, knots, generator=generator)
        curve = F.interpolate(values, size=wav.shape[0], mode="linear", align_corners=True)[0, 0]
        curve = curve / curve.abs().max().clamp_min(1e-8)
        return wav * torch.exp(depth * curve).to(device=wav.device, dtype=wav.dtype)
