"""Conversion of s3prl TERA / Mockingjay checkpoints to :class:`speechbrain_sqe.lobes.tera.TERAModel`.

An s3prl upstream checkpoint (``torch.save`` of a dict) holds

- ``Transformer``: the ``TransformerModel`` state dict, ``input_representations.spec_transform``,
  ``input_representations.LayerNorm`` and per layer ``encoder.layer.{i}.attention.self.{query,key,
  value}``, ``.attention.output.{dense,LayerNorm}``, ``.intermediate.dense``,
  ``.output.{dense,LayerNorm}`` (old checkpoints spell LayerNorm parameters ``gamma``/``beta``);
- ``SpecHead`` (optional here): ``dense``, ``LayerNorm``, ``output``;
- the upstream config, under ``Config`` for legacy checkpoints or ``Upstream_Config`` for newer
  ones (the one holding a ``transformer`` section, as s3prl's ``TransformerBuilder`` decides), with
  ``transformer`` (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
  ``intermediate_size``, ``hidden_act``, ``hidden_dropout_prob``, ``attention_probs_dropout_prob``,
  ``initializer_range``, ``layer_norm_eps``, ``share_layer``, ``pre_layer_norm``) and ``audio``
  (``target_level``, ``win_ms``, ``hop_ms``, ``n_freq``, ``n_mels``, ``input: {feat_type, log,
  delta, cmvn}``) sections;
- training state (``Optimizer``, ``Step``, ``Args``/``Runner`` argparse objects...), ignored.

Only on-the-fly log-mel models (``audio.input.feat_type: mel``, ``log: True``, ``delta: 0``; the
TERA ``logMel*`` models) can be rebuilt with their front end; Kaldi-feature (``audio.kaldi``) and
pre-LN models are refused with a clear message.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which refuses pickled code (s3prl
stores argparse ``Namespace`` objects); such a file can be loaded with ``trust_pickle=True`` only
if its origin is trusted.

Authors: speechbrain-sqe contributors
"""

import os
import pickle
import re

import torch

from speechbrain_sqe.lobes.tera import TERAModel

__all__ = ["S3PRLCheckpointError", "convert_s3prl_tera_checkpoint", "load_s3prl_tera"]

_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention_output",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}
_INPUT_MAP = {
    "input_representations.spec_transform": "encoder.input_proj",
    "input_representations.LayerNorm": "encoder.input_norm",
}
_HEAD_MAP = {"dense": "head.dense", "LayerNorm": "head.norm", "output": "head.output"}


class S3PRLCheckpointError(ValueError):
    """The file or dict is not a supported s3prl TERA / Mockingjay checkpoint."""


def _torch_load(path, trust_pickle):
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        raise S3PRLCheckpointError(
            f"{path} could not be read with torch.load(weights_only=True): it contains pickled "
            "Python objects (s3prl checkpoints usually store argparse Namespaces under 'Args' or "
            "'Runner'), which can run code when loaded. If, and only if, you trust where this file "
            f"comes from, call again with trust_pickle=True. Original error: {error}"
        ) from error


def _rename_tf(key):
    return key.replace(".gamma", ".weight").replace(".beta", ".bias")


def _upstream_config(ckpt):
    for name in ("Config", "Upstream_Config"):
        cfg = ckpt.get(name)
        if isinstance(cfg, dict) and "transformer" in cfg:
            return cfg
    raise S3PRLCheckpointError("no 'Config' or 'Upstream_Config' with a 'transformer' section")


def _features_kwargs(audio):
    if not audio:
        raise S3PRLCheckpointError("the config has no 'audio' section: the model's features are unknown")
    if "kaldi" in audio:
        raise S3PRLCheckpointError(
            "Kaldi-feature (audio.kaldi) checkpoints are not supported: TERAFeatures reproduces s3prl's "
            "on-the-fly log-mel preprocessor only"
        )
    inp = audio.get("input", {})
    if inp.get("feat_type") != "mel" or not inp.get("log", False) or int(inp.get("delta", 0)) != 0:
        raise S3PRLCheckpointError(
            f"unsupported input features {inp}: only feat_type=mel, log=True, delta=0 (TERA logMel models)"
        )
    return {
        "sample_rate": int(audio.get("sample_rate", 16000)),
        "win_ms": audio.get("win_ms", 25),
        "hop_ms": audio.get("hop_ms", 10),
        "n_fft": (int(audio.get("n_freq", 201)) - 1) * 2,
        "target_level": audio.get("target_level"),
        "cmvn": bool(inp.get("cmvn", False)),
    }


def convert_s3prl_tera_checkpoint(path_or_dict, trust_pickle=False):
    """Constructor kwargs and state dict of a :class:`TERAModel` equivalent to an s3prl checkpoint.

    Arguments
    ---------
    path_or_dict : str, os.PathLike or dict
        Checkpoint file or its loaded dict.
    trust_pickle : bool
        Allow arbitrary pickled objects when reading a file (only for trusted files).

    Returns
    -------
    config : dict
        Keyword arguments of :class:`TERAModel`.
    state_dict : dict
        Its state dict; the ``head.*`` entries are absent when the checkpoint has no ``SpecHead``.

    Example
    -------
    >>> ckpt = {"Transformer": {}, "Config": {"transformer": {}}}
    >>> convert_s3prl_tera_checkpoint(ckpt)
    Traceback (most recent call last):
    ...
    speechbrain_sqe.inference.convert_s3prl.S3PRLCheckpointError: missing transformer config keys ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size']
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        ckpt = _torch_load(path_or_dict, trust_pickle)
    else:
        ckpt = path_or_dict
    if not isinstance(ckpt, dict) or "Transformer" not in ckpt:
        raise S3PRLCheckpointError("not an s3prl upstream checkpoint: no 'Transformer' state dict")
    cfg = _upstream_config(ckpt)
    tcfg = cfg["transformer"]
    required = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]
    missing = [k for k in required if k not in tcfg]
    if missing:
        raise S3PRLCheckpointError(f"missing transformer config keys {missing}")
    if bool(tcfg.get("pre_layer_norm", False)):
        raise S3PRLCheckpointError("pre-LN (pre_layer_norm: True) models are not supported")

    state = {}
    for key, value in ckpt["Transformer"].items():
        key = _rename_tf(key)
        match = _LAYER.match(key)
        if match:
            idx, module, param = match.groups()
            if module not in _LAYER_MAP:
                raise S3PRLCheckpointError(f"unexpected transformer key {key}")
            state[f"encoder.layers.{idx}.{_LAYER_MAP[module]}.{param}"] = value
            continue
        module, _, param = key.rpartition(".")
        if module not in _INPUT_MAP:
            raise S3PRLCheckpointError(f"unexpected transformer key {key}")
        state[f"{_INPUT_MAP[module]}.{param}"] = value
    for key, value in (ckpt.get("SpecHead") or {}).items():
        module, _, param = _rename_tf(key).rpartition(".")
        if module not in _HEAD_MAP:
            raise S3PRLCheckpointError(f"unexpected SpecHead key {key}")
        state[f"{_HEAD_MAP[module]}.{param}"] = value

    if "encoder.input_proj.weight" not in state:
        raise S3PRLCheckpointError("the Transformer state dict has no input_representations.spec_transform")
    input_dim = state["encoder.input_proj.weight"].shape[1]
    if "head.output.weight" in state and state["head.output.weight"].shape[0] != input_dim:
        raise S3PRLCheckpointError("SpecHead predicts a different feature size than the input; unsupported")
    act = str(tcfg.get("hidden_act", "gelu"))
    if act not in ("gelu", "relu", "swish"):
        raise S3PRLCheckpointError(f"unsupported hidden_act {act}")
    config = {
        "input_dim": int(input_dim),
        "hidden_size": int(tcfg["hidden_size"]),
        "num_layers": int(tcfg["num_hidden_layers"]),
        "num_heads": int(tcfg["num_attention_heads"]),
        "intermediate_size": int(tcfg["intermediate_size"]),
        "dropout": float(tcfg.get("hidden_dropout_prob", 0.1)),
        "attention_dropout": float(tcfg.get("attention_probs_dropout_prob", tcfg.get("hidden_dropout_prob", 0.1))),
        "activation": act,
        "layer_norm_eps": float(tcfg.get("layer_norm_eps", 1e-12)),
        "initializer_range": float(tcfg.get("initializer_range", 0.02)),
        **_features_kwargs(cfg.get("audio")),
    }
    return config, state


def load_s3prl_tera(path, trust_pickle=False, **overrides):
    """A :class:`TERAModel` (in ``eval()`` mode) with the weights of an s3prl TERA checkpoint.

    Arguments
    ---------
    path : str, os.PathLike or dict
        Checkpoint file (or loaded dict).
    trust_pickle : bool
        Allow arbitrary pickled objects (only for trusted files).
    **overrides
        Constructor arguments replacing those read from the checkpoint (e.g. ``dropout``).

    Returns
    -------
    TERAModel
        The converted model; without ``SpecHead`` in the checkpoint its head keeps its random init.
    """
    config, state = convert_s3prl_tera_checkpoint(path, trust_pickle)
    model = TERAModel(**{**config, **overrides})
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise S3PRLCheckpointError(
            f"checkpoint does not fit: missing {missing}, unexpected {result.unexpected_keys}"
        )
    return model.eval()
