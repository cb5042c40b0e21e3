"""Data input/output: the audio loader, file finders, corpus preparation and dataset pipelines.

Importing the package is light: :func:`load_audio` and :class:`AudioLoadError` (torch and
SpeechBrain) are imported from :mod:`speechbrain_sqe.dataio.audio` when first used, so that modules
such as :mod:`speechbrain_sqe.dataio.files` stay cheap to import (``sqe --help`` needs no torch).

Example
-------
>>> import speechbrain_sqe.dataio as dataio
>>> dataio.load_audio.__module__
'speechbrain_sqe.dataio.audio'
"""

__all__ = ["AudioLoadError", "load_audio"]


def __getattr__(name):
    if name in __all__:
        from speechbrain_sqe.dataio import audio

        return getattr(audio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
