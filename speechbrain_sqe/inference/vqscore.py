"""Kept so that existing imports keep working: the interface now lives in
:mod:`speechbrain_sqe.inference.quality`."""

from speechbrain_sqe.inference.quality import DEFAULT_MODEL, VQScore, bf16_is_fast  # noqa: F401
