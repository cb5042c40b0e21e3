"""The VQ enhancer (and any other enhancer) beside what a user would pick instead: noisereduce, a
Wiener filter, RNNoise.

    python benchmarks/bench_enhance_peers.py [--model HUB] [--mix 0.2] [--limit N] [--out FOLDER]
    python benchmarks/bench_enhance_peers.py --manifest data/real_test/speakers.csv \
        data/real_test/cross_source.csv --out results/bench_enhance_peers/real_test
    python benchmarks/bench_enhance_peers.py --enhancer bsse=results/bsse/cross_frozen/1234/hub \
        --manifest data/real_test/speakers.csv --out results/bench_enhance_peers/bsse

Systems: ``noisy`` (the input unchanged), ``vq`` (the enhancer of ``--model``, by default the
shipped VQ enhancer, with its default ``mix``), ``vq+mixR`` for each ``--mix R``, one system per
``--enhancer NAME=SOURCE`` (any enhancer hub folder or hub id, loaded with
:func:`speechbrain_sqe.inference.hub.load_model` by the interface it names: the VQ enhancer, BSSE...;
its default options), and the peers of ``benchmarks/peer_enhancers.py`` (``noisereduce``,
``wiener``, ``rnnoise``; ``pip install -e .[bench]``). ``--no-vq`` leaves ``vq`` out.

Sets:

- ``embedded``: the embedded corpus test pairs (``--embedded``/test.csv), intrusive metrics
  (pesq_wb, stoi, estoi, si_sdr, csig, cbak, covl) plus dnsmos_ovrl where DNSMOS is installed;
- ``real_mix``: real speech mixed with real noise (``--real-mix``/test.csv, written by
  ``recipes/VQScore/prepare_real_mix.py`` from ``--shared-real`` when absent), same metrics;
- ``real_noisy``: real noisy recordings without a clean reference (``--real-noisy``),
  no-reference metrics only (dnsmos_ovrl, dnsmos_sig, dnsmos_bak);
- any pairs manifest given with ``--manifest`` (e.g. the real-speech test sets
  ``data/real_test/speakers.csv`` and ``cross_source.csv`` of
  ``python -m speechbrain_sqe.dataio.real_testsets``), a set named after the file (``speakers``),
  same metrics as ``embedded``. Given alone, ``--manifest`` runs only those sets (add ``--sets``
  for more).

The reference of the intrusive metrics (``--reference``, default ``auto``) is the manifest's
``clean_reverb_wav`` where it has one (the speech as it is in the mixture: the real test sets; an
enhancer that does not dereverberate is not charged for the room), else ``clean_wav``. When a
system dereverberates (its interface's ``Enhancer.DEREVERBERATES``, e.g. BSSE, trained to output the
dry clean speech) and the manifest has both columns, ``auto`` scores EVERY system against both
references, one table each: ``<set>`` against ``clean_reverb_wav`` (as without it) and
``<set>_dry`` against ``clean_wav`` (the dry speech, that system's target). Each table compares all
systems on one reference; read a dereverberating system in ``<set>_dry`` and the others in
``<set>``, or all of them in both. A named ``--reference`` column gives one table per set.

Every set also gets a ``vqscore`` column (``VQScore``, no reference). Each system's real-time
factor is its enhancement wall time over the audio duration (file reading and writing excluded,
one warm-up call first), with ``--threads`` torch and BLAS threads.

Writes, under ``--out``: the enhanced files ``<set>/<system>/<ID>.wav``, ``peers.md`` (the
tables, also printed), ``peers_<set>.csv`` (one row per file and system; ``peers_<set>_dry.csv``
for the table against the dry reference), failures where any (``peers_<table>_failures.csv``) and ``peers_spectrograms.png`` (one embedded test file, clean,
noisy and every system, PESQ in the titles).
"""

import argparse
import csv
import importlib.util
import math
import os
import shlex
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_EMBEDDED = os.path.join(REPO, "data", "embedded", "train30min_seed1234")  # hparams/vq_enhance.yaml's
DEFAULT_REAL_MIX = os.path.join(REPO, "data", "real_mix")
DEFAULT_SHARED_REAL = os.path.join(os.path.dirname(REPO), "shared", "data", "real")
DEFAULT_OUT = os.path.join("results", "bench_enhance_peers")
PREPARE_REAL_MIX = os.path.join(REPO, "recipes", "VQScore", "prepare_real_mix.py")

SAMPLE_RATE = 16000
SETS = ("embedded", "real_mix", "real_noisy")
#: Metrics of the sets with a clean reference (dnsmos_ovrl is added where DNSMOS runs).
INTRUSIVE_METRICS = ["pesq_wb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl"]
#: Metrics of the set without a reference (where DNSMOS runs).
NOREF_METRICS = ["dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"]
#: Manifest columns that can be the clean reference (``--reference``); ``auto`` takes the first present.
REFERENCE_COLUMNS = ("clean_reverb_wav", "clean_wav")
#: Manifest columns copied into the per-file CSV when present.
CONDITION_COLUMNS = ["snr", "noise_type", "reverb"]
#: Decimals shown per metric in the tables.
DIGITS = {"si_sdr": 2}
#: System names of the peers (``peer_enhancers.PEERS``; written out so that parsing imports nothing).
PEER_NAMES = ("noisereduce", "wiener", "rnnoise")
#: Suffix of the extra table of a set scored against another reference (see the module docstring).
REFERENCE_SUFFIX = {"clean_wav": "dry", "clean_reverb_wav": "reverb"}


def load_peers():
    """Imports ``benchmarks/peer_enhancers.py`` (``benchmarks`` is not a package).

    Returns
    -------
    module
        The ``peer_enhancers`` module.
    """
    module = sys.modules.get("peer_enhancers")
    if module is None:
        spec = importlib.util.spec_from_file_location("peer_enhancers", os.path.join(HERE, "peer_enhancers.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["peer_enhancers"] = module
        spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    """Reads the command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="enhancer hub folder or id of the system 'vq' (default: the VQ enhancer shipped "
                             "in the package)")
    parser.add_argument("--no-vq", action="store_true", help="leave the system 'vq' (and --mix) out")
    parser.add_argument("--enhancer", type=named_source, action="append", default=[], metavar="NAME=SOURCE",
                        help="also run this enhancer hub folder or hub id (any Enhancer, loaded with "
                             "load_model; its default options) as system NAME (repeatable)")
    parser.add_argument("--mix", type=float, action="append", default=[], metavar="R",
                        help="also run the VQ enhancer with this fraction of the input kept, as system "
                             "'vq+mixR' (repeatable)")
    parser.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                        help="peer enhancers to run (default: noisereduce wiener rnnoise; missing packages "
                             "are skipped with a message); --peers with no name runs none")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=None,
                        help="sets to run (default: all, or none when --manifest is given)")
    parser.add_argument("--manifest", nargs="+", default=[], metavar="CSV",
                        help="pairs manifests (ID, clean_wav, noisy_wav; optional clean_reverb_wav, snr, "
                             "noise_type, reverb) run as sets named after the file, e.g. "
                             "data/real_test/speakers.csv data/real_test/cross_source.csv")
    parser.add_argument("--reference", default="auto", choices=("auto",) + REFERENCE_COLUMNS,
                        help="manifest column of the clean reference: auto = clean_reverb_wav where the "
                             "manifest has it, else clean_wav, and when a system dereverberates (BSSE) every "
                             "system also against clean_wav, as table <set>_dry (default: %(default)s)")
    parser.add_argument("--embedded", default=DEFAULT_EMBEDDED, metavar="DATA_FOLDER",
                        help="embedded corpus folder holding test.csv (default: %(default)s)")
    parser.add_argument("--real-mix", default=DEFAULT_REAL_MIX, metavar="FOLDER",
                        help="real speech + real noise pairs folder holding test.csv; prepared from "
                             "--shared-real when absent (default: %(default)s)")
    parser.add_argument("--shared-real", default=DEFAULT_SHARED_REAL, metavar="FOLDER",
                        help="the shared real recordings (clean/, noise/, rirs/, real_noisy/) "
                             "(default: %(default)s)")
    parser.add_argument("--real-noisy", default=None, metavar="FOLDER",
                        help="real noisy recordings without reference (default: SHARED_REAL/real_noisy)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N files of each set only")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--example-id", default=None,
                        help="embedded test ID drawn in peers_spectrograms.png (default: the first "
                             "5 dB or 0 dB file run)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch and BLAS threads while enhancing (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="metric worker processes (default: %(default)s)")
    parser.add_argument("--metrics", nargs="+", default=INTRUSIVE_METRICS, metavar="NAME",
                        help="metrics of the sets with a reference (default: %(default)s; dnsmos_ovrl "
                             "is added where DNSMOS runs)")
    parser.add_argument("--no-dnsmos", action="store_true", help="leave DNSMOS out")
    parser.add_argument("--no-vqscore", action="store_true", help="leave the VQScore column out")
    parser.add_argument("--vqscore-model", default=None,
                        help="VQScore hub folder or id (default: VQScore.DEFAULT_SOURCE)")
    parser.add_argument("--no-figure", action="store_true", help="do not draw peers_spectrograms.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.sets is None:
        args.sets = [] if args.manifest else list(SETS)
    names = [manifest_set_name(path) for path in args.manifest]
    clash = sorted({name for name in names if names.count(name) > 1 or name in args.sets})
    if clash:
        parser.error(f"--manifest: set names {clash} given twice (the set is named after the file)")
    if args.real_noisy is None:
        args.real_noisy = os.path.join(args.shared_real, "real_noisy")
    from speechbrain_sqe.metrics.registry import resolve_metrics

    try:
        args.metrics = resolve_metrics(args.metrics)
    except ValueError as error:
        parser.error(str(error))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    for mix in args.mix:
        if not 0.0 <= mix <= 1.0:
            parser.error(f"--mix {mix}: the fraction kept must be within [0, 1]")
    if args.no_vq and (args.mix or args.model):
        parser.error("--no-vq leaves the system 'vq' out: --model and --mix do not apply")
    taken = {"noisy"} | ({"vq"} | {mix_name(mix) for mix in args.mix} if not args.no_vq else set())
    names = [name for name, _ in args.enhancer]
    clash = sorted({name for name in names if names.count(name) > 1 or name in taken or name in PEER_NAMES})
    if clash:
        parser.error(f"--enhancer: system names {clash} taken (by another --enhancer, a built-in system or a peer)")
    return args


def named_source(value):
    """``NAME=SOURCE`` of ``--enhancer``, as a ``(name, source)`` pair.

    Example
    -------
    >>> named_source("bsse=results/bsse/hub")
    ('bsse', 'results/bsse/hub')
    """
    name, sep, source = value.partition("=")
    if not sep or not name or not source or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE (a hub folder or id; no '/' in NAME), got {value!r}")
    return name, source


def mix_name(mix):
    """System name of the VQ enhancer with a given mix: ``vq+mix0.2``."""
    return f"vq+mix{mix:g}"


def build_systems(args, log=print):
    """The systems to compare, in table order.

    Arguments
    ---------
    args : argparse.Namespace
        From :func:`parse_args`.
    log : callable
        Where messages go (skipped peers).

    Returns
    -------
    tuple
        ``(systems, notes, dereverberating)``: name to ``function(wav [time]) -> wav [time]`` at
        16 kHz, name to a description of how it is called, and the names of the systems that
        dereverberate (``Enhancer.DEREVERBERATES``).
    """
    from speechbrain_sqe.inference.enhancement import VQ_ENHANCER_MODEL

    peers = load_peers()
    systems = {"noisy": lambda wav: wav.clone()}
    notes = {"noisy": "the input, unchanged"}
    dereverberating = []
    if not args.no_vq:
        source = args.model or VQ_ENHANCER_MODEL  # 'vq': the shipped VQ enhancer (no longer sqe's default)
        if args.model is None and not os.path.exists(os.path.join(source, "hyperparams.yaml")):
            raise SystemExit(f"no trained VQ enhancer at {source}; pass --model HUB_FOLDER")
        enhancer = load_enhancer(source)
        if args.mix and "mix" not in enhancer.OPTIONS:
            raise SystemExit(f"--mix: {type(enhancer).__name__} ({source}) has no mix option")

        def vq(mix):
            return enhancement_function(enhancer, **({} if mix is None else {"mix": mix}))

        systems["vq"] = vq(None)
        default = f" mix={enhancer.hparams.mix:g}" if "mix" in enhancer.OPTIONS else " options"
        notes["vq"] = f"{type(enhancer).__name__}({source}), enhance_batch with the model's default{default}"
        if enhancer.DEREVERBERATES:
            dereverberating.append("vq")
        for mix in args.mix:
            systems[mix_name(mix)] = vq(mix)
            notes[mix_name(mix)] = f"{type(enhancer).__name__}, enhance_batch(mix={mix:g})"
            if enhancer.DEREVERBERATES:
                dereverberating.append(mix_name(mix))
    for name, source in args.enhancer:
        enhancer = load_enhancer(source)
        systems[name] = enhancement_function(enhancer)
        notes[name] = (f"{type(enhancer).__name__}({source}) loaded with load_model, enhance_batch with its "
                       "default options" + ("; dereverberates (trained on the dry clean speech)"
                                            if enhancer.DEREVERBERATES else ""))
        if enhancer.DEREVERBERATES:
            dereverberating.append(name)
    names = list(peers.PEERS) if args.peers is None else args.peers
    unknown = [name for name in names if name not in peers.PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {', '.join(peers.PEERS)}")
    status = peers.check_peers(names)
    versions = peers.peer_versions(names)
    described = {
        "noisereduce": "reduce_noise(y, sr=16000), defaults (non-stationary gate)",
        "wiener": "pyroomacoustics.denoise.apply_iterative_wiener, defaults "
                  + ", ".join(f"{k}={v}" for k, v in peers.WIENER_PARAMS.items())
                  + "; input peak-normalised, delay removed",
        "rnnoise": "RNNoise C library (pyrnnoise), 16->48->16 kHz with torchaudio resample, 20 ms delay removed",
    }
    for name in names:
        if status[name]:
            log(f"skipping peer {name}: {status[name]}")
            continue
        systems[name] = peers.PEERS[name]
        notes[name] = f"{versions[name]}: {described[name]}"
    return systems, notes, dereverberating


def enhancement_function(enhancer, **options):
    """``function(wav [time]) -> wav [time]`` of a loaded enhancer (``options``: its method options)."""
    return lambda wav: enhancer.enhance_batch(wav.unsqueeze(0), **options)[0]


def load_enhancer(source):
    """Any enhancer hub folder or hub id, by the interface it names (refused: another task, a rate
    other than 16 kHz)."""
    from speechbrain_sqe.inference.hub import InterfaceError, load_model

    try:
        enhancer = load_model(source, task="enhancement")
    except InterfaceError as error:
        raise SystemExit(str(error)) from None
    if enhancer.sample_rate != SAMPLE_RATE:
        raise SystemExit(f"{source}: the enhancer works at {enhancer.sample_rate} Hz; this benchmark at {SAMPLE_RATE} Hz")
    return enhancer


def manifest_set_name(path):
    """The set name of a ``--manifest`` file: its name without extension.

    Example
    -------
    >>> manifest_set_name("data/real_test/cross_source.csv")
    'cross_source'
    """
    return os.path.splitext(os.path.basename(path))[0]


def read_manifest(path, limit=None, reference="clean_wav"):
    """Rows of a pairs manifest (``ID, clean_wav, noisy_wav`` and optional conditions).

    Arguments
    ---------
    path : str
        The CSV.
    limit : int, optional
        Keep the first rows only.
    reference : str
        Column of the clean reference, copied into each row's ``reference`` (what the intrusive
        metrics compare with); ``auto``: ``clean_reverb_wav`` where the manifest has it, else
        ``clean_wav``.

    Returns
    -------
    list of dict
        The rows, with ``reference`` added.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.csv")
    >>> _ = open(path, "w").write("ID,clean_wav,clean_reverb_wav,noisy_wav\\nu,c.wav,cr.wav,n.wav\\n")
    >>> [row["reference"] for row in (read_manifest(path)[0], read_manifest(path, reference="auto")[0])]
    ['c.wav', 'cr.wav']
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0] if rows else {})
    if reference == "auto":
        reference = next((column for column in REFERENCE_COLUMNS if column in columns), "clean_wav")
    missing = {"ID", "clean_wav", "noisy_wav", reference} - columns
    if rows and missing:
        raise SystemExit(f"{path}: missing columns {sorted(missing)}")
    rows = rows[:limit] if limit else rows
    for row in rows:
        row["reference"] = row[reference]
    return rows


def reference_column(path, reference="auto"):
    """The column ``read_manifest(path, reference=reference)`` takes as the reference."""
    return reference_columns(path, reference)[0]


def reference_columns(path, reference="auto", dereverberating=()):
    """The reference columns a manifest's set is scored against, one table each, the main one first.

    Arguments
    ---------
    path : str
        The pairs manifest.
    reference : str
        ``--reference``: a column, or ``auto``.
    dereverberating : list of str
        The systems that dereverberate.

    Returns
    -------
    list of str
        A named column alone; for ``auto``, ``clean_reverb_wav`` where the manifest has it, else
        ``clean_wav``, and, when a system dereverberates and the manifest has both columns, both
        (``clean_reverb_wav`` first: the main table stays what it is without such a system).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.csv")
    >>> _ = open(path, "w").write("ID,clean_wav,clean_reverb_wav,noisy_wav\\n")
    >>> reference_columns(path), reference_columns(path, dereverberating=["bsse"])
    (['clean_reverb_wav'], ['clean_reverb_wav', 'clean_wav'])
    >>> reference_columns(path, "clean_wav", dereverberating=["bsse"])
    ['clean_wav']
    """
    if reference != "auto":
        return [reference]
    with open(path, newline="", encoding="utf-8") as handle:
        columns = set(next(csv.reader(handle), []))
    present = [column for column in REFERENCE_COLUMNS if column in columns] or ["clean_wav"]
    return present if dereverberating else present[:1]


def reference_note(set_name, reference, references, dereverberating):
    """The line under a table of a set scored against several references: what it compares.

    Example
    -------
    >>> refs = ["clean_reverb_wav", "clean_wav"]
    >>> reference_note("speakers", "clean_wav", refs, ["bsse"])[:60]
    'Every system against clean_wav (the dry speech: the target o'
    """
    names = ", ".join(dereverberating)
    if reference == "clean_wav":
        others = [reference_table_name(set_name, column, main=index == 0)
                  for index, column in enumerate(references) if column != reference]
        return (f"Every system against clean_wav (the dry speech: the target of {names}, trained to "
                f"dereverberate). The other systems keep the room: their own reference is in "
                f"`{'`, `'.join(others)}`.")
    dry = [reference_table_name(set_name, column, main=index == 0)
           for index, column in enumerate(references) if column == "clean_wav"]
    return (f"Every system against {reference}. {names} dereverberate(s) (trained to output the dry "
            f"speech): its own reference is clean_wav, in `{'`, `'.join(dry)}`.")


def reference_table_name(set_name, column, main=True):
    """Name of a set's table against ``column``: the set's name for its main table, else the set's
    name and the reference's kind.

    Example
    -------
    >>> reference_table_name("speakers", "clean_reverb_wav"), reference_table_name("speakers", "clean_wav", False)
    ('speakers', 'speakers_dry')
    """
    return set_name if main else f"{set_name}_{REFERENCE_SUFFIX.get(column, column)}"


def list_noisy_folder(folder, limit=None):
    """Items for a folder of noisy recordings without reference (ID: name without extension)."""
    from speechbrain_sqe.dataio.files import find_audio_files

    items = [{"ID": os.path.splitext(name)[0].replace("/", "__"), "clean_wav": "", "noisy_wav": path}
             for name, path in find_audio_files(folder).items()]
    return items[:limit] if limit else items


def ensure_real_mix(args, log=print):
    """The real_mix manifest, prepared from ``--shared-real`` when absent; None to skip the set."""
    manifest = os.path.join(args.real_mix, "test.csv")
    if os.path.exists(manifest):
        return manifest
    if not os.path.isdir(os.path.join(args.shared_real, "clean")):
        log(f"skipping set real_mix: no {manifest} and no real recordings at {args.shared_real}")
        return None
    log(f"preparing {args.real_mix} from {args.shared_real} ({os.path.relpath(PREPARE_REAL_MIX)})")
    subprocess.run([sys.executable, PREPARE_REAL_MIX, "--real", args.shared_real, "--output", args.real_mix],
                   check=True, cwd=REPO)
    return manifest


def warm_up(systems):
    """Runs every system once on 1 s of noise, so one-off costs stay out of the timings."""
    wav = torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(0)) * 0.05
    for function in systems.values():
        function(wav)


def enhance_set(set_name, items, systems, out, progress=True):
    """Enhances every item with every system; writes ``out/<set>/<system>/<ID>.wav``.

    Arguments
    ---------
    set_name : str
        The set (output subfolder).
    items : list of dict
        ``ID`` and ``noisy_wav`` (and optionally ``clean_wav``).
    systems : dict
        Name to enhancement function.
    out : str
        The output folder.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``(system, ID)`` to ``{"path", "duration_s", "enhance_s"}``.
    """
    from tqdm import tqdm

    from speechbrain_sqe.dataio.audio import load_audio, save_audio

    outputs = {}
    bar = tqdm(total=len(items) * len(systems), desc=f"enhance {set_name}", unit="file",
               disable=not progress, dynamic_ncols=True)
    with bar:
        for item in items:
            wav = load_audio(item["noisy_wav"], SAMPLE_RATE)
            duration = wav.shape[0] / SAMPLE_RATE
            for name, function in systems.items():
                bar.set_postfix_str(name)
                start = time.perf_counter()
                enhanced = function(wav)
                elapsed = time.perf_counter() - start
                if enhanced.shape != wav.shape:
                    raise RuntimeError(f"{name} changed the shape {tuple(wav.shape)} -> {tuple(enhanced.shape)}")
                path = os.path.join(out, set_name, name, f"{item['ID']}.wav")
                save_audio(path, enhanced, SAMPLE_RATE)
                outputs[(name, item["ID"])] = {"path": path, "duration_s": duration, "enhance_s": elapsed}
                bar.update(1)
    return outputs


def score_set(set_name, items, systems, outputs, metrics, jobs, scorer=None, progress=True, known=None):
    """Scores every enhanced file: the runner's metrics, and VQScore when ``scorer`` is given.

    Arguments
    ---------
    known : dict, optional
        Scores of the same outputs against another reference (``(system, ID)`` to values): their
        reference-free values (DNSMOS, VQScore) are taken from it, not computed again.

    Returns
    -------
    tuple
        ``(scores, failures)``: ``(system, ID)`` to metric values, and the runner's failures.
    """
    from tqdm import tqdm

    from speechbrain_sqe.metrics.registry import METRICS
    from speechbrain_sqe.metrics.runner import Pair, evaluate_pairs

    clean = {item["ID"]: item.get("reference") or item.get("clean_wav") or None for item in items}
    scores = {key: {} for key in outputs}
    failures = []
    if known is not None:
        free = [metric for metric in metrics if not METRICS[metric].needs_reference]
        free += ["vqscore"] if scorer is not None else []
        for key in outputs:
            scores[key].update({metric: known[key][metric] for metric in free if metric in known[key]})
        metrics = [metric for metric in metrics if metric not in free]
        scorer = None
    if metrics:
        pairs = [Pair(f"{name}/{uid}", clean[uid], outputs[(name, uid)]["path"])
                 for uid in clean for name in systems]
        rows, failures = evaluate_pairs(pairs, metrics, SAMPLE_RATE, jobs=jobs, progress=progress)
        for row in rows:
            name, uid = row["file"].split("/", 1)
            scores[(name, uid)].update({metric: row.get(metric, math.nan) for metric in metrics})
    if scorer is not None:
        for key in tqdm(list(outputs), desc=f"vqscore {set_name}", unit="file", disable=not progress,
                        dynamic_ncols=True):
            try:
                scores[key]["vqscore"] = scorer.score_file(outputs[key]["path"])
            except Exception as error:  # noqa: BLE001 - reported, never dropped
                from speechbrain_sqe.metrics.runner import Failure

                failures.append(Failure("/".join(key), "metric_error", f"vqscore: {error}"))
    return scores, failures


def _finite_mean(values):
    values = [float(v) for v in values if v is not None and v != "" and math.isfinite(float(v))]
    return (sum(values) / len(values), len(values)) if values else (math.nan, 0)


def summarize_set(items, systems, outputs, scores, columns):
    """One summary row per system: ``n`` (files scored), ``rtf`` and the mean of each column."""
    summary = []
    for name in systems:
        keys = [(name, item["ID"]) for item in items]
        enhance = sum(outputs[key]["enhance_s"] for key in keys)
        duration = sum(outputs[key]["duration_s"] for key in keys)
        scored = sum(1 for key in keys if scores[key]) if columns else len(keys)
        row = {"system": name, "n": scored, "rtf": enhance / duration}
        for column in columns:
            row[column] = _finite_mean(scores[key].get(column) for key in keys)[0]
        summary.append(row)
    return summary


def _number(value, digits=3):
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_table(summary, columns):
    """The summary as a Markdown table (rows: systems; columns: n, RTF, metric means)."""
    header = ["system", "n", "RTF"] + list(columns)
    body = [[row["system"], str(row["n"]), _number(row["rtf"], 4)]
            + [_number(row[column], DIGITS.get(column, 3)) for column in columns] for row in summary]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |"
             for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def format_by_condition(items, systems, scores, metric, condition="snr"):
    """Mean of one metric per system and condition value (e.g. SNR), as a Markdown table."""
    values = sorted({item.get(condition, "") for item in items if item.get(condition, "") != ""},
                    key=lambda v: (float(v) if _is_number(v) else math.inf, v))
    if not values or metric not in next(iter(scores.values()), {}):
        return ""
    summary = []
    for name in systems:
        row = {"system": name}
        for value in values:
            row[value] = _finite_mean(scores[(name, item["ID"])].get(metric)
                                      for item in items if item.get(condition) == value)[0]
        summary.append(row)
    header = ["system"] + [f"{condition} {value}" for value in values]
    body = [[row["system"]] + [_number(row[value], DIGITS.get(metric, 3)) for value in values] for row in summary]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |"
             for line in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def _is_number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def write_set_csv(path, items, systems, outputs, scores, columns):
    """One row per file and system: conditions, timing and every score."""
    conditions = [column for column in CONDITION_COLUMNS if any(column in item for item in items)]
    fields = ["system", "ID"] + conditions + ["duration_s", "enhance_s", "rtf", "path"] + list(columns)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for name in systems:
            for item in items:
                output = outputs[(name, item["ID"])]
                row = {"system": name, "ID": item["ID"], "path": output["path"],
                       "duration_s": round(output["duration_s"], 4),
                       "enhance_s": round(output["enhance_s"], 5),
                       "rtf": round(output["enhance_s"] / output["duration_s"], 5)}
                row.update({column: item.get(column, "") for column in conditions})
                for column in columns:
                    value = scores[(name, item["ID"])].get(column)
                    row[column] = "" if value is None or not math.isfinite(value) else repr(float(value))
                writer.writerow(row)


def choose_example(all_rows, processed, example_id=None):
    """The embedded row drawn in the figure: ``example_id``, else the first 5 or 0 dB file run."""
    if example_id is not None:
        for row in all_rows:
            if row["ID"] == example_id:
                return row
        raise SystemExit(f"--example-id {example_id}: not in the embedded test manifest")
    for pool in (processed, all_rows):
        for snr in (5.0, 0.0):
            for row in pool:
                if _is_number(row.get("snr")) and float(row["snr"]) == snr:
                    return row
    numbered = [row for row in processed if _is_number(row.get("snr"))]
    return min(numbered, key=lambda row: float(row["snr"])) if numbered else processed[0]


def _log_spectrogram(wav, n_fft=512, hop=128):
    spec = torch.stft(wav, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    return (20 * torch.log10(spec + 1e-8)).numpy()


def example_figure(row, systems, out, path, reuse=True):
    """Draws log spectrograms of one pair (clean, noisy, every system) side by side, PESQ in titles.

    Arguments
    ---------
    row : dict
        The manifest row (``ID``, ``clean_wav``, ``noisy_wav``, optionally ``snr``, ``noise_type``).
    systems : dict
        Name to enhancement function (used where the enhanced file was not written by this run).
    out : str
        The output folder holding ``embedded/<system>/<ID>.wav``.
    path : str
        The PNG to write.
    reuse : bool
        Read the enhanced files of this run from ``out`` (else enhance the noisy file again).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.metrics.intrusive import pesq

    clean = load_audio(row["clean_wav"], SAMPLE_RATE)
    noisy = load_audio(row["noisy_wav"], SAMPLE_RATE)
    panels = [("clean", clean, None)]
    for name, function in systems.items():
        written = os.path.join(out, "embedded", name, f"{row['ID']}.wav")
        wav = load_audio(written, SAMPLE_RATE, warn=False) if reuse and os.path.exists(written) else function(noisy)
        length = min(clean.shape[0], wav.shape[0])
        try:
            score = pesq(clean[:length], wav[:length], SAMPLE_RATE)
        except Exception:  # noqa: BLE001 - a title without PESQ is still a figure
            score = math.nan
        panels.append((name, wav, score))
    specs = [_log_spectrogram(wav) for _, wav, _ in panels]
    top = float(specs[0].max())
    duration = clean.shape[0] / SAMPLE_RATE
    figure, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.4), sharey=True)
    for axis, (name, _, score), spec in zip(np.atleast_1d(axes), panels, specs):
        image = axis.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                            extent=[0, duration, 0, SAMPLE_RATE / 2000])
        axis.set_title(name if score is None else f"{name}\nPESQ {_number(score, 2)}", fontsize=10)
        axis.set_xlabel("time (s)")
    np.atleast_1d(axes)[0].set_ylabel("frequency (kHz)")
    condition = " ".join(part for part in (f"{row.get('snr', '')} dB" if row.get("snr") else "",
                                           row.get("noise_type", "")) if part)
    figure.suptitle(f"{row['ID']} {condition}".strip(), fontsize=11, y=1.04)
    figure.colorbar(image, ax=list(np.atleast_1d(axes)), label="dB", shrink=0.8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main(argv=None):
    """Runs the benchmark; returns ``{set: summary rows}`` (also printed and written)."""
    args = parse_args(argv)
    from speechbrain_sqe.metrics.runner import limit_blas_threads, write_failures_csv

    torch.set_num_threads(args.threads)
    limit_blas_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*k-means initialisation.*")  # untrained test models
    progress = not args.no_progress
    os.makedirs(args.out, exist_ok=True)

    systems, notes, dereverberating = build_systems(args)
    warm_up(systems)

    dnsmos_ok = False
    if not args.no_dnsmos:
        from speechbrain_sqe.metrics.dnsmos import dnsmos_available

        dnsmos_ok, why = dnsmos_available()
        if not dnsmos_ok:
            print(f"DNSMOS left out: {why}")
    scorer = None
    if not args.no_vqscore:
        from speechbrain_sqe.inference.quality import VQScore

        scorer = VQScore.from_hparams(source=args.vqscore_model or VQScore.DEFAULT_SOURCE)

    report = [
        "# VQ enhancer beside peer enhancers" if not args.enhancer else "# Enhancers beside peer enhancers",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in [os.path.relpath(__file__)] + list(argv or sys.argv[1:]))}`",
        (f"Real-time factor (RTF): enhancement wall time / audio duration, {args.threads} torch/BLAS "
         f"threads, one process, on {os.cpu_count()} CPU cores (reading and writing excluded)."),
        (f"Scores: {', '.join(args.metrics)} against the clean reference where there is one; "
         + ("DNSMOS P.835 (speechmos); " if dnsmos_ok else "no DNSMOS; ")
         + (f"vqscore = VQScore({args.vqscore_model or 'VQScore.DEFAULT_SOURCE'}), no reference." if scorer
            else "no VQScore.")),
        "",
        "Systems:",
        "",
    ] + [f"- `{name}`: {note}" for name, note in notes.items()] + [""]
    results = {}
    runs = [(name, None) for name in args.sets] + [(manifest_set_name(path), path) for path in args.manifest]
    for set_name, manifest in runs:
        references = [None]
        if manifest is not None:
            if not os.path.exists(manifest):
                raise SystemExit(f"--manifest {manifest}: no such file")
        elif set_name == "embedded":
            manifest = os.path.join(args.embedded, "test.csv")
            if not os.path.exists(manifest):
                print(f"skipping set embedded: no {manifest}")
                continue
        elif set_name == "real_mix":
            manifest = ensure_real_mix(args)
            if manifest is None:
                continue
        if manifest is not None:
            references = reference_columns(manifest, args.reference, dereverberating)
            items = read_manifest(manifest, args.limit, references[0])
            source = manifest
        else:
            if not os.path.isdir(args.real_noisy):
                print(f"skipping set real_noisy: no folder {args.real_noisy}")
                continue
            items = list_noisy_folder(args.real_noisy, args.limit)
            source = args.real_noisy
        if not items:
            print(f"skipping set {set_name}: no files in {source}")
            continue
        if set_name == "real_noisy":
            metrics = list(NOREF_METRICS) if dnsmos_ok else []
        else:
            metrics = list(args.metrics) + (["dnsmos_ovrl"] if dnsmos_ok and "dnsmos_ovrl" not in args.metrics else [])
        columns = metrics + (["vqscore"] if scorer is not None else [])

        outputs = enhance_set(set_name, items, systems, args.out, progress)
        first_scores = None
        for index, reference in enumerate(references):
            table = reference_table_name(set_name, reference, main=index == 0)
            if index:
                items = [{**item, "reference": item[reference]} for item in items]
            scores, failures = score_set(set_name, items, systems, outputs, metrics, args.jobs, scorer, progress,
                                         known=first_scores)
            if first_scores is None:
                first_scores = scores
            summary = summarize_set(items, systems, outputs, scores, columns)
            results[table] = summary
            write_set_csv(os.path.join(args.out, f"peers_{table}.csv"), items, systems, outputs, scores, columns)

            heading = f"## {table}: {len(items)} files ({os.path.relpath(source)})"
            if reference is not None:
                heading += f", reference column {reference}"
            section = [heading, ""]
            if len(references) > 1:
                section += [reference_note(set_name, reference, references, dereverberating), ""]
            section.append(format_table(summary, columns))
            if any(item.get("snr", "") != "" for item in items) and "pesq_wb" in columns:
                section += ["", "pesq_wb by SNR (dB):", "", format_by_condition(items, systems, scores, "pesq_wb")]
            failures_path = os.path.join(args.out, f"peers_{table}_failures.csv")
            if os.path.exists(failures_path):
                os.remove(failures_path)  # from an earlier run
            if failures:
                write_failures_csv(failures, failures_path)
                section += ["", (f"{len(failures)} failures (missing values), listed in "
                                 f"{os.path.basename(failures_path)}")]
            text = "\n".join(section)
            print("\n" + text + "\n", flush=True)
            report += [text, ""]

        if set_name == "embedded" and not args.no_figure:
            all_rows = read_manifest(os.path.join(args.embedded, "test.csv"))
            example = choose_example(all_rows, items, args.example_id)
            figure_path = os.path.join(args.out, "peers_spectrograms.png")
            reuse = example["ID"] in {item["ID"] for item in items}
            example_figure(example, systems, args.out, figure_path, reuse)
            report += [f"Spectrograms of {example['ID']}: ![{example['ID']}]({os.path.basename(figure_path)})", ""]
            print(f"wrote {figure_path} ({example['ID']})")

    report_path = os.path.join(args.out, "peers.md")
    with open(report_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(report).rstrip() + "\n")
    print(f"wrote {report_path}")
    return results


if __name__ == "__main__":
    main()
