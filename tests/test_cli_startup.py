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
