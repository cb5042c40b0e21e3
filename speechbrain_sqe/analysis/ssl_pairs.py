"""Runs an SSL model over clean/noisy pairs and accumulates per-layer robustness statistics.

The model is anything with ``hidden_states(wavs, wav_lens) -> list of [batch, frames, dim]``
and ``hparams.sample_rate`` (e.g. :class:`speechbrain_sqe.inference.encoders.TERA`). Pairs come from a
pairs manifest (``clean_wav``, ``noisy_wav`` and the condition columns ``snr``, ``t60``,
``noise_type``, ``reverb``) or from two folders paired by file name (then only the overall group
is reported).
"""

import csv
import os

import torch
from tqdm import tqdm

from speechbrain_sqe.analysis.ssl_robustness import RobustnessAccumulator
from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio
from speechbrain_sqe.metrics.runner import PairingError, pair_files

#: Manifest columns carried as conditions.
CONDITION_COLUMNS = ("snr", "t60", "noise_type", "reverb")
#: Columns a pairs manifest must have.
REQUIRED_COLUMNS = ("ID", "clean_wav", "noisy_wav")


class PairsError(ValueError):
    """A pairs manifest or folder that cannot be read as pairs (a user error: one line)."""


def _read_manifest(manifest):
    if not os.path.isfile(manifest):
        raise PairsError(f"{manifest}: pairs manifest does not exist")
    with open(manifest, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PairsError(f"{manifest}: missing column(s) {', '.join(missing)}; a pairs manifest needs "
                             f"{', '.join(REQUIRED_COLUMNS)} (conditions optional: {', '.join(CONDITION_COLUMNS)})")
        return [
            {"id": row["ID"], "clean": row["clean_wav"], "noisy": row["noisy_wav"],
             "conditions": {c: row[c] for c in CONDITION_COLUMNS if row.get(c) not in (None, "")}}
            for row in reader
        ]


def read_pairs(manifest=None, clean=None, noisy=None, failures=None):
    """Clean/noisy pairs with their conditions, from a manifest or from two folders.

    Arguments
    ---------
    manifest : str, optional
        A pairs CSV (``ID``, ``clean_wav``, ``noisy_wav`` and optional condition columns).
    clean, noisy : list of str, optional
        Folders or files, paired by name as ``sqe evaluate`` pairs them.
    failures : list, optional
        Where ``(file, reason)`` of each file without a partner is appended; without it, such
        files raise :class:`PairsError`.

    Returns
    -------
    list of dict
        ``{"id", "clean", "noisy", "conditions"}``.

    Raises
    ------
    PairsError
        A missing manifest or folder, a manifest without the needed columns, or (without
        ``failures``) a file that cannot be paired.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.csv")
    >>> _ = open(path, "w").write("ID,duration,clean_wav,noisy_wav,snr\\nu1,1.0,c.wav,n.wav,5\\n")
    >>> read_pairs(manifest=path)
    [{'id': 'u1', 'clean': 'c.wav', 'noisy': 'n.wav', 'conditions': {'snr': '5'}}]
    """
    if manifest is not None:
        return _read_manifest(manifest)
    for path in list(clean) + list(noisy):
        if not os.path.exists(path):
            raise PairsError(f"{path}: file or folder does not exist")
    try:
        pairs, unpaired = pair_files(clean, noisy)
    except PairingError as error:
        raise PairsError(str(error)) from error
    if unpaired and failures is None:
        raise PairsError(f"{len(unpaired)} files could not be paired, e.g. {[f.file for f in unpaired[:3]]}")
    for item in unpaired:  # runner.Failure(file, reason, message)
        failures.append((item.file, f"{item.reason}: {item.message}" if item.message else item.reason))
    return [{"id": p.file, "clean": p.ref, "noisy": p.deg, "conditions": {}} for p in pairs]


def _load_pair(pair, rate, failures):
    """The pair's two signals cut to the same length, or None (reason appended to ``failures``)."""
    try:
        clean, noisy = load_audio(pair["clean"], rate), load_audio(pair["noisy"], rate)
    except AudioLoadError as error:  # reported, the other pairs carry on
        if failures is None:
            raise
        failures.append((pair["id"], f"unreadable: {error}"))
        return None
    length = min(clean.shape[0], noisy.shape[0])  # frame-aligned: same samples
    return clean[:length], noisy[:length]


@torch.no_grad()
def analyze_ssl_pairs(model, pairs, batch_size=8, progress=True, failures=None):
    """Hidden states of each clean and noisy file, compared layer by layer.

    Arguments
    ---------
    model : object
        Has ``hidden_states(wavs, wav_lens)`` and ``hparams.sample_rate``.
    pairs : list of dict
        From :func:`read_pairs`.
    batch_size : int
        Pairs per batch.
    progress : bool
        Show a progress bar.
    failures : list, optional
        Where ``(id, reason)`` of each pair whose audio cannot be read is appended (the others
        are analysed); without it, such a pair raises.

    Returns
    -------
    speechbrain_sqe.analysis.ssl_robustness.RobustnessAccumulator
        Call ``results()`` for the per-layer, per-condition rows.
    """
    accumulator = RobustnessAccumulator()
    rate = model.hparams.sample_rate
    for start in tqdm(range(0, len(pairs), batch_size), desc="analyze-ssl", disable=not progress):
        loaded = [(pair, _load_pair(pair, rate, failures)) for pair in pairs[start : start + batch_size]]
        chunk = [pair for pair, signals in loaded if signals is not None]
        if not chunk:
            continue
        clean_wavs = [signals[0] for _, signals in loaded if signals is not None]
        noisy_wavs = [signals[1] for _, signals in loaded if signals is not None]
        longest = max(w.shape[0] for w in clean_wavs)
        lens = torch.tensor([w.shape[0] / longest for w in clean_wavs])
        clean_batch = torch.nn.utils.rnn.pad_sequence(clean_wavs, batch_first=True)
        noisy_batch = torch.nn.utils.rnn.pad_sequence(noisy_wavs, batch_first=True)
        clean_layers = model.hidden_states(clean_batch, lens)
        noisy_layers = model.hidden_states(noisy_batch, lens)
        accumulator.add(clean_layers, noisy_layers, lens,
                        conditions=[p["conditions"] for p in chunk], ids=[p["id"] for p in chunk])
    return accumulator
