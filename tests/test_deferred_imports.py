"""`sqe` defers scipy.stats until something uses it (``speechbrain_sqe.utils.deferred_imports``). Each
case runs in a fresh interpreter: the stand-in lives in that process's ``sys.modules``."""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile


def _run(code, env=None):
    """Runs ``code`` in a fresh interpreter and returns the JSON of its last printed line."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **(env or {})})
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_score_of_one_file_never_imports_scipy_stats_and_scores_the_same(tmp_path):
    """The console script's entry (``cli.run``) scoring one file (torch, SpeechBrain's Pretrained, the
    shipped VQScore) leaves the stand-in in place until its exit (an ``atexit`` handler, which the
    quick exit still runs, reports it), and its score equals the score with eager imports."""
    rng = np.random.default_rng(3)
    t = np.arange(24000) / 16000
    wav = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)
    soundfile.write(tmp_path / "a.wav", wav.astype(np.float32), 16000)
    code = f"""
import atexit, json, sys
sys.argv = ["sqe", "score", {str(tmp_path / "a.wav")!r}, "--no-progress"]
def report():
    stats = sys.modules.get("scipy.stats")
    print(json.dumps({{"stats": type(stats).__name__ if stats is not None else None}}), flush=True)
atexit.register(report)
from speechbrain_sqe.cli import run
run()
"""
    runs = {}
    for name, env in (("deferred", {}), ("eager", {"SQE_EAGER_IMPORTS": "1"})):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env={**os.environ, **env})
        lines = result.stdout.strip().splitlines()
        runs[name] = (json.loads(lines[-1])["stats"], lines[0].split()[0])
    assert runs["deferred"][0] == "_DeferredModule", runs
    assert runs["eager"][0] == "module", runs
    assert runs["deferred"][1] == runs["eager"][1]


def test_calling_main_from_python_leaves_imports_alone(tmp_path):
    """Only the command defers: a Python caller of ``cli.main`` keeps an untouched ``sys.modules``."""
    soundfile.write(tmp_path / "a.wav", (0.1 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)
    code = f"""
import contextlib, io, json, sys
from speechbrain_sqe import cli
with contextlib.redirect_stdout(io.StringIO()):
    status = cli.main(["score", {str(tmp_path / "a.wav")!r}, "--no-progress"])
print(json.dumps({{"status": status, "stats": type(sys.modules.get("scipy.stats")).__name__}}))
"""
    assert _run(code) == {"status": 0, "stats": "module"}


def test_speechbrain_sampler_gets_scipy_lognorm_on_first_use():
    """SpeechBrain's DynamicBatchSampler computes its bucket boundaries with ``lognorm.ppf``: through
    the stand-in they equal SciPy's own, and that first use imports the real module."""
    code = """
import json, sys
from speechbrain_sqe.utils.deferred_imports import defer_scipy_stats, scipy_stats_deferred
assert defer_scipy_stats()
from speechbrain.dataio.sampler import DynamicBatchSampler
before = scipy_stats_deferred()
sampler = DynamicBatchSampler(list(range(40)), max_batch_length=200, num_buckets=5,
                              lengths_list=[5 + 3 * i for i in range(40)], shuffle=False)
import scipy.stats
real = scipy.stats.lognorm.ppf([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6], 1)
print(json.dumps({"before": before, "after": scipy_stats_deferred(),
                  "module": type(sys.modules["scipy.stats"]).__name__,
                  "boundaries": [float(b) for b in sampler._bucket_boundaries],
                  "expected": [float(b) for b in real * 200 / real[-1]]}))
"""
    result = _run(code)
    assert result["before"] is True and result["after"] is False
    assert result["module"] == "module"
    np.testing.assert_allclose(result["boundaries"], result["expected"], rtol=1e-12)


def test_any_other_name_imports_the_real_module():
    """Reading a name SpeechBrain does not defer (``spearmanr``, or ``import *``) imports the real
    scipy.stats at once, puts it in ``sys.modules`` and in the ``scipy`` package; dunder probes such
    as ``__file__`` never import it."""
    code = """
import json, sys
from speechbrain_sqe.utils.deferred_imports import defer_scipy_stats, scipy_stats_deferred
defer_scipy_stats()
stand_in = sys.modules["scipy.stats"]
probe = [getattr(stand_in, "__file__", None) is None, scipy_stats_deferred()]
namespace = {}
exec("from scipy.stats import *", namespace)
from scipy.stats import spearmanr
import scipy, scipy.stats
print(json.dumps({"probe": probe, "deferred": scipy_stats_deferred(),
                  "same": scipy.stats is sys.modules["scipy.stats"] and scipy.stats.spearmanr is spearmanr,
                  "rho": float(spearmanr([1, 2, 3, 4], [1, 3, 2, 4])[0]),
                  "forwarded": stand_in.norm is scipy.stats.norm, "again": defer_scipy_stats(),
                  "star": len([name for name in namespace if not name.startswith("__")])}))
"""
    result = _run(code)
    assert result["probe"] == [True, True]
    assert result["star"] > 100  # ``from scipy.stats import *`` through the stand-in gets SciPy's names
    assert result["deferred"] is False and result["same"] is True and result["forwarded"] is True
    assert abs(result["rho"] - 0.8) < 1e-12
    assert result["again"] is False  # the real module is imported: nothing to defer any more


def test_opt_out_and_an_already_imported_scipy_stats_change_nothing():
    code = """
import json, sys
from speechbrain_sqe.utils.deferred_imports import defer_scipy_stats
first = defer_scipy_stats()
print(json.dumps({"first": first, "module": type(sys.modules.get("scipy.stats")).__name__}))
"""
    assert _run(code, env={"SQE_EAGER_IMPORTS": "1"}) == {"first": False, "module": "NoneType"}
    preloaded = _run("import scipy.stats\n" + code)
    assert preloaded == {"first": False, "module": "module"}
