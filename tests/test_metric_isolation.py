"""Crash-isolated metrics: a native crash, a hang or a memory blow-up fails one file's metric only;
an interrupted ``sqe evaluate`` (SIGKILL, SIGINT) keeps whole rows and resumes to the same CSV;
the recipes' reference-metric cache resumes the same way."""

import csv
import ctypes
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from speech import add_white_noise, speech_like, synthesize

from speechbrain_sqe.analysis.quality_report import load_reference_metrics
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.dataio.resumable_csv import ResumableCSV
from speechbrain_sqe.metrics import registry, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16000


def _seconds(deg):
    return round(deg.shape[0] / RATE)


def _segfault(ref, deg, sample_rate, cache):
    """A real native crash (reads address 0 in C) on the 2-second file."""
    if _seconds(deg) == 2:
        ctypes.string_at(0)
    return float(np.abs(deg).max())


def _hang(ref, deg, sample_rate, cache):
    if _seconds(deg) == 3:
        time.sleep(600)
    return 1.0


def _blow_up(ref, deg, sample_rate, cache):
    if _seconds(deg) == 4:
        return float(np.ones(20 * 1024**3 // 8).sum())  # 20 GiB
    return 2.0


def _rms(ref, deg, sample_rate, cache):
    return float(np.sqrt(np.mean(deg**2)))


@pytest.fixture
def faulty_metrics():
    names = {"crashy": _segfault, "hangs": _hang, "greedy": _blow_up, "rms_test": _rms}
    for name, compute in names.items():
        registry.register_metric(name, compute, needs_reference=False, replace=True)
    yield list(names)
    for name in names:
        registry.unregister_metric(name)


@pytest.fixture
def five_files(tmp_path):
    folder = tmp_path / "deg"
    for seconds in (1, 2, 3, 4, 5):
        save_audio(folder / f"f{seconds}.wav", speech_like(seconds, seed=seconds), RATE)
    return folder


def _address_space_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


@pytest.mark.parametrize("jobs", [1, 2])
def test_crash_hang_and_memory_fail_one_metric_of_one_file(faulty_metrics, five_files, jobs):
    limit = _address_space_mb() + 1536  # what a forked worker maps already, plus 1.5 GiB
    start = time.monotonic()
    result = runner.evaluate(None, str(five_files), faulty_metrics, jobs=jobs, timeout=4,
                             max_memory_mb=limit, progress=False)
    assert time.monotonic() - start < 60  # the hang was cut at 4 s, not waited for
    rows = {row["file"]: row for row in result.rows}
    assert sorted(rows) == [f"f{s}.wav" for s in (1, 2, 3, 4, 5)]  # every file keeps a row
    problems = {(f.file, f.reason): f.message for f in result.failures}
    assert sorted(problems) == [("f2.wav", "crashed"), ("f3.wav", "timed_out"), ("f4.wav", "out_of_memory")]
    assert problems["f2.wav", "crashed"].endswith("crashed in crashy (signal 11, SIGSEGV)")
    assert problems["f3.wav", "timed_out"].endswith("timed out after 4 s in hangs")
    assert "out of memory in greedy" in problems["f4.wav", "out_of_memory"]
    blamed = {"f2.wav": "crashy", "f3.wav": "hangs", "f4.wav": "greedy"}
    for name, row in rows.items():
        wav = load_audio(five_files / name).numpy()
        assert row["rms_test"] == pytest.approx(float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))), rel=1e-6)
        for metric in ("crashy", "hangs", "greedy"):
            assert np.isnan(row[metric]) == (blamed.get(name) == metric), (name, metric)


def test_a_crash_while_reading_fails_that_file_only(tmp_path, monkeypatch):
    """A native crash in the audio loader (not in a metric) costs that file, nothing else."""
    from speechbrain_sqe.dataio import audio

    for name in ("a", "b", "c"):
        save_audio(tmp_path / f"{name}.wav", speech_like(1.0, seed=len(name)), RATE)
    original = audio.load_audio

    def crashing_loader(path, *args, **kwargs):  # the real loader, crashing natively on b.wav
        if os.path.basename(str(path)) == "b.wav":
            ctypes.string_at(0)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load_audio", crashing_loader)
    registry.register_metric("rms_probe", _rms, needs_reference=False, replace=True)
    try:
        # fork: the worker must inherit the monkeypatched loader (a fresh one would not)
        result = runner.evaluate(None, str(tmp_path), ["rms_probe"], jobs=1, progress=False, start_method="fork")
    finally:
        registry.unregister_metric("rms_probe")
    assert [row["file"] for row in result.rows] == ["a.wav", "c.wav"]
    assert [(f.file, f.reason) for f in result.failures] == [("b.wav", "crashed")]
    assert "crashed while reading the audio (signal 11, SIGSEGV)" in result.failures[0].message


@pytest.fixture(scope="module")
def long_pair(tmp_path_factory):
    """A 4-minute reference (a TTS sentence repeated, ~90 utterances) and its noisy copy."""
    folder = tmp_path_factory.mktemp("long")
    sentence = load_audio(synthesize(folder / "s.wav", "The birch canoe slid on the smooth planks."),
                          sample_rate=RATE).numpy().astype(np.float64)
    tile = np.concatenate([sentence, np.zeros(RATE // 2)])
    clean = np.tile(tile, 240 * RATE // tile.shape[0] + 1)[: 240 * RATE]
    save_audio(folder / "clean" / "long.wav", clean, RATE)
    save_audio(folder / "noisy" / "long.wav", add_white_noise(clean, 20), RATE)
    save_audio(folder / "clean" / "short.wav", sentence, RATE)
    save_audio(folder / "noisy" / "short.wav", add_white_noise(sentence, 20), RATE)
    return folder


def _native_pesq(ref, deg, sample_rate, cache):
    """PESQ called without the length check: the native code of the issue's report."""
    import pesq

    return float(pesq.pesq(sample_rate, ref, deg, "wb"))


def test_the_real_pesq_segfault_on_a_long_file_is_isolated(long_pair):
    registry.register_metric("raw_pesq", _native_pesq, needs_reference=True, replace=True)
    try:
        result = runner.evaluate(str(long_pair / "clean"), str(long_pair / "noisy"), ["raw_pesq", "si_sdr"],
                                 jobs=2, progress=False)
    finally:
        registry.unregister_metric("raw_pesq")
    rows = {row["file"]: row for row in result.rows}
    assert 1.0 < rows["short.wav"]["raw_pesq"] < 4.7  # the other file is scored
    assert np.isnan(rows["long.wav"]["raw_pesq"]) and rows["long.wav"]["si_sdr"] > 15  # its other metric kept
    assert [(f.file, f.reason) for f in result.failures] == [("long.wav", "crashed")]
    assert "crashed in raw_pesq (signal 11, SIGSEGV)" in result.failures[0].message


def test_long_files_get_a_clear_pesq_error_or_a_segmented_measure(long_pair, tmp_path):
    args = ["evaluate", "--ref", str(long_pair / "clean"), "--deg", str(long_pair / "noisy"),
            "--metrics", "pesq_wb", "stoi", "--no-progress"]
    refused = subprocess.run([sys.executable, "-m", "speechbrain_sqe.cli", *args, "--csv", str(tmp_path / "a.csv")],
                             check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert refused.returncode == 1, refused.stderr
    assert "long.wav [metric_error]" in refused.stdout
    assert "240.0 s is longer than the 60 s PESQ can measure in one piece" in refused.stdout
    segmented = subprocess.run(
        [sys.executable, "-m", "speechbrain_sqe.cli", *args, "--csv", str(tmp_path / "b.csv"), "--pesq-segment", "60"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert segmented.returncode == 0, segmented.stdout + segmented.stderr
    with open(tmp_path / "b.csv", newline="") as stream:
        rows = {row["file"]: row for row in csv.DictReader(stream)}
    assert rows["long.wav"]["note"] == "pesq_wb: mean of 4 segments of 60 s"
    assert rows["short.wav"]["note"] == ""
    # The long file repeats the short one: its segmented PESQ is close to the short file's.
    assert float(rows["long.wav"]["pesq_wb"]) == pytest.approx(float(rows["short.wav"]["pesq_wb"]), abs=0.3)


# --- interrupted and resumed runs ---------------------------------------------------------------

def _write_pairs(folder, seconds, count=24):
    """``count`` clean/noisy pairs of ``seconds`` (white noise at 5..14 dB) in ``folder``."""
    for index in range(count):
        clean = speech_like(seconds, seed=index)
        save_audio(folder / "clean" / f"u{index:02d}.wav", clean, RATE)
        save_audio(folder / "noisy" / f"u{index:02d}.wav", add_white_noise(clean, 5 + index % 10, seed=index), RATE)
    return folder


@pytest.fixture(scope="module")
def many_pairs(tmp_path_factory):
    return _write_pairs(tmp_path_factory.mktemp("many"), 2.0)


@pytest.fixture(scope="module")
def long_pairs(tmp_path_factory):
    """24 pairs of 6 s: a run of a few seconds even on an idle machine (room for a signal)."""
    return _write_pairs(tmp_path_factory.mktemp("long"), 6.0)


def _evaluate_command(folder, out, *extra):
    return [sys.executable, "-m", "speechbrain_sqe.cli", "evaluate", "--ref", str(folder / "clean"),
            "--deg", str(folder / "noisy"), "--metrics", "pesq_wb", "stoi", "si_sdr",
            "--csv", str(out), "--no-progress", *extra]


def _data_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as stream:
        return len(stream.read().splitlines()) - 1


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after_rows(command, rows, sig):
    """Starts ``command``, sends ``sig`` once its CSV holds ``rows`` data lines; returns
    ``(process, data lines seen at that moment)``."""
    out = command[command.index("--csv") + 1]
    # In full-suite runs on fresh clones the command once inherited SIGINT as ignored (Python then
    # installs no Ctrl-C handler; the cause was not found): give it the disposition a terminal gives.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)  # noqa: PLW1509 - it only resets one signal
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if _data_lines(out) >= rows:
            break
        time.sleep(0.02)
    seen = _data_lines(out)
    process.send_signal(sig)
    process.wait(60)
    return process, seen


def test_killed_evaluate_resumes_to_the_same_csv(many_pairs, tmp_path):
    whole = tmp_path / "whole.csv"
    done = subprocess.run(_evaluate_command(many_pairs, whole), check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    expected = whole.read_bytes()
    assert len(expected.splitlines()) == 25

    resumed = tmp_path / "resumed.csv"
    process, seen = _interrupt_after_rows(_evaluate_command(many_pairs, resumed), 3, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    kept = resumed.read_bytes()
    assert kept.endswith(b"\r\n") and 3 <= seen < 24  # killed mid-run, only whole lines
    kept_rows = list(csv.DictReader(kept.decode().splitlines()))
    assert all(row["stoi"] and row["si_sdr"] for row in kept_rows)
    expected_rows = {row["file"]: row for row in csv.DictReader(expected.decode().splitlines())}
    assert all(row == expected_rows[row["file"]] for row in kept_rows)  # finished rows are final

    again = subprocess.run(_evaluate_command(many_pairs, resumed, "--resume"), check=False, capture_output=True, text=True,
                           cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming {resumed}: {len(kept_rows)} file(s) already scored are kept" in again.stdout
    assert "24 of 24 paired files scored" in again.stdout
    assert resumed.read_bytes() == expected


def test_ctrl_c_keeps_finished_rows_and_says_how_to_resume(long_pairs, tmp_path):
    out = tmp_path / "int.csv"
    # 6 s files: the run is still going when the signal comes, whatever the machine's load (with
    # 2 s files an idle machine once finished all 24 before the signal and exited 0).
    process, seen = _interrupt_after_rows(_evaluate_command(long_pairs, out, "--jobs", "2"), 2, signal.SIGINT)
    assert seen < 24, "the run ended before it could be interrupted"
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert "sqe evaluate: interrupted;" in stderr and "rerun with --resume" in stderr
    assert "Traceback" not in stderr
    data = out.read_bytes()
    assert data.endswith(b"\r\n") and len(data.splitlines()) >= 3


def test_resume_refuses_a_csv_of_other_metrics(many_pairs, tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("file,ref,deg,duration_s,stoi\r\n")
    result = subprocess.run(_evaluate_command(many_pairs, out, "--resume"), check=False, capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (f"sqe evaluate: {out}: its columns (file, ref, deg, duration_s, stoi) differ from this run's "
         "(file, ref, deg, duration_s, pesq_wb, stoi, si_sdr); resume with the same settings or write another file")
    ]


def test_resumable_csv_drops_a_cut_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "t.csv"
    table = ResumableCSV(path, ["file", "value"])
    table.append({"file": "a", "value": 1.5})
    with open(path, "ab") as stream:
        stream.write(b"b,2.")  # a line cut by a kill during a short write
    table = ResumableCSV(path, ["file", "value"], resume=True)
    assert table.done == {"a"}
    table.append({"file": "b", "value": 2.25})
    assert path.read_bytes() == b"file,value\r\na,1.5\r\nb,2.25\r\n"


def _manifest(folder, count=6):
    lines = ["ID,duration,clean_wav,noisy_wav,snr"]
    for index in range(count):
        clean = speech_like(1.5, seed=index)
        save_audio(folder / f"c{index}.wav", clean, RATE)
        save_audio(folder / f"n{index}.wav", add_white_noise(clean, 5 * index, seed=index), RATE)
        lines.append(f"u{index},1.5,{folder}/c{index}.wav,{folder}/n{index}.wav,{5 * index}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "pairs.csv")


def test_reference_metric_cache_resumes_after_an_interruption(tmp_path):
    manifest = _manifest(tmp_path)
    whole, resumed = tmp_path / "whole.csv", tmp_path / "resumed.csv"
    first = load_reference_metrics(manifest, str(whole), ["stoi", "si_sdr"], jobs=2)
    # An interrupted run: two rows appended (in completion order), then a cut line.
    lines = whole.read_bytes().splitlines(keepends=True)
    resumed.write_bytes(lines[0] + lines[4] + lines[2] + lines[3][:9])
    before = {line.split(b",")[0] for line in (lines[4], lines[2])}
    again = load_reference_metrics(manifest, str(resumed), ["stoi", "si_sdr"], jobs=2)
    assert again == first
    assert resumed.read_bytes() == whole.read_bytes()  # same file as the uninterrupted run
    assert before == {b"u3", b"u1"}
    # A stale row (its audio changed since) is recomputed, the others reused.
    save_audio(tmp_path / "n0.wav", load_audio(tmp_path / "c0.wav").numpy(), RATE)
    os.utime(tmp_path / "n0.wav", ns=(time.time_ns() + 10**9,) * 2)
    third = load_reference_metrics(manifest, str(resumed), ["stoi", "si_sdr"])
    assert third["u0"]["si_sdr"] > 100 and third["u3"] == first["u3"]


HANGING_RUN = """
import os, sys, time
from speechbrain_sqe.metrics import registry, runner

def hang(ref, deg, sample_rate, cache):
    with open(sys.argv[2], "w") as stream:
        stream.write(str(os.getpid()))
    time.sleep(600)

registry.register_metric("hang_forever", hang, needs_reference=False)
runner.evaluate(None, sys.argv[1], ["hang_forever"], progress=False)
"""


def test_a_killed_supervisor_leaves_no_worker_behind(five_files, tmp_path):
    marker = tmp_path / "worker.pid"
    process = subprocess.Popen([sys.executable, "-c", HANGING_RUN, str(five_files), str(marker)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(marker.read_text())
    process.kill()
    process.wait(10)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    orphan = os.path.exists(f"/proc/{worker}")
    if orphan:
        os.kill(worker, signal.SIGKILL)  # do not leave it running when the test fails
    assert not orphan  # the worker stuck in its metric died too


def _worker_parent_pid(ref, deg, sample_rate, cache):
    return float(os.getppid())


def test_workers_are_not_forks_of_a_multithreaded_caller(five_files, caplog):
    """Workers come from a single-threaded fork server, not from this threaded process (whose
    locks, held by its other threads at a fork, a forked worker would inherit locked); a metric
    that cannot travel to a fresh process (a lambda) still runs, in a forked worker, with a warning."""
    import threading

    import torch

    torch.nn.functional.conv1d(torch.randn(2, 8, 4000), torch.randn(8, 8, 5))  # warm torch's threads
    idle = threading.Event()
    busy = threading.Thread(target=idle.wait, daemon=True)  # a thread of the caller's own
    busy.start()
    names = {"parent_pid": _worker_parent_pid,
             "lambda_rms": lambda ref, deg, sample_rate, cache: float(np.sqrt(np.mean(deg**2)))}
    for name, compute in names.items():
        registry.register_metric(name, compute, needs_reference=False, replace=True)
    try:
        assert runner.default_start_method([registry.METRICS["parent_pid"]]) == "forkserver"
        result = runner.evaluate(None, str(five_files), ["parent_pid"], jobs=2, progress=False)
        assert not result.failures and len(result.rows) == 5
        assert all(row["parent_pid"] != os.getpid() for row in result.rows)  # forked by the server
        assert runner.default_start_method([registry.METRICS["lambda_rms"]]) == "fork"
        result = runner.evaluate(None, str(five_files), ["lambda_rms", "parent_pid"], jobs=1, progress=False)
        assert not result.failures and all(row["parent_pid"] == os.getpid() for row in result.rows)
        assert "forking this process instead" in caplog.text
    finally:
        idle.set()
        for name in names:
            registry.unregister_metric(name)
