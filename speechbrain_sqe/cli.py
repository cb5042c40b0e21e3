"""The ``sqe`` command line: one subcommand per small ``_add_*_parser`` function.

To add a subcommand, write ``_add_NAME_parser(subparsers)`` that creates its parser and sets
``func`` (a function of the parsed arguments returning the exit status), then list it in
:data:`SUBCOMMANDS`. The CLI only parses and reports; the work is done by the package modules.

Example
-------
>>> parser = build_parser()
>>> args = parser.parse_args(["evaluate", "--ref", "clean", "--deg", "enhanced", "--jobs", "2"])
>>> args.command, args.ref, args.deg, args.jobs
('evaluate', ['clean'], ['enhanced'], 2)
"""

import argparse
import os
import sys
import time

from speechbrain_sqe import __version__
from speechbrain_sqe.metrics import registry


def _metric_help():
    """Every registered metric with its reference need, range and better direction."""
    lines = [
        f"{name} ({'needs --ref' if spec.needs_reference else 'no reference'}, {spec.range_text}, "
        f"{spec.direction} is better{', learned' if spec.learned else ''}): {spec.description}"
        for name, spec in registry.METRICS.items()
    ]
    return "; ".join(lines).replace("%", "%%")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once, and not at all when it is None or False (nothing to say)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _add_evaluate_parser(subparsers):
    """Registers ``sqe evaluate``: objective metrics of degraded/enhanced files.

    Arguments
    ---------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser.

    Example
    -------
    >>> parser = argparse.ArgumentParser()
    >>> sub = _add_evaluate_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["evaluate", "--deg", "x.wav", "--metrics", "dnsmos_ovrl", "vqscore"]).metrics
    ['dnsmos_ovrl', 'vqscore']
    >>> parser.parse_args(["evaluate", "--list-metrics"]).list_metrics
    True
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="score degraded/enhanced speech against clean references (PESQ, STOI, ...)",
        description=(
            "Pairs reference and degraded files by name and computes objective metrics, in "
            "--jobs worker processes (default 1). Two folders pair by relative path, lists of files by base name, two "
            "single files with each other. Each pair is trimmed to the shorter length. Writes "
            "a per-file CSV (a row as each file finishes; --resume goes on after an "
            "interruption), prints a summary table (mean, std, n) and the files that could "
            "not be paired, read or scored; exits 1 if there were any, 0 otherwise. Each file "
            "runs in a supervised worker process: a metric that crashes, hangs (--timeout) or "
            "runs out of memory (--max-memory) fails on that file only."
        ),
        formatter_class=_DefaultsFormatter,
    )
    parser.add_argument(
        "--ref", nargs="+", default=None, metavar="PATH",
        help="reference (clean) folder(s) or file(s); not needed when every metric is "
        "no-reference (DNSMOS, VQScore, learned predictors)",
    )
    parser.add_argument(
        "--deg", nargs="+", default=None, metavar="PATH",
        help="degraded (noisy or enhanced) folder(s) or file(s); required unless --list-metrics",
    )
    parser.add_argument(
        "--metrics", nargs="+", default=list(registry.DEFAULT_METRICS), metavar="NAME",
        help=(
            "metrics to compute; the default is the cheap intrusive set (the composite "
            "csig/cbak/covl reuse the PESQ computation). Aliases: default; all (every registered "
            "metric, the learned predictors DNSMOS, Distill-MOS and VQScore included); intrusive (those "
            "needing --ref); nonintrusive (those without, learned ones included); learned. "
            "Metrics that cannot run here (DNSMOS without the eval extra) are skipped with the "
            "reason. Known: " + _metric_help()
        ),
    )
    parser.add_argument(
        "--predictor", action="append", default=[], metavar="NAME=FOLDER",
        help="register the quality predictor in the hub folder FOLDER as metric NAME (a predictor of "
        "several metrics: NAME_<metric> each, one model pass per file; NAME in --metrics selects them "
        "all); repeatable",
    )
    parser.add_argument(
        "--list-metrics", action="store_true",
        help="print the metrics (reference, range, better direction, available here or why "
        "not) and exit",
    )
    parser.add_argument("--csv", default=None, metavar="FILE", help="write the per-file scores here")
    parser.add_argument(
        "--failures-csv", default=None, metavar="FILE",
        help="also write the failures (file, reason, message) to this CSV",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="worker processes computing the metrics in parallel (0: one per CPU); each uses one torch "
        "thread",
    )
    parser.add_argument(
        "--sample-rate", type=int, default=16000, choices=(8000, 16000),
        help="rate files are resampled to (pesq_wb and DNSMOS need 16000)",
    )
    parser.add_argument(
        "--min-duration", type=float, default=None, metavar="SECONDS",
        help="files shorter than this are reported too_short (default 0.5)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the rows already in --csv (written as files finish, so an interrupted run "
        "keeps them) and score only the files missing there; the CSV must have this run's "
        "columns (same --metrics)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS",
        help="time one file may take in its worker (reading and all metrics); past it the "
        "worker is killed and the metric it was in is reported 'timed out' (0: no limit)",
    )
    parser.add_argument(
        "--max-memory", type=float, default=None, metavar="MB",
        help="address-space limit of each worker process (RLIMIT_AS, MiB; a worker maps about "
        "3.3 GiB of libraries before reading a file); a metric that exceeds it is reported "
        "'out of memory' (default: no limit)",
    )
    parser.add_argument(
        "--pesq-segment", type=float, default=None, metavar="SECONDS",
        help="measure PESQ of files longer than 60 s (its native code crashes on long "
        "recordings) as the mean over segments of this length, noted in a 'note' column; "
        "without it such files get no PESQ and a listed problem",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_run_evaluate)
    return parser


def _register_predictors(items):
    """Registers each ``NAME=FOLDER`` quality predictor; returns ``{NAME: [its metric names]}``."""
    from speechbrain_sqe.inference.hub import InterfaceError
    from speechbrain_sqe.inference.quality import register_quality_model

    groups = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"expected NAME=FOLDER, got {item!r}")
        if not os.path.isdir(folder):
            raise ValueError(f"{folder}: no such model folder")
        try:
            specs = register_quality_model(name, folder)
        except InterfaceError as error:
            raise ValueError(str(error)) from None
        groups[name] = [spec.name for spec in specs]
    return groups


def _run_evaluate(args):
    """Runs ``sqe evaluate`` with parsed arguments; returns the exit status (130: interrupted)."""
    from speechbrain_sqe.dataio.resumable_csv import ResumableCSV, ResumeError
    from speechbrain_sqe.metrics import runner

    try:
        groups = _register_predictors(args.predictor)
    except ValueError as error:
        print(f"sqe evaluate: --predictor: {error}", file=sys.stderr)
        return 2
    if args.list_metrics:
        print(registry.format_metric_table(registry.metric_table()))
        return 0
    if not args.deg:
        print("sqe evaluate: the following arguments are required: --deg", file=sys.stderr)
        return 2
    selected = [name for item in args.metrics for name in groups.get(item, [item])]
    try:
        metrics, unavailable = registry.split_available(selected)
    except ValueError as error:
        print(f"sqe evaluate: {error}", file=sys.stderr)
        return 2
    skipped = {}
    for name, why in unavailable.items():
        skipped.setdefault(why, []).append(name)
    for why, names in skipped.items():
        print(f"sqe evaluate: skipping {', '.join(names)}: {why}", file=sys.stderr)
    if not metrics:
        print("sqe evaluate: no metric left to compute", file=sys.stderr)
        return 2
    min_duration = runner.DEFAULT_MIN_DURATION if args.min_duration is None else args.min_duration
    if args.resume and not args.csv:
        print("sqe evaluate: --resume needs --csv (the file whose rows are kept)", file=sys.stderr)
        return 2
    table, kept = None, []
    if args.csv:
        columns = runner.csv_columns(metrics, note=args.pesq_segment is not None)
        try:
            table = ResumableCSV(args.csv, columns, key="file", resume=args.resume)
        except (ResumeError, OSError) as error:
            print(f"sqe evaluate: {error}", file=sys.stderr)
            return 2
        kept = table.previous_rows()
        if kept:
            print(f"resuming {args.csv}: {len(kept)} file(s) already scored are kept")
    try:
        result = runner.evaluate(
            args.ref, args.deg, metrics,
            sample_rate=args.sample_rate, jobs=args.jobs, min_duration=min_duration,
            progress=not args.no_progress, timeout=args.timeout or None,
            max_memory_mb=args.max_memory, pesq_segment=args.pesq_segment,
            on_row=table.append if table is not None else None,
            skip={row["file"] for row in kept},
        )
    except (runner.PairingError, ValueError, registry.MetricUnavailableError) as error:
        print(f"sqe evaluate: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept_now = len(table.done) if table is not None else 0
        where = f"; {kept_now} finished row(s) are in {args.csv}: rerun with --resume" if table else ""
        print(f"sqe evaluate: interrupted{where}", file=sys.stderr)
        return 130
    if not result.pairs and not result.failures:
        print("sqe evaluate: no audio files found", file=sys.stderr)
        return 1
    paired = {pair.file for pair in result.pairs}
    kept = [row for row in kept if row["file"] in paired]
    rows = kept + result.rows
    failures = list(result.failures)
    for row in kept:  # metrics an earlier run could not compute are still missing: say so
        empty = [name for name in metrics if not row.get(name)]
        if empty:
            failures.append(runner.Failure(
                row["file"], "metric_error",
                f"{row['deg']}: no {', '.join(empty)} in the resumed CSV (see the earlier run; "
                "rerun without --resume to retry)",
            ))
    if table is not None:
        table.finalize([pair.file for pair in result.pairs])
        print(f"wrote {len(table.done)} rows to {args.csv}")
    if args.failures_csv:
        runner.write_failures_csv(failures, args.failures_csv)
    print(f"{len(rows)} of {len(result.pairs)} paired files scored")
    print(runner.format_summary(runner.summarize(rows, metrics)))
    if failures:
        print(f"{len(failures)} problem(s):")
        print(runner.format_failures(failures))
        return 1
    return 0

def _positive_int(text):
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


#: What ``--model`` loads for each task, in the help texts.
_TASK_MODELS = {
    "quality": "quality predictor",
    "enhancement": "speech enhancer",
    "ssl_encoder": "self-supervised speech encoder",
}


def _add_model_options(parser, task, batch_size, batch_unit="files"):
    """The options every model-running subcommand shares (one definition, one behaviour).

    Arguments
    ---------
    parser : argparse.ArgumentParser
        The subcommand's parser.
    task : str
        The task whose model ``--model`` loads (``quality``, ``enhancement``, ``ssl_encoder``).
    batch_size : int
        The default ``--batch-size``.
    batch_unit : str
        What one batch counts, in the help text.
    """
    parser.add_argument(
        "--model", default=None, metavar="SOURCE",
        help=f"{_TASK_MODELS[task]}: a hub folder (or hub id) of any method of this task, loaded by the "
        "interface its hyperparams.yaml names (default: the model shipped with the package)",
    )
    parser.add_argument("--savedir", default=None, metavar="DIR", help="where a hub model is fetched to")
    parser.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size, metavar="N",
                        help=f"{batch_unit} per batch (default {batch_size})")
    parser.add_argument("--trust-hparams", action="store_true",
                        help="load a model whose hyperparams construct objects outside what hub folders "
                        "may use (only for sources you trust)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load_model(args, task):
    """The model of ``--model`` (or the shipped one) for ``task``, with the shared options."""
    from speechbrain_sqe.inference.hub import load_model

    return load_model(args.model, task, savedir=args.savedir, trust_hparams=args.trust_hparams,
                      run_opts={"device": args.device})


def _add_score_parser(subparsers):
    """Registers ``sqe score``: no-reference quality of files and folders (any quality predictor).

    Arguments
    ---------
    subparsers : argparse._SubParsersAction
        Where the subcommand is added.

    Example
    -------
    >>> parser = argparse.ArgumentParser()
    >>> _add_score_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["score", "a.wav", "--frames", "f", "--plot"])
    >>> args.inputs, args.frames, args.plot, args.batch_size, args.resume, args.frame_weighting
    (['a.wav'], 'f', True, 16, False, 'all')
    """
    parser = subparsers.add_parser(
        "score",
        help="no-reference quality (VQScore by default) of audio files and folders",
        description="Scores audio files with a quality predictor (the shipped VQScore model unless "
        "--model names another; higher is better). Folders are searched recursively. The CSV is "
        "written batch by batch (an interrupted run keeps what was scored; --resume skips it). "
        "Files without speech (silence, a DC offset, noise alone) get an empty score and "
        "speech=no. Unreadable files are reported and skipped; the exit status is 1 when any file "
        "failed.",
    )
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders")
    parser.add_argument("--csv", default=None,
                        help="write one row per file (path, score, duration, speech), batch by batch")
    parser.add_argument("--resume", action="store_true",
                        help="with --csv: keep the rows already in the CSV and score only the other files")
    parser.add_argument("--frame-weighting", choices=("all", "speech"), default="all",
                        help="VQScore: average every frame (all, the paper's definition) or only the "
                        "frames with speech (speech)")
    parser.add_argument("--frames", default=None, metavar="FOLDER",
                        help="write per-frame scores (one CSV per file) into FOLDER")
    parser.add_argument("--plot", action="store_true",
                        help="with --frames: also save a PNG per file (spectrogram with the frame "
                        "score curve under it)")
    parser.add_argument("--workers", type=int, default=0,
                        help="decoding processes (default 0: decode in the scoring process, "
                        "fastest on 2 cores; more helps with many cores or compressed files)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="score only the first N files")
    _add_model_options(parser, "quality", batch_size=16)
    parser.set_defaults(func=_run_score)


def _run_score(args):
    from speechbrain_sqe.dataio.files import expand_audio_inputs
    from speechbrain_sqe.inference.batch_scoring import NO_SPEECH, score_files
    from speechbrain_sqe.inference.scoring_outputs import (
        ScoresCSV,
        ScoresCSVError,
        write_frame_outputs,
    )

    if args.plot and not args.frames:
        print("sqe score: --plot needs --frames FOLDER (the plots are written there)", file=sys.stderr)
        return 2
    if args.resume and not args.csv:
        print("sqe score: --resume needs --csv FILE (the rows already scored are read from it)",
              file=sys.stderr)
        return 2
    files = expand_audio_inputs(args.inputs)
    if args.limit is not None:
        files = files[: args.limit]
    if not files:
        print(f"sqe score: no audio files found in {' '.join(args.inputs)}", file=sys.stderr)
        return 1
    scorer = _load_model(args, "quality")
    if args.frames and not scorer.has_frame_scores:
        print(f"sqe score: {type(scorer).__name__} gives no per-frame scores (--frames)", file=sys.stderr)
        return 2
    if args.frame_weighting != "all":
        if not hasattr(scorer, "frame_weighting"):
            print(f"sqe score: {type(scorer).__name__} has no frame weighting (--frame-weighting)",
                  file=sys.stderr)
            return 2
        scorer.frame_weighting = args.frame_weighting
    columns = list(scorer.metric_names)  # one for most predictors; one column per metric of a multi-metric one
    column = columns[0]
    table, kept = None, []
    if args.csv:
        try:
            table = ScoresCSV(args.csv, column if len(columns) == 1 else columns, resume=args.resume)
        except ScoresCSVError as error:
            print(f"sqe score: {error}", file=sys.stderr)
            return 2
        kept = [path for path in files if path in table.done]
        files = [path for path in files if path not in table.done]
        if kept:
            print(f"resuming: {len(kept)} files already in {args.csv}, {len(files)} left")
    results, failures, stopped = [], [], None
    if files:
        try:
            results, failures = score_files(
                scorer, files, batch_size=args.batch_size, frames=bool(args.frames),
                num_workers=args.workers, progress=not args.no_progress, detect_speech=True,
                on_batch=(lambda batch, bad: table.append(batch)) if table else None)
        except ScoresCSVError as error:
            stopped = error
    if table is not None and stopped is None:
        try:
            table.finish(kept + files)
        except ScoresCSVError as error:
            stopped = error
    if stopped is not None:
        print(f"sqe score: {stopped}", file=sys.stderr)
        return 2
    if args.frames:
        try:
            write_frame_outputs(scorer, [r for r in results if r[column] is not None], args.frames,
                                plot=args.plot)
        except OSError as error:
            print(f"sqe score: cannot write the frame scores into {args.frames}: "
                  f"{error.strerror or error} ({error.filename or args.frames})", file=sys.stderr)
            return 2
    scored = [r for r in results if any(r[name] is not None for name in columns)]
    if len(columns) > 1 and scored:
        print("  ".join(f"{name:>10}" for name in columns) + "  path")
    for result in scored[:20] if args.csv else scored:
        print("  ".join(_score_cell(result[name], len(columns) > 1) for name in columns) + f"  {result['path']}")
    if args.csv and len(scored) > 20:
        print(f"... {len(scored) - 20} more in {args.csv}")
    if scored:
        means = []
        for name in columns:
            values = [r[name] for r in scored if r[name] is not None]
            means.append(f"mean {name} {sum(values) / len(values):.4f}" if values else f"no {name}")
        print(f"scored {len(scored)} files, {', '.join(means)}")
    silent = [r["path"] for r in results if r.get("speech") is False]
    for path in silent:
        print(f"NO SPEECH {path}: {NO_SPEECH}", file=sys.stderr)
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(files)} files could not be scored", file=sys.stderr)
    return 1 if failures else 0


def _score_cell(value, wide):
    """One score as ``sqe score`` prints it (``-`` where there is none); right-aligned in a table."""
    text = "-" if value is None else f"{value:.4f}"
    return f"{text:>10}" if wide else text


def _add_enhance_parser(subparsers):
    """Registers ``sqe enhance``: speech enhancement of files and folders (any enhancer).

    Arguments
    ---------
    subparsers : argparse._SubParsersAction
        Where the subcommand is added.

    Example
    -------
    >>> parser = argparse.ArgumentParser()
    >>> _add_enhance_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["enhance", "noisy", "--out-dir", "enhanced", "--option", "mix=0.2"])
    >>> args.inputs, args.out_dir, args.option, args.batch_size, args.resume
    (['noisy'], 'enhanced', ['mix=0.2'], 8, False)
    """
    parser = subparsers.add_parser(
        "enhance",
        help="enhance noisy speech files and folders (the VQ enhancer by default)",
        description="Enhances audio files with a speech enhancer (the shipped VQ enhancer unless "
        "--model names another) and writes each as a 16-bit wav at the model's rate in --out-dir: "
        "a file under its own name (DIR/<stem>.wav), files found in a folder (recursively) under "
        "their path relative to that folder. Inputs of any rate or channel count are resampled and "
        "downmixed. Each output is written under a temporary name and renamed when complete, so an "
        "interrupted run keeps every finished file and --resume enhances only the rest. Nothing is "
        "written when two inputs would share an output, when --out-dir is (or is inside) an input "
        "folder, or when an output exists (unless --resume or --overwrite). Unreadable files are "
        "reported and skipped; the exit status is 1 when any file failed.",
    )
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders")
    parser.add_argument("--out-dir", required=True, metavar="DIR",
                        help="folder the enhanced files are written to (created)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a method option of the model, repeatable (the VQ enhancer: mix=R, the "
                        "share of the noisy input blended back in, 0..1; default: the model's own); "
                        "an unknown name lists the model's options")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="enhance only the first N files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--resume", action="store_true",
                        help="skip inputs whose output exists and is a complete, readable file "
                        "(after an interruption); not with --overwrite")
    _add_model_options(parser, "enhancement", batch_size=8)
    parser.set_defaults(func=_run_enhance)


def _run_enhance(args):
    from speechbrain_sqe.inference.batch_enhancement import (
        OutputPathError,
        OutputWriteError,
        check_output_paths,
        complete_output,
        enhance_files,
        enhance_summary,
        output_paths,
        writable_folder,
    )

    files, outputs = output_paths(args.inputs, args.out_dir)
    if args.limit is not None:
        files, outputs = files[: args.limit], outputs[: args.limit]
    if not files:
        print(f"sqe enhance: no audio files found in {' '.join(args.inputs)}", file=sys.stderr)
        return 1
    try:
        check_output_paths(args.inputs, files, outputs, args.out_dir, overwrite=args.overwrite,
                           resume=args.resume)
    except OutputPathError as error:
        print(f"sqe enhance: {error}", file=sys.stderr)
        return 2
    total = len(files)
    if args.resume:
        done = [complete_output(out) for out in outputs]
        files = [path for path, skip in zip(files, done) if not skip]
        outputs = [out for out, skip in zip(outputs, done) if not skip]
        print(f"resuming: {sum(done)} outputs already complete in {args.out_dir}, {len(files)} left")
        if not files:
            return 0
    enhancer = _load_model(args, "enhancement")
    try:
        options = enhancer.parse_options(args.option)
    except ValueError as error:
        print(f"sqe enhance: {error}", file=sys.stderr)
        return 2
    try:
        writable_folder(args.out_dir)
    except OutputPathError as error:
        print(f"sqe enhance: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        written, failures = enhance_files(enhancer, files, outputs, batch_size=args.batch_size,
                                          progress=not args.no_progress, **options)
    except OutputWriteError as error:
        print(f"sqe enhance: {error}", file=sys.stderr)
        return 2
    print(enhance_summary(written, time.perf_counter() - start, args.out_dir))
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {total} files could not be enhanced", file=sys.stderr)
    return 1 if failures else 0


def _add_analyze_ssl_parser(subparsers):
    """Registers ``sqe analyze-ssl``: per-layer robustness of SSL embeddings to noise and rooms.

    Arguments
    ---------
    subparsers : argparse._SubParsersAction
        Where the subcommand is added.

    Example
    -------
    >>> parser = argparse.ArgumentParser()
    >>> _add_analyze_ssl_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["analyze-ssl", "--pairs", "test.csv", "--device", "cpu"])
    >>> args.model, args.device, args.batch_size
    (None, 'cpu', 8)
    """
    parser = subparsers.add_parser(
        "analyze-ssl",
        help="per-layer robustness of an SSL encoder's embeddings (NMSE, cosine, CN distance)",
        description="Compares a self-supervised model's hidden states of noisy speech with those of "
        "its clean reference, per layer and per condition (SNR, T60, noise family): normalized MSE, "
        "cosine similarity and clean-noisy distance. Prints tables (with published TERA/WavLM "
        "figures beside ours) and writes a CSV, markdown and PNG plots.",
    )
    parser.add_argument("--pairs", default=None, metavar="MANIFEST",
                        help="pairs manifest CSV: ID, clean_wav, noisy_wav (conditions: snr, t60, noise_type, "
                        "reverb), e.g. the test.csv of an embedded corpus folder")
    parser.add_argument("--clean", nargs="+", default=None, help="clean folder(s)/files (with --noisy)")
    parser.add_argument("--noisy", nargs="+", default=None, help="noisy folder(s)/files, paired by name")
    parser.add_argument("--output", default="ssl_robustness", metavar="DIR",
                        help="report folder (default: ssl_robustness/ in the current folder)")
    _add_model_options(parser, "ssl_encoder", batch_size=8, batch_unit="clean/noisy pairs")
    parser.set_defaults(func=_run_analyze_ssl)


def _run_analyze_ssl(args):
    """Runs ``sqe analyze-ssl``; returns 0, or 1 when some pairs could not be paired or read."""
    from speechbrain_sqe.analysis.ssl_pairs import analyze_ssl_pairs, read_pairs
    from speechbrain_sqe.analysis.ssl_robustness import (
        format_published_comparison,
        format_robustness_table,
        write_robustness_report,
    )

    if (args.pairs is None) == (args.clean is None or args.noisy is None):
        print("sqe analyze-ssl: give --pairs MANIFEST, or --clean and --noisy", file=sys.stderr)
        return 2
    failures = []  # (file or id, reason): listed at the end, like sqe evaluate
    pairs = read_pairs(manifest=args.pairs, clean=args.clean, noisy=args.noisy, failures=failures)
    if pairs:
        model = _load_model(args, "ssl_encoder")
        accumulator = analyze_ssl_pairs(model, pairs, args.batch_size, progress=not args.no_progress,
                                        failures=failures)
        rows = accumulator.results()
    if not pairs or not rows:
        for name, reason in failures:
            print(f"FAILED {name}: {reason}", file=sys.stderr)
        print("sqe analyze-ssl: no clean/noisy pair could be analysed", file=sys.stderr)
        return 1
    written = write_robustness_report(rows, args.output, utterance_rows=accumulator.utterance_rows())
    for metric in ("cosine", "nmse", "cn_distance"):
        table = format_robustness_table(rows, group="snr", metric=metric) or format_robustness_table(
            rows, group="overall", metric=metric)
        print(f"\n{metric} per layer:\n{table}")
    print("\nCosine similarity beside published figures (mean over layers):")
    print(format_published_comparison(rows))
    print(f"\nwrote {written['csv']}, {written['markdown']} and {len(written['plots'])} plots "
          f"(in {os.path.abspath(args.output)})")
    for name, reason in failures:
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} files or pairs could not be analysed", file=sys.stderr)
    return 1 if failures else 0


#: The subcommand registration functions, in help order.
SUBCOMMANDS = [_add_evaluate_parser, _add_score_parser, _add_enhance_parser, _add_analyze_ssl_parser]


def build_parser():
    """Builds the ``sqe`` argument parser with every subcommand of :data:`SUBCOMMANDS`.

    Returns
    -------
    argparse.ArgumentParser
        The parser; parsed arguments carry ``func``, the subcommand's runner.

    Example
    -------
    >>> parser = build_parser()
    >>> parser.parse_args(["evaluate", "--ref", "a.wav", "--deg", "b.wav"]).metrics[:2]
    ['pesq_wb', 'stoi']
    """
    parser = argparse.ArgumentParser(
        prog="sqe", description="speechbrain-sqe: speech quality estimation and enhancement tools"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Entry point of the ``sqe`` console script.

    Arguments
    ---------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 success, 1 some files failed, 2 usage error.

    Example
    -------
    >>> main(["evaluate", "--deg", "x.wav", "--metrics", "no_such_metric"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except _user_errors() as error:
        if args.debug:
            raise
        print(f"sqe {args.command}: {error}", file=sys.stderr)
        return 2


def _user_errors():
    """The errors a user's input causes (a refused, missing or wrong-task model...): one line each,
    no traceback (``--debug`` shows it)."""
    from speechbrain_sqe.analysis.ssl_pairs import PairsError
    from speechbrain_sqe.inference.hub import InterfaceError
    from speechbrain_sqe.utils.safe_load import UnsafeHyperparamsError

    return (InterfaceError, UnsafeHyperparamsError, PairsError)


if __name__ == "__main__":
    sys.exit(main())
