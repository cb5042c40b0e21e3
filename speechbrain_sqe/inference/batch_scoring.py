"""Scoring many files fast with any quality predictor: sort by length, batch, pad, score; report bad
files (the batching is :mod:`speechbrain_sqe.inference.batching`'s).

Results can be handed over batch by batch (``on_batch``), so a caller writes them as they come and an
interrupted run keeps what was finished; ``detect_speech`` gives files without speech (silence, a DC
offset, noise alone) an empty score instead of a number that reads as quality.
"""

import contextlib

import torch
from tqdm import tqdm

from speechbrain_sqe.dataio.activity import has_speech_batch
from speechbrain_sqe.inference.batching import batch_threads, map_batches

#: The reason listed for a file in which :func:`~speechbrain_sqe.dataio.activity.has_speech` finds none.
NO_SPEECH = "no speech found (silence, a DC offset or noise alone); not scored"


def _score(scorer, wavs, lens, frames):
    """Scores (and frame scores) of a padded batch; when the batch fails (a file the model cannot
    take, out of memory), each file is scored alone and a failing one gets its error message."""
    try:
        scores = scorer.score_metrics_batch(wavs, lens)
        return [row.tolist() for row in scores], (scorer.score_frames_batch(wavs, lens) if frames else None)
    except (RuntimeError, ValueError) as error:
        if wavs.shape[0] == 1:
            return [f"cannot score: {error}"], None
    scores, frame_rows = [], []
    for row in range(wavs.shape[0]):
        wav = wavs[row : row + 1, : round(float(lens[row]) * wavs.shape[1])]
        try:
            scores.append(scorer.score_metrics_batch(wav)[0].tolist())
            if frames:
                frame_rows.append(scorer.score_frames_batch(wav)[0])
        except (RuntimeError, ValueError) as error:
            scores.append(f"cannot score: {error}")
            frame_rows.append(None)
    if not frames:
        return scores, None
    longest = max((len(f) for f in frame_rows if f is not None), default=0)
    padded = torch.zeros(len(frame_rows), longest)
    for row, values in enumerate(frame_rows):
        if values is not None:
            padded[row, : len(values)] = values
    return scores, padded


def score_files(scorer, paths, batch_size=16, frames=False, num_workers=0, progress=True,
                detect_speech=False, on_batch=None, threads="auto"):
    """Scores audio files in length-sorted batches.

    Arguments
    ---------
    scorer : speechbrain_sqe.inference.quality.QualityPredictor
        The loaded interface.
    paths : list of str
        Audio files.
    batch_size : int
        Files per batch.
    frames : bool
        Also return per-frame scores.
    num_workers : int
        DataLoader processes decoding audio (0 decodes in this process); they imply serial batches.
    progress : bool
        Show a tqdm progress bar.
    detect_speech : bool
        Check each file for speech (:func:`speechbrain_sqe.dataio.activity.has_speech`, a batch at a time): a file
        without any gets ``"speech": False`` and ``None`` as its score; others ``"speech": True``.
    on_batch : callable, optional
        Called with each batch's ``(results, failures)`` as soon as it is scored (in batch order).
    threads : int or str
        Batch threads (:func:`~speechbrain_sqe.inference.batching.map_batches`): ``"auto"`` (one
        per torch thread on a CPU; serial on a GPU, with ``num_workers`` or for an interface whose
        ``SIDE_BY_SIDE_BATCHES`` is False), or a number (1: serial).

    Returns
    -------
    results : list of dict
        ``{"path", <each of scorer.metric_names>, "duration"}`` (one score for most predictors:
        ``METRIC_NAME``; plus ``"speech"`` with ``detect_speech``, ``"frames"``, a tensor, when
        asked), in the order of ``paths``. With ``detect_speech``, a score is ``None`` for a file
        without speech or where it is NaN.
    failures : list of tuple
        ``(path, reason)`` of files that could not be scored.
    """
    columns = list(scorer.metric_names)
    rate = scorer.hparams.sample_rate

    def score_batch(names, wavs, lens, bad):
        batch, unscored = [], []
        if names:
            scores, frame_scores = _score(scorer, wavs, lens, frames)
            counts = [round(float(lens[row]) * wavs.shape[1]) for row in range(len(names))]
            # the batch's files checked together (one set of operations for all their loudest frames)
            speech = has_speech_batch(wavs[: len(names)], counts, rate) if detect_speech else None
            for row, name in enumerate(names):
                samples = counts[row]
                if isinstance(scores[row], str):
                    unscored.append((name, scores[row]))
                    continue
                result = {"path": name, **{column: float(value) for column, value in zip(columns, scores[row])},
                          "duration": samples / rate}
                if detect_speech:
                    result["speech"] = speech[row]
                    for column in columns:
                        if not result["speech"] or result[column] != result[column]:  # NaN: no speech frame
                            result[column] = None
                if frames:
                    count = round(result["duration"] / scorer.frame_hop_seconds) + 1
                    result["frames"] = frame_scores[row, :count]
                batch.append(result)
        return batch, bad + unscored

    threads = batch_threads(threads, getattr(scorer, "device", "cpu"), num_workers,
                            getattr(scorer, "SIDE_BY_SIDE_BATCHES", True))
    results, failures = {}, []
    batches = map_batches(paths, scorer.load_file, score_batch, batch_size, threads, num_workers,
                          length_multiple=getattr(scorer, "batch_length_multiple", 1))
    # closing: a stop (an error in on_batch, Ctrl-C) ends the batch threads at once, not when collected
    with contextlib.closing(batches), tqdm(total=len(paths), desc="scoring", unit="file",
                                           disable=not progress) as bar:
        for batch, failed in batches:
            results.update((result["path"], result) for result in batch)
            failures += failed
            if on_batch is not None:
                on_batch(batch, failed)
            bar.update(len(batch) + len(failed))
    ordered = [results[p] for p in paths if p in results]
    return ordered, failures
