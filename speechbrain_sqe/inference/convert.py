"""Conversion of the authors' official VQScore checkpoints to :class:`VQVAEQualityModel`.

The authors' training code saves ``{"model": {"VQVAE": state_dict}, "optimizer": ..., "scheduler":
..., "steps": ..., "epochs": ...}``; their quality-estimation ``VQVAE_QE`` state dict holds

- ``CNN_1D_encoder.conv_enc{1..6}.{weight,bias}`` (the instance norms have no state),
- ``quantizer.quantizer._codebook.{initted,cluster_size,embed_avg,embed}`` from their fork of
  ``vector-quantize-pytorch`` with one head: ``embed``/``embed_avg`` ``[1, K, D]``,
  ``cluster_size`` ``[1, K]``, ``initted`` ``[1]``,
- ``CNN_1D_decoder.conv_dec{1..6}.{weight,bias}``.

They map to ``encoder.convs.{0..5}``, ``quantizer.{initted,cluster_size,embed_avg,embed}`` (head
dimension dropped) and ``decoder.convs.{0..5}``. Layer sizes and codebook size are read from the
shapes. The distance cannot be read from a state dict: the QE model is cosine (default here).
The enhancement model (``VQVAE_SE``, with transformer layers) is refused with a clear message.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which refuses pickled code; a
file that needs more can be loaded with ``trust_pickle=True`` only if its origin is trusted.

Authors: speechbrain-sqe contributors
"""

import os
import pickle
import re

import torch

from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel

__all__ = [
    "OfficialCheckpointError",
    "convert_official_vqscore_checkpoint",
    "infer_official_config",
    "load_official_vqscore",
    "random_official_checkpoint",
]

_ENC = re.compile(r"^CNN_1D_encoder\.conv_enc(\d+)\.(weight|bias)$")
_DEC = re.compile(r"^CNN_1D_decoder\.conv_dec(\d+)\.(weight|bias)$")
_CODEBOOK_PREFIX = "quantizer.quantizer._codebook."
_CODEBOOK_KEYS = ("initted", "cluster_size", "embed_avg", "embed")


class OfficialCheckpointError(ValueError):
    """The file or state dict is not an official VQScore (quality-estimation) checkpoint."""


def _torch_load(path, trust_pickle):
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        raise OfficialCheckpointError(
            f"{path} could not be read with torch.load(weights_only=True): it contains pickled "
            "Python objects other than tensors and plain containers, which can run code when "
            "loaded. If, and only if, you trust where this file comes from, call again with "
            f"trust_pickle=True. Original error: {error}"
        ) from error


def _extract_state_dict(checkpoint):
    """Finds the VQVAE state dict inside a training checkpoint (or returns it as is)."""
    if not isinstance(checkpoint, dict):
        raise OfficialCheckpointError(f"expected a dict checkpoint, got {type(checkpoint).__name__}")
    state = checkpoint
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if "VQVAE" in state and isinstance(state["VQVAE"], dict):
        state = state["VQVAE"]
    # nn.DataParallel / DDP prefixes.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def infer_official_config(state_dict):
    """Reads the model sizes of an official VQ-VAE state dict from its shapes.

    Arguments
    ---------
    state_dict : dict
        The authors' ``VQVAE`` state dict (keys ``CNN_1D_encoder...``).

    Returns
    -------
    dict
        Keyword arguments of :class:`~speechbrain_sqe.lobes.vqvae.VQVAEQualityModel`
        (``input_size``, ``channels``, ``codebook_dim``, ``codebook_size``, ``kernel_size``).

    Example
    -------
    >>> state = random_official_checkpoint()["model"]["VQVAE"]
    >>> infer_official_config(state)["channels"]
    (16, 8)
    """
    if any(k.startswith("CNN_1D_encoder.transformer_encoder") for k in state_dict):
        raise OfficialCheckpointError(
            "this is the authors' speech-enhancement VQ-VAE (VQVAE_SE, with transformer layers); "
            "only the quality-estimation model (VQVAE_QE) converts to VQVAEQualityModel"
        )
    enc = {}
    for key, value in state_dict.items():
        match = _ENC.match(key)
        if match and match.group(2) == "weight":
            enc[int(match.group(1))] = value
    num = len(enc)
    if num < 4 or num % 2 or sorted(enc) != list(range(1, num + 1)):
        raise OfficialCheckpointError(
            "no CNN_1D_encoder.conv_enc1..N weights found: not an official VQScore VQVAE_QE state dict"
        )
    embed_key = _CODEBOOK_PREFIX + "embed"
    if embed_key not in state_dict:
        raise OfficialCheckpointError(f"missing codebook {embed_key}")
    embed = state_dict[embed_key]
    if embed.dim() == 3 and embed.shape[0] != 1:
        raise OfficialCheckpointError("multi-head codebooks (codebook_num > 1) are not supported")
    channels = tuple(int(enc[i].shape[0]) for i in range(1, num - 1, 2))
    return {
        "input_size": int(enc[1].shape[1]),
        "channels": channels,
        "codebook_dim": int(enc[num].shape[0]),
        "codebook_size": int(embed.shape[-2]),
        "kernel_size": int(enc[1].shape[-1]),
    }


def convert_official_vqscore_checkpoint(path_or_state_dict, trust_pickle=False):
    """Converts an official VQScore checkpoint to a :class:`VQVAEQualityModel` state dict.

    Arguments
    ---------
    path_or_state_dict : str, os.PathLike or dict
        Path of the authors' ``.pkl`` checkpoint, the loaded checkpoint dict, or its
        ``["model"]["VQVAE"]`` state dict.
    trust_pickle : bool
        Load the file with ``weights_only=False`` (runs pickled code: trusted files only).

    Returns
    -------
    dict
        State dict with keys ``encoder.convs.{i}.{weight,bias}``,
        ``quantizer.{initted,cluster_size,embed_avg,embed}``, ``decoder.convs.{i}.{weight,bias}``.

    Example
    -------
    >>> state = convert_official_vqscore_checkpoint(random_official_checkpoint())
    >>> state["quantizer.embed"].shape
    torch.Size([64, 4])
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        checkpoint = _torch_load(path_or_state_dict, trust_pickle)
    else:
        checkpoint = path_or_state_dict
    official = _extract_state_dict(checkpoint)
    infer_official_config(official)  # validates the layout

    converted, unknown = {}, []
    for key, value in official.items():
        enc, dec = _ENC.match(key), _DEC.match(key)
        if enc:
            converted[f"encoder.convs.{int(enc.group(1)) - 1}.{enc.group(2)}"] = value
        elif dec:
            converted[f"decoder.convs.{int(dec.group(1)) - 1}.{dec.group(2)}"] = value
        elif key.startswith(_CODEBOOK_PREFIX) and key[len(_CODEBOOK_PREFIX) :] in _CODEBOOK_KEYS:
            name = key[len(_CODEBOOK_PREFIX) :]
            if name == "initted":
                value = value.reshape(1).float()
            elif name in ("embed", "embed_avg"):
                value = value.reshape(value.shape[-2], value.shape[-1])
            else:
                value = value.reshape(-1)
            converted[f"quantizer.{name}"] = value.float()
        elif re.match(r"^CNN_1D_encoder\.enc_In\d+\.", key):
            continue  # instance norms without affine have no state; tolerate tracked stats
        else:
            unknown.append(key)
    if unknown:
        raise OfficialCheckpointError(f"unexpected keys in the official state dict: {unknown}")
    return converted


def load_official_vqscore(path, trust_pickle=False, **model_kwargs):
    """Builds a :class:`VQVAEQualityModel` from an official VQScore checkpoint.

    Arguments
    ---------
    path : str, os.PathLike or dict
        The authors' checkpoint file (or an already loaded checkpoint / state dict).
    trust_pickle : bool
        Load the file with ``weights_only=False`` (trusted files only).
    **model_kwargs
        Overrides of the model arguments (sizes are inferred from the checkpoint; the distance
        defaults to cosine, as the authors' QE model).

    Returns
    -------
    VQVAEQualityModel
        The model, in eval mode, with strictly loaded weights and codebook.

    Example
    -------
    >>> model = load_official_vqscore(random_official_checkpoint())
    >>> spec = torch.rand(1, 20, 257)  # [batch, time, channels]
    >>> model.score(spec).shape
    torch.Size([1])
    """
    if isinstance(path, (str, os.PathLike)):
        checkpoint = _torch_load(path, trust_pickle)
    else:
        checkpoint = path
    official = _extract_state_dict(checkpoint)
    config = infer_official_config(official)
    config.update(model_kwargs)
    model = VQVAEQualityModel(**config)
    model.load_state_dict(convert_official_vqscore_checkpoint(official), strict=True)
    return model.eval()


def random_official_checkpoint(channels=(16, 8), codebook_dim=4, codebook_size=64):
    """A small random checkpoint in the authors' key layout and shapes (for examples only).

    Arguments
    ---------
    channels : tuple of int
        Residual-stage channels.
    codebook_dim : int
        Code dimension.
    codebook_size : int
        Number of codes.

    Returns
    -------
    dict
        ``{"model": {"VQVAE": state_dict}}`` with the authors' key names and shapes.

    Example
    -------
    >>> ckpt = random_official_checkpoint()
    >>> ckpt["model"]["VQVAE"]["quantizer.quantizer._codebook.embed"].shape
    torch.Size([1, 64, 4])
    """
    gen = torch.Generator().manual_seed(0)
    enc_sizes, prev = [], 257
    for c in list(channels) + [codebook_dim]:
        enc_sizes += [(prev, c), (c, c)]
        prev = c
    dec_sizes, prev = [(codebook_dim, codebook_dim)], codebook_dim
    for c in reversed(list(channels)):
        dec_sizes += [(prev, c), (c, c)]
        prev = c
    dec_sizes.append((prev, 257))
    state = {}
    for prefix, sizes in (("CNN_1D_encoder.conv_enc", enc_sizes), ("CNN_1D_decoder.conv_dec", dec_sizes)):
        for i, (cin, cout) in enumerate(sizes, start=1):
            state[f"{prefix}{i}.weight"] = torch.randn(cout, cin, 7, generator=gen) / (cin * 7) ** 0.5
            state[f"{prefix}{i}.bias"] = 0.01 * torch.randn(cout, generator=gen)
    embed = torch.nn.functional.normalize(torch.randn(1, codebook_size, codebook_dim, generator=gen), dim=-1)
    cluster_size = torch.rand(1, codebook_size, generator=gen) * 10
    state[_CODEBOOK_PREFIX + "initted"] = torch.Tensor([True])
    state[_CODEBOOK_PREFIX + "cluster_size"] = cluster_size
    state[_CODEBOOK_PREFIX + "embed_avg"] = embed * cluster_size.unsqueeze(-1)
    state[_CODEBOOK_PREFIX + "embed"] = embed
    return {"model": {"VQVAE": state}}
