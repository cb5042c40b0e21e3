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
from speechbrain_sqe.utils.allocator import keep_freed_memory
from speechbrain_sqe.utils.deferred_imports import defer_scipy_stats


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
    _add_distributed_option(parser)
    parser.set_defaults(func=_run_evaluate)
    return parser


def _register_predictors(items):
    """Registers each ``NAME=FOLDER`` quality predictor; returns ``{NAME: [its metric names]}``."""
    if not items:  # nothing to load: keep torch out of this process (the workers import it)
        return {}
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
        if os.environ.get("RANK", "0") == "0":  # under torchrun: once
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
    from speechbrain_sqe.inference.distributed_jobs import DistributedJob

    job = DistributedJob("evaluate", timeout=args.dist_timeout)
    if job.distributed:
        with job:
            return _run_evaluate_distributed(args, job, metrics, min_duration)
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
    if table is not None:
        table.finalize([pair.file for pair in result.pairs])
        print(f"wrote {len(table.done)} rows to {args.csv}")
    return _report_evaluation(args, metrics, result.pairs, kept, result.rows, list(result.failures))


def _report_evaluation(args, metrics, pairs, kept, new_rows, failures):
    """Writes --failures-csv and prints the summary and the problems of ``sqe evaluate``; returns
    the exit status (1 when any file could not be paired, read or scored)."""
    from speechbrain_sqe.metrics import runner

    paired = {pair.file for pair in pairs}
    kept = [row for row in kept if row["file"] in paired]
    rows = kept + new_rows
    for row in kept:  # metrics an earlier run could not compute are still missing: say so
        empty = [name for name in metrics if not row.get(name)]
        if empty:
            failures.append(runner.Failure(
                row["file"], "metric_error",
                f"{row['deg']}: no {', '.join(empty)} in the resumed CSV (see the earlier run; "
                "rerun without --resume to retry)",
            ))
    if args.failures_csv:
        runner.write_failures_csv(failures, args.failures_csv)
    print(f"{len(rows)} of {len(pairs)} paired files scored")
    print(runner.format_summary(runner.summarize(rows, metrics)))
    if failures:
        print(f"{len(failures)} problem(s):")
        print(runner.format_failures(failures))
        return 1
    return 0

def _run_evaluate_distributed(args, job, metrics, min_duration):
    """``sqe evaluate`` as one rank: rank 0 pairs the files and reads what an earlier run kept;
    every rank scores its share of the pairs into its partial CSV; rank 0 merges them into --csv
    (the rows and order of one process) and reports for all."""
    from speechbrain_sqe.dataio.resumable_csv import ResumableCSV, ResumeError
    from speechbrain_sqe.inference.distributed_jobs import (
        DistributedJobError,
        existing_partials,
        partial_path,
        shard,
    )
    from speechbrain_sqe.metrics import runner

    columns = runner.csv_columns(metrics, note=args.pesq_segment is not None)
    try:
        plan = None
        if job.is_main:
            plan = _plan_evaluation(args, metrics, columns)
        plan = job.broadcast(plan)
        if plan["error"]:
            return _finish_ranks(job, *plan["error"])
        pairs, done = plan["pairs"], set(plan["done"])
        todo = [pair for pair in pairs if pair.file not in done]
        parts = shard(plan["sizes"], job.world_size)
        job.report_shares(parts, plan["sizes"], "bytes")
        mine = {todo[i].file for i in parts[job.rank]}

        def work():
            table = None
            if args.csv:
                table = ResumableCSV(partial_path(args.csv, job.rank, job.world_size), columns, key="file")
            result = runner.evaluate(
                args.ref, args.deg, metrics, sample_rate=args.sample_rate, jobs=args.jobs,
                min_duration=min_duration, progress=not args.no_progress and job.is_main,
                timeout=args.timeout or None, max_memory_mb=args.max_memory,
                pesq_segment=args.pesq_segment, on_row=table.append if table is not None else None,
                skip={pair.file for pair in pairs} - mine)
            return result.rows, [f for f in result.failures if f.file in mine]

        outcomes = job.run(work)
        failed = job.failures(outcomes)
        if failed:
            return _finish_ranks(job, 2, failed)
        status, message = 0, None
        if job.is_main:
            new_rows = [row for _, value in outcomes for row in value[0]]
            failures = plan["failures"] + [f for _, value in outcomes for f in value[1]]
            failures.sort(key=lambda f: (f.file, runner.REASONS.index(f.reason)))
            if args.csv:
                try:
                    table = ResumableCSV(args.csv, columns, key="file", resume=True)
                    partials = existing_partials(args.csv)
                    for path in partials:
                        table.absorb(path)
                    table.finalize([pair.file for pair in pairs])
                    for path in partials:
                        os.remove(path)
                    print(f"wrote {len(table.done)} rows to {args.csv}")
                except (ResumeError, OSError) as error:
                    message = str(error)
            if message is None:
                status = _report_evaluation(args, metrics, pairs, plan["kept"], new_rows, failures)
            else:
                status = 2
        return _finish_ranks(job, status, message)
    except DistributedJobError as error:
        job.error(str(error).removeprefix(f"rank {job.rank} of {job.world_size}: "))
        return 2


def _plan_evaluation(args, metrics, columns):
    """Rank 0's plan of a distributed ``sqe evaluate``: the pairs, the pairing failures, the rows an
    earlier run kept (its partial CSVs folded into --csv) and the sizes of the files left."""
    from speechbrain_sqe.dataio.resumable_csv import ResumableCSV, ResumeError
    from speechbrain_sqe.inference.distributed_jobs import existing_partials, file_sizes
    from speechbrain_sqe.metrics import registry as metric_registry
    from speechbrain_sqe.metrics import runner

    try:
        _, pairs, failures = runner.plan_evaluation(args.ref, args.deg, metrics, args.sample_rate)
    except (runner.PairingError, ValueError, metric_registry.MetricUnavailableError) as error:
        return {"error": (2, str(error))}
    if not pairs and not failures:
        return {"error": (1, "no audio files found")}
    kept = []
    if args.csv:
        try:
            table = ResumableCSV(args.csv, columns, key="file", resume=args.resume)
            partials = existing_partials(args.csv)
            if args.resume:
                for path in partials:
                    table.absorb(path)
                if partials:
                    table.finalize([pair.file for pair in pairs])  # persisted before the partials go
            for path in partials:
                os.remove(path)
        except (ResumeError, OSError) as error:
            return {"error": (2, str(error))}
        kept = table.previous_rows()
        if kept:
            print(f"resuming {args.csv}: {len(kept)} file(s) already scored are kept", flush=True)
    done = {row["file"] for row in kept}
    todo = [pair for pair in pairs if pair.file not in done]
    return {"error": None, "pairs": pairs, "failures": failures, "kept": kept, "done": sorted(done),
            "sizes": file_sizes([pair.deg for pair in todo])}


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
        "interface its hyperparams.yaml names, or a model shipped with the package by name (vqscore, sqa, "
        "vq_enhancer, bsse, sqa_guided, tera; default: the package's model of this task)",
    )
    parser.add_argument("--savedir", default=None, metavar="DIR", help="where a hub model is fetched to")
    parser.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size, metavar="N",
                        help=f"{batch_unit} per batch (default {batch_size})")
    parser.add_argument("--trust-hparams", action="store_true",
                        help="load a model whose hyperparams construct objects outside what hub folders "
                        "may use (only for sources you trust)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_convolution_option(parser):
    """``--convolution``: the convolution algorithm of the conv-stack models (VQScore, the VQ enhancer)."""
    parser.add_argument(
        "--convolution", choices=("auto", "direct", "overlap_save"), default="auto",
        help="VQScore and the VQ enhancer: algorithm of their convolutions (auto, the default: "
        "overlap_save on a CPU, up to 1.8x faster, results within 2e-7 in score and one 16-bit step in "
        "audio of direct; direct on a GPU; direct: oneDNN's/cuDNN's own)")


def _set_convolution(args, model):
    """Applies ``--convolution`` to ``model``; an error message where it has no such choice."""
    if hasattr(model, "set_convolution"):
        model.set_convolution(args.convolution)
    elif args.convolution != "auto":
        return f"{type(model).__name__} has no convolution choice (--convolution)"
    return None


def _batch_threads(text):
    """``--batch-threads``: ``auto`` or a positive number."""
    return text if text == "auto" else _positive_int(text)


def _add_batch_threads_option(parser):
    """``--batch-threads``: whole batches side by side, one torch thread each (see ``map_batches``)."""
    parser.add_argument(
        "--batch-threads", type=_batch_threads, default="auto", metavar="N",
        help="batches processed side by side, one torch thread each (auto, the default: one per torch "
        "thread on a CPU, i.e. per core; 1 on a GPU or with --workers; 1: one batch at a time using "
        "every thread). Faster for these small models; the results are the same",
    )


def _add_distributed_option(parser):
    """``--dist-timeout``: how long the ranks of a ``torchrun`` launch wait for a silent rank."""
    parser.add_argument(
        "--dist-timeout", type=float, default=600.0, metavar="SECONDS",
        help="under torchrun (several processes or machines): seconds a rank may go silent (died, "
        "hung, unreachable) before the others stop with an error; ranks that finish early wait for "
        "the others as long as these keep working",
    )


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
    >>> args.inputs, args.frames, args.plot, args.batch_size, args.resume, args.frame_weighting, args.precision
    (['a.wav'], 'f', True, 16, False, 'all', 'float32')
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
    parser.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default="float32",
                        help="VQScore: arithmetic of the encoder's convolutions (float32, the default: "
                        "exact scores; bfloat16: 1.8x faster convolutions on CPUs with AVX512-BF16/AMX "
                        "and on CUDA, scores within 5e-4; auto: bfloat16 where it is fast)")
    _add_convolution_option(parser)
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
    _add_batch_threads_option(parser)
    _add_distributed_option(parser)
    parser.set_defaults(func=_run_score)


def _run_score(args):
    """Runs ``sqe score``: in this process, or as one rank of a ``torchrun`` launch."""
    from speechbrain_sqe.inference.distributed_jobs import DistributedJob

    if args.plot and not args.frames:
        print("sqe score: --plot needs --frames FOLDER (the plots are written there)", file=sys.stderr)
        return 2
    if args.resume and not args.csv:
        print("sqe score: --resume needs --csv FILE (the rows already scored are read from it)",
              file=sys.stderr)
        return 2
    job = DistributedJob("score", timeout=args.dist_timeout)
    if job.distributed:
        with job:
            return _run_score_distributed(args, job)
    from speechbrain_sqe.dataio.files import expand_audio_inputs

    files = expand_audio_inputs(args.inputs)
    if args.limit is not None:
        files = files[: args.limit]
    if not files:
        print(f"sqe score: no audio files found in {' '.join(args.inputs)}", file=sys.stderr)
        return 1
    scorer = _load_model(args, "quality")
    problem = _check_scorer(args, scorer)
    if problem:
        print(f"sqe score: {problem}", file=sys.stderr)
        return 2
    columns = list(scorer.metric_names)  # one for most predictors; one column per metric of a multi-metric one
    from speechbrain_sqe.inference.batch_scoring import score_files
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV, ScoresCSVError

    table, kept = None, []
    if args.csv:
        try:
            table = ScoresCSV(args.csv, columns[0] if len(columns) == 1 else columns, resume=args.resume)
        except ScoresCSVError as error:
            print(f"sqe score: {error}", file=sys.stderr)
            return 2
        order = files  # the CSV ends in input order, the resumed rows included
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
                on_batch=(lambda batch, bad: table.append(batch)) if table else None,
                threads=args.batch_threads)
        except ScoresCSVError as error:
            stopped = error
    if table is not None and stopped is None:
        try:
            table.finish(order)
        except ScoresCSVError as error:
            stopped = error
    if stopped is not None:
        print(f"sqe score: {stopped}", file=sys.stderr)
        return 2
    if args.frames:
        problem = _write_frames(args, scorer, columns[0], results, results)
        if problem:
            print(f"sqe score: {problem}", file=sys.stderr)
            return 2
    return _report_scores(args, columns, results, failures, len(files))


def _check_scorer(args, scorer):
    """Why ``scorer`` cannot do what the score options ask (``None`` when it can); sets its frame
    weighting, precision and convolution algorithm."""
    if args.frames and not scorer.has_frame_scores:
        return f"{type(scorer).__name__} gives no per-frame scores (--frames)"
    if args.frame_weighting != "all":
        if not hasattr(scorer, "frame_weighting"):
            return f"{type(scorer).__name__} has no frame weighting (--frame-weighting)"
        scorer.frame_weighting = args.frame_weighting
    if args.precision != "float32":
        if not hasattr(scorer, "set_precision"):
            return f"{type(scorer).__name__} has no precision choice (--precision)"
        scorer.set_precision(args.precision)
    return _set_convolution(args, scorer)


def _write_frames(args, scorer, column, results, every):
    """Writes the frame outputs of ``results`` (named as among ``every``, all ranks' results in input
    order, so that the names are those of one process); returns an error message or None."""
    from speechbrain_sqe.inference.scoring_outputs import write_frame_outputs

    try:
        write_frame_outputs(scorer, [r for r in results if r[column] is not None], args.frames,
                            plot=args.plot, among=[r["path"] for r in every if r[column] is not None])
    except OSError as error:
        return (f"cannot write the frame scores into {args.frames}: "
                f"{error.strerror or error} ({error.filename or args.frames})")
    return None


def _report_scores(args, columns, results, failures, total):
    """Prints the scores (all, or the first 20 with --csv), their means, files without speech and
    failures; returns the exit status (1 when some file failed)."""
    from speechbrain_sqe.inference.batch_scoring import NO_SPEECH

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
        print(f"{len(failures)} of {total} files could not be scored", file=sys.stderr)
    return 1 if failures else 0


def _load_problem(error, *expected):
    """A rank's model-loading error as one line: a user error's message, another's with its type."""
    if isinstance(error, (*_user_errors(), *expected)):
        return str(error)
    return f"cannot load the model ({type(error).__name__}: {error})"


def _finish_ranks(job, status, message=None):
    """Every rank returns rank 0's exit status; rank 0 prints ``message`` (an error) first."""
    if job.is_main and message:
        print(f"sqe {job.command}: {message}", file=sys.stderr, flush=True)
    return job.broadcast(status)


def _run_score_distributed(args, job):
    """``sqe score`` as one rank: rank 0 plans (files, resumed rows) and merges the ranks' partial
    CSVs into exactly the CSV one process writes; every rank scores its share of the files."""
    from speechbrain_sqe.dataio.files import expand_audio_inputs
    from speechbrain_sqe.inference.batch_scoring import score_files
    from speechbrain_sqe.inference.distributed_jobs import (
        DistributedJobError,
        batch_shard,
        partial_path,
        rank_device,
    )
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV, ScoresCSVError

    args.device = rank_device(args.device)
    try:
        files = None
        if job.is_main:
            files = expand_audio_inputs(args.inputs)[: args.limit]
        files = job.broadcast(files)
        if not files:
            return _finish_ranks(job, 1, f"no audio files found in {' '.join(args.inputs)}")
        try:
            scorer = _load_model(args, "quality")
            problem = _check_scorer(args, scorer)
        except Exception as error:  # noqa: BLE001 -- every rank must hear of it, or they wait
            problem = _load_problem(error)
        problems = [p for p in job.gather(problem) if p]
        if problems:
            return _finish_ranks(job, 2, problems[0])
        columns = list(scorer.metric_names)
        column = columns[0] if len(columns) == 1 else columns
        plan = None
        if job.is_main:
            plan = _plan_score_csv(args, files, column)
        plan = job.broadcast(plan)
        if plan["error"]:
            return _finish_ranks(job, 2, plan["error"])
        remaining = plan["remaining"]
        parts = batch_shard(plan["durations"], args.batch_size, job.world_size)
        job.report_shares(parts, plan["durations"], "s")
        mine = [remaining[i] for i in parts[job.rank]]

        local = {}

        def work():
            table = ScoresCSV(partial_path(args.csv, job.rank, job.world_size), column) if args.csv else None
            if not mine:
                return [], []
            local["results"], failures = score_files(
                scorer, mine, batch_size=args.batch_size, frames=bool(args.frames),
                num_workers=args.workers, progress=not args.no_progress and job.is_main,
                detect_speech=True, on_batch=(lambda batch, bad: table.append(batch)) if table else None,
                threads=args.batch_threads)
            return [{k: v for k, v in r.items() if k != "frames"} for r in local["results"]], failures

        outcomes = job.run(work)
        failed = job.failures(outcomes)
        if failed:
            return _finish_ranks(job, 2, failed)
        every = _in_order(remaining, [r for _, value in outcomes for r in value[0]])
        if args.frames:  # each rank writes its own files' frames, named as one process names them
            problem = _write_frames(args, scorer, columns[0], local.get("results", []), every)
            problems = [p for p in job.gather(problem) if p]
            if problems:
                return _finish_ranks(job, 2, problems[0])
        status, message = 0, None
        if job.is_main:
            results = every
            failures = _in_order(remaining, [f for _, value in outcomes for f in value[1]], key=lambda f: f[0])
            try:
                if args.csv:
                    _merge_score_csv(args, files, column)
            except ScoresCSVError as error:
                status, message = 2, str(error)
            if message is None:
                status = _report_scores(args, columns, results, failures, len(remaining))
        return _finish_ranks(job, status, message)
    except DistributedJobError as error:
        job.error(str(error).removeprefix(f"rank {job.rank} of {job.world_size}: "))
        return 2


def _in_order(paths, items, key=lambda item: item["path"]):
    """``items`` (one per path, from several ranks) in the order of ``paths``."""
    rank = {path: index for index, path in enumerate(paths)}
    return sorted(items, key=lambda item: rank.get(key(item), len(rank)))


def _plan_score_csv(args, files, column):
    """Rank 0's plan of a distributed ``sqe score``: starts (or resumes) the CSV, folds in the partial
    CSVs of an interrupted distributed run (any number of ranks), and lists the files left."""
    from speechbrain_sqe.inference.distributed_jobs import (
        existing_partials,
        file_durations,
    )
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV, ScoresCSVError

    done = set()
    if args.csv:
        try:
            table = ScoresCSV(args.csv, column, resume=args.resume)
            partials = existing_partials(args.csv)
            if args.resume:
                for path in partials:
                    table.absorb(path)
                if partials:
                    table.finish(files)  # persisted before the partials go: nothing is lost
            for path in partials:
                os.remove(path)
        except ScoresCSVError as error:
            return {"error": str(error)}
        except OSError as error:
            return {"error": f"{error.filename}: cannot remove an old partial CSV ({error.strerror})"}
        done = table.done
        kept = [path for path in files if path in done]
        if kept:
            print(f"resuming: {len(kept)} files already in {args.csv}, {len(files) - len(kept)} left",
                  flush=True)
    remaining = [path for path in files if path not in done]
    return {"error": None, "remaining": remaining, "durations": file_durations(remaining)}


def _merge_score_csv(args, files, column):
    """Rank 0: the ranks' partial CSVs into ``--csv``, in input order; the partials are removed."""
    from speechbrain_sqe.inference.distributed_jobs import existing_partials
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV

    table = ScoresCSV(args.csv, column, resume=True)
    partials = existing_partials(args.csv)
    for path in partials:
        table.absorb(path)
    table.finish(files)
    for path in partials:
        os.remove(path)


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
        help="enhance noisy speech files and folders (the shipped BSSE by default)",
        description="Enhances audio files with a speech enhancer (the shipped BSSE, trained on real "
        "speech, unless --model names another, e.g. vq_enhancer or sqa_guided) "
        "and writes each as a 16-bit wav at the model's rate in --out-dir: "
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
                        help="a method option of the model, repeatable (e.g. the VQ enhancer's mix=R, "
                        "the share of the noisy input blended back in, 0..1; default: the model's own); "
                        "an unknown name lists the model's options")
    parser.add_argument("--segment-seconds", type=_segment_seconds, default="model", metavar="S",
                        help="enhance inputs longer than S seconds in overlapping windows of S s, "
                        "crossfaded (memory of one window, time linear in the length); 'none': whole "
                        "files however long (default: the model's own, 30 s unless its folder says)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="enhance only the first N files")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--resume", action="store_true",
                        help="skip inputs whose output exists and is a complete, readable file "
                        "(after an interruption); not with --overwrite")
    _add_model_options(parser, "enhancement", batch_size=8)
    _add_convolution_option(parser)
    _add_batch_threads_option(parser)
    _add_distributed_option(parser)
    parser.set_defaults(func=_run_enhance)


def _plan_enhance(args):
    """The files to enhance and their outputs, checked (collisions, overwrites, the folder);
    returns ``{"error": (status, message) or None, "files", "outputs", "total", "done"}``."""
    from speechbrain_sqe.inference.batch_enhancement import (
        OutputPathError,
        check_output_paths,
        complete_output,
        output_paths,
    )

    files, outputs = output_paths(args.inputs, args.out_dir)
    if args.limit is not None:
        files, outputs = files[: args.limit], outputs[: args.limit]
    if not files:
        return {"error": (1, f"no audio files found in {' '.join(args.inputs)}")}
    try:
        check_output_paths(args.inputs, files, outputs, args.out_dir, overwrite=args.overwrite,
                           resume=args.resume)
    except OutputPathError as error:
        return {"error": (2, str(error))}
    total, done = len(files), None
    if args.resume:
        complete = [complete_output(out) for out in outputs]
        files = [path for path, skip in zip(files, complete) if not skip]
        outputs = [out for out, skip in zip(outputs, complete) if not skip]
        done = sum(complete)
    return {"error": None, "files": files, "outputs": outputs, "total": total, "done": done}


def _segment_seconds(text):
    """``--segment-seconds``: a positive number, ``none`` (whole files) or ``model`` (its own)."""
    if text in ("none", "model"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds or 'none', got {text!r}")
    return value


def _configure_enhancer(args, enhancer):
    """The method options of ``--option`` (parsed; ValueError names a bad one), after applying
    ``--segment-seconds`` to ``enhancer``."""
    if args.segment_seconds != "model":
        enhancer.segment_seconds = None if args.segment_seconds == "none" else args.segment_seconds
    problem = _set_convolution(args, enhancer)
    if problem:
        raise ValueError(problem)
    return enhancer.parse_options(args.option)


def _run_enhance(args):
    """Runs ``sqe enhance``: in this process, or as one rank of a ``torchrun`` launch."""
    from speechbrain_sqe.inference.batch_enhancement import (
        OutputPathError,
        OutputWriteError,
        enhance_files,
        writable_folder,
    )
    from speechbrain_sqe.inference.distributed_jobs import DistributedJob

    job = DistributedJob("enhance", timeout=args.dist_timeout)
    if job.distributed:
        with job:
            return _run_enhance_distributed(args, job)
    plan = _plan_enhance(args)
    if plan["error"]:
        print(f"sqe enhance: {plan['error'][1]}", file=sys.stderr)
        return plan["error"][0]
    files, outputs, total = plan["files"], plan["outputs"], plan["total"]
    if args.resume:
        print(f"resuming: {plan['done']} outputs already complete in {args.out_dir}, {len(files)} left")
        if not files:
            return 0
    enhancer = _load_model(args, "enhancement")
    try:
        options = _configure_enhancer(args, enhancer)
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
                                          progress=not args.no_progress, threads=args.batch_threads, **options)
    except OutputWriteError as error:
        print(f"sqe enhance: {error}", file=sys.stderr)
        return 2
    return _report_enhanced(args, written, failures, time.perf_counter() - start, total)


def _report_enhanced(args, written, failures, elapsed, total):
    """Prints the summary line and the failures; returns the exit status."""
    from speechbrain_sqe.inference.batch_enhancement import enhance_summary

    print(enhance_summary(written, elapsed, args.out_dir))
    for path, reason in failures:
        print(f"FAILED {path}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {total} files could not be enhanced", file=sys.stderr)
    return 1 if failures else 0


def _run_enhance_distributed(args, job):
    """``sqe enhance`` as one rank: rank 0 plans and checks the outputs; every rank enhances its
    share straight into --out-dir (distinct files: nothing to merge); rank 0 reports for all."""
    from speechbrain_sqe.inference.batch_enhancement import (
        OutputPathError,
        enhance_files,
        writable_folder,
    )
    from speechbrain_sqe.inference.distributed_jobs import (
        DistributedJobError,
        batch_shard,
        file_durations,
        rank_device,
    )

    args.device = rank_device(args.device)
    try:
        plan = None
        if job.is_main:
            plan = _plan_enhance(args)
            if not plan["error"] and plan["files"]:
                try:
                    writable_folder(args.out_dir)
                except OutputPathError as error:
                    plan["error"] = (2, str(error))
            if not plan["error"]:
                plan["durations"] = file_durations(plan["files"])
        plan = job.broadcast(plan)
        if plan["error"]:
            return _finish_ranks(job, plan["error"][0], plan["error"][1])
        files, outputs = plan["files"], plan["outputs"]
        if args.resume:
            job.log(f"resuming: {plan['done']} outputs already complete in {args.out_dir}, {len(files)} left")
            if not files:
                return 0
        problem = None
        try:
            enhancer = _load_model(args, "enhancement")
            options = _configure_enhancer(args, enhancer)
        except Exception as error:  # noqa: BLE001 -- every rank must hear of it, or they wait
            problem = _load_problem(error, ValueError)
        problems = [p for p in job.gather(problem) if p]
        if problems:
            return _finish_ranks(job, 2, problems[0])
        parts = batch_shard(plan["durations"], args.batch_size, job.world_size)
        job.report_shares(parts, plan["durations"], "s")
        mine = parts[job.rank]
        start = time.perf_counter()
        outcomes = job.run(lambda: enhance_files(
            enhancer, [files[i] for i in mine], [outputs[i] for i in mine], batch_size=args.batch_size,
            progress=not args.no_progress and job.is_main, threads=args.batch_threads, **options)
            if mine else ([], []))
        failed = job.failures(outcomes)
        if failed:
            return _finish_ranks(job, 2, failed)
        status = 0
        if job.is_main:
            written = _in_order(files, [w for _, value in outcomes for w in value[0]])
            failures = _in_order(files, [f for _, value in outcomes for f in value[1]], key=lambda f: f[0])
            status = _report_enhanced(args, written, failures, time.perf_counter() - start, plan["total"])
        return _finish_ranks(job, status)
    except DistributedJobError as error:
        job.error(str(error).removeprefix(f"rank {job.rank} of {job.world_size}: "))
        return 2


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
    from speechbrain_sqe.inference.distributed_jobs import launched_world_size

    if launched_world_size() > 1:
        print("sqe analyze-ssl: runs in one process; start it without torchrun", file=sys.stderr)
        return 2
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
    # Batches reuse freed memory instead of page-faulting it back in (speechbrain_sqe.utils.allocator).
    keep_freed_memory()
    try:
        return args.func(args)
    except _user_errors() as error:
        if args.debug:
            raise
        print(f"sqe {args.command}: {error}", file=sys.stderr)
        return 2


#: Environment variable that, set to 1, makes ``sqe`` exit the usual way (see :func:`run`).
FULL_EXIT = "SQE_FULL_EXIT"


def run():
    """The ``sqe`` console script: :func:`main`, then a quick exit of the process.

    Why: tearing the interpreter down once torch is imported takes 0.3-0.35 s on the 2-core CPU
    (its modules' objects freed one by one), a fifth of scoring one file (``benchmarks/RESULTS.md``).
    Every file a command writes is closed by then (context managers and atomic renames;
    ``tests/test_cli_exit.py`` checks that no file is left open), so ``sqe`` runs the ``atexit``
    handlers (logging, multiprocessing), flushes stdout and stderr and ends with ``os._exit``. It
    exits the usual way when torch was never imported (nothing to gain), when a non-daemon thread is
    still alive, under torchrun (``WORLD_SIZE`` above 1), or with ``SQE_FULL_EXIT=1``. Errors
    raised out of :func:`main` (``--debug``) propagate as always. ``python -m speechbrain_sqe.cli``
    and calls of :func:`main` from Python never exit early.

    Before :func:`main`, it defers ``scipy.stats`` (0.5-0.7 s that SpeechBrain's import spends on a
    module a one-file job never uses; :mod:`speechbrain_sqe.utils.deferred_imports`), as
    ``python -m speechbrain_sqe.cli`` does; a Python caller of :func:`main` keeps its imports as they are.
    """
    defer_scipy_stats()
    status = main()
    if _quick_exit_allowed():
        import atexit

        atexit._run_exitfuncs()  # what the interpreter would run at exit (logging, multiprocessing)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (sqe ... | head): nothing more to deliver
                pass
        os._exit(0 if status is None else status if isinstance(status, int) else 1)  # as sys.exit reads it
    sys.exit(status)


def _quick_exit_allowed():
    """Whether :func:`run` may end the process with ``os._exit`` (see there).

    Returns
    -------
    bool
        False with ``SQE_FULL_EXIT=1``, without torch imported, under torchrun or while a
        non-daemon thread other than the main one is alive.

    Example
    -------
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {FULL_EXIT: "1"}):
    ...     _quick_exit_allowed()
    False
    >>> with mock.patch.dict(os.environ, {"WORLD_SIZE": "2"}):
    ...     _quick_exit_allowed()
    False
    """
    import threading

    if os.environ.get(FULL_EXIT) == "1" or "torch" not in sys.modules:
        return False
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return False
    main_thread = threading.main_thread()
    return not any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main_thread)


def _user_errors():
    """The errors a user's input causes (a refused, missing or wrong-task model...): one line each,
    no traceback (``--debug`` shows it)."""
    from speechbrain_sqe.analysis.ssl_pairs import PairsError
    from speechbrain_sqe.inference.distributed_jobs import DistributedJobError
    from speechbrain_sqe.inference.hub import InterfaceError
    from speechbrain_sqe.utils.safe_load import UnsafeHyperparamsError

    return (InterfaceError, UnsafeHyperparamsError, PairsError, DistributedJobError)


if __name__ == "__main__":
    defer_scipy_stats()  # as the console script does (see run)
    sys.exit(main())
