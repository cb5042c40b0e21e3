"""The data pipelines the recipes share: clean speech only, noisy/clean pairs, unpaired noisy.

All audio goes through :func:`speechbrain_sqe.dataio.audio.load_audio`, so bad files fail with the
file's name, and other sample rates or channel counts are resampled / downmixed.
"""

import speechbrain as sb
import torch

from speechbrain_sqe.dataio.audio import load_audio


def random_crop_and_gain(wav, crop_samples=None, gain_range=None, peak_limit=0.99):
    """Training augmentation of clean speech: a random crop and a random gain without clipping.

    Arguments
    ---------
    wav : torch.Tensor
        Waveform, shape ``[time]``.
    crop_samples : int, optional
        Length of the random crop; shorter inputs are kept whole.
    gain_range : tuple of float, optional
        ``(low, high)`` of a uniform gain; the gain is lowered when it would clip.
    peak_limit : float
        Largest absolute sample value allowed after the gain.

    Returns
    -------
    torch.Tensor
        The augmented waveform, shape ``[min(time, crop_samples)]``.

    Example
    -------
    >>> out = random_crop_and_gain(torch.rand(16000) - 0.5, 8000, (0.05, 2.0))
    >>> out.shape, bool(out.abs().max() <= 0.99)
    (torch.Size([8000]), True)
    """
    if crop_samples is not None and wav.shape[0] > crop_samples:
        start = int(torch.randint(0, wav.shape[0] - crop_samples + 1, (1,)))
        wav = wav[start : start + crop_samples]
    if gain_range is not None:
        low, high = gain_range
        gain = low + (high - low) * float(torch.rand(1))
        peak = float(wav.abs().max())
        if peak > 0:
            gain = min(gain, peak_limit / peak)
        wav = wav * gain
    return wav


def clean_speech_dataset(csv_path, sample_rate=16000, crop_seconds=None, gain_range=None, augment=None,
                         wav_column="wav"):
    """A dataset of clean speech (``wav`` column) yielding ``id`` and ``sig``.

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with at least ``ID``, ``duration`` and ``wav`` columns.
    sample_rate : int
        Rate of the model.
    crop_seconds : float, optional
        Random crop length (training); None keeps whole files.
    gain_range : tuple of float, optional
        Random gain range (training); None keeps the level.
    augment : callable, optional
        Applied to each (cropped) waveform before the gain, e.g.
        :class:`speechbrain_sqe.dataio.realism.CleanRealism`.
    wav_column : str
        The column holding the clean files (``clean_wav`` reads the clean side of a pairs
        manifest).

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items with keys ``id`` and ``sig`` (``[time]``).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "a.wav"), torch.randn(16000) * 0.1)
    >>> csv = os.path.join(folder, "train.csv")
    >>> _ = open(csv, "w").write(f"ID,duration,wav\\na,1.0,{folder}/a.wav\\n")
    >>> data = clean_speech_dataset(csv, crop_seconds=0.5, gain_range=(0.5, 1.0))
    >>> data[0]["sig"].shape
    torch.Size([8000])
    """
    return _single_audio_dataset(csv_path, wav_column, "sig", sample_rate, crop_seconds, gain_range, augment)


def _single_audio_dataset(csv_path, column, key, sample_rate, crop_seconds, gain_range, augment=None):
    """One audio file per item (``column`` -> ``key``): load, random crop, augment, random gain."""
    crop = None if crop_seconds is None else int(crop_seconds * sample_rate)
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path)

    @sb.utils.data_pipeline.takes(column)
    @sb.utils.data_pipeline.provides(key)
    def audio_pipeline(path):
        wav = random_crop_and_gain(load_audio(path, sample_rate, warn=False), crop)
        if augment is not None:
            wav = augment(wav)
        return random_crop_and_gain(wav, None, gain_range)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.set_output_keys(["id", key])
    return dataset


def paired_dataset(csv_path, sample_rate=16000):
    """A dataset of noisy/clean pairs yielding ``id``, ``noisy_sig`` and ``clean_sig``.

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with ``ID``, ``duration``, ``clean_wav`` and ``noisy_wav`` columns.
    sample_rate : int
        Rate of the model.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items with keys ``id``, ``noisy_sig`` and ``clean_sig`` (``[time]`` each).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "c.wav"), torch.randn(1600) * 0.1)
    >>> save_audio(os.path.join(folder, "n.wav"), torch.randn(1600) * 0.1)
    >>> csv = os.path.join(folder, "test.csv")
    >>> _ = open(csv, "w").write(f"ID,duration,clean_wav,noisy_wav\\nu,0.1,{folder}/c.wav,{folder}/n.wav\\n")
    >>> item = paired_dataset(csv)[0]
    >>> item["noisy_sig"].shape, item["clean_sig"].shape
    (torch.Size([1600]), torch.Size([1600]))
    """
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path)

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def audio_pipeline(noisy_path, clean_path):
        yield load_audio(noisy_path, sample_rate, warn=False)
        yield load_audio(clean_path, sample_rate, warn=False)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.set_output_keys(["id", "noisy_sig", "clean_sig"])
    return dataset


def unpaired_noisy_dataset(csv_path, sample_rate=16000, crop_seconds=None, gain_range=None,
                           wav_column="noisy_wav"):
    """A dataset of noisy speech without a clean reference, yielding ``id`` and ``noisy_sig``.

    For methods that adapt or train on real noisy recordings (the embedded corpus's
    ``unpaired_noisy`` split, or any manifest of noisy files).

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with ``ID``, ``duration`` and ``noisy_wav`` columns.
    sample_rate : int
        Rate of the model.
    crop_seconds : float, optional
        Random crop length (training); None keeps whole files.
    gain_range : tuple of float, optional
        Random gain range (training); None keeps the level.
    wav_column : str
        The column holding the noisy files.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items with keys ``id`` and ``noisy_sig`` (``[time]``).

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "n.wav"), torch.randn(16000) * 0.1)
    >>> csv = os.path.join(folder, "unpaired.csv")
    >>> _ = open(csv, "w").write(f"ID,duration,noisy_wav\\nn,1.0,{folder}/n.wav\\n")
    >>> unpaired_noisy_dataset(csv, crop_seconds=0.25)[0]["noisy_sig"].shape
    torch.Size([4000])
    """
    return _single_audio_dataset(csv_path, wav_column, "noisy_sig", sample_rate, crop_seconds, gain_range)
