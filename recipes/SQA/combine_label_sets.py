#!/usr/bin/env python3
"""Combines label sets into one folder of ``{train,valid,test}.csv`` for ``--label_source=folder``.

    python recipes/SQA/combine_label_sets.py data/sqa_labels/real_mix \\
        data/sqa_labels/real_enh data/sqa_labels/real_testlike

Each input is a label folder (``hparams/sqa.yaml``'s label preparation, possibly with
``add_enhancer_outputs.py`` rows). Rows are copied split by split, the audio stays where it is (the
combined CSVs name it by absolute path; a relative cell of an input is resolved against that input's
folder first); each ID gets its folder's name as a prefix (``real_enh__<ID>``) so IDs
of different sets never collide; a file already taken from an earlier input (the same ``wav``, e.g.
the clean row of a file both sets drew) is left out, so no audio counts twice. Refused, before
anything is written: inputs with different columns, and a speaker found in two different splits
(the label valid and test splits must stay speaker-disjoint from train and from each other).
"""

import argparse
import csv
import os
import sys

from speechbrain_sqe.dataio.sqa_labels import (
    REFERENCE_COLUMN,
    SPLITS,
    label_manifests,
    label_path_cell,
    resolve_label_path,
)


def combine_label_sets(output, inputs):
    """Writes the combined CSVs; returns ``{split: rows written}``.

    Arguments
    ---------
    output : str
        The new label folder.
    inputs : list of str
        Label folders, in order of precedence for files found in several.

    Returns
    -------
    dict
        Rows per split.
    """
    if len(inputs) < 2:
        raise ValueError("give at least two label folders to combine")
    names = [os.path.basename(os.path.normpath(folder)) for folder in inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"label folders must have distinct names (they prefix the IDs): {names}")
    columns, rows, split_of_speaker, seen = None, {split: [] for split in SPLITS}, {}, set()
    for folder, name in zip(inputs, names):
        for split, path in label_manifests(folder).items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no {split} split in label folder {folder}")
            with open(path, newline="") as stream:
                reader = csv.DictReader(stream)
                if columns is None:
                    columns = reader.fieldnames
                elif reader.fieldnames != columns:
                    raise ValueError(f"{path}: columns {reader.fieldnames} differ from the first set's {columns}")
                for row in reader:
                    other = split_of_speaker.setdefault(row["speaker"], split)
                    if other != split:
                        raise ValueError(f"{path}: speaker {row['speaker']!r} is in {split} here and in {other} "
                                         "in another set: the splits would share a speaker")
                    # The audio stays in the input folder: its relative cells become paths from the output.
                    paths = {column: label_path_cell(resolve_label_path(row[column], folder), output)
                             for column in ("wav", REFERENCE_COLUMN) if row.get(column)}
                    if paths["wav"] in seen:
                        continue
                    seen.add(paths["wav"])
                    rows[split].append({**row, **paths, "ID": f"{name}__{row['ID']}"})
    os.makedirs(output, exist_ok=True)
    for split, path in label_manifests(output).items():
        with open(path + ".tmp", "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows[split])
        os.replace(path + ".tmp", path)
    return {split: len(split_rows) for split, split_rows in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the new label folder")
    parser.add_argument("inputs", nargs="+", help="label folders to combine (earlier ones win for shared files)")
    args = parser.parse_args(argv)
    try:
        counts = combine_label_sets(args.output, args.inputs)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"combine_label_sets: {error}")
    print(", ".join(f"{split}: {count} rows" for split, count in counts.items()), "->", args.output)


if __name__ == "__main__":
    main()
