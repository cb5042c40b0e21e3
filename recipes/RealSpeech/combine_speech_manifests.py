#!/usr/bin/env python3
"""One clean-speech manifest (path, speaker, split) from a real-speech manifest plus extra training speech.

    python recipes/RealSpeech/combine_speech_manifests.py \\
        --manifest ../shared/data/speech/manifest.csv \\
        --extra-train data/embedded/train60min_seed1234/train_clean.csv \\
        --output data/vqreal_combined/manifest.csv
    python train.py hparams/vqscore.yaml --corpus=manifest --source_folder=data/vqreal_combined/manifest.csv ...

The rows of ``--manifest`` (``path``, ``speaker``, ``split``, other columns kept) are copied with
absolute paths; each ``--extra-train`` manifest (a recipe's ``train_clean.csv``: ``ID``, ``wav``,
``voice``, or a ``path``/``speaker`` CSV) adds its files as ``split=train`` only, their speakers
prefixed with ``--prefix`` so that they never collide with a real speaker. Validation and test
speakers therefore stay those of ``--manifest``: a model trained on the combination is selected
and measured on the same pairs as one trained on the real speech alone.
"""

import argparse
import csv
import os

COLUMNS = ["path", "speaker", "split", "corpus", "duration_s"]


def _absolute(path, manifest):
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(manifest)), path))


def _read(path):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def combine(manifest, extra_train, prefix="tts_"):
    """The combined rows (dicts with :data:`COLUMNS`).

    Arguments
    ---------
    manifest : str
        The main speech manifest (``path``, ``speaker``, ``split``).
    extra_train : list of str
        Manifests whose files are added as training speech.
    prefix : str
        Prepended to the speakers of the extra files.

    Returns
    -------
    list of dict
        One row per file; the extra ones with ``split`` ``train``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> main_csv, extra_csv = os.path.join(folder, "m.csv"), os.path.join(folder, "e.csv")
    >>> _ = open(main_csv, "w").write("path,speaker,split\\na.wav,alice,train\\nb.wav,bob,valid\\n")
    >>> _ = open(extra_csv, "w").write("ID,duration,wav,voice\\nt0,2.5,/tts/t0.wav,flite_rms\\n")
    >>> rows = combine(main_csv, [extra_csv])
    >>> [(os.path.basename(r["path"]), r["speaker"], r["split"]) for r in rows]
    [('a.wav', 'alice', 'train'), ('b.wav', 'bob', 'valid'), ('t0.wav', 'tts_flite_rms', 'train')]
    """
    rows = []
    for row in _read(manifest):
        rows.append({"path": _absolute(row["path"], manifest), "speaker": row["speaker"], "split": row["split"],
                     "corpus": row.get("corpus", ""), "duration_s": row.get("duration_s", "")})
    speakers = {row["speaker"] for row in rows}
    for extra in extra_train:
        for row in _read(extra):
            path = row.get("wav") or row["path"]
            speaker = prefix + (row.get("voice") or row.get("speaker") or "unknown")
            if speaker in speakers and not speaker.startswith(prefix):
                raise ValueError(f"{extra}: speaker {speaker!r} is already in {manifest}")
            rows.append({"path": _absolute(path, extra), "speaker": speaker, "split": "train",
                         "corpus": os.path.basename(os.path.dirname(os.path.abspath(extra))),
                         "duration_s": row.get("duration") or row.get("duration_s", "")})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="real speech manifest (path, speaker, split)")
    parser.add_argument("--extra-train", nargs="+", required=True, help="manifests added as training speech")
    parser.add_argument("--output", required=True, help="combined CSV (e.g. data/vqreal_combined/manifest.csv)")
    parser.add_argument("--prefix", default="tts_", help="prefix of the extra speakers")
    args = parser.parse_args(argv)
    rows = combine(args.manifest, args.extra_train, args.prefix)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    minutes = {}
    for row in rows:
        key = (row["split"], row["corpus"])
        minutes[key] = minutes.get(key, 0.0) + float(row["duration_s"] or 0) / 60
    for (split, corpus), value in sorted(minutes.items()):
        print(f"{split:6s} {corpus:28s} {value:7.1f} min")
    return rows


if __name__ == "__main__":
    main()
