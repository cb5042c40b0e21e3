"""A results CSV that is written as rows finish, survives a kill, and can be resumed.

Each row is appended with one ``write`` call on a file opened with ``O_APPEND``, so a process
killed at any moment leaves whole lines only (a line cut by a full disk is dropped on resume).
The header is written with write-then-rename, and :meth:`ResumableCSV.finalize` rewrites the
finished table in a fixed row order the same way: a resumed run ends with the same file as an
uninterrupted one.
"""

import csv
import errno
import io
import logging
import math
import os

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """Raised when an existing CSV cannot be resumed (other columns, unreadable)."""


def cell_text(value):
    """A cell as text: floats with full precision, NaN and None as blanks.

    Arguments
    ---------
    value : object
        The cell's value.

    Returns
    -------
    str
        Its text.

    Example
    -------
    >>> [cell_text(value) for value in (0.1, float("nan"), None, 3, "a.wav")]
    ['0.1', '', '', '3', 'a.wav']
    """
    if value is None:
        return ""
    if isinstance(value, float):  # float() first: under NumPy 2, repr(np.float64(0.5)) is "np.float64(0.5)"
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)


def csv_line(cells, newline="\r\n"):
    """One CSV line (quoted where needed) of text cells.

    Arguments
    ---------
    cells : list of str
        The cells.
    newline : str
        The line ending (``csv``'s default ``"\\r\\n"``, or ``"\\n"``).

    Returns
    -------
    str
        The line, ending included.

    Example
    -------
    >>> csv_line(["a,b.wav", "0.5"], newline="\\n")
    '"a,b.wav",0.5\\n'
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerow(cells)
    return buffer.getvalue()


def write_atomic(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename (never half-written).

    Arguments
    ---------
    path : str
        The file; its folder is created.
    text : str
        The whole content.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "sub", "a.txt")
    >>> write_atomic(path, "x\\n"); open(path).read()
    'x\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _write_all(descriptor, data):
    written = os.write(descriptor, data)
    while written < len(data):  # only on a nearly full disk; resume drops a cut line
        written += os.write(descriptor, data[written:])


def _write_or_undo(descriptor, data):
    """Writes ``data`` and flushes it to disk; on a failure the file is cut back to its size before."""
    size = os.fstat(descriptor).st_size
    try:
        if os.write(descriptor, data) != len(data):
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (short write)")
        os.fsync(descriptor)
    except OSError:
        os.ftruncate(descriptor, size)  # never leave part of a line
        raise


def _append(path, data, durable):
    # A durable table's file must exist: a removed one is an error, not a new file without header.
    flags = os.O_WRONLY | os.O_APPEND | (0 if durable else os.O_CREAT)
    descriptor = os.open(path, flags, 0o644)
    try:
        (_write_or_undo if durable else _write_all)(descriptor, data)
    finally:
        os.close(descriptor)


class ResumableCSV:
    """A CSV table keyed by one column, appended row by row, resumable after an interruption.

    Arguments
    ---------
    path : str
        The CSV file.
    columns : list of str
        Its columns, in order; ``key`` must be one of them.
    key : str
        The column naming a row (a file name, an utterance ID).
    resume : bool
        Keep the rows of an existing file with the same columns (``done`` lists their keys);
        otherwise the file is started anew with the header only.
    newline : str
        The line ending written (``csv``'s default ``"\\r\\n"``, or ``"\\n"``).
    durable : bool
        Flush each append to disk and undo a failed one (the file keeps whole lines only, even
        when the disk fills up); the file must then still exist when appending.

    Raises
    ------
    ResumeError
        When resuming a file whose header differs from ``columns`` (a subclass raises its
        :attr:`error` and may take other layouts in :meth:`_adopt`).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.csv")
    >>> table = ResumableCSV(path, ["file", "score"])
    >>> table.append({"file": "b.wav", "score": 0.5})
    >>> table = ResumableCSV(path, ["file", "score"], resume=True)   # after an interruption
    >>> sorted(table.done)
    ['b.wav']
    >>> table.append({"file": "a.wav", "score": float("nan")})
    >>> table.finalize(["a.wav", "b.wav"])
    >>> open(path).read().split()
    ['file,score', 'a.wav,', 'b.wav,0.5']
    >>> ResumableCSV(path, ["file", "other"], resume=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.resumable_csv.ResumeError: ...scores.csv: its columns (file, score) differ from this run's (file, other); resume with the same settings or write another file
    """

    error = ResumeError  # what this table raises when a file cannot be resumed

    def __init__(self, path, columns, key="file", resume=False, newline="\r\n", durable=False):
        if key not in columns:
            raise ValueError(f"the key column {key!r} is not among the columns {columns}")
        self.path, self.columns, self.key = os.fspath(path), list(columns), key
        self.newline, self.durable = newline, durable
        self.rows = {}  # key -> list of cell texts, in the order they were written
        if resume and os.path.exists(self.path):
            self._read_existing()
        else:
            write_atomic(self.path, csv_line(self.columns, newline))

    @property
    def done(self):
        """The keys of the rows written so far (this run's and the resumed ones)."""
        return set(self.rows)

    def _read_existing(self):
        lines = self._read_lines()
        if not lines:
            write_atomic(self.path, csv_line(self.columns, self.newline))
            return
        index = self.columns.index(self.key)
        for cells in self._adopt(lines[0], lines[1:]):
            self.rows[cells[index]] = cells
        if lines[0] != self.columns:  # another layout, taken by a subclass: rewritten in this one
            self.finalize(list(self.rows))

    def _read_lines(self):
        """The file's lines as lists of cells, after cutting off an incomplete last line."""
        try:
            with open(self.path, "rb") as stream:
                data = stream.read()
        except OSError as error:
            raise self.error(f"{self.path}: cannot read it to resume ({error.strerror})") from None
        cut = data.rfind(b"\n") + 1
        if cut < len(data):  # a line cut short (a full disk): drop it, it is redone
            logger.warning("%s: dropping an incomplete last line", self.path)
            with open(self.path, "r+b") as stream:
                stream.truncate(cut)
            data = data[:cut]
        try:
            return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        except (UnicodeDecodeError, csv.Error) as error:
            raise self.error(f"{self.path}: not a readable CSV ({error}); write another file") from None

    def _adopt(self, header, body):
        """The rows (lists of cell texts, in ``columns``) of a resumed file with this ``header``.

        A subclass may take other headers (an older layout): the file is then rewritten in
        ``columns``. Here the header must be ``columns``; lines of another length are dropped.
        """
        if header != self.columns:
            raise self.error(
                f"{self.path}: its columns ({', '.join(header)}) differ from this run's "
                f"({', '.join(self.columns)}); resume with the same settings or write another file"
            )
        return [cells for cells in body if len(cells) == len(self.columns)]

    def previous_rows(self):
        """The rows as dicts of text (for summaries of a resumed run)."""
        return [dict(zip(self.columns, cells)) for cells in self.rows.values()]

    def discard(self, key):
        """Forgets a row (a stale one): it is left out when :meth:`finalize` rewrites the table.

        Arguments
        ---------
        key : str
            The row's key.
        """
        self.rows.pop(key, None)

    def absorb(self, path):
        """Takes the rows of another table with the same columns (a rank's partial results); they
        are written by the next :meth:`finalize`.

        Arguments
        ---------
        path : str
            The other CSV (a half line at its end is dropped); it is opened as this table's class.

        Returns
        -------
        int
            How many rows it held.

        Raises
        ------
        ResumeError
            When its columns differ or it cannot be read.

        Example
        -------
        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> part = ResumableCSV(os.path.join(folder, "m.rank0-of-2.partial.csv"), ["file", "score"])
        >>> part.append({"file": "a.wav", "score": 1.5})
        >>> table = ResumableCSV(os.path.join(folder, "m.csv"), ["file", "score"])
        >>> table.absorb(part.path), table.previous_rows()
        (1, [{'file': 'a.wav', 'score': '1.5'}])
        """
        other = type(self)(path, self.columns, key=self.key, resume=True, newline=self.newline,
                           durable=self.durable)
        self.rows.update(other.rows)
        return len(other.rows)

    def append(self, row):
        """Appends one row (a dict by column; missing cells are blank) with a single write.

        Arguments
        ---------
        row : dict
            The row; floats are written with full precision, NaN as a blank.
        """
        self.extend([row])

    def extend(self, rows):
        """Appends rows (as :meth:`append` takes them) with a single write of whole lines.

        Arguments
        ---------
        rows : list of dict
            The rows, in order.

        Example
        -------
        >>> import tempfile, os
        >>> table = ResumableCSV(os.path.join(tempfile.mkdtemp(), "m.csv"), ["file", "score"], newline="\\n")
        >>> table.extend([{"file": "a.wav", "score": 1.5}, {"file": "b.wav"}])
        >>> open(table.path).read().splitlines()
        ['file,score', 'a.wav,1.5', 'b.wav,']
        """
        if not rows:
            return
        lines = [[cell_text(row.get(column)) for column in self.columns] for row in rows]
        _append(self.path, "".join(csv_line(cells, self.newline) for cells in lines).encode("utf-8"),
                self.durable)
        index = self.columns.index(self.key)
        for cells in lines:
            self.rows[cells[index]] = cells

    def finalize(self, order=()):
        """Rewrites the table with its rows in ``order`` (others after, by key), write-then-rename.

        Arguments
        ---------
        order : sequence of str
            Keys in the wanted order (for example the files in pairing order).
        """
        rank = {key: position for position, key in enumerate(order)}
        keys = sorted(self.rows, key=lambda key: (rank.get(key, len(rank)), key))
        lines = [self.columns] + [self.rows[key] for key in keys]
        write_atomic(self.path, "".join(csv_line(cells, self.newline) for cells in lines))
