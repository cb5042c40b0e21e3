"""Every recipe YAML passes the safety check and builds its objects (placeholders filled)."""

import glob
import os

import pytest
from hyperpyyaml import load_hyperpyyaml

from speechbrain_sqe.dataio.prepare import prepare_corpus
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
from speechbrain_sqe.utils.safe_load import RECIPE_POLICY, check_hyperparams_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml")))


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_is_safe_and_loads(recipe, tmp_path):
    check_hyperparams_file(recipe, policy=RECIPE_POLICY)
    with open(recipe, encoding="utf-8") as stream:
        hparams = load_hyperpyyaml(stream, {"source_folder": str(tmp_path), "output_folder": str(tmp_path)})
    for key in ("brain_class", "prepare_data", "modules", "opt_class", "checkpointer", "epoch_counter"):
        assert key in hparams, f"{os.path.basename(recipe)} lacks {key}"
    assert callable(hparams["prepare_data"])
    assert sum(p.numel() for m in hparams["modules"].values() for p in m.parameters()) > 0
    model = hparams["modules"].get("vqvae")
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
        if isinstance(model, VQVAEQualityModel):  # VQScore recipes: the paper's model size
            assert 0.85e6 < params < 0.95e6
        else:  # the enhancer's CPU default (the YAML documents 1.2 M parameters)
            assert isinstance(model, VQVAEEnhancementModel)
            assert 1.15e6 < params < 1.3e6


def test_unknown_corpus_and_missing_source_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'timit'"):
        prepare_corpus("timit", str(tmp_path))
    with pytest.raises(ValueError, match="needs --source_folder"):
        prepare_corpus("voicebank", str(tmp_path))
    with pytest.raises(ValueError, match="source_folder does not exist"):
        prepare_corpus("dns", str(tmp_path), source_folder=str(tmp_path / "nowhere"))
