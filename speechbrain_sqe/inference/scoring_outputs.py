"""What ``sqe score`` writes: the per-file CSV (as it goes, resumable) and, on request, per-frame CSVs
and plots."""

import csv
import math
import os
from itertools import zip_longest

from speechbrain_sqe.analysis.frame_plot import plot_frame_scores
from speechbrain_sqe.dataio.resumable_csv import (
    ResumableCSV,
    ResumeError,
    cell_text,
    csv_line,
    write_atomic,
)


class ScoresCSVError(ResumeError):
    """Raised when the scores CSV cannot be read back (resume) or written; names the file."""


def _score_columns(column):
    """The score columns: one name, or a list of names (a predictor of several metrics)."""
    return [column] if isinstance(column, str) else list(column)


def _columns(column):
    return ["path", *_score_columns(column), "duration", "speech"]


def _visible(value):
    # cell_text writes NaN as a blank, which here means "no speech": a NaN is written as "nan"
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _row(result, column):
    """A result as a row by column, as ResumableCSV writes it (speech as yes/no)."""
    speech = result.get("speech")
    row = {"path": result["path"], **{name: _visible(result.get(name)) for name in _score_columns(column)}}
    row.update({"duration": _visible(result["duration"]),
                "speech": "" if speech is None else ("yes" if speech else "no")})
    return row


def _cells(result, column):
    """A result as the text cells of its line."""
    return [cell_text(value) for value in _row(result, column).values()]


def _parse(row, column):
    parsed = {"path": row["path"]}
    for name in _score_columns(column):
        score = row.get(name, "")
        parsed[name] = float(score) if score not in ("", None) else None
    parsed.update({"duration": float(row.get("duration") or 0.0),
                   "speech": {"yes": True, "no": False}.get(row.get("speech") or "")})
    return parsed


class _ScoresTable(ResumableCSV):
    """The file under a :class:`ScoresCSV`: a :class:`ResumableCSV` that refuses to replace anything
    but a file, and resumes a CSV of the same scores in an older layout (rewritten in this one)."""

    error = ScoresCSVError

    def __init__(self, path, columns, key="path", resume=False, newline="\n", durable=True):
        if os.path.exists(path) and not os.path.isfile(path):  # never rename over a device or folder
            raise ScoresCSVError(f"{path}: not a regular file; give --csv a file path")
        super().__init__(path, columns, key=key, resume=resume, newline=newline, durable=durable)

    def _adopt(self, header, body):
        if not any("".join(cells).strip() for cells in [header, *body]):  # blank: started anew
            return []
        if "path" not in header:
            raise ScoresCSVError(f"{self.path}: not a scores CSV (no path column); cannot resume from it")
        wanted = self.columns[1:-2]
        if any(name not in header for name in wanted):
            others = ", ".join(name for name in header if name not in ("path", "duration", "speech"))
            raise ScoresCSVError(f"{self.path}: holds {others or 'no'} scores, not {', '.join(wanted)}; "
                                 "resume with the same model or write another --csv")
        rows = []
        for number, cells in enumerate(body, start=2):
            if not cells:  # a blank line
                continue
            try:  # parsed and written again: values checked, cells as this layout writes them
                rows.append(_cells(_parse(dict(zip_longest(header, cells)), wanted), wanted))
            except (ValueError, TypeError, KeyError) as error:
                raise ScoresCSVError(f"{self.path}: unreadable row {number} ({error}); "
                                     "cannot resume from it") from error
        return rows


class ScoresCSV:
    """The per-file scores CSV of ``sqe score``, written as results come in.

    Each batch's rows are appended with one ``write`` of complete lines and flushed to disk, so
    an interrupted run keeps every finished batch; a half-written last line (a crash inside that
    write, a full disk) is cut off when the file is opened with ``resume``. :meth:`finish` rewrites
    the file in input order (through a temporary name). Columns: ``path``, the score (empty for a
    file without speech; one column per metric for a predictor of several), ``duration`` (seconds),
    ``speech`` (``yes``/``no``; empty when not checked). The mechanics are
    :class:`~speechbrain_sqe.dataio.resumable_csv.ResumableCSV`'s.

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
        try:
            self._table = _ScoresTable(path, _columns(column), resume=resume)
        except OSError as error:
            raise ScoresCSVError(f"{path}: cannot write the scores CSV ({error.strerror or error})") from error

    @property
    def rows(self):
        """The rows so far: ``path -> {column: value}`` (floats, ``None`` for a blank, speech a bool)."""
        columns = self._table.columns
        return {path: _parse(dict(zip(columns, cells)), self.column) for path, cells in self._table.rows.items()}

    @property
    def done(self):
        """The paths already in the CSV (skipped by a resumed run)."""
        return self._table.done

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
        try:
            self._table.extend([_row(result, self.column) for result in results])
        except OSError as error:
            raise ScoresCSVError(f"{self.path}: cannot append scores ({error.strerror or error}); "
                                 f"{len(self._table.rows)} rows written before are kept") from error

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
            return self._table.absorb(path)
        except OSError as error:
            raise ScoresCSVError(f"{path}: cannot read the partial scores ({error.strerror or error})") from error

    def finish(self, order):
        """Rewrites the CSV with its rows in ``order`` (rows of paths not in ``order`` go last).

        Arguments
        ---------
        order : list of str
            The input files, in the order the user gave them.
        """
        rank = {path: index for index, path in enumerate(order)}
        # the full order for finalize: paths not in order keep the order they came, not sorted by path
        paths = sorted(self._table.rows, key=lambda path: rank.get(path, len(rank)))
        try:
            self._table.finalize(paths)
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
    lines = [_columns(column), *(_cells(result, column) for result in results)]
    write_atomic(path, "".join(csv_line(cells, "\n") for cells in lines))


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
