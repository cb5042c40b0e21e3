"""What ``sqe score`` writes: the per-file CSV and, on request, per-frame CSVs and plots."""

import csv
import os

from speechbrain_sqe.analysis.frame_plot import plot_frame_scores


def write_scores_csv(path, results, column="vqscore"):
    """Writes one row per scored file: ``path``, the score (``column``), ``duration``.

    Arguments
    ---------
    path : str
        The CSV file (folders are created).
    results : list of dict
        From :func:`speechbrain_sqe.inference.batch_scoring.score_files`.
    column : str
        The score's name (the predictor's ``METRIC_NAME``).

    Example
    -------
    >>> import tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "scores.csv")
    >>> write_scores_csv(out, [{"path": "a.wav", "vqscore": 0.91, "duration": 1.5}])
    >>> open(out).read().splitlines()
    ['path,vqscore,duration', 'a.wav,0.91,1.5']
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["path", column, "duration"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


def write_frame_outputs(scorer, results, folder, plot=False):
    """Writes ``<name>.frames.csv`` (time, score) per file and, with ``plot``, ``<name>.png``.

    Arguments
    ---------
    scorer : speechbrain_sqe.inference.quality.QualityPredictor
        The interface (for the frame hop, rate, score name and audio loader).
    results : list of dict
        From ``score_files(..., frames=True)``.
    folder : str
        Output folder (created).
    plot : bool
        Also draw the spectrogram with the frame score curve under it.
    """
    os.makedirs(folder, exist_ok=True)
    step = scorer.frame_hop_seconds
    used = set()
    for result in results:
        name = os.path.splitext(os.path.basename(result["path"]))[0]
        while name in used:  # two inputs with one base name
            name += "_"
        used.add(name)
        frames = result["frames"]
        with open(os.path.join(folder, name + ".frames.csv"), "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["time_s", "frame_score"])
            writer.writerows((f"{i * step:.3f}", f"{float(v):.5f}") for i, v in enumerate(frames))
        if plot:
            import torch

            wav = scorer.load_file(result["path"])
            times = torch.arange(frames.shape[0]) * step
            plot_frame_scores(wav, scorer.hparams.sample_rate, times, frames,
                              os.path.join(folder, name + ".png"),
                              title=f"{os.path.basename(result['path'])}: {scorer.METRIC_NAME} "
                                    f"{result[scorer.METRIC_NAME]:.3f}",
                              hop_length=round(step * scorer.hparams.sample_rate))
