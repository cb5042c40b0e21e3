"""How much each layer of an SSL model moves when its input speech is distorted.

Pure analysis on embeddings that the caller has already extracted: for every layer, the embeddings
of a distorted utterance (``noisy``) are compared with those of its clean reference (same
utterance, frame-aligned, same length). Three measures per utterance and layer:

* **NMSE** (Song et al., ICEIC 2024): ``(1/N) sum_i ((e_s,i - e_x,i) / sigma_i) ** 2`` per frame,
  averaged over the utterance's frames, where ``N`` is the embedding dimension and ``sigma_i`` the
  per-dimension standard deviation of the CLEAN embeddings of that layer over all clean frames of
  the analysed set. 0 means unchanged; 2 is what two independent draws from the clean
  distribution would give.
* **Cosine similarity**: per-frame cosine between clean and noisy embeddings, averaged over the
  frames of the utterance. 1 means unchanged direction.
* **Clean-noisy (CN) distance** (after Hung et al., Interspeech 2022), defined here as::

      cn(u) = || mean_t e_s(u, t) - mean_t e_x(u, t) ||_2 / mean_{all clean frames} || e_s ||_2

  i.e. the L2 distance between the time-averaged clean and noisy embeddings of an utterance,
  divided by the mean L2 norm of a clean frame of that layer over the whole analysed set (the
  same set that defines ``sigma``). The time average keeps the utterance-level shift that a
  downstream pooled head (a quality estimator) sees, and discards frame-level jitter that NMSE
  and cosine already measure. Layers of one model have very different scales (the CNN output,
  the middle and the last transformer layers differ by orders of magnitude), so an absolute
  distance would rank layers by scale; dividing by the layer's typical clean norm makes the
  figure scale-free (multiplying a layer by any constant leaves it unchanged) and comparable
  across layers and models. A set-level denominator (rather than each utterance's own norm)
  keeps one constant per layer, so comparisons between conditions within a layer are
  comparisons of distances alone and a quiet or short utterance cannot inflate its own value.

Statistics are streamed: :class:`RobustnessAccumulator` keeps, per utterance and layer, the
per-dimension sum of squared differences (``dim`` floats), the frame count, the mean cosine and
the time-averaged distance, plus running clean moments (:class:`RunningMoments`), so NMSE is
normalised by the set-wide ``sigma`` at the end in a single pass over the data. A second,
separate pass (``add_clean_moments``) can define ``sigma`` from another clean set instead.

Results are rows (one per layer x condition group) that :func:`write_robustness_report` saves as
CSV, markdown and PNG plots; :data:`PUBLISHED_FIGURES` holds the published cosine figures so they
can be printed beside ours (:func:`format_published_comparison`).
"""

import csv
import itertools
import logging
import math
import os

import torch

logger = logging.getLogger(__name__)

#: Metrics computed per utterance and layer (keys of the result rows).
METRICS = ("nmse", "cosine", "cn_distance")

#: Condition groups of :meth:`RobustnessAccumulator.results`, in report order.
GROUPS = ("overall", "snr", "t60", "noise_type")

#: Upper edges (seconds) of the reverberant T60 bins; T60 <= 0 (or ``reverb`` False) is "dry".
DEFAULT_T60_EDGES = (0.3, 0.6)

#: Cosine similarity between embeddings of noisy and clean speech, Song et al., ICEIC 2024.
#: Values not transcribed from the paper are ``None``.
PUBLISHED_FIGURES = {
    "reference": "Song et al., ICEIC 2024",
    "metric": "cosine",
    "snr": (-7.0, 0.0, 5.0, 10.0, 15.0),
    "models": {
        "TERA": (0.746, 0.818, 0.859, 0.889, 0.915),
        "WavLM": (0.521, None, None, None, 0.847),
    },
}


class RunningMoments:
    """Streaming per-dimension mean and variance of frames (Chan et al. parallel update, float64).

    Also tracks the mean L2 norm of a frame, the denominator of the CN distance.

    Arguments
    ---------
    eps : float
        Floor of :meth:`std`, so a constant dimension does not divide by zero.

    Example
    -------
    >>> moments = RunningMoments()
    >>> frames = torch.randn(2, 50, 8)  # [batch, frames, dim]
    >>> moments.update(frames, lengths=torch.tensor([1.0, 0.5]))
    >>> moments.count
    75
    >>> moments.std().shape
    torch.Size([8])
    >>> moments.update(torch.randn(10, 8))  # [frames, dim] is accepted too
    >>> moments.count
    85
    """

    def __init__(self, eps=1e-6):
        self.eps = eps
        self.count = 0
        self.mean = None
        self.m2 = None
        self.norm_sum = 0.0

    def update(self, frames, lengths=None):
        """Adds frames ``[frames, dim]`` or ``[batch, frames, dim]`` (padding masked by ``lengths``).

        Arguments
        ---------
        frames : torch.Tensor
            Embeddings, ``[frames, dim]`` or ``[batch, frames, dim]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` (SpeechBrain convention) for the 3-D form.
        """
        frames = _valid_frames(frames, lengths)
        n_b = frames.shape[0]
        if n_b == 0:
            return
        mean_b = frames.mean(0)
        m2_b = ((frames - mean_b) ** 2).sum(0)
        self.norm_sum += float(frames.norm(dim=-1).sum())
        if self.mean is None:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        if mean_b.shape != self.mean.shape:
            raise ValueError(f"dimension {mean_b.shape[0]} differs from {self.mean.shape[0]}")
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / total)
        self.count = total

    def variance(self):
        """Population variance per dimension, ``[dim]`` (float64)."""
        if self.mean is None:
            raise ValueError("no frames were added")
        return self.m2 / self.count

    def std(self):
        """Population standard deviation per dimension, ``[dim]``, floored at ``eps``."""
        return self.variance().sqrt().clamp(min=self.eps)

    def mean_norm(self):
        """Mean L2 norm of a frame (float)."""
        if self.count == 0:
            raise ValueError("no frames were added")
        return self.norm_sum / self.count


def clean_std(clean_layers, lengths=None, eps=1e-6):
    """Per-layer, per-dimension std of clean frames (the NMSE ``sigma``).

    Arguments
    ---------
    clean_layers : list of torch.Tensor
        One tensor per layer, ``[batch, frames, dim]`` or ``[frames, dim]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``.
    eps : float
        Floor of the std.

    Returns
    -------
    list of torch.Tensor
        One ``[dim]`` tensor (float64) per layer.

    Example
    -------
    >>> layers = [torch.randn(3, 20, 16), 5 * torch.randn(3, 20, 32)]
    >>> [s.shape[0] for s in clean_std(layers)]
    [16, 32]
    """
    stds = []
    for layer in _as_layers(clean_layers):
        moments = RunningMoments(eps)
        moments.update(layer, lengths)
        stds.append(moments.std())
    return stds


def layer_statistics(clean_layers, noisy_layers, lengths=None, sigma=None, clean_norm=None,
                     eps=1e-6):
    """Per-utterance NMSE, cosine similarity and CN distance for every layer of one batch.

    Arguments
    ---------
    clean_layers, noisy_layers : list of torch.Tensor
        One tensor ``[batch, frames, dim]`` per layer, for the clean and the distorted versions of
        the same utterances (frame-aligned).
    lengths : torch.Tensor, optional
        Relative lengths ``[batch]``; padded frames are ignored.
    sigma : list of torch.Tensor, optional
        Per-layer ``[dim]`` clean std (e.g. :func:`clean_std` over the whole set); defaults to the
        std of this batch's clean frames.
    clean_norm : list of float, optional
        Per-layer mean clean frame norm (CN denominator); defaults to this batch's.
    eps : float
        Floor of the std computed here.

    Returns
    -------
    list of dict
        Per layer, ``{"nmse": [batch], "cosine": [batch], "cn_distance": [batch]}`` (float64).

    Example
    -------
    >>> clean = [torch.randn(2, 40, 16) for _ in range(3)]  # 3 layers
    >>> noisy = [c + 0.1 * torch.randn_like(c) for c in clean]
    >>> stats = layer_statistics(clean, noisy, lengths=torch.tensor([1.0, 0.75]))
    >>> len(stats), stats[0]["nmse"].shape, stats[0]["cosine"].shape
    (3, torch.Size([2]), torch.Size([2]))
    >>> same = layer_statistics(clean, clean)
    >>> float(same[0]["nmse"].max()), round(float(same[0]["cosine"].min()), 6)
    (0.0, 1.0)
    """
    clean_layers, noisy_layers = _as_layers(clean_layers), _as_layers(noisy_layers)
    if len(clean_layers) != len(noisy_layers):
        raise ValueError(f"{len(clean_layers)} clean layers but {len(noisy_layers)} noisy layers")
    out = []
    for index, (clean, noisy) in enumerate(zip(clean_layers, noisy_layers)):
        stats = _utterance_sums(clean, noisy, lengths)
        if sigma is None or clean_norm is None:
            moments = RunningMoments(eps)
            moments.update(clean, lengths)
        layer_sigma = moments.std() if sigma is None else torch.as_tensor(sigma[index])
        norm = moments.mean_norm() if clean_norm is None else float(clean_norm[index])
        out.append({
            "nmse": _nmse(stats["sqdiff"], stats["frames"], layer_sigma),
            "cosine": stats["cosine"],
            "cn_distance": stats["mean_distance"] / max(norm, 1e-12),
        })
    return out


class RobustnessAccumulator:
    """Streams batches of clean/noisy layer embeddings and reports metrics per layer and condition.

    Keeps per utterance and layer the per-dimension sum of squared differences (so NMSE can be
    normalised by the set-wide clean ``sigma`` at the end), the frame count, mean cosine and the
    distance of time-averaged embeddings; clean moments are accumulated from the clean frames given
    to :meth:`add`, unless :meth:`add_clean_moments` was called (then only those frames count).

    Arguments
    ---------
    t60_edges : tuple of float
        Upper edges (s) of the reverberant T60 bins; a last open bin is added above the last edge.
    eps : float
        Floor of the clean std.

    Example
    -------
    >>> acc = RobustnessAccumulator()
    >>> for snr in (0.0, 10.0):
    ...     clean = [torch.randn(2, 30, 8), torch.randn(2, 30, 4)]  # 2 layers
    ...     noisy = [c + 10 ** (-snr / 20) * torch.randn_like(c) for c in clean]
    ...     conds = [{"snr": snr, "t60": 0.0, "noise_type": "white", "reverb": False}] * 2
    ...     acc.add(clean, noisy, torch.tensor([1.0, 0.8]), conds)
    >>> rows = acc.results()
    >>> sorted(rows[0])
    ['cn_distance', 'condition', 'cosine', 'group', 'layer', 'n', 'nmse']
    >>> [(r["group"], r["condition"], r["n"]) for r in rows if r["layer"] == 0]
    [('overall', 'all', 4), ('snr', '0', 2), ('snr', '10', 2), ('t60', 'dry', 4), ('noise_type', 'white', 4)]
    """

    def __init__(self, t60_edges=DEFAULT_T60_EDGES, eps=1e-6):
        self.t60_edges = tuple(sorted(t60_edges))
        self.eps = eps
        self._implicit = None  # RunningMoments per layer, from add()
        self._explicit = None  # RunningMoments per layer, from add_clean_moments()
        self._sqdiff = []  # per batch: list over layers of [batch, dim]
        self._frames = []  # per batch: [batch]
        self._cosine = []  # per batch: [layers, batch]
        self._distance = []  # per batch: [layers, batch]
        self.conditions = []
        self.ids = []

    @property
    def num_layers(self):
        """Number of layers seen (0 before the first batch)."""
        moments = self._implicit or self._explicit
        return len(moments) if moments else 0

    def add_clean_moments(self, clean_layers, lengths=None):
        """Optional first pass: defines the clean ``sigma`` and norm from these frames only.

        Arguments
        ---------
        clean_layers : list of torch.Tensor
            One ``[batch, frames, dim]`` tensor per layer.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        """
        clean_layers = _as_layers(clean_layers)
        if self._explicit is None:
            self._explicit = [RunningMoments(self.eps) for _ in clean_layers]
        _check_layer_count(self._explicit, clean_layers)
        for moments, layer in zip(self._explicit, clean_layers):
            moments.update(layer, lengths)

    def add(self, clean_layers, noisy_layers, lengths=None, conditions=None, ids=None):
        """Adds one batch.

        Arguments
        ---------
        clean_layers, noisy_layers : list of torch.Tensor
            One ``[batch, frames, dim]`` tensor per layer, frame-aligned.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``.
        conditions : list of dict, optional
            Per utterance, e.g. ``{"snr": 5.0, "t60": 0.0, "noise_type": "white", "reverb": False}``;
            strings as read from a manifest are accepted; missing keys leave the utterance out of
            that group.
        ids : list of str, optional
            Utterance IDs (for :meth:`utterance_rows`).
        """
        clean_layers, noisy_layers = _as_layers(clean_layers), _as_layers(noisy_layers)
        if len(clean_layers) != len(noisy_layers):
            raise ValueError(f"{len(clean_layers)} clean layers but {len(noisy_layers)} noisy layers")
        batch = clean_layers[0].shape[0]
        conditions = list(conditions) if conditions is not None else [{}] * batch
        if len(conditions) != batch:
            raise ValueError(f"{len(conditions)} conditions for a batch of {batch}")
        if self._implicit is None:
            self._implicit = [RunningMoments(self.eps) for _ in clean_layers]
        _check_layer_count(self._implicit, clean_layers)
        sqdiff, cosine, distance = [], [], []
        for moments, clean, noisy in zip(self._implicit, clean_layers, noisy_layers):
            stats = _utterance_sums(clean, noisy, lengths)
            moments.update(clean, lengths)
            sqdiff.append(stats["sqdiff"])
            cosine.append(stats["cosine"])
            distance.append(stats["mean_distance"])
        self._sqdiff.append(sqdiff)
        self._frames.append(stats["frames"])
        self._cosine.append(torch.stack(cosine))
        self._distance.append(torch.stack(distance))
        self.conditions += [dict(c) for c in conditions]
        start = len(self.ids)
        self.ids += list(ids) if ids is not None else [f"utt{start + i}" for i in range(batch)]

    def _moments(self):
        moments = self._explicit or self._implicit
        if not moments or not self._frames:
            raise ValueError("no batches were added")
        return moments

    def utterance_metrics(self):
        """Final per-utterance metrics.

        Returns
        -------
        dict
            ``{"nmse": [layers, utts], "cosine": [layers, utts], "cn_distance": [layers, utts]}``.
        """
        moments = self._moments()
        frames = torch.cat(self._frames)
        nmse = []
        for index, layer_moments in enumerate(moments):
            sqdiff = torch.cat([batch[index] for batch in self._sqdiff])
            nmse.append(_nmse(sqdiff, frames, layer_moments.std()))
        norms = torch.tensor([max(m.mean_norm(), 1e-12) for m in moments], dtype=torch.float64)
        return {
            "nmse": torch.stack(nmse),
            "cosine": torch.cat(self._cosine, dim=1),
            "cn_distance": torch.cat(self._distance, dim=1) / norms[:, None],
        }

    def utterance_rows(self):
        """One row per utterance and layer: id, layer, the condition keys and the three metrics."""
        metrics = self.utterance_metrics()
        rows = []
        for layer in range(metrics["nmse"].shape[0]):
            for index, (uid, cond) in enumerate(zip(self.ids, self.conditions)):
                row = {"id": uid, "layer": layer}
                row.update({k: cond.get(k, "") for k in ("snr", "t60", "noise_type", "reverb")})
                row.update({m: float(metrics[m][layer, index]) for m in METRICS})
                rows.append(row)
        return rows

    def condition_labels(self, condition):
        """The group labels of one utterance's condition dict.

        Arguments
        ---------
        condition : dict
            e.g. ``{"snr": "5", "t60": 0.45, "noise_type": "babble", "reverb": True}``.

        Returns
        -------
        dict
            ``{"overall": "all", "snr": "5", "t60": "0.3-0.6s", "noise_type": "babble"}``; a group
            is absent when its key is missing or empty.
        """
        labels = {"overall": "all"}
        snr = _to_float(condition.get("snr"))
        if snr is not None and math.isfinite(snr):
            labels["snr"] = _fmt_number(snr)
        t60_bin = _t60_bin(_to_float(condition.get("t60")), _to_bool(condition.get("reverb")),
                           self.t60_edges)
        if t60_bin is not None:
            labels["t60"] = t60_bin
        noise = condition.get("noise_type")
        if noise is not None and str(noise).strip() != "":
            labels["noise_type"] = str(noise).strip()
        return labels

    def results(self):
        """Mean metrics per layer and condition group.

        Returns
        -------
        list of dict
            Rows ``{"layer": int, "group": str, "condition": str, "n": int, "nmse": float,
            "cosine": float, "cn_distance": float}``; groups in :data:`GROUPS` order, SNRs
            ascending, T60 bins from dry upwards, noise types alphabetically; layers ascending
            within each condition.
        """
        metrics = self.utterance_metrics()
        members = {group: {} for group in GROUPS}
        for index, condition in enumerate(self.conditions):
            for group, label in self.condition_labels(condition).items():
                members[group].setdefault(label, []).append(index)
        t60_order = _t60_labels(self.t60_edges)
        rows = []
        for group in GROUPS:
            labels = list(members[group])
            if group == "snr":
                labels.sort(key=float)
            elif group == "t60":
                labels.sort(key=lambda lab: t60_order.index(lab) if lab in t60_order else len(t60_order))
            else:
                labels.sort()
            for label in labels:
                index = torch.tensor(members[group][label])
                for layer in range(metrics["nmse"].shape[0]):
                    row = {"layer": layer, "group": group, "condition": label, "n": len(index)}
                    row.update({m: float(metrics[m][layer, index].mean()) for m in METRICS})
                    rows.append(row)
        return rows


def format_robustness_table(rows, group="snr", metric="cosine", precision=3):
    """Markdown table: one row per condition of ``group``, one column per layer.

    Arguments
    ---------
    rows : list of dict
        From :meth:`RobustnessAccumulator.results`.
    group : str
        One of :data:`GROUPS`.
    metric : str
        One of :data:`METRICS`.
    precision : int
        Decimals.

    Returns
    -------
    str
        The table ("" when ``rows`` hold no such group).

    Example
    -------
    >>> rows = [{"layer": l, "group": "snr", "condition": c, "n": 2, "nmse": 0.1, "cosine": 0.9,
    ...          "cn_distance": 0.2} for c in ("0", "5") for l in (0, 1)]
    >>> print(format_robustness_table(rows))
    | snr | n | layer 0 | layer 1 |
    |---|---|---|---|
    | 0 | 2 | 0.900 | 0.900 |
    | 5 | 2 | 0.900 | 0.900 |
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    selected = [r for r in rows if r["group"] == group]
    if not selected:
        return ""
    layers = sorted({r["layer"] for r in selected})
    conditions = list(dict.fromkeys(r["condition"] for r in selected))
    cells = {(r["condition"], r["layer"]): r for r in selected}
    lines = ["| " + " | ".join([group, "n"] + [f"layer {layer}" for layer in layers]) + " |",
             "|" + "---|" * (len(layers) + 2)]
    for condition in conditions:
        counts = [cells[(condition, lay)]["n"] for lay in layers if (condition, lay) in cells]
        values = [_fmt_value(cells.get((condition, lay), {}).get(metric), precision) for lay in layers]
        lines.append("| " + " | ".join([condition, str(max(counts))] + values) + " |")
    return "\n".join(lines)


def format_published_comparison(rows, layer=None, label="ours", precision=3):
    """Markdown table of our cosine similarity per SNR beside :data:`PUBLISHED_FIGURES`.

    Arguments
    ---------
    rows : list of dict
        From :meth:`RobustnessAccumulator.results`.
    layer : int, optional
        The layer to show; default: the mean over all layers.
    label : str
        Column title for our figures.
    precision : int
        Decimals.

    Returns
    -------
    str
        Rows are the union of the published SNRs and ours (ascending); "-" where a figure is absent.

    Example
    -------
    >>> rows = [{"layer": 0, "group": "snr", "condition": "5", "n": 3, "nmse": 0.2,
    ...          "cosine": 0.8, "cn_distance": 0.1}]
    >>> print(format_published_comparison(rows, label="ours (layer 0)"))
    | SNR (dB) | TERA (Song et al., ICEIC 2024) | WavLM (Song et al., ICEIC 2024) | ours (layer 0) |
    |---|---|---|---|
    | -7 | 0.746 | 0.521 | - |
    | 0 | 0.818 | - | - |
    | 5 | 0.859 | - | 0.800 |
    | 10 | 0.889 | - | - |
    | 15 | 0.915 | 0.847 | - |
    """
    ours = {}
    for row in rows:
        if row["group"] != "snr" or (layer is not None and row["layer"] != layer):
            continue
        ours.setdefault(float(row["condition"]), []).append(row["cosine"])
    ours = {snr: sum(values) / len(values) for snr, values in ours.items()}
    published = PUBLISHED_FIGURES["models"]
    snrs = sorted(set(PUBLISHED_FIGURES["snr"]) | set(ours))
    reference = PUBLISHED_FIGURES["reference"]
    header = ["SNR (dB)"] + [f"{name} ({reference})" for name in published] + [label]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for snr in snrs:
        cells = [_fmt_number(snr)]
        for values in published.values():
            figures = dict(zip(PUBLISHED_FIGURES["snr"], values))
            cells.append(_fmt_value(figures.get(snr), precision))
        cells.append(_fmt_value(ours.get(snr), precision))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_robustness_report(rows, output_folder, utterance_rows=None, prefix="ssl_robustness"):
    """Saves the rows as CSV, markdown tables and PNG plots.

    Files: ``{prefix}.csv`` (the rows), ``{prefix}_utterances.csv`` (when ``utterance_rows`` are
    given), ``{prefix}.md`` (a table per group and metric plus the published comparison),
    ``{prefix}_snr.png`` (one panel per metric, one line per layer vs SNR; only with SNR rows) and
    ``{prefix}_cn_distance.png`` (bar chart of the overall CN distance per layer).

    Arguments
    ---------
    rows : list of dict
        From :meth:`RobustnessAccumulator.results`.
    output_folder : str
        Created if needed.
    utterance_rows : list of dict, optional
        From :meth:`RobustnessAccumulator.utterance_rows`.
    prefix : str
        File name stem.

    Returns
    -------
    dict
        ``{"csv": path, "markdown": path, "plots": [paths], "utterances": path or None}``.

    Example
    -------
    >>> import tempfile
    >>> acc = RobustnessAccumulator()
    >>> clean = [torch.randn(2, 20, 8) for _ in range(2)]
    >>> acc.add(clean, [c + torch.randn_like(c) for c in clean], None, [{"snr": 0}, {"snr": 5}])
    >>> paths = write_robustness_report(acc.results(), tempfile.mkdtemp())
    >>> [os.path.basename(p) for p in paths["plots"]]
    ['ssl_robustness_snr.png', 'ssl_robustness_cn_distance.png']
    """
    os.makedirs(output_folder, exist_ok=True)
    paths = {"csv": os.path.join(output_folder, f"{prefix}.csv"), "utterances": None, "plots": []}
    _write_csv(paths["csv"], rows)
    if utterance_rows:
        paths["utterances"] = os.path.join(output_folder, f"{prefix}_utterances.csv")
        _write_csv(paths["utterances"], utterance_rows)
    paths["markdown"] = os.path.join(output_folder, f"{prefix}.md")
    with open(paths["markdown"], "w", encoding="utf-8") as stream:
        stream.write("# SSL layer robustness\n\n")
        stream.write("NMSE: sigma-normalised MSE to the clean embeddings (0 = unchanged); cosine: "
                     "mean per-frame cosine similarity; CN distance: L2 distance of time-averaged "
                     "clean and noisy embeddings over the layer's mean clean frame norm.\n")
        for group in GROUPS:
            for metric in METRICS:
                table = format_robustness_table(rows, group, metric)
                if table:
                    title = f"{metric}, all utterances" if group == "overall" else f"{metric} per {group}"
                    stream.write(f"\n## {title}\n\n{table}\n")
        if any(r["group"] == "snr" for r in rows):
            stream.write("\n## Cosine similarity beside published figures (mean over layers)\n\n")
            stream.write(format_published_comparison(rows, label="ours (mean over layers)") + "\n")
    paths["plots"] = _plot(rows, output_folder, prefix)
    return paths


def _plot(rows, folder, prefix):
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    written = []
    layers = sorted({r["layer"] for r in rows})
    snr_rows = [r for r in rows if r["group"] == "snr"]
    if snr_rows:
        fig, axes = plt.subplots(1, len(METRICS), figsize=(4.6 * len(METRICS) + 1.5, 4),
                                 constrained_layout=True)
        colours = plt.get_cmap("viridis")
        for axis, metric in zip(axes, METRICS):
            for layer in layers:
                points = sorted((float(r["condition"]), r[metric]) for r in snr_rows
                                if r["layer"] == layer)
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                          color=colours(layer / max(len(layers) - 1, 1)), label=f"layer {layer}")
            if metric == "cosine":
                for name, values in PUBLISHED_FIGURES["models"].items():
                    known = [(s, v) for s, v in zip(PUBLISHED_FIGURES["snr"], values) if v is not None]
                    # Dashed only where every SNR is known: no line implied through missing values.
                    axis.plot([k[0] for k in known], [k[1] for k in known],
                              linestyle="--" if len(known) == len(values) else "none",
                              color="grey" if name == "TERA" else "black", marker="x",
                              label=f"{name} ({PUBLISHED_FIGURES['reference']})")
            axis.set_xlabel("SNR (dB)")
            axis.set_ylabel(metric)
            axis.set_title(f"{metric} vs SNR")
            axis.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        for handle, text in zip(*axes[list(METRICS).index("cosine")].get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
        axes[-1].legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        path = os.path.join(folder, f"{prefix}_snr.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    overall = sorted((r["layer"], r["cn_distance"]) for r in rows if r["group"] == "overall")
    if overall:
        fig, axis = plt.subplots(figsize=(max(4.0, 0.45 * len(overall) + 2), 3.6),
                                 constrained_layout=True)
        axis.bar([o[0] for o in overall], [o[1] for o in overall], color="tab:blue")
        axis.set_xlabel("layer")
        axis.set_ylabel("CN distance (relative)")
        axis.set_title("Clean-noisy distance per layer")
        axis.set_xticks([o[0] for o in overall])
        path = os.path.join(folder, f"{prefix}_cn_distance.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _write_csv(path, table):
    fields = []
    for row in table:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)


def _as_layers(layers):
    if isinstance(layers, torch.Tensor):
        return [layers] if layers.dim() <= 3 else list(layers)
    return list(layers)


def _check_layer_count(moments, layers):
    if len(moments) != len(layers):
        raise ValueError(f"{len(layers)} layers given, {len(moments)} seen before")


def _frame_mask(batch, frames, lengths, device):
    """Boolean ``[batch, frames]`` of valid frames (SpeechBrain relative lengths)."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    counts = torch.round(torch.as_tensor(lengths, dtype=torch.float64) * frames).long()
    counts = counts.clamp(1, frames).to(device)
    return torch.arange(frames, device=device)[None, :] < counts[:, None]


def _valid_frames(frames, lengths=None):
    frames = frames.detach().to(torch.float64)
    if frames.dim() == 2:
        return frames
    if frames.dim() != 3:
        raise ValueError(f"expected [frames, dim] or [batch, frames, dim], got {tuple(frames.shape)}")
    return frames[_frame_mask(frames.shape[0], frames.shape[1], lengths, frames.device)]


def _utterance_sums(clean, noisy, lengths):
    """Per-utterance sufficient statistics of one layer (float64, padding excluded)."""
    if clean.shape != noisy.shape or clean.dim() != 3:
        raise ValueError(f"clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} must be "
                         "equal [batch, frames, dim]")
    clean = clean.detach().to(torch.float64)
    noisy = noisy.detach().to(torch.float64)
    mask = _frame_mask(clean.shape[0], clean.shape[1], lengths, clean.device)
    clean = torch.where(mask[..., None], clean, 0.0)  # also clears NaN/inf padding
    noisy = torch.where(mask[..., None], noisy, 0.0)
    frames = mask.sum(1).to(torch.float64)
    cosine = torch.nn.functional.cosine_similarity(clean, noisy, dim=-1, eps=1e-12)
    cosine = torch.where(mask, cosine, 0.0).sum(1) / frames
    mean_clean = clean.sum(1) / frames[:, None]
    mean_noisy = noisy.sum(1) / frames[:, None]
    return {
        "sqdiff": ((clean - noisy) ** 2).sum(1),
        "frames": frames,
        "cosine": cosine,
        "mean_distance": (mean_clean - mean_noisy).norm(dim=-1),
    }


def _nmse(sqdiff, frames, sigma):
    sigma = sigma.to(torch.float64).to(sqdiff.device)
    return (sqdiff / sigma**2).sum(-1) / (frames * sqdiff.shape[-1])


def _t60_labels(edges):
    """Bin labels in order: dry, one per edge, above the last edge, then "reverberant" (T60 unknown)."""
    if not edges:
        return ["dry", "reverberant"]
    labels = ["dry", f"<={_fmt_number(edges[0])}s"]
    labels += [f"{_fmt_number(low)}-{_fmt_number(high)}s" for low, high in itertools.pairwise(edges)]
    return labels + [f">{_fmt_number(edges[-1])}s", "reverberant"]


def _t60_bin(t60, reverb, edges):
    if t60 is None or not math.isfinite(t60):
        if reverb is None:
            return None
        return "reverberant" if reverb else "dry"
    if t60 <= 0 or reverb is False:
        return "dry"
    labels = _t60_labels(edges)
    for index, edge in enumerate(edges):
        if t60 <= edge:
            return labels[index + 1]
    return labels[len(edges) + 1]


def _to_float(value):
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_bool(value):
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y"):
        return True
    if text in ("false", "0", "no", "n"):
        return False
    return None


def _fmt_number(value):
    return f"{value:g}"


def _fmt_value(value, precision):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{precision}f}"
