"""Batch jobs over several processes (torch.distributed, gloo on CPU): `torchrun -m speechbrain_sqe.cli
score|enhance|evaluate` writes exactly what one process writes; resume after an interrupted run with
another number of ranks; a rank that fails, dies or freezes stops the others with an error, a slow
one does not."""

import json
import multiprocessing
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vq_enhancer_hub, build_vqscore_hub

from speechbrain_sqe import cli
from speechbrain_sqe.inference.distributed_jobs import (
    DistributedJob,
    DistributedJobError,
    batch_shard,
    existing_partials,
    partial_path,
    shard,
)
from speechbrain_sqe.inference.scoring_outputs import ScoresCSV
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel


def _tone_speech(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 110 + 80 * rng.random()
    voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 8))
    return (0.1 * voiced + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    quality = VQVAEQualityModel(codebook_size=32)
    quality.train()
    quality(stft_magnitude(torch.stack([torch.from_numpy(_tone_speech(1.0, s)) for s in range(3)])))
    enhancer = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    enhancer.train()
    enhancer(stft_magnitude(torch.from_numpy(_tone_speech(1.0, 5))[None], 512, 128, 512, log1p=True))
    return (build_vqscore_hub(quality.eval(), str(tmp_path_factory.mktemp("vqscore"))),
            build_vq_enhancer_hub(enhancer.eval(), str(tmp_path_factory.mktemp("enhancer"))))


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """9 speech-like files of 0.5-2.9 s (some in a sub-folder) and one unreadable file."""
    folder = tmp_path_factory.mktemp("audio")
    (folder / "sub").mkdir()
    for index in range(9):
        name = f"sub/f{index}.wav" if index % 3 == 0 else f"f{index}.wav"
        soundfile.write(folder / name, _tone_speech(0.5 + 0.3 * index, index), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav file")
    return folder


def _torchrun(port, *argv):
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
         "-m", "speechbrain_sqe.cli", *argv],
        check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _shares(log):
    """The file counts of the ``rank R of 2: N files`` lines."""
    return [int(line.split(": ")[1].split()[0]) for line in log.splitlines() if " of 2: " in line]


def _rank_main(rank, ports, commands, folder):
    """A rank as torchrun starts it (its environment): ``cli.main`` for each command, then the
    failure scenarios of :func:`_job_scenarios`."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1"})
    torch.set_num_threads(1)
    statuses = []
    for index, argv in enumerate(commands):
        os.environ["MASTER_PORT"] = str(ports[index])
        with open(os.path.join(folder, f"rank{rank}-{index}.txt"), "w") as log, \
                redirect_stdout(log), redirect_stderr(log):
            statuses.append(cli.main(argv))
    os.environ["MASTER_PORT"] = str(ports[-1])
    _job_scenarios(rank, folder, {"statuses": statuses})


def _job_scenarios(rank, folder, report):
    """Rank 1 fails, then works longer than the timeout (beating), then freezes (SIGSTOP by the test)."""
    def save():
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as stream:
            json.dump(report, stream)

    with DistributedJob("score", timeout=2.0) as job:
        def failing():
            if rank == 1:
                raise ValueError("the disk is on fire")
            return rank
        report["failure"] = job.failures(job.run(failing))
        report["slow"] = job.run(lambda: time.sleep(2.5 * rank) or rank)
        save()
        start = time.monotonic()

        def frozen():
            if rank == 1:
                open(os.path.join(folder, "working"), "w").close()
                time.sleep(60)  # the test stops this process: no heartbeat any more
            return rank
        try:
            job.run(frozen)
            report["frozen"] = "no error"
        except DistributedJobError as error:
            report["frozen"] = str(error)
        report["waited"] = time.monotonic() - start
    save()


@pytest.fixture(scope="module")
def two_ranks(models, audio, tmp_path_factory):
    """Single-process references, then two ranks: ``score --resume`` after an interrupted run of three
    ranks, ``enhance``, ``evaluate``, and the failure scenarios. Returns the folder and the logs."""
    folder = tmp_path_factory.mktemp("two_ranks")
    score_args = [str(audio), "--model", models[0], "--no-progress", "--batch-size", "2"]
    enhance_args = [str(audio), "--model", models[1], "--no-progress", "--batch-size", "2"]
    evaluate_args = ["--ref", str(audio), "--deg", str(folder / "single_enhanced"), "--metrics", "si_sdr",
                     "stoi", "--no-progress"]
    with redirect_stdout(open(os.devnull, "w")), redirect_stderr(open(os.devnull, "w")):
        assert cli.main(["score", *score_args, "--csv", str(folder / "single.csv")]) == 1  # broken.wav
        assert cli.main(["enhance", *enhance_args, "--out-dir", str(folder / "single_enhanced")]) == 1
        assert cli.main(["evaluate", *evaluate_args, "--csv", str(folder / "single_metrics.csv")]) == 1
    # A run of three ranks interrupted: two partial CSVs with 3 rows, one cut in the middle of a line;
    # and one process resuming from the same 3 rows (the batches of the 7 files left are its).
    scores, resumed = folder / "scores.csv", folder / "single_resumed.csv"
    done = ScoresCSV(str(folder / "single.csv"), "vqscore", resume=True).rows
    paths = sorted(done)
    for rank, chosen in ((0, paths[:2]), (2, paths[5:6])):
        ScoresCSV(partial_path(str(scores), rank, 3), "vqscore").append([done[path] for path in chosen])
    with open(partial_path(str(scores), 2, 3), "a") as stream:
        stream.write(f"{paths[7]},0.5")
    ScoresCSV(str(resumed), "vqscore").append([done[path] for path in paths[:2] + paths[5:6]])
    with redirect_stdout(open(os.devnull, "w")), redirect_stderr(open(os.devnull, "w")):
        assert cli.main(["score", *score_args, "--csv", str(resumed), "--resume"]) == 1
    commands = [["score", *score_args, "--csv", str(scores), "--resume"],
                ["enhance", *enhance_args, "--out-dir", str(folder / "enhanced")],
                ["evaluate", *evaluate_args, "--csv", str(folder / "metrics.csv")]]
    context = multiprocessing.get_context("spawn")
    ports = _free_ports(4)
    ranks = [context.Process(target=_rank_main, args=(rank, ports, commands, str(folder))) for rank in range(2)]
    for process in ranks:
        process.start()
    try:
        deadline = time.monotonic() + 100
        while not (folder / "working").exists() and time.monotonic() < deadline and ranks[1].is_alive():
            time.sleep(0.05)
        os.kill(ranks[1].pid, signal.SIGSTOP)  # a hung machine: alive, silent
        ranks[0].join(60)
        assert ranks[0].exitcode == 0
    finally:
        for process in ranks:
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join()
    logs = [[(folder / f"rank{rank}-{index}.txt").read_text() for index in range(3)] for rank in range(2)]
    return folder, logs


def test_shares_are_disjoint_balanced_and_the_batches_of_one_process():
    sizes = [7, 1, 3, 9, 4, 4, 2, 8]
    parts = shard(sizes, 3)
    assert sorted(i for part in parts for i in part) == list(range(8)) and shard(sizes, 3) == parts
    loads = [sum(sizes[i] for i in part) for part in parts]
    assert max(loads) - min(loads) <= 2
    durations = list(np.random.default_rng(0).choice([0.0, 1.0, 1.5, 2.0, 3.0, 4.5], 23))  # ties, bad files
    order = sorted(range(23), key=lambda i: durations[i])
    batches = {tuple(order[k : k + 4]) for k in range(0, 23, 4)}
    parts = batch_shard(durations, 4, 3)
    assert sorted(i for part in parts for i in part) == list(range(23)) and all(parts)
    for part in parts:  # a rank sorts and batches its files (in input order) as the loader does
        mine = sorted(part, key=lambda i: durations[i])
        assert {tuple(mine[k : k + 4]) for k in range(0, len(mine), 4)} <= batches
    assert partial_path("a/s.csv", 1, 2) == "a/s.rank1-of-2.partial.csv"


def test_readme_torchrun_lines_parse():
    """Every `torchrun ... -m speechbrain_sqe.cli ...` command of the README is accepted by the parser."""
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8") as stream:
        readme = stream.read()
    section = readme[readme.index("### Many processes and machines"):]
    section = section[: section.index("\n## ")].replace("\\\n", " ")
    lines = [line.split("#")[0] for line in section.splitlines() if line.startswith("torchrun ")]
    assert len(lines) >= 4
    parser = cli.build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line.split(" -m speechbrain_sqe.cli ", 1)[1]))
        assert args.func is not None and args.dist_timeout == 600.0, line


def test_torchrun_score_writes_the_single_process_csv(models, audio, two_ranks, tmp_path):
    merged = tmp_path / "merged.csv"
    run = _torchrun(_free_ports(1)[0], "score", str(audio), "--model", models[0], "--csv", str(merged),
                    "--no-progress", "--batch-size", "2")
    assert len(_shares(run.stdout)) == 2 and sum(_shares(run.stdout)) == 10, run.stdout + run.stderr
    assert all(_shares(run.stdout)), run.stdout
    assert "scored 9 files" in run.stdout and "FAILED " in run.stderr and "broken.wav" in run.stderr
    assert merged.read_bytes() == (two_ranks[0] / "single.csv").read_bytes()
    assert not existing_partials(str(merged))


def test_resume_after_three_ranks_merges_into_the_single_process_csv(two_ranks):
    folder, logs = two_ranks
    report = json.loads((folder / "rank0.json").read_text())
    assert report["statuses"] == [1, 1, 1]  # broken.wav fails in each command
    assert "resuming: 3 files already in" in logs[0][0] and "7 left" in logs[0][0]
    assert sum(_shares(logs[0][0])) == 7 and all(_shares(logs[0][0])), logs[0][0]
    assert (folder / "scores.csv").read_bytes() == (folder / "single_resumed.csv").read_bytes()
    assert not existing_partials(str(folder / "scores.csv"))
    # against the uninterrupted run: the same rows, scores equal up to float rounding (other batches)
    merged, whole = (ScoresCSV(str(folder / name), "vqscore", resume=True).rows
                     for name in ("scores.csv", "single.csv"))
    assert list(merged) == list(whole)
    for path, row in whole.items():
        assert merged[path]["vqscore"] == pytest.approx(row["vqscore"], abs=1e-6)
        assert (merged[path]["duration"], merged[path]["speech"]) == (row["duration"], row["speech"])
    assert logs[1][0].strip() == ""  # rank 0 reports for all


def test_enhance_over_two_ranks_writes_the_single_process_files(two_ranks):
    folder, logs = two_ranks
    single = sorted(p.relative_to(folder / "single_enhanced") for p in (folder / "single_enhanced").rglob("*"))
    assert sorted(p.relative_to(folder / "enhanced") for p in (folder / "enhanced").rglob("*")) == single
    for name in single:
        if name.suffix == ".wav":  # the same batches as one process: byte for byte
            assert (folder / "enhanced" / name).read_bytes() == (folder / "single_enhanced" / name).read_bytes()
    assert "enhanced 9 files" in logs[0][1] and "FAILED " in logs[0][1] and "broken.wav" in logs[0][1]


def test_evaluate_over_two_ranks_writes_the_single_process_csv(two_ranks):
    folder, logs = two_ranks
    assert (folder / "metrics.csv").read_bytes() == (folder / "single_metrics.csv").read_bytes()
    assert "9 of 9 paired files scored" in logs[0][2] and "unpaired_ref" in logs[0][2]
    assert not existing_partials(str(folder / "metrics.csv"))


def test_a_failing_or_frozen_rank_stops_the_others_a_slow_one_does_not(two_ranks):
    report = json.loads((two_ranks[0] / "rank0.json").read_text())
    assert report["failure"].startswith("rank 1 of 2 failed: ValueError: the disk is on fire")
    assert report["slow"] == [["ok", 0], ["ok", 1]]  # 2.5 s of work against a 2 s timeout: kept waiting
    assert "rank 0 of 2: lost contact with the other ranks" in report["frozen"]
    assert "--dist-timeout" in report["frozen"] and report["waited"] < 30
