"""Tests of speechbrain_sqe.lobes.init_args (recorded constructor arguments)."""

import inspect

import pytest
import torch
import yaml

from speechbrain_sqe.lobes.frontend import SpectralFrontEnd, STFTMagnitude, TERAFeatures
from speechbrain_sqe.lobes.init_args import record_init_args
from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (VQVAEQualityModel, {"channels": (32, 16), "codebook_dim": 8, "codebook_size": 16}),
        (VQVAEEnhancementModel, {"channels": (32, 16), "codebook_dim": 16, "codebook_size": 8, "heads": 4}),
        (TERAModel, {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "intermediate_size": 64}),
        (SpectralFrontEnd, {"hop_length": 256}),
        (STFTMagnitude, {"hop_length": 128, "log1p": True}),
        (TERAFeatures, {"n_mels": 40}),
    ],
)
def test_init_args_complete_yaml_safe_and_rebuild(cls, kwargs):
    module = cls(**kwargs)
    args = module.init_args
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert list(args) == params  # every argument, in signature order, defaults applied
    for key, value in kwargs.items():
        assert args[key] == (list(value) if isinstance(value, tuple) else value)
    assert yaml.safe_load(yaml.safe_dump(args)) == args  # YAML-safe (tuples as lists)
    rebuilt = cls(**args)
    assert rebuilt.init_args == args
    assert rebuilt.state_dict().keys() == module.state_dict().keys()
    if hasattr(cls, "config"):
        assert module.config == args and module.config is not module.init_args


def test_subclass_arguments_win_and_defaults_are_recorded():
    assert STFTMagnitude().init_args == {
        "n_fft": 512, "hop_length": 256, "win_length": 512, "log1p": False, "sample_rate": 16000,
    }
    model = VQVAEQualityModel(codebook_size=16)
    assert "norm" not in model.init_args  # the ConvVQVAE options the subclass fixes are not recorded
    assert model.init_args["sync_distributed"] is True and model.init_args["channels"] == [128, 64]


def test_positional_and_var_keyword_arguments():
    @record_init_args
    class Tiny(torch.nn.Module):
        def __init__(self, size, pairs=((1, 2),), **extra):
            super().__init__()
            self.size = size

    tiny = Tiny(3, scale=0.5)
    assert tiny.init_args == {"size": 3, "pairs": [[1, 2]], "scale": 0.5}
    assert Tiny(**tiny.init_args).init_args == tiny.init_args
