"""Scoring many files fast: collect, sort by length, batch, pad, score; report bad files.

Files are decoded in a DataLoader worker while the model scores the previous batch. Batches hold
files of similar length (sorted by duration) so padding costs little; the model's masked
normalization makes a padded batch score exactly as each file alone.
"""


import soundfile
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from speechbrain_sqe.dataio.audio import AudioLoadError


class _AudioFiles(Dataset):
    """Reads files with the scorer's loader; a bad file yields its error instead of audio."""

    def __init__(self, paths, load):
        self.paths = paths
        self.load = load

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            return path, self.load(path), None
        except AudioLoadError as error:
            return path, None, str(error)


def _collate(items):
    good = [(path, wav) for path, wav, _ in items if wav is not None]
    bad = [(path, error) for path, _, error in items if error is not None]
    if not good:
        return [], None, None, bad
    longest = max(wav.shape[0] for _, wav in good)
    wavs = torch.zeros(len(good), longest)
    for row, (_, wav) in enumerate(good):
        wavs[row, : wav.shape[0]] = wav
    lens = torch.tensor([wav.shape[0] / longest for _, wav in good])
    return [path for path, _ in good], wavs, lens, bad


def _duration_key(path):
    try:
        info = soundfile.info(path)
        return info.frames / max(info.samplerate, 1)
    except (RuntimeError, OSError, ValueError):  # unreadable: sorted first, reported when read
        return 0.0


def score_files(scorer, paths, batch_size=16, frames=False, num_workers=0, progress=True):
    """Scores audio files in length-sorted batches.

    Arguments
    ---------
    scorer : speechbrain_sqe.inference.vqscore.VQScore
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
        ``{"path", "vqscore", "duration"}`` (plus ``"frames"``, a tensor, when asked), in the order
        of ``paths``.
    failures : list of tuple
        ``(path, reason)`` of files that could not be scored.
    """
    order = sorted(range(len(paths)), key=lambda i: _duration_key(paths[i]))
    dataset = _AudioFiles([paths[i] for i in order], scorer.load_file)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=_collate, num_workers=num_workers)
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
                    results[name] = {"path": name, "vqscore": float(scores[row]), "duration": duration}
                    if frames:
                        count = round(duration * rate / scorer.hparams.hop_length) + 1
                        results[name]["frames"] = frame_scores[row, :count]
            bar.update(len(names) + len(bad))
    ordered = [results[p] for p in paths if p in results]
    return ordered, failures
