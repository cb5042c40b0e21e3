"""Data input: the one audio loader, the embedded corpus generator and dataset preparation."""

from speechbrain_sqe.dataio.audio import AudioLoadError, load_audio  # noqa: F401
