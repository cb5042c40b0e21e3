"""Realism augmentation: makes clean synthetic speech vary the way real clean recordings do.

A quality model trained on clean text-to-speech alone learns what *TTS* sounds like: real clean
recordings then score as degraded (measured: VQScore trained on the embedded corpus alone put real
clean speech below its own noisy TTS). Real "clean" speech has a microphone and a room: a coloured
frequency response, a limited bandwidth, a little early reverberation and a noise floor 30-60 dB
down. This augmentation draws those per training utterance, mild enough to stay "clean": the
degradations a quality model must detect (noise at 20 dB SNR or less, long reverberation) stay
outside the training distribution.

SpeechBrain's augmenters cover speed, noise from files and reverberation from RIR files, not
random equalization or synthetic small rooms, hence this module; it reuses the corpus's RIR
model and coloured noise.
"""

import numpy as np
import torch
from scipy.signal import butter, sosfilt

from speechbrain_sqe.dataio.levels import active_level_db, colored_noise
from speechbrain_sqe.dataio.rooms import reverberate, synthetic_rir


class CleanRealism:
    """Random microphone colouration, bandwidth, small-room reverberation and noise floor.

    Arguments
    ---------
    sample_rate : int
        Rate of the speech.
    eq_prob : float
        Probability of a random equalizer (a tilt and one peak or dip).
    eq_max_db : float
        Largest gain of the equalizer's bands, in dB.
    band_prob : float
        Probability of a band limit (high-pass 50-150 Hz and/or low-pass 4-7.5 kHz).
    reverb_prob : float
        Probability of small-room reverberation.
    t60_range : tuple of float
        Reverberation time range in seconds (small rooms: stays "clean").
    drr_range : tuple of float
        Direct-to-reverberant ratio range in dB (high: close talking).
    floor_prob : float
        Probability of a microphone noise floor.
    floor_snr_range : tuple of float
        Floor level below the active speech level, in dB.

    Example
    -------
    >>> augment = CleanRealism(eq_prob=1.0, reverb_prob=1.0, floor_prob=1.0)
    >>> wav = torch.randn(16000) * 0.05
    >>> out = augment(wav)
    >>> out.shape, bool(torch.isfinite(out).all())
    (torch.Size([16000]), True)
    """

    def __init__(self, sample_rate=16000, eq_prob=0.7, eq_max_db=6.0, band_prob=0.3,
                 reverb_prob=0.4, t60_range=(0.1, 0.35), drr_range=(6.0, 15.0),
                 floor_prob=0.7, floor_snr_range=(35.0, 55.0)):
        self.sample_rate = sample_rate
        self.eq_prob, self.eq_max_db, self.band_prob = eq_prob, eq_max_db, band_prob
        self.reverb_prob, self.t60_range, self.drr_range = reverb_prob, t60_range, drr_range
        self.floor_prob, self.floor_snr_range = floor_prob, floor_snr_range

    def __call__(self, wav):
        """Augments one waveform ``[time]`` (torch); returns a tensor of the same shape and RMS."""
        # Drawn from torch's generator so that seeding and DataLoader workers behave as usual.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
        x = wav.detach().cpu().numpy().astype(np.float64)
        rms = np.sqrt(np.mean(x**2)) + 1e-12
        if rng.random() < self.eq_prob:
            x = self._equalize(x, rng)
        if rng.random() < self.band_prob:
            x = self._band_limit(x, rng)
        if rng.random() < self.reverb_prob:
            t60 = rng.uniform(*self.t60_range)
            rir = synthetic_rir(t60, rng, self.sample_rate, drr_db=rng.uniform(*self.drr_range))
            x = reverberate(x, rir).astype(np.float64)
        x *= rms / (np.sqrt(np.mean(x**2)) + 1e-12)
        if rng.random() < self.floor_prob:
            level = active_level_db(x, self.sample_rate) - rng.uniform(*self.floor_snr_range)
            noise = colored_noise(len(x), rng.uniform(0.0, 1.5), rng, self.sample_rate)
            x = x + noise * 10 ** (level / 20)
        return torch.from_numpy(x.astype(np.float32)).to(wav.device)

    def _equalize(self, x, rng):
        """A spectral tilt plus one peak or dip, applied in the frequency domain."""
        spectrum = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(len(x), 1 / self.sample_rate)
        octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
        gain_db = rng.uniform(-1, 1) * self.eq_max_db / 3 * octaves  # tilt around 1 kHz
        centre = np.log2(rng.uniform(300, 5000) / 1000.0)
        width = rng.uniform(0.5, 1.5)
        gain_db += rng.uniform(-1, 1) * self.eq_max_db * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
        return np.fft.irfft(spectrum * 10 ** (gain_db / 20), n=len(x))

    def _band_limit(self, x, rng):
        nyquist = self.sample_rate / 2
        if rng.random() < 0.7:
            x = sosfilt(butter(2, rng.uniform(50, 150) / nyquist, "highpass", output="sos"), x)
        if rng.random() < 0.5:
            x = sosfilt(butter(4, rng.uniform(4000, 7500) / nyquist, "lowpass", output="sos"), x)
        return x
