#!/usr/bin/env python3
"""The shipped enhancers' pinned behaviour checks, for any candidate hub folder (a candidate check).

    python recipes/RealSpeech/check_tts_behaviour.py results/enhreal/tts_then_real_tts/hub
    python recipes/RealSpeech/check_tts_behaviour.py --as sqa_guided results/sqa_guided/s36/adapt_anchor10/hub

Computes what ``tests/test_shipped_models.py`` (and ``tests/test_vq_enhancer.py``) assert of the
shipped model that a candidate would replace, with the tests' own helpers (``tests/speech.py``: the
espeak-ng/flite utterance, white and pink noise with seed 1), so a candidate can be judged against
them before its files replace the shipped ones. The checks, per shipped model (``--as``):

- ``vq_enhancer`` (``test_vq_enhancer_improves_noisy_speech``, ``test_shipped_enhancer_removes_noise_from_speech``):
  white/pink noise at 5 and 0 dB, SI-SDR gain with the default mix > 2 dB and with mix 0 > 1 dB,
  segmental-SNR gain > 1.5 dB;
- ``bsse`` (``test_bsse_improves_noisy_speech``): white/pink at 5 and 0 dB, SI-SDR and segmental-SNR
  gains > 1.5 dB;
- ``sqa_guided`` (``test_sqa_guided_enhancer_loads_and_improves_pink_noise``): pink at 5 and 0 dB,
  SI-SDR gain > 1.5 dB, segmental-SNR gain > 1 dB.

``--as auto`` (the default) judges a VQ-enhancer folder as ``vq_enhancer`` and a BSSE folder as
``bsse``. Prints one line per condition and exits 1 when any check fails.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from speech import add_noise, synthesize  # (the tests' utterance and noise, on purpose)

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.metrics.composite import segmental_snr
from speechbrain_sqe.metrics.intrusive import si_sdr

# The tests' conditions and thresholds (dB gains that must be exceeded), per shipped model, and
# the interface a candidate must load as to be judged by them.
CHECKS = {
    "vq_enhancer": {"interface": "VQEnhancer", "conditions": (("white", 5), ("white", 0), ("pink", 5), ("pink", 0)),
                    "thresholds": {"si_sdr_gain": 2.0, "seg_snr_gain": 1.5, "si_sdr_gain_mix0": 1.0}},
    "bsse": {"interface": "BSSEEnhancer", "conditions": (("white", 5), ("white", 0), ("pink", 5), ("pink", 0)),
             "thresholds": {"si_sdr_gain": 1.5, "seg_snr_gain": 1.5}},
    "sqa_guided": {"interface": "BSSEEnhancer", "conditions": (("pink", 5), ("pink", 0)),
                   "thresholds": {"si_sdr_gain": 1.5, "seg_snr_gain": 1.0}},
}
CONDITIONS = CHECKS["vq_enhancer"]["conditions"]
#: ``--as auto``: the checks of each interface.
AUTO = {"VQEnhancer": "vq_enhancer", "BSSEEnhancer": "bsse"}


def resolve_checks(enhancer, checks="auto"):
    """The name of the checks to run on a loaded enhancer.

    Arguments
    ---------
    enhancer : speechbrain_sqe.inference.enhancement.Enhancer
        The loaded candidate.
    checks : str
        ``auto`` (by its interface) or a key of :data:`CHECKS`.

    Returns
    -------
    str
        A key of :data:`CHECKS`.
    """
    kind = type(enhancer).__name__
    if checks == "auto":
        if kind not in AUTO:
            raise ValueError(f"no pinned checks for a {kind} folder; pass --as with one of {sorted(CHECKS)}")
        return AUTO[kind]
    if checks not in CHECKS:
        raise ValueError(f"unknown checks {checks!r}; expected auto or one of {sorted(CHECKS)}")
    if CHECKS[checks]["interface"] != kind:
        raise ValueError(f"the {checks} checks judge a {CHECKS[checks]['interface']} folder; this one loads as {kind}")
    return checks


def check(source, checks="auto"):
    """The gains of one enhancer on the tests' utterance, per condition.

    Arguments
    ---------
    source : str
        An enhancer hub folder (VQ enhancer or BSSE kind).
    checks : str
        ``auto`` or a key of :data:`CHECKS`.

    Returns
    -------
    list of dict
        ``checks``, ``kind``, ``snr``, the gains (dB) its checks need and ``passed``.
    """
    enhancer = load_model(source, task="enhancement")
    name = resolve_checks(enhancer, checks)
    spec = CHECKS[name]
    path = synthesize(os.path.join(tempfile.mkdtemp(), "clean.wav"))
    clean = load_audio(str(path), 16000, warn=False).numpy().astype(np.float64)
    rows = []
    for kind, snr in spec["conditions"]:
        noisy = add_noise(clean, snr, kind, seed=1)
        batch = torch.from_numpy(noisy.astype(np.float32))
        enhanced = enhancer.enhance_batch(batch).double().numpy()
        row = {"checks": name, "kind": kind, "snr": snr,
               "si_sdr_gain": si_sdr(clean, enhanced) - si_sdr(clean, noisy),
               "seg_snr_gain": segmental_snr(clean, enhanced) - segmental_snr(clean, noisy)}
        if "si_sdr_gain_mix0" in spec["thresholds"]:
            enhanced_mix0 = enhancer.enhance_batch(batch, mix=0.0).double().numpy()
            row["si_sdr_gain_mix0"] = si_sdr(clean, enhanced_mix0) - si_sdr(clean, noisy)
        row["passed"] = all(row[gain] > limit for gain, limit in spec["thresholds"].items())
        rows.append(row)
    return rows


LABELS = {"si_sdr_gain": "SI-SDR", "seg_snr_gain": "segmental SNR", "si_sdr_gain_mix0": "SI-SDR at mix 0"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="enhancer hub folders (VQ enhancer or BSSE kind)")
    parser.add_argument("--as", dest="checks", default="auto", choices=["auto", *CHECKS],
                        help="whose pinned checks to apply (default: by the folder's interface)")
    args = parser.parse_args(argv)
    failed = False
    for source in args.sources:
        for row in check(source, args.checks):
            failed |= not row["passed"]
            gains = ", ".join(f"{LABELS[gain]} {row[gain]:+.2f} (> {limit:g})"
                              for gain, limit in CHECKS[row["checks"]]["thresholds"].items())
            print(f"{source} [{row['checks']}] {row['kind']} {row['snr']} dB: {gains}: "
                  f"{'pass' if row['passed'] else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
