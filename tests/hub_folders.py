"""Test helper: hub folders of small real models, written by the interfaces' one export path."""

from speechbrain_sqe.inference.encoders import TERA
from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.inference.quality import VQScore


def build_vqscore_hub(model, folder, **kwargs):
    """A VQScore folder for ``model`` (``VQScore.export``)."""
    return VQScore.export(folder, {"vqvae": model}, **kwargs)


def build_vq_enhancer_hub(model, folder, **kwargs):
    """A VQEnhancer folder for ``model`` (``VQEnhancer.export``)."""
    return VQEnhancer.export(folder, {"vqvae": model}, **kwargs)


def build_tera_hub(model, folder, **kwargs):
    """A TERA folder for ``model`` (``TERA.export``)."""
    return TERA.export(folder, {"tera": model}, **kwargs)
