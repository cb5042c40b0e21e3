"""What ``sqe score`` writes: the per-file CSV (as it goes, resumable) and, on request, per-frame CSVs
and plots."""

import csv
import errno
import io
import os

from speechbrain_sqe.analysis.frame_plot import plot_frame_scores
from speechbrain_sqe.dataio.resumable_csv import write_atomic


class ScoresCSVError(ValueError):
    """Raised when the scores CSV cannot be read back (resume) or written; names the file."""


def _score_columns(column):
    """The score columns: one name, or a list of names (a predictor of several metrics)."""
    return [column] if isinstance(column, str) else list(column)


def _columns(column):
    return ["path", *_score_columns(column), "duration", "speech"]


def _format(result, column):
    speech = result.get("speech")
    row = {"path": result["path"]}
    for name in _score_columns(column):
        score = result.get(name)
        row[name] = "" if score is None else score
    row.update({"duration": result["duration"], "speech": "" if speech is None else ("yes" if speech else "no")})
    return row


def _render(rows, column, header=False):
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=_columns(column), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(_format(row, column) for row in rows)
    return stream.getvalue()


def _parse(row, column):
    parsed = {"path": row["path"]}
    for name in _score_columns(column):
        score = row.get(name, "")
        parsed[name] = float(score) if score not in ("", None) else None
    parsed.update({"duration": float(row.get("duration") or 0.0),
                   "speech": {"yes": True, "no": False}.get(row.get("speech") or "")})
    return parsed


class ScoresCSV:
    """The per-file scores CSV of ``sqe score``, written as results come in.

    Each batch's rows are appended with one ``write`` of complete lines and flushed to disk, so
    an interrupted run keeps every finished batch; a half-written last line (a crash inside that
    write, a full disk) is cut off when the file is opened with ``resume``. :meth:`finish` rewrites
    the file in input order (through a temporary name). Columns: ``path``, the score (empty for a
    file without speech; one column per metric for a predictor of several), ``duration`` (seconds),
    ``speech`` (``yes``/``no``; empty when not checked).

    Arguments
    ---------
    path : str
        The CSV file (its folder is created).
    column : str or list of str
        The score's name (the predictor's ``METRIC_NAME``), or the names of its scores (its
        ``metric_names``), one column each.
    resume : bool
        Keep the rows already in ``path`` (see :attr:`done`) and append after them; otherwise the
        file is started anew.

    Raises
    ------
    ScoresCSVError
        When the file cannot be written, or (resume) holds another score or is not a scores CSV.

    Example
    -------
    >>> import tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "scores.csv")
    >>> table = ScoresCSV(out, "vqscore")
    >>> table.append([{"path": "b.wav", "vqscore": 0.91, "duration": 1.5, "speech": True}])
    >>> with open(out, "a") as stream:   # a run killed in the middle of a line
    ...     _ = stream.write("a.wav,0.8")
    >>> table = ScoresCSV(out, "vqscore", resume=True)
    >>> sorted(table.done)
    ['b.wav']
    >>> table.append([{"path": "a.wav", "vqscore": None, "duration": 2.0, "speech": False}])
    >>> table.finish(["a.wav", "b.wav"])
    >>> open(out).read().splitlines()
    ['path,vqscore,duration,speech', 'a.wav,,2.0,no', 'b.wav,0.91,1.5,yes']
    """

    def __init__(self, path, column="vqscore", resume=False):
        self.path = path
        self.column = column
        self.rows = {}
        if os.path.exists(path) and not os.path.isfile(path):  # never rename over a device or folder
            raise ScoresCSVError(f"{path}: not a regular file; give --csv a file path")
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if resume and os.path.exists(path):
                self._read_back()
            else:
                write_atomic(path, _render([], column, header=True))
        except OSError as error:
            raise ScoresCSVError(f"{path}: cannot write the scores CSV ({error.strerror or error})") from error

    @property
    def done(self):
        """The paths already in the CSV (skipped by a resumed run)."""
        return set(self.rows)

    def _read_back(self):
        with open(self.path, "rb") as stream:
            data = stream.read()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # a line cut off by an interruption: drop it
            with open(self.path, "r+b") as stream:
                stream.truncate(len(complete))
        text = complete.decode("utf-8", errors="replace")
        if not text.strip():
            write_atomic(self.path, _render([], self.column, header=True))
            return
        reader = csv.DictReader(io.StringIO(text))
        if "path" not in (reader.fieldnames or []):
            raise ScoresCSVError(f"{self.path}: not a scores CSV (no path column); cannot resume from it")
        wanted = _score_columns(self.column)
        if any(name not in reader.fieldnames for name in wanted):
            others = ", ".join(name for name in reader.fieldnames if name not in ("path", "duration", "speech"))
            raise ScoresCSVError(f"{self.path}: holds {others or 'no'} scores, not {', '.join(wanted)}; "
                                 "resume with the same model or write another --csv")
        try:
            for row in reader:
                self.rows[row["path"]] = _parse(row, self.column)
        except (ValueError, TypeError, KeyError) as error:
            raise ScoresCSVError(f"{self.path}: unreadable row {reader.line_num} ({error}); "
                                 "cannot resume from it") from error
        if reader.fieldnames != _columns(self.column):  # an older layout: rewrite in the current one
            write_atomic(self.path, _render(self.rows.values(), self.column, header=True))

    def append(self, results):
        """Appends rows (complete lines, one write, flushed to disk).

        Arguments
        ---------
        results : list of dict
            Rows as :func:`~speechbrain_sqe.inference.batch_scoring.score_files` gives them.

        Raises
        ------
        ScoresCSVError
            When the write fails (read-only or full disk); the rows written before stay.
        """
        if not results:
            return
        data = _render(results, self.column).encode("utf-8")
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(descriptor).st_size
                try:
                    written = os.write(descriptor, data)
                    if written != len(data):
                        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (short write)")
                    os.fsync(descriptor)
                except OSError:
                    os.ftruncate(descriptor, size)  # never leave part of a line
                    raise
            finally:
                os.close(descriptor)
        except OSError as error:
            raise ScoresCSVError(f"{self.path}: cannot append scores ({error.strerror or error}); "
                                 f"{len(self.rows)} rows written before are kept") from error
        for result in results:
            self.rows[result["path"]] = {key: result.get(key) for key in _columns(self.column)}

    def absorb(self, path):
        """Takes the rows of another scores CSV of the same score (a rank's partial results); they are
        written by the next :meth:`finish`.

        Arguments
        ---------
        path : str
            The other CSV (a half line at its end is dropped).

        Returns
        -------
        int
            How many rows it held.

        Raises
        ------
        ScoresCSVError
            When it holds other scores or cannot be read.

        Example
        -------
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> part = ScoresCSV(os.path.join(folder, "s.rank1-of-2.partial.csv"), "vqscore")
        >>> part.append([{"path": "b.wav", "vqscore": 0.5, "duration": 1.0, "speech": True}])
        >>> table = ScoresCSV(os.path.join(folder, "s.csv"), "vqscore")
        >>> table.absorb(part.path), sorted(table.done)
        (1, ['b.wav'])
        """
        try:
            other = ScoresCSV(path, self.column, resume=True)
        except OSError as error:
            raise ScoresCSVError(f"{path}: cannot read the partial scores ({error.strerror or error})") from error
        self.rows.update(other.rows)
        return len(other.rows)

    def finish(self, order):
        """Rewrites the CSV with its rows in ``order`` (rows of paths not in ``order`` go last).

        Arguments
        ---------
        order : list of str
            The input files, in the order the user gave them.
        """
        rank = {path: index for index, path in enumerate(order)}
        rows = sorted(self.rows.values(), key=lambda row: rank.get(row["path"], len(rank)))
        try:
            write_atomic(self.path, _render(rows, self.column, header=True))
        except OSError as error:
            raise ScoresCSVError(f"{self.path}: cannot rewrite the scores CSV in input order "
                                 f"({error.strerror or error}); its rows are complete") from error


def write_scores_csv(path, results, column="vqscore"):
    """Writes one row per scored file: ``path``, the score (``column``), ``duration``, ``speech``.

    Arguments
    ---------
    path : str
        The CSV file (folders are created).
    results : list of dict
        From :func:`speechbrain_sqe.inference.batch_scoring.score_files`.
    column : str or list of str
        The score's name (the predictor's ``METRIC_NAME``), or its ``metric_names``.

    Example
    -------
    >>> import tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "scores.csv")
    >>> write_scores_csv(out, [{"path": "a.wav", "vqscore": 0.91, "duration": 1.5}])
    >>> open(out).read().splitlines()
    ['path,vqscore,duration,speech', 'a.wav,0.91,1.5,']
    >>> write_scores_csv(out, [{"path": "a.wav", "pesq_wb": 3.1, "stoi": None, "duration": 1.5}], ["pesq_wb", "stoi"])
    >>> open(out).read().splitlines()
    ['path,pesq_wb,stoi,duration,speech', 'a.wav,3.1,,1.5,']
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, _render(results, column, header=True))


def _score_text(score):
    return "(no speech)" if score is None else f"{score:.3f}"


def frame_output_names(paths):
    """The base name of each file's frame outputs: its stem, with ``_`` added while it is taken.

    Arguments
    ---------
    paths : list of str
        The scored files, in input order.

    Returns
    -------
    dict
        ``path -> name``.

    Example
    -------
    >>> frame_output_names(["x/a.wav", "y/a.flac", "b.wav"])
    {'x/a.wav': 'a', 'y/a.flac': 'a_', 'b.wav': 'b'}
    """
    names, used = {}, set()
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        while name in used:  # two inputs with one base name
            name += "_"
        used.add(name)
        names[path] = name
    return names


def write_frame_outputs(scorer, results, folder, plot=False, among=None):
    """Writes ``<name>.frames.csv`` (time, score) per file and, with ``plot``, ``<name>.png``.

    Arguments
    ---------
    scorer : speechbrain_sqe.inference.quality.QualityPredictor
        The interface (for the frame hop, rate, score name and audio loader).
    results : list of dict
        From ``score_files(..., frames=True)``.
    folder : str
        Output folder (created).
    plot : bool
        Also draw the spectrogram with the frame score curve under it.
    among : list of str, optional
        Every scored file in input order, when ``results`` are a share of them (one rank's): the
        names are those :func:`frame_output_names` gives among all (default: among ``results``).
    """
    os.makedirs(folder, exist_ok=True)
    step = scorer.frame_hop_seconds
    names = frame_output_names(among if among is not None else [result["path"] for result in results])
    for result in results:
        name = names[result["path"]]
        frames = result["frames"]
        with open(os.path.join(folder, name + ".frames.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["time_s", "frame_score"])
            writer.writerows((f"{i * step:.3f}", f"{float(v):.5f}") for i, v in enumerate(frames))
        if plot:
            import torch

            wav = scorer.load_file(result["path"])
            times = torch.arange(frames.shape[0]) * step
            plot_frame_scores(wav, scorer.hparams.sample_rate, times, frames,
                              os.path.join(folder, name + ".png"),
                              title=f"{os.path.basename(result['path'])}: {scorer.METRIC_NAME} "
                                    f"{_score_text(result[scorer.METRIC_NAME])}",
                              hop_length=round(step * scorer.hparams.sample_rate))
