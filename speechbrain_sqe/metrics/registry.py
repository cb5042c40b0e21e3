"""The metric registry: one :class:`MetricSpec` per metric name, and the functions computing a set
of them on one pair.

=============== ========= ============= ====== ================================================
name            reference range         better what
=============== ========= ============= ====== ================================================
``pesq_wb``     yes       [1.04, 4.64]  higher PESQ wide band (P.862.2) MOS-LQO, 16 kHz only
``pesq_nb``     yes       [1.02, 4.55]  higher PESQ narrow band (P.862 + P.862.1), 8/16 kHz
``stoi``        yes       [-1, 1]       higher STOI (pystoi; 1 for identical signals)
``estoi``       yes       [-1, 1]       higher extended STOI (pystoi)
``si_sdr``      yes       unbounded     higher scale-invariant SDR, dB (no mean removal)
``si_snr``      yes       unbounded     higher scale-invariant SNR, dB (zero-mean SI-SDR)
``csig``        yes       [1, 5]        higher composite signal distortion (Hu and Loizou)
``cbak``        yes       [1, 5]        higher composite background intrusiveness
``covl``        yes       [1, 5]        higher composite overall quality
``dnsmos_ovrl`` no        [1, 5]        higher DNSMOS P.835 overall (``eval`` extra)
``dnsmos_sig``  no        [1, 5]        higher DNSMOS P.835 signal (``eval`` extra)
``dnsmos_bak``  no        [1, 5]        higher DNSMOS P.835 background (``eval`` extra)
``dnsmos_p808`` no        [1, 5]        higher DNSMOS P.808 (``eval`` extra)
``distillmos``  no        [1, 5]        higher Distill-MOS (``eval`` extra, weights in the wheel)
``vqscore``     no        [-1, 1]       higher VQScore, the package's shipped model
=============== ========= ============= ====== ================================================

Design
------
- A metric is a :class:`MetricSpec`: its ``name`` (a CSV column), its ``compute`` function, whether
  it ``needs_reference``, its ``range`` (``(low, high)``, ``None`` where unbounded; informative,
  values are not clipped), its ``direction`` (``"higher"`` or ``"lower"`` is better), its
  ``group``, a ``description`` and an optional ``available`` check.
- ``compute`` is a callable ``compute(ref, deg, sample_rate, cache)`` (``ref`` is ``None`` for
  metrics without reference; both are float64 numpy arrays of equal length; ``cache`` is a dict
  shared by all the metrics of one pair, e.g. for the PESQ that the composite trio reuses), or a
  string ``"package.module:function"`` / ``"package.module.Class"`` imported at first use, so a
  metric defined in an upper layer registers without this module importing that layer. It
  returns a float, or a dict of outputs for a group.
- The metrics of one ``group`` share one ``compute`` and are computed by one call per pair, which
  returns a dict; each spec takes its ``output`` key of it (default: its name). So the four
  DNSMOS scores come from one pass, and a multi-output learned predictor gives several names.
- ``available`` (a callable, or a lazy string) raises :class:`MetricUnavailableError` saying why the
  metric cannot run here (DNSMOS without the ``eval`` extra; a predictor's missing model folder);
  the check also imports a lazy ``compute``, but never loads a model. Such errors stop an
  evaluation (``sqe evaluate`` skips those metrics with the reason); :class:`MetricError` is
  recorded per file and metric.
- :func:`register_metric`, :func:`register_group` and :func:`register_predictor` add specs to
  :data:`METRICS` (refusing duplicates unless ``replace=True``); the built-in metrics are registered
  through them at the bottom of this module.
- A learned predictor is a SpeechBrain interface class (a ``Pretrained``) with ``from_hparams`` and
  ``score_batch(wavs) -> [batch]`` tensor (or a dict of them, or ``[batch, outputs]``); one that
  names several metrics (``metric_names``, more than one) is asked ``score_metrics_batch(wavs) ->
  [batch, metrics]`` instead, and ``output`` keys are its metric names. Its compute
  (:class:`Predictor`) loads it once per process, resamples the degraded waveform to the model's
  ``hparams.sample_rate`` and scores it. ``vqscore`` is registered so, through the import path
  :data:`VQSCORE_INTERFACE`.
- Worker processes: with ``fork`` they inherit the registry; with ``spawn`` the runner sends the
  specs asked for (their ``compute`` must then be picklable: a module-level function, a string,
  or a :class:`Predictor`).

Aliases (:func:`resolve_metrics`): ``default`` (:data:`DEFAULT_METRICS`), ``all`` (every registered
metric, learned predictors included), ``intrusive`` (those needing a reference), ``nonintrusive``
(those without, learned predictors included), ``learned`` (the learned predictors: DNSMOS,
Distill-MOS, VQScore and any registered one).
"""

import importlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from speechbrain_sqe.metrics import composite as composite_module
from speechbrain_sqe.metrics import distillmos as distillmos_module
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import intrusive
from speechbrain_sqe.metrics.intrusive import (
    MetricError,
    MetricUnavailableError,
    as_numpy,
)

#: Import path of the VQScore interface (the one place to change when it moves).
VQSCORE_INTERFACE = "speechbrain_sqe.inference.quality.VQScore"
SQA_INTERFACE = "speechbrain_sqe.inference.quality.LearnedQualityPredictor"
#: Allowed values of :attr:`MetricSpec.direction`.
DIRECTIONS = ("higher", "lower")
#: Names that select several metrics (see :func:`resolve_metrics`).
ALIASES = ("default", "all", "intrusive", "nonintrusive", "learned")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric (see the module notes).

    Arguments
    ---------
    name : str
        The metric name (a CSV column and a ``--metrics`` value).
    compute : callable or str
        ``compute(ref, deg, sample_rate, cache)`` returning a float or, for a group, a dict; or its
        lazy import path ``"package.module:function"`` / ``"package.module.Class"``.
    needs_reference : bool
        Whether a clean reference is needed (intrusive metric).
    range : tuple
        ``(low, high)`` of the scale, ``None`` for an unbounded side.
    direction : str
        ``"higher"`` or ``"lower"``: which is better.
    group : str, optional
        Metrics computed together by one call of their shared ``compute`` (default: the name).
    description : str
        One line for the help.
    available : callable or str, optional
        Raises :class:`MetricUnavailableError` with the reason where the metric cannot run.
    output : str or int, optional
        The key of this metric in the dict ``compute`` returns (default: the name).
    learned : bool
        Whether it is a learned predictor (for the ``learned`` alias and the table).

    Example
    -------
    >>> spec = MetricSpec("gain_db", "math:log10", False, (None, None), "lower")
    >>> spec.group, spec.output, spec.intrusive, spec.range_text
    ('gain_db', 'gain_db', False, '(-inf, inf)')
    """

    name: str
    compute: object
    needs_reference: bool
    range: tuple = (None, None)
    direction: str = "higher"
    group: str = None
    description: str = ""
    available: object = None
    output: object = None
    learned: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name in ALIASES:
            raise ValueError(
                f"invalid metric name {self.name!r}: letters, digits, '_', '-', '.' starting with a "
                f"letter, and not an alias ({', '.join(ALIASES)})"
            )
        if not (callable(self.compute) or isinstance(self.compute, str)):
            raise TypeError(f"{self.name}: compute must be a callable or an import path string")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{self.name}: direction must be 'higher' or 'lower', not {self.direction!r}")
        low, high = tuple(self.range)
        if low is not None and high is not None and not low < high:
            raise ValueError(f"{self.name}: range {self.range} must be (low, high) with low < high")
        object.__setattr__(self, "range", (low, high))
        object.__setattr__(self, "needs_reference", bool(self.needs_reference))
        if self.group is None:
            object.__setattr__(self, "group", self.name)
        if self.output is None:
            object.__setattr__(self, "output", self.name)

    @property
    def intrusive(self):
        """Same as ``needs_reference`` (the name used before the registry)."""
        return self.needs_reference

    @property
    def range_text(self):
        """The range as text: ``[1, 5]``, ``(-inf, inf)``, ``[0, inf)``."""
        low, high = self.range
        left = "(-inf" if low is None else f"[{low:g}"
        right = "inf)" if high is None else f"{high:g}]"
        return f"{left}, {right}"

    def check_available(self):
        """Raises :class:`MetricUnavailableError` saying why this metric cannot run here (a lazy
        ``compute`` that cannot be imported, or the ``available`` check failing)."""
        if isinstance(self.compute, str):
            resolve(self.compute)
        if self.available is not None:
            resolve(self.available)()

    def is_available(self):
        """Returns ``(True, "")`` or ``(False, why)``."""
        try:
            self.check_available()
        except MetricUnavailableError as error:
            return False, str(error)
        return True, ""


# --- the registry -----------------------------------------------------------------------------

#: All metrics, by name, in registration (display) order. Register with :func:`register_metric`.
METRICS = {}
_RESOLVED = {}


def resolve(target):
    """Returns ``target`` itself if callable, else imports it from its path (cached).

    Arguments
    ---------
    target : callable or str
        ``"package.module:attribute"`` or ``"package.module.Attribute"``.

    Returns
    -------
    object
        The imported object.

    Raises
    ------
    MetricUnavailableError
        When the module or attribute cannot be imported.

    Example
    -------
    >>> resolve("math:sqrt")(4.0), resolve("os.path.join")("a", "b")
    (2.0, 'a/b')
    """
    if not isinstance(target, str):
        return target
    if target not in _RESOLVED:
        module, _, attribute = target.partition(":") if ":" in target else target.rpartition(".")
        try:
            _RESOLVED[target] = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise MetricUnavailableError(f"cannot import {target}: {error}") from error
    return _RESOLVED[target]


def _add(specs, replace):
    """Checks new specs against the registry, then adds them all (or none)."""
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names repeated in one registration: {names}")
    for spec in specs:
        old = METRICS.get(spec.name)
        if old is not None and not replace:
            raise ValueError(
                f"metric {spec.name!r} is already registered ({old.description or old.compute}); "
                "choose another name or pass replace=True"
            )
        mates = [m for m in METRICS.values() if m.group == spec.group and m.name not in names]
        for mate in mates:
            if mate.compute is not spec.compute or mate.needs_reference != spec.needs_reference:
                raise ValueError(
                    f"metric {spec.name!r}: group {spec.group!r} is already computed by "
                    f"{mate.compute!r} (reference: {mate.needs_reference}); use another group"
                )
    for spec in specs:
        METRICS[spec.name] = spec
    return specs


def register_metric(name, compute, needs_reference, range=(None, None), direction="higher", group=None,
                    description="", available=None, output=None, learned=False, replace=False):
    """Registers one metric (see :class:`MetricSpec` for the arguments).

    Arguments
    ---------
    name, compute, needs_reference, range, direction, group, description, available, output, learned
        The :class:`MetricSpec` fields.
    replace : bool
        Replace a metric of the same name instead of refusing it.

    Returns
    -------
    MetricSpec
        The registered spec.

    Raises
    ------
    ValueError
        For a name already registered, an invalid field, or a group computed by another function.

    Example
    -------
    >>> def peak(ref, deg, sample_rate, cache):
    ...     return float(abs(deg).max())
    >>> spec = register_metric("doc_peak", peak, needs_reference=False, range=(0, None),
    ...                        direction="lower", description="peak amplitude")
    >>> compute_nonintrusive_metrics([0.5, -0.25], ["doc_peak"])
    {'doc_peak': 0.5}
    >>> register_metric("doc_peak", peak, needs_reference=False)
    Traceback (most recent call last):
    ...
    ValueError: metric 'doc_peak' is already registered (peak amplitude); choose another name or pass replace=True
    >>> unregister_metric("doc_peak")
    """
    spec = MetricSpec(name, compute, needs_reference, range, direction, group, description, available,
                      output, learned)
    return _add([spec], replace)[0]


def _per_metric(value, name, default):
    """A per-metric setting given once for all, or as a dict by metric name."""
    if isinstance(value, Mapping):
        return value.get(name, default)
    return default if value is None else value


def register_group(group, compute, metrics, needs_reference, range=(None, None), direction="higher",
                   description="", available=None, learned=False, replace=False):
    """Registers several metrics computed together by one call of ``compute``, which returns a dict.

    Arguments
    ---------
    group : str
        The group name.
    compute : callable or str
        As in :class:`MetricSpec`; returns a dict holding every output.
    metrics : dict or list of str
        Metric name to its output key in that dict (a list: the names are the keys).
    needs_reference : bool
        Whether the group needs a reference.
    range, direction, description : optional
        One value for all, or a dict by metric name.
    available : callable or str, optional
        The group's availability check.
    learned : bool
        Whether these are outputs of a learned predictor.
    replace : bool
        Replace metrics of the same names.

    Returns
    -------
    list of MetricSpec
        The registered specs.

    Example
    -------
    >>> def stats(ref, deg, sample_rate, cache):
    ...     return {"max": float(deg.max()), "min": float(deg.min())}
    >>> specs = register_group("doc_stats", stats, {"doc_max": "max", "doc_min": "min"}, False)
    >>> compute_nonintrusive_metrics([0.5, -0.25], ["doc_max", "doc_min"])
    {'doc_max': 0.5, 'doc_min': -0.25}
    >>> unregister_metric("doc_max"), unregister_metric("doc_min")
    (None, None)
    """
    if not isinstance(metrics, Mapping):
        metrics = {name: name for name in metrics}
    if not metrics:
        raise ValueError(f"group {group!r}: no metrics given")
    specs = [
        MetricSpec(
            name, compute, needs_reference, _per_metric(range, name, (None, None)),
            _per_metric(direction, name, "higher"), group, _per_metric(description, name, ""),
            available, key, learned,
        )
        for name, key in metrics.items()
    ]
    return _add(specs, replace)


def register_predictor(name, interface=VQSCORE_INTERFACE, source=None, output=None, range=(None, None),
                       direction="higher", description="", overrides=None, run_opts=None, replace=False):
    """Registers a learned no-reference predictor: a SpeechBrain interface with ``score_batch``.

    The compute (:class:`Predictor`) loads ``interface.from_hparams(source=source or
    interface.DEFAULT_SOURCE)`` once per process, resamples each degraded waveform to the model's
    ``hparams.sample_rate`` and takes ``score_batch(wav.unsqueeze(0))``.

    Arguments
    ---------
    name : str
        The metric name; for a multi-output predictor (``output`` a dict), the group name.
    interface : str or type
        The interface class or its import path (default :data:`VQSCORE_INTERFACE`).
    source : str, optional
        A model folder or hub id; default ``interface.DEFAULT_SOURCE``.
    output : str or int or dict, optional
        ``None``: ``score_batch`` returns a ``[batch]`` tensor; a key (or column index): the output
        to take of a dict (or ``[batch, outputs]``) result; a dict ``{metric name: key}``: register
        one metric per output, all computed by one pass.
    range, direction, description : optional
        One value for all, or a dict by metric name.
    overrides : dict, optional
        Hyperparams overrides for ``from_hparams``.
    run_opts : dict, optional
        SpeechBrain run options (e.g. ``{"device": "cuda"}``); default CPU.
    replace : bool
        Replace metrics of the same names.

    Returns
    -------
    list of MetricSpec
        The registered specs.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.inference.quality import VQScore
    >>> from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
    >>> folder = VQScore.export(tempfile.mkdtemp(), {"vqvae": VQVAEQualityModel(codebook_size=16)})
    >>> spec, = register_predictor("doc_vq", source=folder, range=(-1, 1))
    >>> spec.learned, spec.needs_reference, spec.direction
    (True, False, 'higher')
    >>> import numpy as np
    >>> score = compute_nonintrusive_metrics(np.random.default_rng(0).standard_normal(16000) * 0.1,
    ...                                      ["doc_vq"])["doc_vq"]
    >>> -1.0 <= score <= 1.0
    True
    >>> unregister_metric("doc_vq")
    """
    outputs = dict(output) if isinstance(output, Mapping) else {name: output}
    predictor = Predictor(interface, source, outputs, overrides, run_opts)
    return register_group(name, predictor, {metric: metric for metric in outputs}, False, range, direction,
                          description, predictor.check_available, learned=True, replace=replace)


def unregister_metric(name):
    """Removes a metric from the registry (tests, or to replace a built-in).

    Arguments
    ---------
    name : str
        The metric name.

    Raises
    ------
    KeyError
        When it is not registered.

    Example
    -------
    >>> spec = register_metric("doc_tmp", "math:fabs", False)
    >>> unregister_metric("doc_tmp"); "doc_tmp" in METRICS
    False
    """
    del METRICS[name]


# --- learned predictors -----------------------------------------------------------------------

#: Interfaces loaded in this process, by predictor (one load per process, also in each worker).
_LOADED = {}


class Predictor:
    """The compute of a learned predictor (see :func:`register_predictor`); picklable, so that
    worker processes started with ``spawn`` receive it and load the model themselves.

    Arguments
    ---------
    interface : str or type
        The interface class or its import path.
    source : str, optional
        Model folder or hub id (default the interface's ``DEFAULT_SOURCE``).
    outputs : dict, optional
        Metric name to output key (``None``: the ``[batch]`` tensor itself).
    overrides : dict, optional
        Hyperparams overrides.
    run_opts : dict, optional
        SpeechBrain run options.

    Example
    -------
    >>> Predictor(VQSCORE_INTERFACE, "/no/such/folder", {"x": None}).is_available()[1]
    'x: model folder /no/such/folder does not exist'
    """

    def __init__(self, interface, source=None, outputs=None, overrides=None, run_opts=None):
        self.interface = interface
        self.source = None if source is None else os.fspath(source)
        self.outputs = dict(outputs or {"score": None})
        self.overrides = dict(overrides or {})
        self.run_opts = dict(run_opts or {})

    def __repr__(self):
        return f"Predictor({self._path()!r}, source={self.source!r})"

    def _path(self):
        if isinstance(self.interface, str):
            return self.interface
        return f"{self.interface.__module__}.{self.interface.__qualname__}"

    def _key(self):
        return (self._path(), self.source, repr(sorted(self.overrides.items())),
                repr(sorted(self.run_opts.items())))

    def _names(self):
        return ", ".join(self.outputs)

    def _source(self, interface):
        if self.source is not None:
            return self.source
        source = getattr(interface, "DEFAULT_SOURCE", None)
        if source is None:
            raise MetricUnavailableError(f"{self._names()}: {self._path()} has no DEFAULT_SOURCE; give source=")
        return source

    def check_available(self):
        """Raises :class:`MetricUnavailableError` when the interface cannot be imported or the model
        folder is missing (hub ids are not checked: that would need the network)."""
        interface = resolve(self.interface)
        source = str(self._source(interface))
        looks_local = os.path.isabs(source) or source.startswith((".", "~"))
        if looks_local and not os.path.isdir(os.path.expanduser(source)):
            raise MetricUnavailableError(f"{self._names()}: model folder {source} does not exist")
        # A folder built on the Distill-MOS encoder (the shipped learned predictor) reads its weights
        # from the distillmos wheel: without it, say so here rather than when the first file loads.
        hparams_file = os.path.join(os.path.expanduser(source), "hyperparams.yaml")
        if os.path.isfile(hparams_file):
            with open(hparams_file, encoding="utf-8") as stream:
                if "distillmos_encoder.DistillMOSEncoder" in stream.read():
                    try:
                        distillmos_module.require_distillmos()
                    except MetricUnavailableError as error:
                        raise MetricUnavailableError(f"{self._names()}: {source} is built on the Distill-MOS "
                                                     f"encoder: {error}") from error

    def is_available(self):
        """Returns ``(True, "")`` or ``(False, why)``."""
        try:
            self.check_available()
        except MetricUnavailableError as error:
            return False, str(error)
        return True, ""

    def load(self):
        """The loaded interface (loaded at the first call in each process)."""
        key = self._key()
        if key not in _LOADED:
            interface = resolve(self.interface)
            source = self._source(interface)
            options = {"overrides": self.overrides, "run_opts": self.run_opts}
            try:  # only the options given, so any SpeechBrain Pretrained class fits
                _LOADED[key] = interface.from_hparams(
                    source=source, **{name: value for name, value in options.items() if value}
                )
            except Exception as error:  # would fail on every file: stop instead
                raise MetricUnavailableError(
                    f"{self._names()}: cannot load {self._path()} from {source}: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return _LOADED[key]

    def __call__(self, ref, deg, sample_rate, cache):
        """Scores the degraded waveform; returns ``{metric name: float}``."""
        import torch

        model = self.load()
        wav = torch.as_tensor(np.asarray(deg), dtype=torch.float32)
        model_rate = int(model.hparams.sample_rate)
        if sample_rate != model_rate:
            import torchaudio

            wav = torchaudio.functional.resample(wav, sample_rate, model_rate)
        names = tuple(getattr(model, "metric_names", ()) or ())
        if len(names) > 1:  # a predictor of several named metrics: all of them from one pass
            table = model.score_metrics_batch(wav.unsqueeze(0))
            scores = {metric: table[:, column] for column, metric in enumerate(names)}
        else:
            scores = model.score_batch(wav.unsqueeze(0))
        return {name: self._pick(scores, name, key) for name, key in self.outputs.items()}

    def _pick(self, scores, name, key):
        if isinstance(scores, Mapping):
            if key is None:
                raise MetricError(f"{name}: the predictor gives several outputs ({', '.join(scores)}); "
                                  "register it with output=")
            return float(scores[key][0])
        value = scores[0] if key is None else scores[0][key]
        if getattr(value, "numel", lambda: 1)() != 1:
            raise MetricError(f"{name}: the predictor gives {value.numel()} values per file; "
                              "register it with output=")
        return float(value)


# --- names and aliases ------------------------------------------------------------------------

class _LiveNames(Sequence):
    """A read-only tuple-like view of the registered names that match a condition."""

    def __init__(self, keep):
        self._keep = keep

    def _names(self):
        return tuple(name for name, spec in METRICS.items() if self._keep(spec))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self):
        return len(self._names())

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self):
        return repr(self._names())


#: Metrics needing a reference signal (a live view of :data:`METRICS`).
INTRUSIVE_METRICS = _LiveNames(lambda spec: spec.needs_reference)
#: Metrics computed from the degraded signal alone, learned predictors included (live view).
NONINTRUSIVE_METRICS = _LiveNames(lambda spec: not spec.needs_reference)
#: The learned predictors (live view).
LEARNED_METRICS = _LiveNames(lambda spec: spec.learned)
#: Metrics of ``sqe evaluate`` when none are named: all intrusive ones that are cheap
#: (the composite trio reuses the PESQ computation; SI-SNR and PESQ NB are left to the asking).
DEFAULT_METRICS = ("pesq_wb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl")


def _alias(name):
    return {
        "default": DEFAULT_METRICS,
        "all": tuple(METRICS),
        "intrusive": tuple(INTRUSIVE_METRICS),
        "nonintrusive": tuple(NONINTRUSIVE_METRICS),
        "learned": tuple(LEARNED_METRICS),
    }.get(name, (name,))


def resolve_metrics(names=None):
    """Validates metric names and expands the aliases (``default``, ``all``, ``intrusive``,
    ``nonintrusive``, ``learned``; see the module notes); duplicates are dropped, order kept.

    Arguments
    ---------
    names : str or list of str, optional
        Metric names or aliases; ``None`` gives :data:`DEFAULT_METRICS`.

    Returns
    -------
    list of str
        The metric names.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).

    Example
    -------
    >>> resolve_metrics(["stoi", "default"])[:3]
    ['stoi', 'pesq_wb', 'estoi']
    >>> resolve_metrics("learned")[:6]
    ['dnsmos_ovrl', 'dnsmos_sig', 'dnsmos_bak', 'dnsmos_p808', 'distillmos', 'vqscore']
    >>> resolve_metrics("learned")[6:8]       # the shipped multi-metric predictor's, one pass for all six
    ['sqa_pesq_wb', 'sqa_stoi']
    """
    if names is None:
        names = ["default"]
    if isinstance(names, str):
        names = [names]
    resolved = []
    for name in names:
        for item in _alias(name):
            if item not in METRICS:
                raise ValueError(
                    f"unknown metric {item!r}; known metrics: {', '.join(METRICS)} "
                    f"(or {', '.join(ALIASES)})"
                )
            if item not in resolved:
                resolved.append(item)
    return resolved


def needs_reference(metrics):
    """Tells whether any of the metrics is intrusive (needs a reference).

    Arguments
    ---------
    metrics : list of str
        Metric names.

    Returns
    -------
    bool
        True when at least one needs the reference.

    Example
    -------
    >>> needs_reference(["dnsmos_ovrl", "vqscore"]), needs_reference(["stoi", "dnsmos_ovrl"])
    (False, True)
    """
    return any(METRICS[name].needs_reference for name in resolve_metrics(metrics))


def split_available(metrics):
    """Splits metrics into those that can run here and those that cannot, with the reasons.

    Arguments
    ---------
    metrics : list of str
        Metric names or aliases.

    Returns
    -------
    tuple
        ``(names, reasons)``: the available names in order, and ``{name: why}`` for the others.

    Example
    -------
    >>> names, reasons = split_available(["si_sdr", "dnsmos_ovrl"])
    >>> names[0], set(names[1:]) | set(reasons) == {"dnsmos_ovrl"}
    ('si_sdr', True)
    """
    names, reasons, checked = [], {}, {}
    for name in resolve_metrics(metrics):
        spec = METRICS[name]
        key = (spec.group, id(spec.available))  # one check per group
        if key not in checked:
            checked[key] = spec.is_available()
        ok, why = checked[key]
        if ok:
            names.append(name)
        else:
            reasons[name] = why
    return names, reasons


def require_available(metrics):
    """Raises the availability error of the first metric that cannot run here.

    Arguments
    ---------
    metrics : list of str
        Metric names or aliases.

    Raises
    ------
    MetricUnavailableError
        For example :class:`~speechbrain_sqe.metrics.dnsmos.DnsmosUnavailableError`.

    Example
    -------
    >>> require_available(["stoi", "si_sdr"])
    """
    checked = set()
    for name in resolve_metrics(metrics):
        spec = METRICS[name]
        if (spec.group, id(spec.available)) not in checked:
            spec.check_available()
            checked.add((spec.group, id(spec.available)))


def metric_table(metrics=("all",), check=True):
    """One row per metric for ``sqe evaluate --list-metrics``.

    Arguments
    ---------
    metrics : list of str
        Metric names or aliases.
    check : bool
        Run the availability checks (imports optional packages, never loads a model).

    Returns
    -------
    list of dict
        ``name``, ``reference`` (``yes``/``no``), ``range``, ``better``, ``available``
        (``yes`` or ``no: why``), ``description``.

    Example
    -------
    >>> metric_table(["pesq_wb"])[0]["range"], metric_table(["vqscore"], check=False)[0]["reference"]
    ('[1.04, 4.64]', 'no')
    """
    _, reasons = split_available(metrics) if check else ([], {})
    return [
        {
            "name": name,
            "reference": "yes" if spec.needs_reference else "no",
            "range": spec.range_text,
            "better": spec.direction,
            "available": f"no: {reasons[name]}" if name in reasons else "yes",
            "description": spec.description,
        }
        for name, spec in ((name, METRICS[name]) for name in resolve_metrics(metrics))
    ]


def format_metric_table(rows, columns=("name", "reference", "range", "better", "available")):
    """Formats :func:`metric_table` rows as an aligned text table.

    Arguments
    ---------
    rows : list of dict
        From :func:`metric_table`.
    columns : sequence of str
        The columns shown.

    Returns
    -------
    str
        The table (a header line, then one line per metric).

    Example
    -------
    >>> print(format_metric_table(metric_table(["stoi", "si_sdr"])))
    name   reference range       better available
    stoi   yes       [-1, 1]     higher yes
    si_sdr yes       (-inf, inf) higher yes
    """
    widths = [max([len(column)] + [len(str(row[column])) for row in rows]) for column in columns]
    lines = [[column for column in columns]] + [[str(row[column]) for column in columns] for row in rows]
    return "\n".join(
        " ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


# --- computing --------------------------------------------------------------------------------

def trim_to_equal_length(ref_wav, deg_wav):
    """Cuts the longer of two waveforms at its end so both have the shorter's length.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor
        Reference waveform ``[time]``.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded waveform ``[time]``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(ref, deg)`` as float64 arrays of equal length (no alignment is attempted: files are
        expected to start together, as enhancement outputs do).

    Example
    -------
    >>> ref, deg = trim_to_equal_length([1.0, 2.0, 3.0], [1.0, 2.0])
    >>> ref.tolist(), deg.tolist()
    ([1.0, 2.0], [1.0, 2.0])
    """
    ref = as_numpy(ref_wav, "reference")
    deg = as_numpy(deg_wav, "degraded")
    length = min(ref.shape[0], deg.shape[0])
    return ref[:length], deg[:length]


def _cached(cache, key, compute):
    if key not in cache:
        try:
            cache[key] = compute()
        except MetricError as error:
            cache[key] = error
    if isinstance(cache[key], MetricError):
        raise cache[key]
    return cache[key]


def _groups(metrics):
    """The asked metrics by group, groups in first-asked order."""
    groups = {}
    for name in metrics:
        groups.setdefault(METRICS[name].group, []).append(name)
    return groups


def _output(result, spec):
    if isinstance(result, Mapping):
        if spec.output not in result:
            raise MetricError(f"{spec.name}: {spec.group} gave no output {spec.output!r} ({', '.join(map(str, result))})")
        return float(result[spec.output])
    return float(result)


def try_compute_metrics(ref_wav, deg_wav, metrics=None, sample_rate=16000, on_group=None):
    """Computes metrics on one pair, collecting the errors instead of raising them.

    The two waveforms are trimmed to the shorter length first (:func:`trim_to_equal_length`).
    Each metric that fails gets ``nan`` and an entry in the errors; a metric that cannot run here
    at all raises.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor or None
        Reference waveform ``[time]``; ``None`` is allowed when all metrics are non-intrusive.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded waveform ``[time]``.
    metrics : list of str, optional
        Metric names (see :data:`METRICS`); default :data:`DEFAULT_METRICS`.
    sample_rate : int
        Rate of both waveforms.
    on_group : callable, optional
        Called as ``on_group(group, names)`` before each group is computed (the crash-isolated
        runner uses it to name the metric a worker died in).

    Returns
    -------
    tuple of dict
        ``(values, errors)``: metric name to float, and metric name to error message.

    Raises
    ------
    MetricUnavailableError
        When a metric cannot run here (e.g. DNSMOS without the ``eval`` extra:
        :class:`~speechbrain_sqe.metrics.dnsmos.DnsmosUnavailableError`).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> values, errors = try_compute_metrics(x, 0.5 * x, ["si_sdr", "pesq_wb"], 8000)
    >>> values["si_sdr"] > 100, bool(np.isnan(values["pesq_wb"])), "16000 Hz" in errors["pesq_wb"]
    (True, True, True)
    """
    metrics = resolve_metrics(metrics)
    if ref_wav is None:
        intrusive_names = [name for name in metrics if METRICS[name].needs_reference]
        if intrusive_names:
            raise ValueError(f"metrics {intrusive_names} need a reference signal")
        ref, deg = None, as_numpy(deg_wav, "degraded")
    else:
        ref, deg = trim_to_equal_length(ref_wav, deg_wav)
    values, errors, cache = {}, {}, {}
    for group, wanted in _groups(metrics).items():
        spec = METRICS[wanted[0]]
        if on_group is not None:
            on_group(group, wanted)
        try:
            compute = resolve(spec.compute)
            result = compute(ref if spec.needs_reference else None, deg, sample_rate, cache)
        except MetricUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - recorded per metric, never dropped
            message = str(error)
            if not isinstance(error, MetricError):
                message = f"{group}: unexpected {type(error).__name__}: {error}"
            for name in wanted:
                values[name], errors[name] = math.nan, message
            continue
        for name in wanted:
            try:
                values[name] = _output(result, METRICS[name])
            except (MetricError, TypeError, ValueError) as error:
                values[name], errors[name] = math.nan, str(error)
    return {name: values[name] for name in metrics}, errors


def _raise_first(errors):
    for name, message in errors.items():
        raise MetricError(message if message.startswith(name) else f"{name}: {message}")


def compute_metrics(ref_wav, deg_wav, metrics=None, sample_rate=16000):
    """Computes intrusive (and possibly non-intrusive) metrics of one reference/degraded pair.

    The two waveforms are trimmed to the shorter length first, cutting the end of the longer
    one (:func:`trim_to_equal_length`); no time alignment is done.

    Arguments
    ---------
    ref_wav : numpy.ndarray or torch.Tensor
        Reference (clean) waveform ``[time]``.
    deg_wav : numpy.ndarray or torch.Tensor
        Degraded (noisy or enhanced) waveform ``[time]``.
    metrics : list of str, optional
        Metric names (see :data:`METRICS`); default :data:`DEFAULT_METRICS`.
    sample_rate : int
        Rate of both waveforms (PESQ needs 16000, or 8000 for ``pesq_nb``).

    Returns
    -------
    dict
        Metric name to float, in the order asked.

    Raises
    ------
    MetricError
        The first metric that cannot be computed, naming it and the cause.
    MetricUnavailableError
        When a metric cannot run here (DNSMOS without the ``eval`` extra).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16000) * 0.1
    >>> scores = compute_metrics(x, np.concatenate([x, np.zeros(100)]), ["si_sdr", "stoi"])
    >>> round(scores["stoi"], 3), scores["si_sdr"] > 100
    (1.0, True)
    """
    values, errors = try_compute_metrics(ref_wav, deg_wav, metrics, sample_rate)
    _raise_first(errors)
    return values


def compute_nonintrusive_metrics(deg_wav, metrics=None, sample_rate=16000):
    """Computes non-intrusive metrics (DNSMOS, VQScore, learned predictors) of a waveform alone.

    Arguments
    ---------
    deg_wav : numpy.ndarray or torch.Tensor
        The waveform ``[time]``.
    metrics : list of str, optional
        Non-intrusive metric names; default all of them (:data:`NONINTRUSIVE_METRICS`).
    sample_rate : int
        Its rate.

    Returns
    -------
    dict
        Metric name to float.

    Raises
    ------
    ValueError
        When an intrusive metric is asked for.
    MetricUnavailableError
        When one cannot run here (DNSMOS without ``pip install speechbrain-sqe[eval]``).

    Example
    -------
    >>> from speechbrain_sqe.metrics.intrusive import MetricUnavailableError
    >>> import numpy as np
    >>> try:
    ...     scores = compute_nonintrusive_metrics(np.random.default_rng(0).standard_normal(16000) * 0.05)
    ...     print(sorted(scores)[-1])
    ... except MetricUnavailableError:  # DNSMOS or Distill-MOS without the eval extra
    ...     print("vqscore")
    vqscore
    """
    metrics = resolve_metrics(NONINTRUSIVE_METRICS if metrics is None else metrics)
    intrusive_names = [name for name in metrics if METRICS[name].needs_reference]
    if intrusive_names:
        raise ValueError(f"metrics {intrusive_names} need a reference; use compute_metrics")
    values, errors = try_compute_metrics(None, deg_wav, metrics, sample_rate)
    _raise_first(errors)
    return values


def finite_values(values):
    """Keeps the finite floats of a sequence (strings are parsed; blanks and NaN are dropped).

    Arguments
    ---------
    values : iterable
        Numbers, numeric strings, ``None`` or blanks.

    Returns
    -------
    numpy.ndarray
        The finite values as float64.

    Example
    -------
    >>> finite_values([1, "2.5", "", None, float("nan")]).tolist()
    [1.0, 2.5]
    """
    out = []
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return np.asarray(out, dtype=np.float64)


# --- the built-in metrics ---------------------------------------------------------------------
# Module-level functions (not lambdas), so that specs pickle for spawned worker processes.

def _pesq_wb(ref, deg, sample_rate, cache):
    return _cached(cache, "pesq_wb", lambda: intrusive.pesq(ref, deg, sample_rate, "wb"))


def _pesq_nb(ref, deg, sample_rate, cache):
    return _cached(cache, "pesq_nb", lambda: intrusive.pesq(ref, deg, sample_rate, "nb"))


def _stoi(ref, deg, sample_rate, cache):
    return intrusive.stoi(ref, deg, sample_rate)


def _estoi(ref, deg, sample_rate, cache):
    return intrusive.stoi(ref, deg, sample_rate, extended=True)


def _si_sdr(ref, deg, sample_rate, cache):
    return intrusive.si_sdr(ref, deg)


def _si_snr(ref, deg, sample_rate, cache):
    return intrusive.si_snr(ref, deg)


def _composite(ref, deg, sample_rate, cache):
    pesq_score = None  # composite() raises the rate error at other rates
    if sample_rate in (8000, 16000):  # reuse the PESQ of this pair if it was asked for too
        pesq_score = (_pesq_wb if sample_rate == 16000 else _pesq_nb)(ref, deg, sample_rate, cache)
    return composite_module.composite(ref, deg, sample_rate, pesq_score=pesq_score)


def _dnsmos(ref, deg, sample_rate, cache):
    return dnsmos_module.dnsmos(deg, sample_rate)


def _distillmos(ref, deg, sample_rate, cache):
    return distillmos_module.distillmos(deg, sample_rate)


def _register_builtins():
    for name, compute, low_high, description in [
        ("pesq_wb", _pesq_wb, (1.04, 4.64), "PESQ wide band MOS-LQO (16 kHz)"),
        ("pesq_nb", _pesq_nb, (1.02, 4.55), "PESQ narrow band MOS-LQO"),
        ("stoi", _stoi, (-1.0, 1.0), "short-time objective intelligibility"),
        ("estoi", _estoi, (-1.0, 1.0), "extended STOI"),
        ("si_sdr", _si_sdr, (None, None), "scale-invariant SDR (dB)"),
        ("si_snr", _si_snr, (None, None), "scale-invariant SNR, zero mean (dB)"),
    ]:
        register_metric(name, compute, True, low_high, "higher", description=description)
    register_group(
        "composite", _composite, ["csig", "cbak", "covl"], True, (1.0, 5.0),
        description={"csig": "composite signal distortion", "cbak": "composite background intrusiveness",
                     "covl": "composite overall quality"},
    )
    register_group(
        "dnsmos", _dnsmos, ["dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"], False, (1.0, 5.0),
        description={"dnsmos_ovrl": "DNSMOS P.835 overall", "dnsmos_sig": "DNSMOS P.835 signal",
                     "dnsmos_bak": "DNSMOS P.835 background", "dnsmos_p808": "DNSMOS P.808"},
        available=dnsmos_module.require_dnsmos, learned=True,
    )
    register_metric("distillmos", _distillmos, False, (1.0, 5.0), "higher",
                    description="Distill-MOS (Stahl and Gamper, 2025), weights in the distillmos wheel",
                    available=distillmos_module.require_distillmos, learned=True)
    register_predictor("vqscore", VQSCORE_INTERFACE, range=(-1.0, 1.0), direction="higher",
                       description="VQScore (Fu et al., ICLR 2024), the shipped model")
    # The shipped learned multi-metric predictor (hparams/sqa.yaml): one pass per file, six metrics.
    sqa_ranges = {"pesq_wb": (1.0, 4.5), "stoi": (0.0, 1.0), "estoi": (0.0, 1.0), "si_sdr": (None, None),
                  "dnsmos_ovrl": (1.0, 5.0), "distillmos": (1.0, 5.0)}
    register_predictor("sqa", SQA_INTERFACE, output={f"sqa_{metric}": metric for metric in sqa_ranges},
                       range={f"sqa_{metric}": bounds for metric, bounds in sqa_ranges.items()}, direction="higher",
                       description={f"sqa_{metric}": f"{metric} predicted without a reference by the shipped "
                                    "learned predictor (hparams/sqa.yaml)" for metric in sqa_ranges})


_register_builtins()
