"""Tests of speechbrain_sqe.inference.convert_s3prl against s3prl's key layout and forward."""

import argparse
import math

import pytest
import torch

from speechbrain_sqe.inference.convert_s3prl import (
    S3PRLCheckpointError,
    convert_s3prl_tera_checkpoint,
    load_s3prl_tera,
)

H, L, HEADS, FF, D = 24, 2, 3, 40, 80


def _s3prl_checkpoint(seed=0, legacy=False):
    """Random weights in s3prl's TransformerModel / TransformerSpecPredictionHead key layout."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen) * 0.2

    def ln(prefix, sd):
        g, b = ("gamma", "beta") if legacy else ("weight", "bias")
        sd[f"{prefix}.{g}"] = 1 + r(H)
        sd[f"{prefix}.{b}"] = r(H)

    tr = {"input_representations.spec_transform.weight": r(H, D),
          "input_representations.spec_transform.bias": r(H)}
    ln("input_representations.LayerNorm", tr)
    for i in range(L):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            tr[p + f"attention.self.{name}.weight"] = r(H, H)
            tr[p + f"attention.self.{name}.bias"] = r(H)
        tr[p + "attention.output.dense.weight"] = r(H, H)
        tr[p + "attention.output.dense.bias"] = r(H)
        ln(p + "attention.output.LayerNorm", tr)
        tr[p + "intermediate.dense.weight"] = r(FF, H)
        tr[p + "intermediate.dense.bias"] = r(FF)
        tr[p + "output.dense.weight"] = r(H, FF)
        tr[p + "output.dense.bias"] = r(H)
        ln(p + "output.LayerNorm", tr)
    head = {"dense.weight": r(H, H), "dense.bias": r(H), "output.weight": r(D, H), "output.bias": r(D)}
    ln("LayerNorm", head)
    config = {
        "transformer": {
            "input_dim": -1, "hidden_size": H, "num_hidden_layers": L, "num_attention_heads": HEADS,
            "intermediate_size": FF, "hidden_act": "gelu", "hidden_dropout_prob": 0.3,
            "attention_probs_dropout_prob": 0.3, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
            "share_layer": False, "pre_layer_norm": False,
        },
        "task": {"sequence_length": 1500, "mask_proportion": 0.15},
        "audio": {
            "target_level": -25, "win_ms": 25, "hop_ms": 10, "n_freq": 201, "n_mels": 80, "n_mfcc": 13,
            "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True},
            "target": {"feat_type": "mel", "channel": 1, "log": True, "delta": 0, "cmvn": True},
        },
    }
    ckpt = {"Transformer": tr, "SpecHead": head, "Step": 1000}
    if legacy:
        ckpt["Config"] = config
    else:
        ckpt["Config"] = {"runner": {"total_steps": 1000}}
        ckpt["Upstream_Config"] = config
    return ckpt


def _ref_forward(ckpt, feats, valid):
    """s3prl's post-LN TransformerModel forward written from the key names (eval mode)."""
    sd = {k.replace("gamma", "weight").replace("beta", "bias"): v for k, v in ckpt["Transformer"].items()}

    def lin(x, p, s=sd):
        return x @ s[p + ".weight"].T + s[p + ".bias"]

    def ln(x, p, s=sd):
        u = x.mean(-1, keepdim=True)
        v = (x - u).pow(2).mean(-1, keepdim=True)
        return s[p + ".weight"] * (x - u) / torch.sqrt(v + 1e-12) + s[p + ".bias"]

    def gelu(x):
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))

    b, t, _ = feats.shape
    pos = torch.tensor([[p / 10000 ** (2 * (i // 2) / H) for i in range(H)] for p in range(t)], dtype=torch.float64)
    pos[:, 0::2], pos[:, 1::2] = torch.sin(pos[:, 0::2]), torch.cos(pos[:, 1::2])
    h = ln(lin(feats, "input_representations.spec_transform") + pos.float(), "input_representations.LayerNorm")
    mask = (1.0 - valid.float())[:, None, None, :] * -10000.0
    states = [h]
    hd = H // HEADS
    for i in range(L):
        p = f"encoder.layer.{i}."

        def heads(x):
            return x.view(b, t, HEADS, hd).permute(0, 2, 1, 3)

        q, k, v = (heads(lin(h, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        probs = (q @ k.transpose(-1, -2) / math.sqrt(hd) + mask).softmax(-1)
        ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, t, H)
        att = ln(lin(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        h = ln(lin(gelu(lin(att, p + "intermediate.dense")), p + "output.dense") + att, p + "output.LayerNorm")
        states.append(h)
    hs = {k.replace("gamma", "weight").replace("beta", "bias"): v for k, v in ckpt["SpecHead"].items()}
    pred = lin(ln(gelu(lin(h, "dense", hs)), "LayerNorm", hs), "output", hs)
    return states, pred


@pytest.mark.parametrize("legacy", [False, True])
def test_converted_model_matches_s3prl_forward(legacy):
    ckpt = _s3prl_checkpoint(legacy=legacy)
    config, state = convert_s3prl_tera_checkpoint(ckpt)
    assert len(state) == len(ckpt["Transformer"]) + len(ckpt["SpecHead"])
    assert config["hidden_size"] == H and config["num_layers"] == L and config["num_heads"] == HEADS
    assert config["intermediate_size"] == FF and config["input_dim"] == D and config["target_level"] == -25
    model = load_s3prl_tera(ckpt)
    assert not model.training
    torch.manual_seed(0)
    feats = torch.randn(2, 30, D)
    lengths = torch.tensor([1.0, 0.6])
    valid = torch.arange(30)[None] < torch.tensor([[30], [18]])
    with torch.no_grad():
        ours = model.encoder(feats, lengths)
        pred = model(feats, lengths)
    ref, ref_pred = _ref_forward(ckpt, feats, valid)
    assert len(ours) == len(ref) == L + 1
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a[valid], r[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pred[valid], ref_pred[valid], atol=1e-5, rtol=1e-5)


def test_load_from_file_and_pickle_refusal(tmp_path):
    ckpt = _s3prl_checkpoint()
    path = tmp_path / "tera.ckpt"
    torch.save(ckpt, path)
    model = load_s3prl_tera(path, dropout=0.0)
    assert model.config["dropout"] == 0.0
    states = model.hidden_states(torch.randn(1, 1600))
    assert len(states) == L + 1 and states[-1].shape == (1, 11, H)
    ckpt["Args"] = argparse.Namespace(config="x.yaml")
    torch.save(ckpt, path)
    with pytest.raises(S3PRLCheckpointError, match="trust_pickle=True"):
        load_s3prl_tera(path)
    assert load_s3prl_tera(path, trust_pickle=True).config["num_layers"] == L


def test_refuses_unsupported_checkpoints():
    ckpt = _s3prl_checkpoint()
    ckpt["Upstream_Config"]["audio"] = {"kaldi": {"feat_type": "fbank"}}
    with pytest.raises(S3PRLCheckpointError, match="Kaldi"):
        convert_s3prl_tera_checkpoint(ckpt)
    ckpt = _s3prl_checkpoint()
    ckpt["Upstream_Config"]["transformer"]["pre_layer_norm"] = True
    with pytest.raises(S3PRLCheckpointError, match="pre-LN"):
        convert_s3prl_tera_checkpoint(ckpt)
    with pytest.raises(S3PRLCheckpointError, match="Transformer"):
        convert_s3prl_tera_checkpoint({"model": {}})
