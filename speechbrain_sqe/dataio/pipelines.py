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


def split_by_speaker(csv_path, output_folder, seed=0, speaker_column="voice", names=("clean", "noisy"),
                     fraction=0.5):
    """Splits a clean-speech manifest into two manifests of disjoint speakers (seeded, by speaker).

    For methods trained on UNPAIRED data: one part gives clean speech, the other the speech of
    noisy mixtures, so no noisy training file has a clean reference among the clean training data.

    Arguments
    ---------
    csv_path : str
        SpeechBrain CSV with an ``ID`` and a speaker column (``voice`` in every corpus's
        ``train_clean.csv``).
    output_folder : str
        Where ``<name>.csv`` of each part is written (rows as in ``csv_path``).
    seed : int
        Seed of the speaker shuffle.
    speaker_column : str
        The speaker column.
    names : tuple of str
        Names of the two parts.
    fraction : float
        Share of the speakers in the second part (at least one speaker in each).

    Returns
    -------
    dict
        ``{name: {"csv": path, "speakers": sorted list, "rows": count}}``.

    Raises
    ------
    ValueError
        With fewer than two speakers, or without the speaker column.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> csv = os.path.join(folder, "train.csv")
    >>> _ = open(csv, "w").write("ID,wav,voice\\n" + "".join(f"u{i},x{i}.wav,s{i % 4}\\n" for i in range(8)))
    >>> parts = split_by_speaker(csv, folder, seed=1)
    >>> [parts[name]["rows"] for name in ("clean", "noisy")], set(parts["clean"]["speakers"]) & set(parts["noisy"]["speakers"])
    ([4, 4], set())
    """
    import csv as csv_module
    import os

    from speechbrain_sqe.dataio.folders import split_items

    with open(csv_path, newline="", encoding="utf-8") as stream:
        reader = csv_module.DictReader(stream)
        columns, rows = reader.fieldnames or [], list(reader)
    if speaker_column not in columns:
        raise ValueError(f"{csv_path}: no {speaker_column!r} column to split the speakers by")
    speakers = sorted({row[speaker_column] for row in rows})
    if len(speakers) < 2:
        raise ValueError(f"{csv_path}: {len(speakers)} speaker(s); two are needed for disjoint clean and noisy sets")
    first, second = split_items(speakers, seed, [fraction])
    os.makedirs(output_folder, exist_ok=True)
    out = {}
    for name, part in zip(names, (first, second)):
        chosen = set(part)
        path = os.path.join(output_folder, f"{name}.csv")
        kept = [row for row in rows if row[speaker_column] in chosen]
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv_module.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(kept)
        out[name] = {"csv": path, "speakers": sorted(chosen), "rows": len(kept)}
    return out


class OnTheFlyMixer:
    """Makes a noisy mixture of one waveform: a training room with probability ``reverb_prob``
    (SpeechBrain's ``AddReverb``), then a training noise at an SNR in ``[snr_low, snr_high]`` dB
    (``AddNoise``), as BSSE's training mixtures (:mod:`speechbrain_sqe.brains.bsse`).

    Used as the ``augment`` of a dataset, so the speech it was made from never leaves the data
    pipeline (the mixture has no clean reference downstream).

    Arguments
    ---------
    noise_csv : str
        Noise manifest (``noise_train.csv``).
    rir_csv : str, optional
        Room manifest (``rirs_train.csv``); None or a missing file: no reverberation.
    snr_low, snr_high : float
        SNR range in dB.
    reverb_prob : float
        Probability of a room.
    sample_rate : int
        Rate of speech, noise and rooms.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> save_audio(os.path.join(folder, "n.wav"), torch.randn(16000) * 0.1)
    >>> csv = os.path.join(folder, "noise.csv")
    >>> _ = open(csv, "w").write(f"ID,duration,wav,wav_format,wav_opts\\nn,1.0,{folder}/n.wav,wav,\\n")
    >>> speech = torch.sin(torch.arange(8000) / 5.0)
    >>> noisy = OnTheFlyMixer(csv, snr_low=0, snr_high=0)(speech)
    >>> noisy.shape, bool((noisy - speech).abs().mean() > 0.05)
    (torch.Size([8000]), True)
    """

    def __init__(self, noise_csv, rir_csv=None, snr_low=-5.0, snr_high=20.0, reverb_prob=0.0, sample_rate=16000):
        import os

        from speechbrain.augment.time_domain import AddNoise, AddReverb

        self.add_noise = AddNoise(csv_file=noise_csv, snr_low=snr_low, snr_high=snr_high,
                                  noise_sample_rate=sample_rate, clean_sample_rate=sample_rate)
        self.add_reverb = None
        if reverb_prob > 0 and rir_csv and os.path.isfile(rir_csv):
            self.add_reverb = AddReverb(csv_file=rir_csv, reverb_sample_rate=sample_rate,
                                        clean_sample_rate=sample_rate)
        self.reverb_prob = reverb_prob

    def __call__(self, wav):
        """The mixture of ``wav`` ``[time]`` (same length)."""
        with torch.no_grad():
            batch = wav.unsqueeze(0)
            if self.add_reverb is not None and float(torch.rand(1)) < self.reverb_prob:
                batch = self.add_reverb(batch)
            return self.add_noise(batch, torch.ones(1))[0]


def unpaired_training_dataset(clean_csv, mixture_csv, mixer, sample_rate=16000, crop_seconds=None,
                              gain_range=None, clean_column="wav", speech_column="wav"):
    """Training items of clean speech and noisy mixtures that are NOT pairs: ``clean_sig`` from
    ``clean_csv`` and ``noisy_sig`` made by ``mixer`` from the speech of ``mixture_csv``.

    Item ``i`` holds clean row ``i mod n_clean`` and mixture row ``i mod n_mixture`` (the dataset is
    as long as the larger list; with shuffling every batch draws them independently). Only the
    mixture leaves the pipeline: the speech it was made from is not an output key.

    Arguments
    ---------
    clean_csv : str
        Clean-speech CSV (``ID``, ``duration``, ``clean_column``).
    mixture_csv : str
        CSV of the speech the mixtures are made from (other speakers than ``clean_csv``'s).
    mixer : callable
        ``[time] -> [time]`` noisy mixture (e.g. :class:`OnTheFlyMixer`).
    sample_rate : int
        Rate of the model.
    crop_seconds : float, optional
        Random crop length of both streams.
    gain_range : tuple of float, optional
        Random gain range of both streams (applied after mixing for the mixtures).
    clean_column, speech_column : str
        The audio columns of the two CSVs.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items with keys ``id``, ``clean_sig`` and ``noisy_sig``.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("a", "b", "c"):
    ...     save_audio(os.path.join(folder, f"{name}.wav"), torch.randn(16000) * 0.1)
    >>> _ = open(os.path.join(folder, "clean.csv"), "w").write(f"ID,duration,wav\\na,1.0,{folder}/a.wav\\n")
    >>> _ = open(os.path.join(folder, "mix.csv"), "w").write(
    ...     f"ID,duration,wav\\nb,1.0,{folder}/b.wav\\nc,1.0,{folder}/c.wav\\n")
    >>> data = unpaired_training_dataset(os.path.join(folder, "clean.csv"), os.path.join(folder, "mix.csv"),
    ...                                  lambda wav: wav + 0.1, crop_seconds=0.5)
    >>> len(data), sorted(data[1].keys()), data[1]["noisy_sig"].shape
    (2, ['clean_sig', 'id', 'noisy_sig'], torch.Size([8000]))
    """
    import csv as csv_module

    def read(path):
        with open(path, newline="", encoding="utf-8") as stream:
            return list(csv_module.DictReader(stream))

    clean_rows, mixture_rows = read(clean_csv), read(mixture_csv)
    if not clean_rows or not mixture_rows:
        raise ValueError(f"no rows in {clean_csv if not clean_rows else mixture_csv}")
    count = max(len(clean_rows), len(mixture_rows))
    data = {}
    for index in range(count):
        clean_row, mixture_row = clean_rows[index % len(clean_rows)], mixture_rows[index % len(mixture_rows)]
        data[f"{index:06d}_{clean_row['ID']}_{mixture_row['ID']}"] = {
            "clean_path": clean_row[clean_column], "speech_path": mixture_row[speech_column],
            "duration": float(mixture_row.get("duration") or 0.0),
        }
    dataset = sb.dataio.dataset.DynamicItemDataset(data)
    crop = None if crop_seconds is None else int(crop_seconds * sample_rate)

    @sb.utils.data_pipeline.takes("clean_path", "speech_path")
    @sb.utils.data_pipeline.provides("clean_sig", "noisy_sig")
    def audio_pipeline(clean_path, speech_path):
        yield random_crop_and_gain(random_crop_and_gain(load_audio(clean_path, sample_rate, warn=False), crop),
                                   None, gain_range)
        speech = random_crop_and_gain(load_audio(speech_path, sample_rate, warn=False), crop)
        yield random_crop_and_gain(mixer(speech), None, gain_range)

    dataset.add_dynamic_item(audio_pipeline)
    dataset.set_output_keys(["id", "clean_sig", "noisy_sig"])
    return dataset
