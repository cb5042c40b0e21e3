"""The label set of the learned quality predictor made from real speech (``--label_source=manifest``).

From a clean-speech manifest (``path, speaker, split``, the layout of
``../shared/data/speech/manifest.csv``, read by
:func:`~speechbrain_sqe.dataio.manifest_corpus.read_speech_manifest`) and noise / room lists with
splits (``path, split[, kind]``, ``../shared/data/real/splits.csv``):

- the manifest's **train** speakers make the label ``train`` split; its **valid** speakers are
  split in two, sorted by name, alternately: the even ones make ``valid``, the odd ones ``test``
  (so valid and test never share a speaker); the manifest's **test** speakers are never used (they
  are the speakers of the real test sets, :mod:`~speechbrain_sqe.dataio.real_testsets`);
- only the lists' **train** noises and rooms are used, whatever the label split (test noises and
  rooms are those of the real test sets); :func:`check_plan_excludes` refuses a plan naming a test
  speaker, a test speaker's file or a test noise / room, before anything is written;
- for each clean file: the clean file itself (``system=clean``) and ``conditions_per_file``
  degraded versions (``system=degraded``), each drawn (seeded by the file and its index) from
  :data:`PLAN`: noise at an SNR uniform in [-5, 30] dB, a room, a room plus noise, a band limit,
  clipping, a codec, packet loss, noise then a codec (see
  :mod:`~speechbrain_sqe.dataio.degradations`; the spec is data, its name goes in ``condition``);
- optionally (``embedded_train_files``) training speech of the **embedded corpus** joins the train
  split: TTS voices, its ``train_clean`` files only (the corpus's held-out voices never enter), with
  the same draws of conditions and the same real training noises and rooms as the real files;
- optionally (``synthetic_noise_per_family``) synthetic noise files of every family of
  :data:`~speechbrain_sqe.dataio.noise.NOISE_FAMILIES` (babble from training speakers only) join
  the training noises (:func:`write_synthetic_noise_list`): noise kinds the eight real training
  noises lack;
- labels: the metric runner against the **dry** clean file (a room lowers the labels:
  reverberation is a degradation here, as in every corpus of the project). DNSMOS OVRL and
  Distill-MOS are filled when they run here, left empty otherwise (a warning);
- written as :func:`~speechbrain_sqe.dataio.sqa_labels.label_items` does: resumable (rows present
  are kept), atomic audio writes, a stamp refusing a folder made with other settings, a tqdm bar,
  and ``max_train_files`` / ``max_valid_files`` to make a small set (files drawn seeded across
  speakers, not the first ones).
"""

import csv
import hashlib
import io
import logging
import os
import re

import numpy as np

from speechbrain_sqe.dataio.degradations import (
    CODECS,
    available_codecs,
    degrade,
    describe,
)
from speechbrain_sqe.dataio.manifest_corpus import (
    _check_file,
    _read_rows,
    _report,
    _resolve,
    read_source_list,
    read_speech_manifest,
)
from speechbrain_sqe.dataio.sqa_labels import (
    LABEL_METRICS,
    SPLITS,
    _check_stamp,
    label_items,
    label_manifests,
)

logger = logging.getLogger(__name__)

__all__ = ["PLAN", "PlanError", "check_plan_excludes", "draw_condition", "plan_real_sqa_labels",
           "prepare_real_sqa_labels", "read_embedded_speech"]

#: The kinds of condition drawn, equally likely.
PLAN = ("noise", "room", "room_noise", "band_limit", "clip", "codec", "packet_loss", "noise_codec")
#: compression_level settings drawn per codec (MP3 at 16 kHz fails near 1 in libsndfile 1.2.2).
CODEC_SETTINGS = {"vorbis": (0.3, 0.6, 0.9, 1.0), "opus": (0.6, 0.8, 0.9, 1.0), "mp3": (0.3, 0.6, 0.9)}
SNR_RANGE = (-5.0, 30.0)
CUTOFFS_HZ = (2000.0, 3400.0, 4000.0, 5500.0)


class PlanError(RuntimeError):
    """A label plan that names a test speaker, noise or room."""


def _seed(*parts):
    return int.from_bytes(hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()[:8], "little")


def draw_condition(rng, noises, rooms, codecs, weights=None, snr_range=SNR_RANGE, noise_variation=0.0):
    """Draws one degradation spec of :data:`PLAN`.

    Arguments
    ---------
    rng : numpy.random.Generator
        The random source.
    noises, rooms : list of str
        The noise and RIR files to draw from (training ones).
    codecs : list of str
        The usable codecs.
    weights : dict, optional
        ``kind -> relative weight`` over :data:`PLAN` (kinds left out: weight 0); None: equally
        likely (the draw of the first label sets, kept bit-identical).
    snr_range : tuple of float
        Noise SNRs are drawn uniformly in ``[low, high]`` dB.
    noise_variation : float
        Probability that a noise gets a variation seed (``"vary"``: recoloured, resampled and
        fluctuating, :class:`~speechbrain_sqe.dataio.noise_variation.NoiseVariation`); 0 draws
        nothing more (the draws of the earlier label sets, kept bit-identical).

    Returns
    -------
    dict
        A spec for :func:`~speechbrain_sqe.dataio.degradations.degrade`.

    Example
    -------
    >>> spec = draw_condition(np.random.default_rng(0), ["n.wav"], ["r.wav"], ["gsm610"])
    >>> spec["kind"] in ("noise", "room", "chain", "band_limit", "clip", "codec", "packet_loss")
    True
    >>> draw_condition(np.random.default_rng(0), ["n.wav"], ["r.wav"], [], {"noise": 1}, (0, 5))["kind"]
    'noise'
    >>> "vary" in draw_condition(np.random.default_rng(0), ["n.wav"], [], [], {"noise": 1}, (0, 5), 1.0)
    True
    """
    kinds = [k for k in PLAN if (noises or "noise" not in k) and (rooms or "room" not in k)
             and (codecs or "codec" not in k)]
    if weights is None:
        kind = kinds[int(rng.integers(len(kinds)))]
    else:
        p = np.array([float(weights.get(k, 0.0)) for k in kinds])
        if not p.sum() > 0:
            raise ValueError(f"condition weights {dict(weights)} give no usable kind among {kinds}")
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]

    def noise():
        spec = {"kind": "noise", "path": noises[int(rng.integers(len(noises)))],
                "snr": round(float(rng.uniform(*snr_range)), 2)}
        if noise_variation > 0 and rng.uniform() < noise_variation:
            spec["vary"] = int(rng.integers(2**31))
        return spec

    def room():
        return {"kind": "room", "path": rooms[int(rng.integers(len(rooms)))]}

    def a_codec():
        name = codecs[int(rng.integers(len(codecs)))]
        settings = CODEC_SETTINGS.get(name)
        spec = {"kind": "codec", "name": name}
        if settings and CODECS[name][2]:
            spec["setting"] = settings[int(rng.integers(len(settings)))]
        return spec

    if kind == "noise":
        return noise()
    if kind == "room":
        return room()
    if kind == "room_noise":
        return {"kind": "chain", "steps": [room(), noise()]}
    if kind == "band_limit":
        return {"kind": "band_limit", "cutoff_hz": CUTOFFS_HZ[int(rng.integers(len(CUTOFFS_HZ)))]}
    if kind == "clip":
        return {"kind": "clip", "threshold": round(float(rng.uniform(0.05, 0.5)), 3)}
    if kind == "codec":
        return a_codec()
    if kind == "packet_loss":
        return {"kind": "packet_loss", "loss_rate": round(float(rng.uniform(0.02, 0.3)), 3)}
    return {"kind": "chain", "steps": [noise(), a_codec()]}


def _spec_paths(spec):
    if spec is None:
        return []
    if spec.get("kind") == "chain":
        return [path for step in spec["steps"] for path in _spec_paths(step)]
    return [spec["path"]] if "path" in spec else []


def _uid(path, speaker, used):
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(path))[0])
    uid = stem if stem.startswith(speaker) else f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', speaker)}_{stem}"
    if uid in used:
        uid = f"{uid}_{hashlib.sha1(path.encode()).hexdigest()[:6]}"
    used.add(uid)
    return uid


def _embedded_limit(value):
    """``embedded_train_files`` as :func:`_pick`'s limit: None for ``"all"``, else an int >= 0."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"embedded_train_files must be a number of files >= 0 or 'all', got {value!r}")
    return value


def _pick(files, limit, seed, split):
    """At most ``limit`` files, drawn seeded across the list (all, in order, without a limit)."""
    if limit is None or limit >= len(files):
        return list(files)
    order = np.random.default_rng(_seed(seed, "pick", split)).permutation(len(files))[: int(limit)]
    return [files[i] for i in sorted(order)]


def plan_real_sqa_labels(manifest, noise_list, rir_list, seed=1234, conditions_per_file=3, max_train_files=None,
                         max_valid_files=None, skip_bad_rows=False, codecs=None, condition_weights=None,
                         snr_range=SNR_RANGE, noise_variation=0.0, embedded_speech=None, embedded_train_files=None):
    """The items of each label split and what must never enter them.

    Arguments
    ---------
    manifest : str
        Clean-speech CSV (``path, speaker, split``).
    noise_list, rir_list : str
        Noise and RIR lists (``path, split[, kind]``; one file may serve both).
    seed : int
        Seed of the draws.
    conditions_per_file : int
        Degraded versions per clean file (besides the clean file itself).
    max_train_files, max_valid_files : int, optional
        At most this many clean files from the train speakers / from the valid speakers (shared by
        the label valid and test splits); None: all.
    skip_bad_rows : bool
        Skip bad manifest / list rows with a warning instead of raising.
    codecs : list of str, optional
        Codecs drawn (default: every available one).
    condition_weights : dict, optional
        ``kind -> weight`` over :data:`PLAN` (see :func:`draw_condition`); None or empty: equally likely.
    snr_range : tuple of float
        Range of the noise SNRs in dB.
    noise_variation : float
        Probability that a drawn noise is varied (see :func:`draw_condition`).
    embedded_speech : str, optional
        The ``train_clean.csv`` of an embedded corpus (:func:`read_embedded_speech`): its files join
        the train split, their voices as speakers.
    embedded_train_files : int, optional
        At most this many of them (drawn seeded across the list; None: all).

    Returns
    -------
    items : dict
        ``split -> list of (row, clean path, spec or None)`` (``row`` without labels).
    excluded : dict
        ``{"speakers": set, "paths": set}``: the test speakers and every test file (speech, noise,
        room) of the inputs.
    """
    condition_weights = dict(condition_weights) if condition_weights else None  # {} (the YAML's): equally
    speech = read_speech_manifest(manifest, seed, skip_bad_rows=skip_bad_rows)
    noises = read_source_list(noise_list, "noise", skip_bad_rows)
    rooms = read_source_list(rir_list, "rir", skip_bad_rows)
    unknown = sorted(set(condition_weights or {}) - set(PLAN))
    if unknown:
        raise ValueError(f"condition_weights names {unknown}, not kinds of the plan ({', '.join(PLAN)})")
    usable = available_codecs()
    codecs = [c for c in (codecs if codecs is not None else CODECS) if c in usable]
    skipped = [c for c in CODECS if c not in usable]
    if skipped:
        logger.warning("SQA labels: codecs %s not available in this libsndfile; left out", ", ".join(skipped))
    valid_speakers = sorted({speaker for _, speaker in speech["valid"]})
    label_split_of = {speaker: ("valid", "test")[index % 2] for index, speaker in enumerate(valid_speakers)}
    sources = {"train": _pick(speech["train"], max_train_files, seed, "train")}
    if embedded_speech:
        voices = read_embedded_speech(embedded_speech)
        clash = sorted({voice for _, voice in voices} & {speaker for files in speech.values() for _, speaker in files})
        if clash:  # a voice named as a manifest speaker would merge two speakers (and could cross splits)
            raise ValueError(f"{embedded_speech}: voice(s) {clash} are also speakers of {manifest}")
        sources["train"] += _pick(voices, embedded_train_files, seed, "embedded")
    valid_files = _pick(speech["valid"], max_valid_files, seed, "valid")
    for split in ("valid", "test"):
        sources[split] = [(path, speaker) for path, speaker in valid_files if label_split_of[speaker] == split]
    items, used = {}, set()
    for split in SPLITS:
        items[split] = []
        for path, speaker in sources[split]:
            uid = _uid(path, speaker, used)
            base = {"speaker": speaker}
            items[split].append(({**base, "ID": f"{uid}_clean", "wav": path, "system": "clean",
                                  "condition": "clean"}, path, None))
            for k in range(int(conditions_per_file)):
                rng = np.random.default_rng(_seed(seed, "condition", path, k))
                spec = draw_condition(rng, noises["train"], rooms["train"], codecs, condition_weights, snr_range,
                                      noise_variation)
                spec = {**spec, "seed": _seed(seed, "degrade", path, k) % 2**32}
                items[split].append(({**base, "ID": f"{uid}_c{k}", "system": "degraded",
                                      "condition": describe(spec)}, path, spec))
    excluded = {"speakers": {speaker for _, speaker in speech["test"]},
                "paths": {path for path, _ in speech["test"]} | set(noises["test"]) | set(rooms["test"])}
    return items, excluded


def read_embedded_speech(train_clean_csv):
    """The training speech of an embedded corpus: ``(absolute path, voice)`` of each row of its
    ``train_clean.csv`` (:func:`~speechbrain_sqe.dataio.embedded.prepare_embedded_corpus`), sorted by
    path. Only the training voices: the corpus's valid and test pairs are spoken by held-out voices.

    Arguments
    ---------
    train_clean_csv : str
        The manifest (columns ``ID, duration, wav, voice, text``).

    Returns
    -------
    list of tuple
        ``(path, voice)``.

    Raises
    ------
    ManifestError
        Naming the file and its bad rows (a missing column, file or voice), as for a speech manifest.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train_clean.csv")
    >>> with open(path, "w") as stream:
    ...     _ = stream.write("ID,wav\\nu1,u1.wav\\n")
    >>> read_embedded_speech(path)
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.manifest_corpus.ManifestError: ...train_clean.csv: missing column(s) voice (found: ID, wav)
    """
    problems, files = [], []
    for line, row in _read_rows(train_clean_csv, ("wav", "voice")):
        path = _resolve(row["wav"], train_clean_csv)
        problem = _check_file(path) or (None if row["voice"] else "empty voice")
        if problem:
            problems.append((line, f"{problem} ({row['wav']})"))
        else:
            files.append((path, row["voice"]))
    _report(train_clean_csv, problems, False, "embedded speech")
    return sorted(files)


def check_plan_excludes(items, excluded):
    """Refuses a plan naming a test speaker or a test file (speech, noise, room).

    Arguments
    ---------
    items : dict
        ``split -> list of (row, clean path, spec or None)``.
    excluded : dict
        ``{"speakers": set, "paths": set}``.

    Raises
    ------
    PlanError
        Naming the first offending item.

    Example
    -------
    >>> plan = {"train": [({"ID": "a_c0", "speaker": "a"}, "a.wav", {"kind": "noise", "path": "n.wav", "snr": 0})]}
    >>> check_plan_excludes(plan, {"speakers": {"b"}, "paths": {"b.wav"}})
    >>> check_plan_excludes(plan, {"speakers": set(), "paths": {"n.wav"}})
    Traceback (most recent call last):
    ...
    speechbrain_sqe.dataio.real_sqa_labels.PlanError: label item a_c0 (train) uses n.wav, a file of the real test sets
    """
    for split, split_items in items.items():
        for row, clean, spec in split_items:
            if row.get("speaker") in excluded["speakers"]:
                raise PlanError(f"label item {row['ID']} ({split}) has test speaker {row['speaker']!r}")
            for path in [clean, row.get("wav"), *_spec_paths(spec)]:
                if path and path in excluded["paths"]:
                    raise PlanError(f"label item {row['ID']} ({split}) uses {path}, a file of the real test sets")


def _make_audio(path, clean_path, spec):
    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.dataio.jobs import save_atomic

    clean = load_audio(clean_path, 16000, warn=False).numpy()
    spec = dict(spec)
    rng = np.random.default_rng(spec.pop("seed", 0))
    save_atomic(path, degrade(clean, spec, rng, 16000), 16000)


SYNTHETIC_NOISE_SECONDS = 10.0
BABBLE_TALKERS = 6


def write_synthetic_noise_list(label_folder, noise_list, manifest, seed, per_family,
                               seconds=SYNTHETIC_NOISE_SECONDS, skip_bad_rows=False):
    """Writes ``per_family`` synthetic noise files of each family and a noise list that adds them
    to the training noises of ``noise_list``; returns the new list's path.

    The files go to ``<label_folder>/noise_synthetic/`` (``<family>_<k>.wav``, ``seconds`` long,
    unit RMS scaled to -26 dBFS; a file present is kept, so a rerun writes nothing). Babble sums
    :data:`BABBLE_TALKERS` files of the manifest's **train** speakers (never a valid or test
    speaker). The list (``noise_list.csv``, ``path, kind, split``) holds every row of
    ``noise_list`` (test noises stay test noises) and the synthetic files as ``train`` noise.

    Arguments
    ---------
    label_folder : str
        The label set's folder.
    noise_list : str
        The noise list (``path, split[, kind]``).
    manifest : str
        The clean-speech manifest (``path, speaker, split``): babble talkers.
    seed : int
        Seed of the noise (each file a pure function of it, its family and its index).
    per_family : int
        Files per family.
    seconds : float
        Length of each file.
    skip_bad_rows : bool
        Skip bad manifest / list rows with a warning.

    Returns
    -------
    str
        The path of the extended noise list.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> rows = ["path,speaker,split"]
    >>> for k, split in enumerate(["train", "train", "valid", "test"]):
    ...     save_audio(os.path.join(root, f"s{k}.wav"), np.sin(np.arange(8000) / (3 + k)) * 0.1, 16000)
    ...     rows.append(f"s{k}.wav,spk{k},{split}")
    >>> _ = open(os.path.join(root, "m.csv"), "w").write("\\n".join(rows) + "\\n")
    >>> for name in ("n1", "n2"):
    ...     save_audio(os.path.join(root, name + ".wav"), np.random.default_rng(0).standard_normal(8000) * 0.1)
    >>> _ = open(os.path.join(root, "noise.csv"), "w").write("path,split\\nn1.wav,train\\nn2.wav,test\\n")
    >>> path = write_synthetic_noise_list(os.path.join(root, "labels"), os.path.join(root, "noise.csv"),
    ...                                   os.path.join(root, "m.csv"), seed=1, per_family=1, seconds=0.5)
    >>> noises = read_source_list(path, "noise")
    >>> len(noises["train"]), len(noises["test"])
    (9, 1)
    """
    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.dataio.jobs import save_atomic
    from speechbrain_sqe.dataio.noise import NOISE_FAMILIES, make_noise
    from speechbrain_sqe.dataio.resumable_csv import write_atomic

    folder = os.path.join(os.path.abspath(label_folder), "noise_synthetic")
    os.makedirs(folder, exist_ok=True)
    train_speech = sorted(path for path, _ in read_speech_manifest(manifest, seed, skip_bad_rows=skip_bad_rows)["train"])
    length = round(float(seconds) * 16000)
    synthetic = []
    for family in NOISE_FAMILIES:
        for k in range(int(per_family)):
            path = os.path.join(folder, f"{family}_{k}.wav")
            synthetic.append(path)
            if os.path.isfile(path):
                continue
            rng = np.random.default_rng(_seed(seed, "synthetic_noise", family, k))
            talkers = None
            if family == "babble":
                picks = rng.choice(len(train_speech), size=min(BABBLE_TALKERS, len(train_speech)), replace=False)
                talkers = [load_audio(train_speech[i], 16000, warn=False).numpy() for i in sorted(picks)]
            noise = make_noise(family, length, rng, 16000, talkers=talkers)
            save_atomic(path, 10 ** (-26 / 20) * noise, 16000)
    with open(noise_list, newline="") as stream:
        rows = list(csv.DictReader(stream))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["path", "kind", "split"])
    for row in rows:  # the list's own rows, paths made absolute (the new list lives elsewhere)
        writer.writerow([_resolve(row["path"], noise_list) if row.get("path") else "", row.get("kind") or "noise",
                         row.get("split", "")])
    writer.writerows([path, "noise", "train"] for path in synthetic)
    out = os.path.join(folder, "noise_list.csv")
    write_atomic(out, table.getvalue())
    return out


def prepare_real_sqa_labels(label_folder, source_folder, noise_folder, rir_folder=None, seed=1234,
                            conditions_per_file=3, max_train_files=None, max_valid_files=None,
                            label_metrics=LABEL_METRICS, metric_jobs=2, skip_bad_rows=False, progress=True,
                            skip_prep=False, condition_weights=None, snr_range=SNR_RANGE, noise_variation=0.0,
                            embedded_train_files=0, corpus_folder=None, train_minutes=30.0, valid_pairs=48,
                            test_pairs=96, corpus_options=None, num_workers=2, synthetic_noise_per_family=0,
                            **unused):
    """Makes (or completes) the real-speech label set (see the module doc); returns its manifests.

    Arguments
    ---------
    label_folder : str
        Where ``{train,valid,test}.csv``, ``<split>/audio/`` and the stamp go.
    source_folder : str
        The clean-speech manifest CSV (``path, speaker, split``).
    noise_folder : str
        The noise list (``path, split[, kind]``).
    rir_folder : str, optional
        The RIR list (default: ``noise_folder``, a list with a ``kind`` column serving both).
    seed : int
        Seed of every draw.
    conditions_per_file : int
        Degraded versions per clean file.
    max_train_files, max_valid_files : int, optional
        Limits for a small set (see :func:`plan_real_sqa_labels`).
    condition_weights : dict, optional
        ``kind -> weight`` over :data:`PLAN`; None: equally likely. E.g. ``{noise: 1, room_noise: 1}``
        with ``snr_range=(-5, 20)`` draws the design of the real test sets (half dry, half
        reverberant noisy speech) from training speakers, noises and rooms.
    snr_range : tuple of float
        Range of the noise SNRs in dB.
    noise_variation : float
        Probability that a drawn noise is recoloured, resampled and made to fluctuate (the enhancers'
        training augmentation): more kinds of noise than the eight real training ones, which the
        real test sets' noises are not among. 0: the noises as they are.
    synthetic_noise_per_family : int
        Synthetic noise files per family added to the training noises
        (:func:`write_synthetic_noise_list`); 0: the list's noises only.
    embedded_train_files : int or str
        Training files of the embedded corpus (TTS voices) added to the train split beside the real
        ones (``"all"``: every one; 0: none), with conditions drawn as for the real files.
    corpus_folder, train_minutes, valid_pairs, test_pairs, corpus_options, num_workers
        The embedded corpus's folder and settings (made there if needed, as every recipe's default
        corpus; :func:`~speechbrain_sqe.dataio.embedded.prepare_embedded_corpus`); used only with
        ``embedded_train_files``.
    label_metrics : sequence of str
        Metrics computed (others left empty).
    metric_jobs : int
        Metric worker processes.
    skip_bad_rows : bool
        Skip bad manifest / list rows with a warning.
    progress : bool
        tqdm bars.
    skip_prep : bool
        Only return the manifest paths.
    **unused : dict
        Options of the other label sources (the recipe passes one set of keywords).

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "test": path}``.
    """
    from speechbrain_sqe.metrics.registry import split_available

    manifests = label_manifests(label_folder)
    if skip_prep:
        return manifests
    if not source_folder or not noise_folder:
        raise ValueError("label_source=manifest needs source_folder (the speech manifest CSV) and noise_folder "
                         "(a noise list with splits; rir_folder defaults to it)")
    unknown = [name for name in label_metrics if name not in LABEL_METRICS]
    if unknown:
        raise ValueError(f"label_metrics {unknown} are not label columns ({', '.join(LABEL_METRICS)})")
    rir_folder = rir_folder or noise_folder
    listed_noise = noise_folder
    if synthetic_noise_per_family:
        noise_folder = write_synthetic_noise_list(label_folder, noise_folder, source_folder, seed,
                                                  int(synthetic_noise_per_family), skip_bad_rows=skip_bad_rows)
    snr_range = tuple(float(v) for v in snr_range)
    condition_weights = dict(condition_weights) if condition_weights else None  # {} (the YAML's): equally
    embedded_limit = _embedded_limit(embedded_train_files)
    embedded_speech = None
    if embedded_limit != 0:
        if not corpus_folder:
            raise ValueError("embedded_train_files needs corpus_folder (the embedded corpus's folder)")
        from speechbrain_sqe.dataio.embedded import prepare_embedded_corpus

        corpus = prepare_embedded_corpus(corpus_folder, seed=seed, train_minutes=train_minutes,
                                         valid_pairs=valid_pairs, test_pairs=test_pairs, num_workers=num_workers,
                                         **dict(corpus_options or {}))
        embedded_speech = corpus["train_clean"]
    items, excluded = plan_real_sqa_labels(source_folder, noise_folder, rir_folder, seed, conditions_per_file,
                                           max_train_files, max_valid_files, skip_bad_rows, None,
                                           condition_weights, snr_range, float(noise_variation),
                                           embedded_speech, embedded_limit)
    check_plan_excludes(items, excluded)
    config = {"source": "manifest", "manifest": os.path.abspath(source_folder),
              "noise_list": os.path.abspath(listed_noise), "rir_list": os.path.abspath(rir_folder), "seed": seed,
              "conditions_per_file": int(conditions_per_file), "max_train_files": max_train_files,
              "max_valid_files": max_valid_files, "label_metrics": list(label_metrics),
              "codecs": available_codecs()}
    # Recorded only when not the default, so folders made before these options keep their stamp.
    if condition_weights is not None:
        config["condition_weights"] = {k: float(v) for k, v in sorted(dict(condition_weights).items())}
    if snr_range != SNR_RANGE:
        config["snr_range"] = list(snr_range)
    if noise_variation:
        config["noise_variation"] = float(noise_variation)
    if synthetic_noise_per_family:
        config["synthetic_noise_per_family"] = int(synthetic_noise_per_family)
    if embedded_speech:
        config["embedded"] = {"corpus_folder": os.path.abspath(corpus_folder), "train_files": embedded_limit}
    os.makedirs(label_folder, exist_ok=True)
    _check_stamp(label_folder, config)
    metrics, reasons = split_available(list(label_metrics))
    for name, why in reasons.items():
        logger.warning("SQA labels: %s left empty: %s", name, why)
    from speechbrain_sqe.dataio.manifest import audio_duration

    durations = {}
    for split in SPLITS:
        for row, clean, _ in items[split]:
            if clean not in durations:
                durations[clean] = audio_duration(clean)
            row["duration"] = durations[clean]
        label_items(label_folder, split, items[split], metrics, metric_jobs, _make_audio, progress=progress)
    return manifests
