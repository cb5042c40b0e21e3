"""One data-preparation entry point for every recipe: ``corpus`` picks the preparation.

Recipes call :func:`prepare_corpus` through their YAML (``prepare_data``), so switching a recipe
from the embedded corpus to a real one is an override::

    python train.py hparams/vqscore.yaml --corpus=voicebank --source_folder=/data/VoiceBank
    python train.py hparams/vqscore.yaml --corpus=folders --source_folder=/my/clean \
        --noise_folder=/my/noise --rir_folder=/my/rirs
    python train.py hparams/vqscore.yaml --corpus=librispeech --source_folder=/data
    python train.py hparams/vqscore.yaml --corpus=manifest --source_folder=speech/manifest.csv \
        --noise_folder=real/splits.csv --rir_folder=real/splits.csv --data_folder=data/manifest

Every preparation returns the same manifest names (``train_clean``, ``valid``, ``test``...).
LibriSpeech has clean speech only, so its valid/test pairs come from the embedded corpus.
"""

import os

from speechbrain_sqe.dataio.embedded import prepare_embedded_corpus
from speechbrain_sqe.dataio.folders import prepare_from_folders
from speechbrain_sqe.dataio.manifest_corpus import prepare_from_manifest
from speechbrain_sqe.dataio.real_corpora import (
    prepare_dns,
    prepare_librispeech,
    prepare_voicebank,
)

CORPORA = ("embedded", "folders", "manifest", "voicebank", "dns", "librispeech")
#: Where each corpus's speech comes from and under which terms (the "Training data" of model cards).
CORPUS_ORIGINS = {
    "embedded": "synthesized on the training machine by Debian's flite and espeak-ng voices reading the "
                "project's own sentences; synthetic noise and rooms (no third-party recordings)",
    "folders": "the user's own recordings (their license applies)",
    "manifest": "the clean speech listed in the user's manifest CSV (its corpora's licenses apply)",
    "voicebank": "VoiceBank-DEMAND (Valentini-Botinhao et al.), CC BY 4.0",
    "dns": "DNS Challenge (Microsoft), per-source licenses of the challenge data (CC BY 4.0 and others)",
    "librispeech": "LibriSpeech (Panayotov et al.), CC BY 4.0; evaluation pairs from the embedded corpus",
}


def prepare_corpus(corpus="embedded", data_folder="data/embedded", source_folder=None,
                   noise_folder=None, rir_folder=None, seed=1234, train_minutes=30.0,
                   valid_pairs=48, test_pairs=96, num_workers=2, skip_prep=False,
                   options=None):
    """Prepares the corpus a recipe names and returns its manifests.

    Arguments
    ---------
    corpus : str
        One of ``embedded``, ``folders``, ``manifest``, ``voicebank``, ``dns``, ``librispeech``.
    data_folder : str
        Where generated or resampled audio and the manifests go.
    source_folder : str, optional
        Where the real corpus (or the user's clean speech, for ``folders``) lives; for
        ``manifest``, the clean-speech CSV (``path, speaker, split``).
    noise_folder, rir_folder : str, optional
        Noise and room impulse responses: folders (``folders``) or lists with splits
        (``manifest``: CSVs ``path, split[, kind]``).
    seed : int
        Seed of everything random in the preparation.
    train_minutes : float
        Minutes of clean training speech (embedded corpus).
    valid_pairs, test_pairs : int
        Noisy/clean pairs mixed for validation and test (embedded and folders).
    num_workers : int
        Parallel processes.
    skip_prep : bool
        Only return the manifest paths.
    options : dict, optional
        More keyword arguments for the chosen preparation (e.g. ``unpaired_minutes`` or
        ``noise_train_per_family`` of the embedded corpus; ``subsets`` of LibriSpeech).

    Returns
    -------
    dict
        Manifest paths by name (``train_clean``, ``valid``, ``test``, ...).

    Example
    -------
    >>> prepare_corpus("mp3s", "data")
    Traceback (most recent call last):
    ...
    ValueError: unknown corpus 'mp3s'; choose one of embedded, folders, manifest, voicebank, dns, librispeech
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    options = dict(options or {})
    if corpus == "embedded":
        return prepare_embedded_corpus(data_folder, seed=seed, train_minutes=train_minutes,
                                       valid_pairs=valid_pairs, test_pairs=test_pairs,
                                       num_workers=num_workers, skip_prep=skip_prep, **options)
    if source_folder is None:
        raise ValueError(f"corpus {corpus!r} needs --source_folder (where the corpus lives)")
    if corpus == "manifest":
        if not os.path.isfile(source_folder):
            raise ValueError(f"{source_folder}: the manifest corpus needs --source_folder=<a CSV with path, speaker, split>")
        return prepare_from_manifest(data_folder, source_folder, noise_list=noise_folder, rir_list=rir_folder,
                                     seed=seed, valid_pairs=valid_pairs, test_pairs=test_pairs,
                                     num_workers=num_workers, skip_prep=skip_prep, **options)
    if not os.path.isdir(source_folder):
        raise ValueError(f"{source_folder}: source_folder does not exist")
    if corpus == "folders":
        return prepare_from_folders(data_folder, source_folder, noise_folder=noise_folder,
                                    rir_folder=rir_folder, seed=seed, valid_pairs=valid_pairs,
                                    test_pairs=test_pairs, num_workers=num_workers,
                                    skip_prep=skip_prep, **options)
    if corpus == "voicebank":
        return prepare_voicebank(source_folder, save_folder=data_folder, num_workers=num_workers,
                                 skip_prep=skip_prep, **options)
    if corpus == "dns":
        return prepare_dns(source_folder, save_folder=data_folder, seed=seed,
                           num_workers=num_workers, skip_prep=skip_prep, **options)
    # LibriSpeech: its clean speech for training, the embedded corpus's pairs for evaluation.
    manifests = prepare_embedded_corpus(os.path.join(data_folder, "embedded"), seed=seed,
                                        train_minutes=1.0, num_workers=num_workers,
                                        skip_prep=skip_prep)
    libri = prepare_librispeech(source_folder, save_folder=data_folder, num_workers=num_workers,
                                skip_prep=skip_prep, **options)
    manifests.update({name: path for name, path in libri.items() if path is not None})
    return manifests
