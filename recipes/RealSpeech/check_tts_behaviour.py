#!/usr/bin/env python3
"""The shipped VQ enhancer's pinned behaviour checks, for any VQ-enhancer hub folder (a candidate check).

    python recipes/RealSpeech/check_tts_behaviour.py results/enhreal/tts_then_real_tts/hub

Computes what ``tests/test_shipped_models.py::test_vq_enhancer_improves_noisy_speech`` and
``tests/test_vq_enhancer.py::test_shipped_enhancer_removes_noise_from_speech`` assert of the
shipped model, with the tests' own helpers (``tests/speech.py``: the espeak-ng/flite utterance,
white and pink noise with seed 1), so a candidate can be judged against them before its files
replace the shipped ones: at white/pink noise, 5 and 0 dB, the SI-SDR gain with the model's
default mix (> 2 dB) and with mix 0 (> 1 dB), and the segmental-SNR gain (> 1.5 dB). Prints one
line per condition and exits 1 when any check fails.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from speech import add_noise, synthesize  # noqa: E402  (the tests' utterance and noise, on purpose)

from speechbrain_sqe.dataio.audio import load_audio  # noqa: E402
from speechbrain_sqe.inference.enhancement import VQEnhancer  # noqa: E402
from speechbrain_sqe.metrics.composite import segmental_snr  # noqa: E402
from speechbrain_sqe.metrics.intrusive import si_sdr  # noqa: E402

CONDITIONS = (("white", 5), ("white", 0), ("pink", 5), ("pink", 0))
THRESHOLDS = {"si_sdr_gain": 2.0, "seg_snr_gain": 1.5, "si_sdr_gain_mix0": 1.0}


def check(source):
    """The gains of one enhancer on the tests' utterance, per condition.

    Arguments
    ---------
    source : str
        A VQ-enhancer hub folder.

    Returns
    -------
    list of dict
        ``kind``, ``snr``, the three gains (dB) and ``passed``.
    """
    enhancer = VQEnhancer.from_hparams(source=source)
    path = synthesize(os.path.join(tempfile.mkdtemp(), "clean.wav"))
    clean = load_audio(str(path), 16000, warn=False).numpy().astype(np.float64)
    rows = []
    for kind, snr in CONDITIONS:
        noisy = add_noise(clean, snr, kind, seed=1)
        batch = torch.from_numpy(noisy.astype(np.float32))
        enhanced = enhancer.enhance_batch(batch).double().numpy()
        enhanced_mix0 = enhancer.enhance_batch(batch, mix=0.0).double().numpy()
        row = {"kind": kind, "snr": snr,
               "si_sdr_gain": si_sdr(clean, enhanced) - si_sdr(clean, noisy),
               "seg_snr_gain": segmental_snr(clean, enhanced) - segmental_snr(clean, noisy),
               "si_sdr_gain_mix0": si_sdr(clean, enhanced_mix0) - si_sdr(clean, noisy)}
        row["passed"] = all(row[name] > limit for name, limit in THRESHOLDS.items())
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="VQ-enhancer hub folders")
    args = parser.parse_args(argv)
    failed = False
    for source in args.sources:
        for row in check(source):
            failed |= not row["passed"]
            print(f"{source} {row['kind']} {row['snr']} dB: SI-SDR {row['si_sdr_gain']:+.2f} (> 2), "
                  f"segmental SNR {row['seg_snr_gain']:+.2f} (> 1.5), SI-SDR at mix 0 "
                  f"{row['si_sdr_gain_mix0']:+.2f} (> 1): {'pass' if row['passed'] else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
