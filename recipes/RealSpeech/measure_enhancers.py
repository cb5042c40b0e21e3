#!/usr/bin/env python3
"""Measures several enhancers and the unprocessed input on the real-speech test sets, in one run.

    python recipes/RealSpeech/measure_enhancers.py --testsets data/real_test --jobs 1 \\
        --output results/enhreal/measure \\
        --enhancer shipped=speechbrain_sqe/pretrained/vq_enhancer \\
        --enhancer real=results/enhreal/real_realism/hub

For each set (``speakers``, ``cross_source``) and each enhancer (any enhancer hub folder, loaded
with ``load_model``; its own default ``mix`` unless ``--mix`` is given, where it has that option):
the noisy inputs are enhanced, then PESQ (wide band), STOI and DNSMOS OVRL of the input and of
every output are measured against the clean reference of ``--reference``, as
``recipes/RealSpeech/measure_models.py`` does for one enhancer; plus the output level (median
least-squares gain of the output against the reference). Means over all pairs (-5..20 dB) and per
SNR.

``--reference``: ``reverb`` (default) the **reverberant** clean speech ``clean_reverb_wav`` (the
speech as it is in the mixture: the VQ enhancer does not dereverberate, so it is not charged for
the room); ``dry`` the dry clean speech ``clean_wav`` (the target of an enhancer that
dereverberates, ``Enhancer.DEREVERBERATES``: BSSE); ``auto`` both when any enhancer dereverberates
(EVERY system, the input included, against each: one table per reference, ``<set>`` and ``<set>
(dry reference)``; read a dereverberating enhancer against the dry one and the others against the
reverberant one), else ``reverb``.

Every metric value is kept in a cache (``--cache``, a JSON file) under the metric name, the two
paths (the reference's too: a dry and a reverberant score never mix) and the SHA-1 of their
contents: the input's scores are computed once for all enhancers and
all later runs, and an enhancer whose outputs did not change is not re-scored. A changed file
changes its key, so a cached value is always the value of the file as it is now.

Writes ``<output>/<set>_<enhancer>.csv`` (per file; ``<set>_dry_<enhancer>.csv`` against the dry
reference), ``summary.json`` and ``summary.md``; prints the markdown.
"""

import argparse
import csv
import hashlib
import json
import os
import sys
import time

import numpy as np

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.inference.batch_enhancement import enhance_files
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.metrics.registry import METRICS
from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure_models import (  # (shared with the single-enhancer script)
    ls_gain,
    read_test_set,
)

SETS = ("speakers", "cross_source")
#: The ``--reference`` kinds: the manifest column of each.
REFERENCES = {"reverb": "clean_reverb_wav", "dry": "clean_wav"}
METRIC_NAMES = ["pesq_wb", "stoi", "dnsmos_ovrl"]
INPUT = "noisy input"


_DIGESTS = {}  # (path, size, mtime) -> digest, for this process


def file_digest(path):
    """SHA-1 of a file's bytes (memoized per path, size and modification time).

    Arguments
    ---------
    path : str
        Any file.

    Returns
    -------
    str
        The hex digest.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> with open(path, "wb") as handle:
    ...     _ = handle.write(b"abc")
    >>> file_digest(path)
    'a9993e364706816aba3e25717850c26c9cd0d89d'
    """
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha1()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


class MetricCache:
    """Metric values of file pairs, kept in a JSON file and keyed by the files' contents.

    A reference-free metric (DNSMOS) is keyed by the degraded file alone, so the same noisy file
    is scored once whatever reference it is paired with.

    Arguments
    ---------
    path : str, optional
        The JSON file (read if it exists, written by :meth:`save`); ``None``: in memory only.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.1
    >>> save_audio(os.path.join(root, "ref.wav"), x); save_audio(os.path.join(root, "deg.wav"), x / 2)
    >>> cache = MetricCache(os.path.join(root, "cache.json"))
    >>> pair = Pair("a", os.path.join(root, "ref.wav"), os.path.join(root, "deg.wav"))
    >>> round(cache.scores([pair], ["stoi"], progress=False)["a"]["stoi"], 3), cache.computed
    (1.0, 1)
    >>> cache.save(); again = MetricCache(os.path.join(root, "cache.json"))
    >>> round(again.scores([pair], ["stoi"], progress=False)["a"]["stoi"], 3), again.computed
    (1.0, 0)
    """

    def __init__(self, path=None):
        self.path = path
        self.values = {}
        self.computed = 0
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                self.values = json.load(handle)

    def key(self, metric, pair):
        """The cache key of ``metric`` on ``pair`` (contents, not only paths)."""
        deg = f"{os.path.abspath(pair.deg)}@{file_digest(pair.deg)}"
        if not METRICS[metric].needs_reference:
            return f"{metric}|{deg}"
        return f"{metric}|{os.path.abspath(pair.ref)}@{file_digest(pair.ref)}|{deg}"

    def scores(self, pairs, metrics, jobs=1, progress=True):
        """``{pair id: {metric: value}}``, computing (in one pass per set of missing metrics) only
        what the cache lacks; a metric that fails is stored as NaN."""
        missing = {}
        for pair in pairs:
            todo = tuple(m for m in metrics if self.key(m, pair) not in self.values)
            if todo:
                missing.setdefault(todo, []).append(pair)
        for todo, group in missing.items():
            rows, failures = evaluate_pairs(group, list(todo), jobs=jobs, progress=progress)
            by_id = {row["file"]: row for row in rows}
            for pair in group:
                row = by_id.get(pair.file, {})
                for metric in todo:
                    value = row.get(metric)
                    self.values[self.key(metric, pair)] = float("nan") if value is None else float(value)
                    self.computed += 1
            if failures:
                print(f"{len(failures)} metric failures, first: {failures[:2]}", file=sys.stderr)
            self.save()
        return {pair.file: {m: self.values[self.key(m, pair)] for m in metrics} for pair in pairs}

    def save(self):
        """Writes the cache file (atomically), if there is one."""
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(self.values, handle)
            os.replace(self.path + ".tmp", self.path)


def mean(values):
    """Mean of the finite values (NaN if none).

    Example
    -------
    >>> mean([1.0, 2.0, float("nan")])
    1.5
    """
    values = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(np.mean(values)) if values else float("nan")


def summarize(table, metrics):
    """Means over all rows and per SNR of each metric, and the median output level.

    Arguments
    ---------
    table : list of dict
        Per-file rows with ``snr``, the metrics and (for an enhancer) ``gain``.
    metrics : list of str
        The metric columns.

    Returns
    -------
    dict
        ``pairs``, each metric's mean, ``gain_median`` (when rows have a gain) and ``by_snr``.

    Example
    -------
    >>> rows = [{"snr": "0.0", "stoi": 0.5, "gain": 0.9}, {"snr": "5.0", "stoi": 0.7, "gain": 1.1}]
    >>> s = summarize(rows, ["stoi"])
    >>> round(s["stoi"], 3), round(s["gain_median"], 3), s["by_snr"]["5.0"]["stoi"]
    (0.6, 1.0, 0.7)
    """
    summary = {"pairs": len(table)}
    summary.update({name: mean(row[name] for row in table) for name in metrics})
    if table and "gain" in table[0]:
        summary["gain_median"] = float(np.median([row["gain"] for row in table]))
    snrs = sorted({row["snr"] for row in table}, key=float)
    summary["by_snr"] = {snr: {name: mean(row[name] for row in table if row["snr"] == snr) for name in metrics}
                         for snr in snrs}
    return summary


def reference_kinds(choice, enhancers):
    """The references a run measures against, one table each (``--reference``).

    Arguments
    ---------
    choice : str
        ``reverb``, ``dry`` or ``auto``.
    enhancers : dict
        ``{name: loaded enhancer}``.

    Returns
    -------
    list of str
        ``[choice]``; for ``auto``, ``["reverb", "dry"]`` when an enhancer dereverberates, else
        ``["reverb"]``.

    Example
    -------
    >>> class Keeps: DEREVERBERATES = False
    >>> class Removes: DEREVERBERATES = True
    >>> reference_kinds("auto", {"vq": Keeps()}), reference_kinds("auto", {"vq": Keeps(), "bsse": Removes()})
    (['reverb'], ['reverb', 'dry'])
    >>> reference_kinds("dry", {"vq": Keeps()})
    ['dry']
    """
    if choice != "auto":
        return [choice]
    return ["reverb", "dry"] if any(e.DEREVERBERATES for e in enhancers.values()) else ["reverb"]


def table_name(set_name, kind):
    """The label of a set's table against the ``kind`` reference.

    Example
    -------
    >>> table_name("speakers", "reverb"), table_name("speakers", "dry")
    ('speakers', 'speakers (dry reference)')
    """
    return set_name if kind == "reverb" else f"{set_name} ({kind} reference)"


def enhance_set(rows, enhancers, output, mix=None):
    """Every enhancer on one test set's noisy inputs.

    Arguments
    ---------
    rows : list of dict
        The set's manifest rows (``ID``, ``noisy_wav``).
    enhancers : dict
        ``{name: loaded enhancer}``.
    output : str
        Folder of the enhanced files (``<output>/<name>/<ID>.wav``).
    mix : float, optional
        Blend with the input for every enhancer with a ``mix`` option (default: each one's own).

    Returns
    -------
    tuple
        ``({system: {ID: path}}, {system: options and enhance_seconds})``, the input first.
    """
    systems = {INPUT: {row["ID"]: row["noisy_wav"] for row in rows}}
    options = {}
    for name, enhancer in enhancers.items():
        # mix only where the enhancer has that option (any Enhancer loads: VQ enhancer, BSSE...)
        options[name] = ({"mix": enhancer.hparams.mix if mix is None else mix} if "mix" in enhancer.OPTIONS else {})
        outputs = {row["ID"]: os.path.join(output, name, row["ID"] + ".wav") for row in rows}
        start = time.time()
        _, failures = enhance_files(enhancer, [row["noisy_wav"] for row in rows],
                                    [outputs[row["ID"]] for row in rows], **options[name])
        if failures:
            raise SystemExit(f"{name} could not enhance: {failures[:3]}")
        options[name]["enhance_seconds"] = round(time.time() - start, 1)
        systems[name] = outputs
    return systems, options


def score_systems(rows, systems, options, cache, metrics, jobs, reference="clean_reverb_wav"):
    """The input and every enhancer's outputs on one test set, against one reference column.

    Arguments
    ---------
    rows : list of dict
        The set's manifest rows (``ID``, ``snr``, ``reverb``, ``noise_type`` and ``reference``).
    systems, options : dict
        From :func:`enhance_set`.
    cache : MetricCache
        The metric values.
    metrics : list of str
        Metric names.
    jobs : int
        Metric worker processes.
    reference : str
        Manifest column of the clean reference (``clean_reverb_wav`` or ``clean_wav``).

    Returns
    -------
    tuple
        ``({system: summary}, {system: per-file rows})``, the input first.
    """
    reference = {row["ID"]: row[reference] for row in rows}
    summaries, tables = {}, {}
    for name, files in systems.items():
        pairs = [Pair(uid, reference[uid], files[uid]) for uid in files]
        scores = cache.scores(pairs, metrics, jobs)
        table = []
        for row in rows:
            entry = {"ID": row["ID"], "snr": row["snr"], "reverb": row["reverb"], "noise_type": row["noise_type"]}
            entry.update(scores[row["ID"]])
            if name != INPUT:
                entry["gain"] = ls_gain(load_audio(files[row["ID"]], 16000).numpy(),
                                        load_audio(reference[row["ID"]], 16000).numpy())
            table.append(entry)
        summaries[name] = {**summarize(table, metrics), **options.get(name, {})}
        tables[name] = table
    return summaries, tables


def measure_set(rows, enhancers, output, cache, metrics, jobs, mix=None, reference="clean_reverb_wav"):
    """The input and every enhancer on one test set, against one reference column
    (:func:`enhance_set` then :func:`score_systems`).

    Returns
    -------
    tuple
        ``({system: summary}, {system: per-file rows})``, the input first.
    """
    systems, options = enhance_set(rows, enhancers, output, mix)
    return score_systems(rows, systems, options, cache, metrics, jobs, reference)


def _f(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def format_markdown(results, metrics):
    """Tables: means per set and system, then each metric per SNR.

    Example
    -------
    >>> s = {"pairs": 1, "stoi": 0.5, "by_snr": {"0.0": {"stoi": 0.5}}}
    >>> print(format_markdown({"speakers": {"noisy input": s}}, ["stoi"]).splitlines()[2])
    | speakers | noisy input | 0.500 |  |
    """
    lines = ["| test set | system | " + " | ".join(metrics) + " | level (LS gain, median) |",
             "|---|---|" + "---|" * len(metrics) + "---|"]
    for set_name, systems in results.items():
        for system, s in systems.items():
            mix = f" (mix {s['mix']:g})" if "mix" in s else ""
            cells = " | ".join(_f(s[m]) for m in metrics)
            level = _f(s["gain_median"]) if "gain_median" in s else ""
            lines.append(f"| {set_name} | {system}{mix} | {cells} | {level} |")
    for metric in metrics:
        for set_name, systems in results.items():
            snrs = list(next(iter(systems.values()))["by_snr"])
            lines += ["", f"{metric} per SNR, {set_name}:", "",
                      "| system | " + " | ".join(f"{float(snr):g} dB" for snr in snrs) + " |",
                      "|---|" + "---|" * len(snrs)]
            for system, s in systems.items():
                lines.append(f"| {system} | " + " | ".join(_f(s["by_snr"][snr][metric]) for snr in snrs) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path, table):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def _named(value):
    name, sep, source = value.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=HUB_FOLDER, got {value!r}")
    return name, source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testsets", default="data/real_test", help="folder of speakers.csv and cross_source.csv")
    parser.add_argument("--output", required=True, help="report folder")
    parser.add_argument("--enhancer", type=_named, action="append", default=[],
                        help="NAME=HUB_FOLDER of an enhancer, any (VQ, BSSE...), loaded with load_model "
                             "(repeat for several)")
    parser.add_argument("--reference", default="reverb", choices=("reverb", "dry", "auto"),
                        help="clean reference: reverb = clean_reverb_wav, dry = clean_wav, auto = both when "
                             "an enhancer dereverberates (one table each), else reverb (default: %(default)s)")
    parser.add_argument("--mix", type=float, default=None, help="mix of every enhancer (default: each one's own)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--metrics", nargs="+", default=METRIC_NAMES)
    parser.add_argument("--cache", default=None, help="metric cache (JSON; default <output>/metric_cache.json)")
    parser.add_argument("--jobs", type=int, default=1, help="metric worker processes")
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each set (a quick check)")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    cache = MetricCache(args.cache or os.path.join(args.output, "metric_cache.json"))
    enhancers = {name: load_model(source, task="enhancement", savedir=os.path.join(args.output, "models", name))
                 for name, source in args.enhancer}
    kinds = reference_kinds(args.reference, enhancers)
    results, references = {}, {}
    for set_name in args.sets:
        _, rows = read_test_set(args.testsets, set_name, args.limit)
        systems, options = enhance_set(rows, enhancers, os.path.join(args.output, "enhanced", set_name), args.mix)
        for kind in kinds:
            label = table_name(set_name, kind)
            references[label] = REFERENCES[kind]
            results[label], tables = score_systems(rows, systems, options, cache, args.metrics, args.jobs,
                                                   REFERENCES[kind])
            prefix = set_name if kind == "reverb" else f"{set_name}_{kind}"
            for system, table in tables.items():
                _write_csv(os.path.join(args.output, f"{prefix}_{system.replace(' ', '_')}.csv"), table)
    report = {"command": " ".join(["python", *sys.argv]), "sources": dict(args.enhancer),
              "dereverberating": [name for name, e in enhancers.items() if e.DEREVERBERATES],
              "references": references, "computed_metric_values": cache.computed, "sets": results}
    with open(os.path.join(args.output, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    markdown = format_markdown(results, args.metrics)
    with open(os.path.join(args.output, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
