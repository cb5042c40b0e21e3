"""Kept so that existing imports keep working: the interface now lives in
:mod:`speechbrain_sqe.inference.enhancement`."""

from speechbrain_sqe.inference.enhancement import DEFAULT_MODEL, VQEnhancer  # noqa: F401
