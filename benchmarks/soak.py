#!/usr/bin/env python3
"""Kill/resume soak: recipes killed with SIGKILL at random times resume to the uninterrupted result.

For each recipe (tiny settings, embedded corpus) one uninterrupted reference run is timed; then each
of ``--runs`` runs is started, killed with SIGKILL after a random delay (uniform between the times
the reference started its first epoch and logged its export, so kills land in training, validation, test,
report and export alike),
restarted, killed again, ``--kills`` times, then let finish. Each run must end with the reference's
kept checkpoints (every tensor, the selection metadata, the Brain's step counters), its report files
(byte for byte) and its exported tensors. A kill's phase is read from the run folder after the kill
and from the lines this attempt logged: ``start-up/preparation`` (no epoch started), ``training/
validation`` (an epoch started, no test yet), ``test/report``, ``export`` (the export's temporary
folder exists), ``after export``, ``done`` (the attempt finished before its kill time).

    python benchmarks/soak.py --runs 5 --kills 3                      # all three recipes
    python benchmarks/soak.py --recipes vqscore --runs 2 --kills 2 --ckpt_interval_steps 1

``tests/test_soak.py`` uses :func:`compare_runs` and :func:`run_train` with chosen kill points
(``SQE_KILL_AT``, see ``speechbrain_sqe/brains/base.py``).
"""

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = [
    "--train_minutes=0.25", "--valid_pairs=6", "--test_pairs=6",
    ("--corpus_options={unpaired_minutes: 0.1, noise_train_per_family: 1, noise_eval_per_family: 1, "
     "rirs_train: 2, rirs_eval: 2, noise_seconds: 3.0}"),
]
#: Tiny settings of each recipe (seconds per epoch on one CPU core).
RECIPES = {
    "vqscore": ["hparams/vqscore.yaml", "--number_of_epochs=3", "--codebook_size=32", "--batch_size=4",
                "--crop_seconds=1.0", "--test_metrics=[pesq_wb]", "--metric_jobs=1"],
    "vq_enhance": ["hparams/vq_enhance.yaml", "--number_of_epochs=3", "--step1_epochs=2", "--channels=[32,16]",
                   "--codebook_dim=16", "--codebook_size=32", "--batch_size=4", "--crop_seconds=1.0",
                   "--test_metrics=[pesq_wb]", "--metric_jobs=1", "--test_mix_ratios=[0.3]"],
    "tera": ["hparams/tera.yaml", "--number_of_epochs=3", "--hidden_size=32", "--num_layers=2", "--num_heads=2",
             "--intermediate_size=64", "--batch_size=4", "--crop_seconds=1.0", "--lr=0.002"],
}
#: Files of a run folder that differ between runs by nature (times, paths, the card's training time).
_VOLATILE = {"README.md", "log.txt", "env.log", "train.py", "hyperparams.yaml", "train_log.txt"}


def recipe_command(recipe, data, out, extra=()):
    """The ``train.py`` command line of a tiny ``recipe`` run (``extra`` options replace those of the
    same name)."""
    file, *options = RECIPES[recipe]
    by_name = {option.split("=", 1)[0]: option for option in [*CORPUS, *options, *extra]}
    return [sys.executable, os.path.join(ROOT, "train.py"), os.path.join(ROOT, file), f"--data_folder={data}",
            f"--output_folder={out}", *by_name.values()]


def run_train(command, kill_at=None, kill_after=None, log=None):
    """Runs ``command``; kills it at the kill point ``kill_at`` (``SQE_KILL_AT``) or with SIGKILL
    after ``kill_after`` seconds. Returns ``(returncode, seconds)``; -9 means killed."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("SQE_KILL_AT", None)
    if kill_at:
        env["SQE_KILL_AT"] = kill_at
    start = time.time()
    with open(log or os.devnull, "a", encoding="utf-8") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return process.returncode, time.time() - start


def _load(path):
    if zipfile.is_zipfile(path):  # torch.save's format
        return torch.load(path, weights_only=True, map_location="cpu")
    with open(path, "rb") as stream:  # a text recoverable (counter, brain, dataloader position), a report
        return stream.read()


def _same(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _checkpoints(save_folder):
    kept = []
    for name in os.listdir(save_folder):
        if not name.startswith("CKPT+"):
            continue
        folder = os.path.join(save_folder, name)
        with open(os.path.join(folder, "CKPT.yaml"), encoding="utf-8") as stream:
            lines = stream.read().splitlines()
        # In save order (folder names reuse a second's suffixes once a checkpoint is deleted).
        saved = float(next(line.split(":", 1)[1] for line in lines if line.startswith("unixtime")))
        meta = [line for line in lines if not line.startswith(("unixtime", "#"))]
        files = {file: _load(os.path.join(folder, file)) for file in sorted(os.listdir(folder)) if file != "CKPT.yaml"}
        kept.append((saved, meta, files))
    return [(meta, files) for _, meta, files in sorted(kept, key=lambda item: item[0])]


def compare_runs(reference, other):
    """What differs between two finished run folders of the same recipe and seed.

    Compared: the kept checkpoints (in order: their selection metadata and every recoverable,
    tensors exactly), the report files and the exported hub folder (tensors exactly, text byte for
    byte), and that no temporary export folder is left. Not compared: logs, the model card (it holds
    the training time) and plots.

    Arguments
    ---------
    reference, other : str
        The two output folders.

    Returns
    -------
    list of str
        One line per difference (empty: the runs agree).
    """
    problems = []
    ref_ckpts, other_ckpts = _checkpoints(os.path.join(reference, "save")), _checkpoints(os.path.join(other, "save"))
    if len(ref_ckpts) != len(other_ckpts):
        problems.append(f"kept checkpoints: {len(ref_ckpts)} in the reference, {len(other_ckpts)} here")
    for index, ((ref_meta, ref_files), (meta, files)) in enumerate(zip(ref_ckpts, other_ckpts)):
        if ref_meta != meta:
            problems.append(f"checkpoint {index} metadata: {ref_meta} != {meta}")
        for name in sorted(set(ref_files) | set(files)):
            if name not in ref_files or name not in files or not _same(ref_files[name], files[name]):
                problems.append(f"checkpoint {index} {name} differs")
    for sub in ("", "report", "hub"):  # the run folder's own tables (TERA's loss curve), report, export
        ref_dir, dir_ = os.path.join(reference, sub), os.path.join(other, sub)
        if not os.path.isdir(ref_dir):
            continue
        names = sorted(set(os.listdir(ref_dir)) | (set(os.listdir(dir_)) if os.path.isdir(dir_) else set()))
        if not sub:
            names = [name for name in names if name.endswith((".csv", ".json"))]
        for name in names:
            if name in _VOLATILE - {"hyperparams.yaml"} or name.endswith(".png"):
                continue
            a, b = os.path.join(ref_dir, name), os.path.join(dir_, name)
            if not os.path.isfile(a) or not os.path.isfile(b):
                problems.append(f"{os.path.join(sub, name)} missing")
                continue
            a, b = _load(a), _load(b)
            if isinstance(b, bytes):  # text naming the run's own folder (enhanced file paths...)
                b = b.replace(os.path.abspath(other).encode(), os.path.abspath(reference).encode())
            if not _same(a, b):
                problems.append(f"{os.path.join(sub, name)} differs")
    if os.path.exists(os.path.join(other, "hub.partial")):
        problems.append("hub.partial left behind")
    return problems


def kill_phase(out, returncode, log_text):
    """Where a killed run stood, read from its folder and from what this attempt logged (see the
    module doc)."""
    if returncode != -signal.SIGKILL:
        return "done"
    if os.path.isdir(os.path.join(out, "hub.partial")):
        return "export"
    if "Exported the trained model" in log_text:
        return "after export"
    report = os.path.join(out, "report")
    if "epoch loaded" in log_text or (os.path.isdir(report) and os.listdir(report)):
        return "test/report"
    if "Going into epoch" in log_text:
        return "training/validation"
    return "start-up/preparation"


def _logged_at(log_file, text):
    """The time (seconds since the epoch) of the first line of SpeechBrain's ``log.txt`` holding
    ``text``."""
    with open(log_file, encoding="utf-8") as stream:
        line = next(line for line in stream if text in line)
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def soak(recipe, runs, kills, work, rng, extra=()):
    """The soak of one recipe; returns its summary row."""
    data = os.path.join(work, "data")
    reference = os.path.join(work, f"{recipe}_reference")
    shutil.rmtree(reference, ignore_errors=True)
    run_train(recipe_command(recipe, data, reference, extra), log=os.path.join(work, f"{recipe}_prepare.log"))
    shutil.rmtree(reference)  # the first run also generated the corpus: time a run on a ready corpus
    started = time.time()
    code, duration = run_train(recipe_command(recipe, data, reference, extra), log=reference + ".log")
    if code != 0:
        raise SystemExit(f"{recipe}: the reference run failed (see {reference}.log)")
    # Kill times are drawn from when the reference started its first epoch to its end (start-up,
    # imports and data checks, is most of a tiny run and not what the soak is about).
    first_epoch = _logged_at(os.path.join(reference, "log.txt"), "Going into epoch 1") - started
    # ... to its export (the interpreter's teardown after it is not part of the recipe either).
    exported = _logged_at(os.path.join(reference, "log.txt"), "Exported the trained model") - started
    row = {"recipe": recipe, "reference_seconds": round(duration, 1), "runs": runs, "kills": 0, "phases": {},
           "mismatched_runs": 0, "problems": []}
    for index in range(runs):
        out = os.path.join(work, f"{recipe}_run{index}")
        shutil.rmtree(out, ignore_errors=True)
        for _ in range(kills):
            delay = rng.uniform(first_epoch, exported)
            start = os.path.getsize(out + ".log") if os.path.exists(out + ".log") else 0
            code, _ = run_train(recipe_command(recipe, data, out, extra), kill_after=delay, log=out + ".log")
            with open(out + ".log", encoding="utf-8", errors="replace") as stream:
                stream.seek(start)
                phase = kill_phase(out, code, stream.read())
            row["phases"][phase] = row["phases"].get(phase, 0) + 1
            row["kills"] += code == -signal.SIGKILL
        code, _ = run_train(recipe_command(recipe, data, out, extra), log=out + ".log")
        problems = [f"exit status {code}"] if code != 0 else compare_runs(reference, out)
        if problems:
            row["mismatched_runs"] += 1
            row["problems"].append({out: problems})
        print(f"{recipe} run {index}: {'OK' if not problems else problems}", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--runs", type=int, default=3, help="killed runs per recipe (default 3)")
    parser.add_argument("--kills", type=int, default=3, help="kills per run before it may finish (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (default 0)")
    parser.add_argument("--ckpt_interval_steps", type=int, default=0,
                        help="also save SpeechBrain's intra-epoch checkpoints every N steps (default 0: off)")
    parser.add_argument("--work", default="results/soak", help="work folder (default results/soak)")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    extra = [f"--ckpt_interval_steps={args.ckpt_interval_steps}"] if args.ckpt_interval_steps else []
    rng = random.Random(args.seed)
    rows = [soak(recipe, args.runs, args.kills, os.path.abspath(args.work), rng, extra) for recipe in args.recipes]
    print("\n| recipe | reference run (s) | runs | kills | kills by phase | mismatched runs |")
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        phases = ", ".join(f"{name} {count}" for name, count in sorted(row["phases"].items()))
        print(f"| {row['recipe']} | {row['reference_seconds']} | {row['runs']} | {row['kills']} | {phases} | "
              f"{row['mismatched_runs']} |")
    with open(os.path.join(args.work, "soak.json"), "w", encoding="utf-8") as stream:
        json.dump(rows, stream, indent=1)
    return 1 if any(row["mismatched_runs"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
