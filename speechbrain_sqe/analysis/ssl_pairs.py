"""Runs an SSL model over clean/noisy pairs and accumulates per-layer robustness statistics.

The model is anything with ``hidden_states(wavs, wav_lens) -> list of [batch, frames, dim]``
and ``hparams.sample_rate`` (e.g. :class:`speechbrain_sqe.inference.encoders.TERA`). Pairs come from a
pairs manifest (``clean_wav``, ``noisy_wav`` and the condition columns ``snr``, ``t60``,
``noise_type``, ``reverb``) or from two folders paired by file name (then only the overall group
is reported).
"""

import csv

import torch
from tqdm import tqdm

from speechbrain_sqe.analysis.ssl_robustness import RobustnessAccumulator
from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.metrics.runner import pair_files

#: Manifest columns carried as conditions.
CONDITION_COLUMNS = ("snr", "t60", "noise_type", "reverb")


def read_pairs(manifest=None, clean=None, noisy=None):
    """Clean/noisy pairs with their conditions, from a manifest or from two folders.

    Arguments
    ---------
    manifest : str, optional
        A pairs CSV (``ID``, ``clean_wav``, ``noisy_wav`` and optional condition columns).
    clean, noisy : list of str, optional
        Folders or files, paired by name as ``sqe evaluate`` pairs them.

    Returns
    -------
    list of dict
        ``{"id", "clean", "noisy", "conditions"}``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.csv")
    >>> _ = open(path, "w").write("ID,duration,clean_wav,noisy_wav,snr\\nu1,1.0,c.wav,n.wav,5\\n")
    >>> read_pairs(manifest=path)
    [{'id': 'u1', 'clean': 'c.wav', 'noisy': 'n.wav', 'conditions': {'snr': '5'}}]
    """
    if manifest is not None:
        with open(manifest, newline="", encoding="utf-8") as stream:
            return [
                {"id": row["ID"], "clean": row["clean_wav"], "noisy": row["noisy_wav"],
                 "conditions": {c: row[c] for c in CONDITION_COLUMNS if row.get(c) not in (None, "")}}
                for row in csv.DictReader(stream)
            ]
    pairs, unpaired = pair_files(clean, noisy)
    if unpaired:
        raise ValueError(f"{len(unpaired)} files could not be paired, e.g. {unpaired[:3]}")
    return [{"id": p.file, "clean": p.ref, "noisy": p.deg, "conditions": {}} for p in pairs]


@torch.no_grad()
def analyze_ssl_pairs(model, pairs, batch_size=8, progress=True):
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

    Returns
    -------
    speechbrain_sqe.analysis.ssl_robustness.RobustnessAccumulator
        Call ``results()`` for the per-layer, per-condition rows.
    """
    accumulator = RobustnessAccumulator()
    rate = model.hparams.sample_rate
    for start in tqdm(range(0, len(pairs), batch_size), desc="analyze-ssl", disable=not progress):
        chunk = pairs[start : start + batch_size]
        clean_wavs, noisy_wavs = [], []
        for pair in chunk:
            clean, noisy = load_audio(pair["clean"], rate), load_audio(pair["noisy"], rate)
            length = min(clean.shape[0], noisy.shape[0])  # frame-aligned: same samples
            clean_wavs.append(clean[:length])
            noisy_wavs.append(noisy[:length])
        longest = max(w.shape[0] for w in clean_wavs)
        lens = torch.tensor([w.shape[0] / longest for w in clean_wavs])
        clean_batch = torch.nn.utils.rnn.pad_sequence(clean_wavs, batch_first=True)
        noisy_batch = torch.nn.utils.rnn.pad_sequence(noisy_wavs, batch_first=True)
        clean_layers = model.hidden_states(clean_batch, lens)
        noisy_layers = model.hidden_states(noisy_batch, lens)
        accumulator.add(clean_layers, noisy_layers, lens,
                        conditions=[p["conditions"] for p in chunk], ids=[p["id"] for p in chunk])
    return accumulator
