#!/usr/bin/env python3
"""Drops the least clean TRAINING files of a speech manifest by a no-reference figure of ``speech_stats.py``.

    python recipes/RealSpeech/speech_stats.py --manifest ../shared/data/speech/manifest.csv \\
        --output results/vqreal/speech_stats
    python recipes/RealSpeech/filter_speech_manifest.py --manifest ../shared/data/speech/manifest.csv \\
        --stats results/vqreal/speech_stats/stats.csv --column floor_range_db --min 30 \\
        --output data/vqreal_floor30/manifest.csv

Only ``split=train`` rows are filtered (validation and test speech stay as they are, so the
checkpoint is picked and measured on the same pairs as without the filter); paths are written
absolute. The kept and dropped minutes per corpus are printed.
"""

import argparse
import csv
import os


def keep_row(row, stats, column, minimum=None, maximum=None):
    """Whether a manifest row is kept (non-training rows always are).

    Arguments
    ---------
    row : dict
        A manifest row (``path``, ``split``).
    stats : dict
        ``absolute path -> speech_stats row``.
    column : str
        The figure compared.
    minimum, maximum : float, optional
        Bounds of the figure for a kept training file.

    Returns
    -------
    bool

    Example
    -------
    >>> stats = {"/a.wav": {"floor_range_db": "25.0"}, "/b.wav": {"floor_range_db": "40.0"}}
    >>> [keep_row({"path": p, "split": "train"}, stats, "floor_range_db", minimum=30) for p in ("/a.wav", "/b.wav")]
    [False, True]
    >>> keep_row({"path": "/a.wav", "split": "valid"}, stats, "floor_range_db", minimum=30)
    True
    """
    if row["split"] != "train":
        return True
    value = float(stats[row["path"]][column])
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--stats", required=True, help="stats.csv of speech_stats.py on the same manifest")
    parser.add_argument("--column", default="floor_range_db")
    parser.add_argument("--min", type=float, default=None)
    parser.add_argument("--max", type=float, default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    base = os.path.dirname(os.path.abspath(args.manifest))
    with open(args.stats, newline="") as handle:
        stats = {row["path"]: row for row in csv.DictReader(handle)}
    with open(args.manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    kept, minutes = [], {}
    for row in rows:
        row = {**row, "path": os.path.join(base, row["path"]) if not os.path.isabs(row["path"]) else row["path"]}
        ok = keep_row(row, stats, args.column, args.min, args.max)
        key = (row["split"], row.get("corpus", ""), "kept" if ok else "dropped")
        minutes[key] = minutes.get(key, 0.0) + float(row.get("duration_s") or 0) / 60
        if ok:
            kept.append(row)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    for key, value in sorted(minutes.items()):
        print(" ".join(key), f"{value:.1f} min")
    return kept


if __name__ == "__main__":
    main()
