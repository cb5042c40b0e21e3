"""The ``sqe`` console script ends with ``os._exit`` after its work (``speechbrain_sqe.cli.run``): what it
writes must be complete without the interpreter's teardown. Checked two ways: the outputs and exit
status of the installed script equal those of a full exit (``SQE_FULL_EXIT=1``), and after each
subcommand returns no file it opened for writing is still open (what a quick exit would cut short)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from speech import add_white_noise, speech_like

SQE = shutil.which("sqe") or os.path.join(os.path.dirname(sys.executable), "sqe")


@pytest.fixture()
def folders(tmp_path):
    for side in ("clean", "noisy"):
        (tmp_path / side).mkdir()
    for k in range(3):
        clean = speech_like(1.5 + 0.5 * k, seed=k)
        soundfile.write(tmp_path / "clean" / f"u{k}.wav", clean.astype(np.float32), 16000)
        soundfile.write(tmp_path / "noisy" / f"u{k}.wav", add_white_noise(clean, 5, seed=10 + k).astype(np.float32), 16000)
    return tmp_path


def _sqe(args, cwd, full_exit):
    env = {**os.environ, "SQE_FULL_EXIT": "1" if full_exit else "0"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([SQE, *args], cwd=cwd, capture_output=True, text=True, env=env, check=False)


@pytest.mark.skipif(not os.path.exists(SQE), reason="the sqe console script is not installed")
def test_console_script_outputs_equal_a_full_exit(folders):
    """`sqe score --csv` (with an unreadable file: exit status 1) and `sqe enhance`: the same stdout,
    CSV, status and enhanced files with the quick exit as with the interpreter's full teardown."""
    (folders / "broken.wav").write_bytes(b"RIFF not audio")
    results = {}
    for full in (True, False):
        tag = "full" if full else "quick"
        score = _sqe(["score", "noisy", "broken.wav", "--csv", f"{tag}.csv", "--no-progress"], folders, full)
        enhance = _sqe(["enhance", "noisy", "--out-dir", f"enh_{tag}", "--no-progress"], folders, full)
        outputs = sorted(os.listdir(folders / f"enh_{tag}"))
        results[tag] = (score.returncode, score.stdout, (folders / f"{tag}.csv").read_text(), enhance.returncode,
                        outputs, [soundfile.read(folders / f"enh_{tag}" / name)[0].tolist() for name in outputs])
    assert results["full"][0] == 1 and results["full"][3] == 0, results["full"][:2]
    assert results["full"][4] == ["u0.wav", "u1.wav", "u2.wav"]
    assert results["quick"] == results["full"]


PROBE = r"""
import contextlib, gc, io, json, sys
import soundfile
from speechbrain_sqe import cli
with contextlib.redirect_stdout(io.StringIO()):
    status = cli.main(json.loads(sys.argv[1]))
gc.collect()
std = {id(s) for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__)}
std |= {id(getattr(s, "buffer", None)) for s in (sys.__stdin__, sys.__stdout__, sys.__stderr__)}
std |= {id(getattr(getattr(s, "buffer", None), "raw", None)) for s in (sys.__stdin__, sys.__stdout__, sys.__stderr__)}
open_files = []
for obj in gc.get_objects():
    try:
        in_memory = isinstance(obj, (io.StringIO, io.BytesIO))
        if isinstance(obj, io.IOBase) and not in_memory and id(obj) not in std and not obj.closed and obj.writable():
            open_files.append(repr(obj))
        elif isinstance(obj, soundfile.SoundFile) and not obj.closed:
            open_files.append(repr(obj))
    except (ValueError, OSError, ReferenceError):
        pass
print(json.dumps({"status": status, "open": open_files}))
"""


@pytest.mark.parametrize("command", [
    ["score", "noisy", "--csv", "s.csv", "--no-progress"],
    ["enhance", "noisy", "--out-dir", "enh", "--no-progress", "--model", "speechbrain_sqe/pretrained/bsse"],
    ["evaluate", "--ref", "clean", "--deg", "noisy", "--metrics", "stoi", "si_sdr", "vqscore", "--csv", "e.csv",
     "--no-progress", "--jobs", "1"],
])
def test_no_file_is_left_open_for_writing_when_a_subcommand_returns(folders, command):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [os.path.join(root, c) if c.startswith("speechbrain_sqe/") else c for c in command]
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(command)], cwd=folders, capture_output=True,
                            text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"status": 0, "open": []}, (report, result.stderr[-2000:])
