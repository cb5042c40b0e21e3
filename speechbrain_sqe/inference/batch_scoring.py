"""Scoring many files fast with any quality predictor: sort by length, batch, pad, score; report bad
files (the batching is :mod:`speechbrain_sqe.inference.batching`'s)."""


from tqdm import tqdm

from speechbrain_sqe.inference.batching import length_sorted_loader


def score_files(scorer, paths, batch_size=16, frames=False, num_workers=0, progress=True):
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
        DataLoader processes decoding audio (0 decodes in the main process).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    results : list of dict
        ``{"path", <scorer.METRIC_NAME>, "duration"}`` (plus ``"frames"``, a tensor, when asked),
        in the order of ``paths``.
    failures : list of tuple
        ``(path, reason)`` of files that could not be scored.
    """
    loader = length_sorted_loader(paths, scorer.load_file, batch_size, num_workers)
    column = scorer.METRIC_NAME
    results, failures = {}, []
    rate = scorer.hparams.sample_rate
    with tqdm(total=len(paths), desc="scoring", unit="file", disable=not progress) as bar:
        for names, wavs, lens, bad in loader:
            failures += bad
            if names:
                scores = scorer.score_batch(wavs, lens)
                frame_scores = scorer.score_frames_batch(wavs, lens) if frames else None
                for row, name in enumerate(names):
                    duration = float(lens[row]) * wavs.shape[1] / rate
                    results[name] = {"path": name, column: float(scores[row]), "duration": duration}
                    if frames:
                        count = round(duration / scorer.frame_hop_seconds) + 1
                        results[name]["frames"] = frame_scores[row, :count]
            bar.update(len(names) + len(bad))
    ordered = [results[p] for p in paths if p in results]
    return ordered, failures
