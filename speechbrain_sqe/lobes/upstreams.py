"""Which frozen upstream a recipe's head reads: TERA (ours) or the Distill-MOS encoder.

A recipe names its upstream in one YAML key (``ssl_upstream``); :func:`select_upstream` returns the
module, and the head's sizes come from the module itself (``layer_count``, ``hidden_size`` of the SSL
encoder contract), so switching upstreams is one override and never a mismatch of sizes.

Authors: speechbrain-sqe contributors
"""

__all__ = ["UPSTREAMS", "select_upstream", "upstream_hidden_size", "upstream_layer_count"]

#: The names ``select_upstream`` accepts.
UPSTREAMS = ("tera", "distillmos")


def select_upstream(name, tera):
    """The upstream called ``name``.

    Arguments
    ---------
    name : str
        ``tera`` (the given TERA model, its pretrained weights loaded by the recipe's pretrainer) or
        ``distillmos`` (:class:`~speechbrain_sqe.lobes.distillmos_encoder.DistillMOSEncoder`, its weights
        from the installed ``distillmos`` wheel).
    tera : torch.nn.Module
        The recipe's TERA model.

    Returns
    -------
    torch.nn.Module
        The upstream.

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> tera = TERAModel.small()
    >>> select_upstream("tera", tera) is tera
    True
    >>> upstream = select_upstream("distillmos", tera)
    >>> type(upstream).__name__, upstream.layer_count, upstream.hidden_size
    ('DistillMOSEncoder', 8, 200)
    >>> select_upstream("wavlm", tera)
    Traceback (most recent call last):
    ...
    ValueError: ssl_upstream must be one of tera, distillmos, got 'wavlm'
    """
    if name == "tera":
        return tera
    if name == "distillmos":
        from speechbrain_sqe.lobes.distillmos_encoder import DistillMOSEncoder

        return DistillMOSEncoder()
    raise ValueError(f"ssl_upstream must be one of {', '.join(UPSTREAMS)}, got {name!r}")



def _contract_size(upstream, name):
    if not hasattr(upstream, name):
        raise ValueError(f"the upstream {type(upstream).__name__} does not say its {name} (SSL encoder contract)")
    return int(getattr(upstream, name))


def upstream_layer_count(upstream):
    """The hidden states an upstream gives (``layer_count`` of the SSL encoder contract).

    Example
    -------
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> upstream_layer_count(TERAModel.small()), upstream_hidden_size(TERAModel.small())
    (4, 192)
    >>> upstream_layer_count(object())
    Traceback (most recent call last):
    ...
    ValueError: the upstream object does not say its layer_count (SSL encoder contract)
    """
    return _contract_size(upstream, "layer_count")


def upstream_hidden_size(upstream):
    """The size of each hidden state (``hidden_size`` of the SSL encoder contract)."""
    return _contract_size(upstream, "hidden_size")
