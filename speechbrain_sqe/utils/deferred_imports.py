"""Defers ``scipy.stats`` until something uses it: ``sqe`` starts about 0.5 s sooner.

Why: ``import speechbrain`` (any SpeechBrain interface, ``Pretrained`` included) imports
``speechbrain.dataio.sampler``, which runs ``from scipy.stats import lognorm`` at import time for
``DynamicBatchSampler``'s bucket boundaries. SciPy 1.17's ``scipy.stats`` takes 0.45-0.55 s to import
on the 2-core machine, most of it rewriting docstrings (``xp_capabilities``, ``_docscrape``), and
scoring or enhancing a few files never calls it (``benchmarks/RESULTS.md``, start-up sections).

How: :func:`defer_scipy_stats` puts a stand-in module in ``sys.modules["scipy.stats"]``. Reading
one of :data:`DEFERRED_NAMES` from it (what SpeechBrain imports at import time) returns a stand-in
object that imports the real ``scipy.stats`` on its first use and forwards every call and attribute
to the real object; reading any other name imports the real module at once, puts it back in
``sys.modules`` and returns the real attribute. So code that uses ``scipy.stats`` gets SciPy's own
functions, only later. ``importlib.util.LazyLoader`` cannot do this: ``from scipy.stats import
lognorm`` reads the attribute during the import, which would execute the module there and then.

Only the ``sqe`` command calls it (``cli.run``, the console script, and ``python -m
speechbrain_sqe.cli``); importing the package or calling ``cli.main`` from Python changes nothing. ``SQE_EAGER_IMPORTS=1`` in the environment turns it off.
Written here: neither SpeechBrain nor SciPy offers a lazy ``scipy.stats``.
"""

import importlib
import importlib.util
import os
import sys
import threading
import types

#: The module deferred.
MODULE = "scipy.stats"
#: Names that SpeechBrain's import reads from ``scipy.stats``; each becomes a forwarding stand-in.
DEFERRED_NAMES = ("lognorm",)
#: Environment variable that keeps imports eager when set to 1.
OPT_OUT = "SQE_EAGER_IMPORTS"

# Reentrant: an attribute read of the stand-in during the real import (same thread) must not deadlock.
_lock = threading.RLock()


def _real_module():
    """The real ``scipy.stats``, imported now if only the stand-in is in ``sys.modules``."""
    with _lock:
        current = sys.modules.get(MODULE)
        if isinstance(current, _DeferredModule):
            del sys.modules[MODULE]
            try:
                importlib.import_module(MODULE)
            except BaseException:
                sys.modules[MODULE] = current  # an import error leaves things as they were
                raise
        return sys.modules[MODULE]


class _DeferredModule(types.ModuleType):
    """Stands in for ``scipy.stats`` until a name other than :data:`DEFERRED_NAMES` is read."""

    def __getattr__(self, name):
        if name == "__all__":  # ``from scipy.stats import *`` needs the real names
            return _real_module().__all__
        if name.startswith("__") and name.endswith("__"):
            # Module walkers (inspect, traceback, torch at import) probe dunders such as __file__ on
            # every module in sys.modules: answering "absent" keeps them from importing SciPy here.
            raise AttributeError(name)
        if name in DEFERRED_NAMES and isinstance(sys.modules.get(MODULE), _DeferredModule):
            return _DeferredAttribute(name)
        return getattr(_real_module(), name)

    def __dir__(self):
        return dir(_real_module())


class _DeferredAttribute:
    """Forwards calls and attributes to ``scipy.stats.<name>``, importing the module on first use."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def _target(self):
        return getattr(_real_module(), self._name)

    def __getattr__(self, attribute):
        return getattr(self._target(), attribute)

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)

    def __repr__(self):
        return f"<deferred scipy.stats.{self._name}>"


def defer_scipy_stats():
    """Puts the stand-in for ``scipy.stats`` in ``sys.modules`` unless the real one is imported.

    Returns
    -------
    bool
        True when ``scipy.stats`` is deferred (now or before); False when it is already imported,
        SciPy is not installed, or ``SQE_EAGER_IMPORTS=1`` opts out.

    Example
    -------
    >>> import subprocess, sys
    >>> code = ("from speechbrain_sqe.utils.deferred_imports import defer_scipy_stats; import sys; "
    ...         "defer_scipy_stats(); from scipy.stats import lognorm; "
    ...         "print(type(sys.modules['scipy.stats']).__name__, round(float(lognorm.ppf(0.5, 1)), 3), "
    ...         "type(sys.modules['scipy.stats']).__name__)")
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    ['_DeferredModule', '1.0', 'module']
    """
    if os.environ.get(OPT_OUT) == "1":
        return False
    with _lock:
        current = sys.modules.get(MODULE)
        if current is not None:
            return isinstance(current, _DeferredModule)
        if importlib.util.find_spec("scipy") is None:
            return False
        stand_in = _DeferredModule(MODULE, "Stand-in for scipy.stats (speechbrain_sqe.utils.deferred_imports).")
        sys.modules[MODULE] = stand_in
    return True


def scipy_stats_deferred():
    """Whether ``sys.modules`` holds the stand-in now (the real ``scipy.stats`` not yet imported).

    Returns
    -------
    bool
        True while the stand-in is in place.
    """
    return isinstance(sys.modules.get(MODULE), _DeferredModule)
