"""`sqe` start-up: the help texts need neither torch nor SpeechBrain, and a subcommand imports only what
it uses (its timing is measured by benchmarks/bench_cli_startup.py, not asserted here)."""

import json
import subprocess
import sys

import numpy as np
import soundfile

HEAVY = ("torch", "torchaudio", "speechbrain", "scipy", "matplotlib", "soundfile")


def _modules_after(code):
    """The heavy modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_version_import_no_torch_nor_speechbrain():
    code = """
import contextlib, io
from speechbrain_sqe import cli
for argv in (["--help"], ["--version"], ["score", "--help"], ["enhance", "--help"],
             ["evaluate", "--help"], ["analyze-ssl", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            cli.main(argv)
        except SystemExit as stop:
            assert stop.code == 0, (argv, stop.code)
    assert "usage: sqe" in out.getvalue() or out.getvalue().startswith("sqe "), argv
"""
    assert _modules_after(code) == []


def test_light_packages_stay_light():
    """The file finder, the metric registry and the distributed-job planning import no torch."""
    code = """
import speechbrain_sqe.dataio.files, speechbrain_sqe.metrics, speechbrain_sqe.inference.distributed_jobs
"""
    assert _modules_after(code) == []


def test_score_loads_the_model_without_plotting_libraries(tmp_path):
    """`sqe score FILE` imports torch and SpeechBrain (the model needs them), not matplotlib."""
    t = np.arange(8000) / 16000
    soundfile.write(tmp_path / "a.wav", (0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    code = f"""
from speechbrain_sqe import cli
assert cli.main(["score", {str(tmp_path / "a.wav")!r}, "--no-progress"]) == 0
"""
    loaded = _modules_after(code)
    assert "torch" in loaded and "speechbrain" in loaded and "matplotlib" not in loaded


def test_evaluate_keeps_torch_in_the_workers(tmp_path):
    """`sqe evaluate` with reference metrics imports no torch in the supervising process: its
    workers (started by a fork server) load the audio stack, so it is not imported twice."""
    rng = np.random.default_rng(0)
    clean = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    for side, wav in (("ref", clean), ("deg", clean + 0.02 * rng.standard_normal(16000).astype(np.float32))):
        (tmp_path / side).mkdir()
        soundfile.write(tmp_path / side / "a.wav", wav, 16000)
    code = f"""
import contextlib, io
from speechbrain_sqe import cli
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert cli.main(["evaluate", "--ref", {str(tmp_path / "ref")!r}, "--deg", {str(tmp_path / "deg")!r},
                     "--metrics", "stoi", "si_sdr", "--no-progress"]) == 0
assert "stoi" in out.getvalue()
"""
    assert "torch" not in _modules_after(code)
