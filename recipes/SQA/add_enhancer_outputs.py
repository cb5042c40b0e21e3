#!/usr/bin/env python3
"""Adds enhancers' outputs to a label set as systems of their own (resumable).

    python recipes/SQA/add_enhancer_outputs.py data/sqa_labels/real \\
        --enhancer vq=speechbrain_sqe/pretrained/vq_enhancer --peers rnnoise noisereduce --max_rows 200

For each split CSV of the label folder (``train.csv``, ``valid.csv``, ``test.csv``, made by
``hparams/sqa.yaml``'s label preparation), a seeded subset of at most ``--max_rows`` degraded rows
(``system`` ``noisy`` or ``degraded``; ``--systems`` to choose) is run through each enhancer:
``--enhancer NAME=SOURCE`` (a hub folder or id loaded by
:func:`speechbrain_sqe.inference.hub.load_model` with ``task="enhancement"``) and ``--peers`` (the
off-the-shelf peers of ``benchmarks/peer_enhancers.py``; a peer whose package is missing is skipped
with a warning). Each output becomes a row ``<ID>__<NAME>`` with ``system=NAME``, the same speaker,
condition and clean reference, and labels computed against that reference by the metric runner;
its audio goes to ``<label folder>/<split>/enhanced/<NAME>/`` (atomic writes). Rows already in a CSV
are kept, not recomputed: a killed run resumes where it stopped.

The label CSVs need the ``clean_wav`` column (written by the label preparations since it exists);
a label folder made before it is refused with a message.
"""

import argparse
import csv
import importlib.util
import logging
import os
import sys

import numpy as np
import torch

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.dataio.jobs import save_atomic
from speechbrain_sqe.dataio.resumable_csv import ResumableCSV
from speechbrain_sqe.dataio.sqa_labels import (
    LABEL_METRICS,
    REFERENCE_COLUMN,
    SPLITS,
    label_manifests,
    label_path_cell,
    resolve_label_path,
)

logger = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_FILE = os.path.join(HERE, "..", "..", "benchmarks", "peer_enhancers.py")
CHUNK = 16


def load_peers():
    """Imports ``benchmarks/peer_enhancers.py`` (``benchmarks`` is not a package); None if absent."""
    module = sys.modules.get("peer_enhancers")
    if module is None and os.path.isfile(PEERS_FILE):
        spec = importlib.util.spec_from_file_location("peer_enhancers", PEERS_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["peer_enhancers"] = module
        spec.loader.exec_module(module)
    return module


def _named_source(value):
    name, sep, source = value.partition("=")
    if not sep or not name or not source or "__" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE (a hub folder or id), got {value!r}")
    return name, source


def load_systems(enhancers, peers):
    """The enhancers to run: ``name -> function([time] tensor) -> [time] tensor``.

    Arguments
    ---------
    enhancers : list of (str, str)
        ``(name, hub source)``.
    peers : list of str
        Peer names of ``benchmarks/peer_enhancers.py``.

    Returns
    -------
    dict
        The callable of each system that can run here.
    """
    from speechbrain_sqe.inference.hub import load_model

    systems = {}
    for name, source in enhancers:
        model = load_model(source, task="enhancement")

        def run(wav, model=model):
            with torch.no_grad():
                return model.enhance_batch(wav.unsqueeze(0))[0][: wav.shape[0]]

        systems[name] = run
    if peers:
        module = load_peers()
        if module is None:
            logger.warning("benchmarks/peer_enhancers.py not found: peers %s skipped", ", ".join(peers))
            return systems
        for name, problem in module.check_peers(list(peers)).items():
            if name not in module.PEERS:
                raise ValueError(f"unknown peer {name!r}; one of {', '.join(module.PEERS)}")
            if problem:
                logger.warning("peer %s skipped: %s", name, problem)
            else:
                systems[name] = module.PEERS[name]
    return systems


def _read(path):
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames or []), list(reader)


def add_enhancer_outputs(label_folder, systems, max_rows=None, seed=1234, metrics=None, source_systems=None,
                         metric_jobs=1, splits=SPLITS):
    """Appends the outputs of ``systems`` on the degraded rows of each split (see the module doc).

    Arguments
    ---------
    label_folder : str
        The label set.
    systems : dict
        ``name -> enhance function`` (:func:`load_systems`).
    max_rows : int, optional
        At most this many source rows per split (drawn seeded); None: all.
    seed : int
        Seed of the draw.
    metrics : list of str, optional
        Labels computed (default: every available one of the label columns).
    source_systems : list of str, optional
        Systems of the rows enhanced (default ``noisy`` and ``degraded``).
    metric_jobs : int
        Metric worker processes.
    splits : sequence of str
        The splits done.

    Returns
    -------
    dict
        Rows added per split.
    """
    from speechbrain_sqe.metrics.registry import split_available
    from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

    metrics, reasons = split_available(list(metrics or LABEL_METRICS))
    for name, why in reasons.items():
        logger.warning("%s left empty: %s", name, why)
    source_systems = set(source_systems or ("noisy", "degraded"))
    added = {}
    for split in splits:
        path = label_manifests(label_folder)[split]
        columns, rows = _read(path)
        if REFERENCE_COLUMN not in columns:
            raise ValueError(f"{path}: no {REFERENCE_COLUMN!r} column (the clean reference of each row); this label "
                             "folder predates it: remake it with the label preparation")
        sources = [row for row in rows if row["system"] in source_systems]
        if max_rows is not None and len(sources) > max_rows:
            keep = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(sources))[: int(max_rows)]
            sources = [sources[i] for i in sorted(keep)]
        table = ResumableCSV(path, columns, key="ID", resume=True)
        order = [row["ID"] for row in rows]
        todo = []
        for row in sources:
            for name in systems:
                uid = f"{row['ID']}__{name}"
                order.append(uid)
                if uid not in table.done:
                    todo.append((row, name, uid))
        logger.info("%s: %d enhanced rows to add", split, len(todo))
        for start in range(0, len(todo), CHUNK):
            chunk, new = todo[start : start + CHUNK], []
            for row, name, uid in chunk:
                out = os.path.abspath(os.path.join(label_folder, split, "enhanced", name, f"{uid}.wav"))
                if not os.path.isfile(out):
                    noisy = load_audio(resolve_label_path(row["wav"], label_folder), 16000, warn=False)
                    enhanced = systems[name](noisy)
                    save_atomic(out, np.asarray(torch.as_tensor(enhanced).detach().cpu().numpy(), dtype=np.float32))
                cells = {column: row.get(column, "") for column in columns}
                cells.update({"ID": uid, "wav": label_path_cell(out, label_folder), "system": name,
                              **{m: None for m in LABEL_METRICS}})
                new.append(cells)
            pairs = [Pair(c["ID"], resolve_label_path(c[REFERENCE_COLUMN], label_folder),
                          resolve_label_path(c["wav"], label_folder)) for c in new]
            scored, failures = evaluate_pairs(pairs, metrics, 16000, jobs=metric_jobs, progress=False) \
                if metrics else ([], [])
            for failure in failures:
                logger.warning("%s: %s (%s)", failure.file, failure.reason, failure.message)
            by_id = {result["file"]: result for result in scored}
            for cells in new:
                table.append({**cells, **{m: by_id.get(cells["ID"], {}).get(m) for m in metrics}})
        table.finalize(order)
        added[split] = len(todo)
    return added


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("label_folder", help="folder of train.csv, valid.csv, test.csv (with clean_wav)")
    parser.add_argument("--enhancer", action="append", type=_named_source, default=[],
                        help="NAME=SOURCE: a hub folder or id of an enhancer (repeatable)")
    parser.add_argument("--peers", nargs="*", default=[], help="peers of benchmarks/peer_enhancers.py")
    parser.add_argument("--max_rows", type=int, default=None, help="source rows per split (default all)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--metrics", nargs="*", default=None, help=f"labels computed (default {' '.join(LABEL_METRICS)})")
    parser.add_argument("--systems", nargs="*", default=None, help="systems of the rows enhanced (noisy degraded)")
    parser.add_argument("--splits", nargs="*", default=list(SPLITS))
    parser.add_argument("--metric_jobs", type=int, default=2,
                        help="metric worker processes (default 2, as the label preparation)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    systems = load_systems(args.enhancer, args.peers)
    if not systems:
        parser.error("no enhancer to run (give --enhancer NAME=SOURCE or --peers with installed packages)")
    added = add_enhancer_outputs(args.label_folder, systems, args.max_rows, args.seed, args.metrics, args.systems,
                                 args.metric_jobs, args.splits)
    print(", ".join(f"{split}: {count} rows added" for split, count in added.items()))
    return added


if __name__ == "__main__":
    main()
