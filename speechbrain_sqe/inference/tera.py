"""Kept so that existing imports keep working: the interface now lives in
:mod:`speechbrain_sqe.inference.encoders`."""

from speechbrain_sqe.inference.encoders import DEFAULT_MODEL, TERA  # noqa: F401
