"""Per-epoch values of recipe runs against training time, from SpeechBrain's timestamped ``log.txt``.

    python tools/training_curves.py warmup=results/ssl_vocoder_real/warmup_s23/1234 \
        nowarmup=results/ssl_vocoder_real/nowarmup_s23/1234 --key "valid stoi" --plot curves.png

Each run folder's ``log.txt`` (written by every recipe) holds the train logger's line per epoch,
``<time> - speechbrain.utils.train_logger - INFO - epoch: 3, lr: ... - train loss: ... - valid
loss: ..., valid stoi: ...``; the minutes are counted from the run's first ``Going into epoch``
line (a resumed run's pause counts too). Prints one markdown table (run, epoch, minutes, the value,
the best epoch of each run marked) and, with ``--plot``, draws the value against minutes. Written
here: SpeechBrain's loggers write these lines but read none back.
"""

import argparse
import datetime
import os
import re

TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")


def _time(line):
    match = TIME.match(line)
    return None if match is None else datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")


def parse_epochs(log_path):
    """Epoch rows of one run's ``log.txt``.

    Arguments
    ---------
    log_path : str
        A recipe's ``log.txt``.

    Returns
    -------
    list of dict
        One per epoch line: ``minutes`` since the first ``Going into epoch`` line, then every
        ``key: value`` of the line (``epoch``, ``valid loss``, ``valid stoi``...; numbers as floats,
        other values as written).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("2026-12-05 15:00:00,000 - speechbrain.utils.epoch_loop - INFO - Going into epoch 1\\n"
    ...                 "2026-12-05 15:01:30,000 - speechbrain.utils.train_logger - INFO - epoch: 1, phase: "
    ...                 "warm-up - train loss: 62.76 - valid loss: 39.72, valid stoi: 5.52e-01\\n")
    >>> rows = parse_epochs(path)
    >>> rows[0]["minutes"], rows[0]["epoch"], rows[0]["phase"], rows[0]["valid stoi"]
    (1.5, 1.0, 'warm-up', 0.552)
    """
    start, rows = None, []
    with open(log_path, encoding="utf-8") as stream:
        for line in stream:
            when = _time(line)
            if when is None:
                continue
            if start is None and "Going into epoch" in line:
                start = when
            marker = " - speechbrain.utils.train_logger - INFO - "
            if marker not in line or start is None:
                continue
            row = {"minutes": round((when - start).total_seconds() / 60, 2)}
            for segment in line.split(marker, 1)[1].strip().split(" - "):
                for pair in segment.split(", "):
                    key, _, value = pair.partition(": ")
                    try:
                        row[key.strip()] = float(value)
                    except ValueError:
                        row[key.strip()] = value.strip()
            if "epoch" in row:
                rows.append(row)
    return rows


def curves_table(runs, key, higher_is_better=True):
    """Markdown table of ``key`` per epoch of each run (``{name: rows}``), each run's best marked."""
    lines = [f"| run | epoch | minutes | {key} |", "|---|---|---|---|"]
    for name, rows in runs.items():
        scored = [row for row in rows if isinstance(row.get(key), float)]
        best = (max if higher_is_better else min)(scored, key=lambda row: row[key]) if scored else None
        for row in scored:
            mark = " (best)" if row is best else ""
            lines.append(f"| {name} | {int(row['epoch'])} | {row['minutes']:.1f} | {row[key]:.4g}{mark} |")
    return "\n".join(lines)


def plot_curves(runs, key, path):
    """``key`` against training minutes, one line per run, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rows in runs.items():
        scored = [row for row in rows if isinstance(row.get(key), float)]
        ax.plot([row["minutes"] for row in scored], [row[key] for row in scored], marker="o", label=name)
    ax.set_xlabel("training minutes")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=FOLDER", help="run folders (holding log.txt)")
    parser.add_argument("--key", default="valid loss", help="the value to follow (default: 'valid loss')")
    parser.add_argument("--lower-is-better", action="store_true", help="mark the lowest value as best")
    parser.add_argument("--plot", metavar="PNG", help="also draw the curves into this PNG")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, _, folder = spec.rpartition("=")
        log_path = os.path.join(folder, "log.txt")
        if not os.path.isfile(log_path):
            parser.error(f"{folder}: no log.txt (a recipe's output folder is needed)")
        runs[name or folder] = parse_epochs(log_path)
    higher = not (args.lower_is_better or args.key.endswith("loss"))
    print(curves_table(runs, args.key, higher_is_better=higher))
    if args.plot:
        plot_curves(runs, args.key, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
