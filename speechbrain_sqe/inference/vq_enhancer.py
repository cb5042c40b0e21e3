"""Kept so that existing imports keep working: the interface now lives in
:mod:`speechbrain_sqe.inference.enhancement`."""

from speechbrain_sqe.inference.enhancement import VQ_ENHANCER_MODEL as DEFAULT_MODEL  # noqa: F401
from speechbrain_sqe.inference.enhancement import VQEnhancer  # noqa: F401
