#!/usr/bin/env python3
"""What "clean" means in a clean-speech corpus: band limit, noise floor and level, per corpus.

    python recipes/RealSpeech/speech_stats.py --manifest ../shared/data/speech/manifest.csv \\
        --splits train valid --output results/vqreal/speech_stats
    python recipes/RealSpeech/speech_stats.py --manifest data/embedded/train60min_seed1234/train_clean.csv \\
        --output results/vqreal/speech_stats_tts

Reads a speech manifest (``path``/``corpus``/``split`` columns as in ``../shared/data/speech``,
or a recipe's ``train_clean.csv`` with ``wav``) and measures each file with numpy alone (no
model, no reference): the frequency below which 99% (and 99.9%) of the energy of the active frames
lies (a band limit shows as a low roll-off), the share of energy above 4 kHz, and a noise-floor
estimate (10th percentile of the frame levels below the 95th, in dB: the speech-to-floor range;
high = a quiet floor). Meant for TRAINING and VALIDATION speech only (never to pick anything on a
test set). Writes ``stats.csv`` (per file) and ``summary.md`` (medians and quartiles per corpus).
"""

import argparse
import csv
import os

import numpy as np

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.manifest import read_manifest

FRAME = 512
HOP = 256
COLUMNS = ("rolloff99_hz", "rolloff999_hz", "hf_above4k_db", "floor_range_db")


def file_stats(wav, sample_rate=16000):
    """Band and noise-floor figures of one waveform.

    Arguments
    ---------
    wav : numpy.ndarray
        Mono samples.
    sample_rate : int
        Its rate.

    Returns
    -------
    dict
        ``rolloff99_hz``, ``rolloff999_hz`` (energy roll-off of the active frames),
        ``hf_above4k_db`` (energy above 4 kHz relative to all, dB) and ``floor_range_db``
        (95th minus 10th percentile of the frame levels, dB).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(32000) / 16000
    >>> tone = np.sin(2 * np.pi * 1000 * t) * (t % 0.5 < 0.25) + 1e-4 * rng.standard_normal(32000)
    >>> s = file_stats(tone)
    >>> 900 < s["rolloff99_hz"] < 1100, s["floor_range_db"] > 60
    (True, True)
    """
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < FRAME:
        wav = np.pad(wav, (0, FRAME - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, FRAME)[::HOP] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    level = 10 * np.log10(power.sum(-1) + 1e-20)
    active = level >= np.percentile(level, 95) - 30
    spectrum = power[active].sum(0)
    cumulative = np.cumsum(spectrum) / max(spectrum.sum(), 1e-20)
    freqs = np.fft.rfftfreq(FRAME, 1 / sample_rate)
    return {
        "rolloff99_hz": float(freqs[np.searchsorted(cumulative, 0.99)]),
        "rolloff999_hz": float(freqs[min(np.searchsorted(cumulative, 0.999), len(freqs) - 1)]),
        "hf_above4k_db": float(10 * np.log10(spectrum[freqs > 4000].sum() / max(spectrum.sum(), 1e-20) + 1e-20)),
        "floor_range_db": float(np.percentile(level, 95) - np.percentile(level, 10)),
    }


def _rows(manifest, splits):
    rows = read_manifest(manifest)
    base = os.path.dirname(os.path.abspath(manifest))
    out = []
    for row in rows:
        if "path" in row:
            if splits and row.get("split") not in splits:
                continue
            out.append({"id": row["id"], "path": os.path.join(base, row["path"]), "corpus": row["corpus"],
                        "split": row.get("split", "")})
        else:  # a recipe's train_clean.csv
            out.append({"id": row["ID"], "path": row["wav"], "corpus": row["ID"].split("_")[0],
                        "split": "train"})
    return out


def summarize(table):
    """Markdown: median [quartiles] of each figure per (corpus, split)."""
    groups = {}
    for row in table:
        groups.setdefault((row["corpus"], row["split"]), []).append(row)
    lines = ["| corpus | split | files | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    for (corpus, split), items in sorted(groups.items()):
        cells = []
        for name in COLUMNS:
            q1, q2, q3 = np.percentile([r[name] for r in items], [25, 50, 75])
            cells.append(f"{q2:.0f} [{q1:.0f}, {q3:.0f}]" if name.endswith("hz") else f"{q2:.1f} [{q1:.1f}, {q3:.1f}]")
        lines.append(f"| {corpus} | {split} | {len(items)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--splits", nargs="*", default=["train", "valid"], help="splits kept (never test)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if "test" in args.splits:
        raise SystemExit("test speech is for measurement only")
    os.makedirs(args.output, exist_ok=True)
    table = []
    for row in _rows(args.manifest, args.splits):
        table.append({**row, **file_stats(load_audio(row["path"], 16000).numpy())})
    with open(os.path.join(args.output, "stats.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    markdown = summarize(table)
    with open(os.path.join(args.output, "summary.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return table


if __name__ == "__main__":
    main()
