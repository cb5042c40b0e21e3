"""How much each enhancer takes away in the speech pauses and in the speech, from enhanced folders.

Reads the outputs of ``benchmarks/bench_enhance_peers.py`` (``<out>/<set>/<system>/<ID>.wav``) and
the pairs manifest they came from. For each file, 25 ms frames (hop 10 ms) are ranked by the energy
of the clean reference; the pauses are the quietest 15 % of frames, the speech the loudest 40 %.
Printed per system: the median over files of 10 log10(output energy / input energy) in each group
(0 dB: nothing removed). What DNSMOS BAK hears is mostly the first column.

    python benchmarks/pause_attenuation.py --manifest data/real_test/speakers.csv \\
        --folder results/bsse_real/probe/speakers --reference clean_reverb_wav --limit 32
"""

import argparse
import csv
import os

import numpy as np

from speechbrain_sqe.dataio.audio import load_audio

FRAME, HOP = 400, 160
PAUSE_SHARE, SPEECH_SHARE = 0.15, 0.40


def frame_energies(wav):
    """Energy of each 25 ms frame (hop 10 ms) of a 16 kHz waveform ``[time]``."""
    count = max(0, (len(wav) - FRAME) // HOP)
    frames = np.lib.stride_tricks.sliding_window_view(wav, FRAME)[::HOP][:count]
    return (frames ** 2).mean(axis=1)


def attenuation_db(clean, noisy, enhanced):
    """Output/input energy ratios in dB of one file, in its pauses and in its speech.

    Arguments
    ---------
    clean, noisy, enhanced : numpy.ndarray
        The reference ranking the frames, the input and the output ``[time]`` (16 kHz).

    Returns
    -------
    (float, float)
        dB in the quietest 15 % and in the loudest 40 % of the reference's frames.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.concatenate([np.zeros(8000), np.sin(np.arange(8000) / 3)])
    >>> noisy = clean + 0.01 * rng.standard_normal(16000)
    >>> [round(x) for x in attenuation_db(clean, noisy, clean + 0.001 * (noisy - clean))]
    [-60, 0]
    """
    length = min(len(clean), len(noisy), len(enhanced))
    reference, before, after = (frame_energies(x[:length]) for x in (clean, noisy, enhanced))
    pauses = reference < np.quantile(reference, PAUSE_SHARE)
    if not pauses.any():  # digital silence: the quietest frames all tie
        pauses = reference <= np.quantile(reference, PAUSE_SHARE)
    speech = reference > np.quantile(reference, 1 - SPEECH_SHARE)
    return tuple(10 * np.log10(after[group].sum() / max(before[group].sum(), 1e-20)) for group in (pauses, speech))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, help="pairs manifest (ID, noisy_wav and the reference column)")
    parser.add_argument("--folder", required=True, help="the set's folder of enhanced outputs (<out>/<set>)")
    parser.add_argument("--reference", default="clean_wav", help="manifest column ranking the frames")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    args = parser.parse_args(argv)
    with open(args.manifest, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))[: args.limit]
    systems = sorted(name for name in os.listdir(args.folder) if name != "noisy")
    print("| system | files | pauses: output/input (dB, median) | speech: output/input (dB, median) |")
    print("|---|---|---|---|")
    for system in systems:
        results = []
        for row in rows:
            path = os.path.join(args.folder, system, f"{row['ID']}.wav")
            if os.path.isfile(path):
                clean, noisy, enhanced = (load_audio(p, 16000).numpy().astype(np.float64)
                                          for p in (row[args.reference], row["noisy_wav"], path))
                results.append(attenuation_db(clean, noisy, enhanced))
        if results:
            pauses, speech = np.median(np.array(results), axis=0)
            print(f"| {system} | {len(results)} | {pauses:.1f} | {speech:.1f} |")


if __name__ == "__main__":
    main()
