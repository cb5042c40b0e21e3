"""The one export path: a hub-ready folder (hyperparams.yaml + Pretrainer + checkpoint + card).

The folder loads with ``<Interface>.from_hparams(source=folder)`` and can be uploaded to a model hub
as it is.
"""

import datetime
import json
import os

import torch
import yaml


def write_hub_folder(output_folder, hparams_text, modules, card):
    """Writes a hub folder: ``hyperparams.yaml``, one ``<name>.ckpt`` per module, ``README.md``.

    The Pretrainer of ``hparams_text`` reads loadable ``<name>`` from ``<name>.ckpt`` beside it.

    Arguments
    ---------
    output_folder : str
        The folder to write (created).
    hparams_text : str
        The hyperparams file content.
    modules : dict
        ``{name: torch.nn.Module}`` whose state dicts are saved.
    card : str
        The model card.

    Returns
    -------
    str
        ``output_folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = write_hub_folder(tempfile.mkdtemp(), "a: 1", {"net": torch.nn.Linear(2, 2)}, "# card")
    >>> sorted(os.listdir(folder))
    ['README.md', 'hyperparams.yaml', 'net.ckpt']
    """
    os.makedirs(output_folder, exist_ok=True)
    with open(os.path.join(output_folder, "hyperparams.yaml"), "w", encoding="utf-8") as stream:
        stream.write(hparams_text)
    for name, module in modules.items():
        state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
        torch.save(state, os.path.join(output_folder, f"{name}.ckpt"))
    with open(os.path.join(output_folder, "README.md"), "w", encoding="utf-8") as stream:
        stream.write(card)
    return output_folder


def _yaml_kwargs(config):
    """A model's constructor arguments as an indented YAML mapping (under a ``!new:`` tag)."""
    text = yaml.safe_dump(dict(config), default_flow_style=None, sort_keys=False)
    return "".join(f"    {line}\n" for line in text.strip().splitlines())


VQSCORE_HPARAMS = """\
# VQScore: no-reference speech quality from a VQ-VAE trained on clean speech only
# (Fu et al., ICLR 2024), trained with speechbrain-sqe's hparams/vqscore.yaml.
#   from speechbrain_sqe.inference.vqscore import VQScore
#   scorer = VQScore.from_hparams(source="<this folder or a hub id>")
#   scorer.score_file("speech.wav")

sample_rate: {sample_rate}
n_fft: {n_fft}
hop_length: {hop_length}
# Shorter files are refused with a clear error (a few STFT frames are needed).
min_seconds: {min_seconds}

compute_stft: !new:speechbrain_sqe.lobes.spectral.STFTMagnitude
    n_fft: !ref <n_fft>
    hop_length: !ref <hop_length>
    log1p: {log1p}

vqvae: !new:speechbrain_sqe.lobes.vqvae.VQVAEQualityModel
{model_kwargs}
modules:
    vqvae: !ref <vqvae>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        vqvae: !ref <vqvae>   # read from vqvae.ckpt beside this file
"""


def build_vqscore_hub(model, output_folder, sample_rate=16000, n_fft=512, hop_length=256,
                      log1p=False, min_seconds=0.1, card=None):
    """Writes a hub-ready VQScore folder for ``model``.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.vqvae.VQVAEQualityModel
        The trained model (its ``config`` gives the constructor arguments).
    output_folder : str
        The folder to write (created).
    sample_rate, n_fft, hop_length : int
        The front end the model was trained with.
    log1p : bool
        Whether the front end compresses magnitudes with log1p.
    min_seconds : float
        Shortest audio the interface accepts.
    card : str, optional
        The model card (README.md); a minimal one is written when None.

    Returns
    -------
    str
        ``output_folder``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
    >>> folder = build_vqscore_hub(VQVAEQualityModel(codebook_size=16), tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['README.md', 'hyperparams.yaml', 'vqvae.ckpt']
    """
    hparams = VQSCORE_HPARAMS.format(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
        log1p=log1p, min_seconds=min_seconds, model_kwargs=_yaml_kwargs(model.config),
    )
    card = card or "# VQScore model\n\nTrained with speechbrain-sqe (hparams/vqscore.yaml).\n"
    return write_hub_folder(output_folder, hparams, {"vqvae": model}, card)


def vqscore_model_card(report, train_description, training, command):
    """Writes the model card text of a VQScore model from its measured report.

    Arguments
    ---------
    report : dict
        The test-report summary (:func:`speechbrain_sqe.analysis.quality_report.write_quality_report`).
    train_description : str
        What the model was trained on.
    training : dict
        Training facts (epochs, time, hardware...).
    command : str
        The command that trained it.

    Returns
    -------
    str
        Markdown text.
    """
    lines = [
        "# VQScore (speechbrain-sqe)",
        "",
        "No-reference speech quality: the cosine similarity between a clean-speech VQ-VAE's encoder",
        "output and its nearest code, averaged over frames (Fu et al., ICLR 2024). Higher is better.",
        "",
        "```python",
        "from speechbrain_sqe.inference.vqscore import VQScore",
        'scorer = VQScore.from_hparams(source="<this folder>")',
        'scorer.score_file("speech.wav")',
        "```",
        "",
        "## Training",
        "",
        f"- Data: {train_description}",
        f"- Command: `{command}`",
    ]
    lines += [f"- {key}: {value}" for key, value in training.items()]
    lines += [
        f"- Exported: {datetime.date.today().isoformat()}",
        "",
        "## Measured on the embedded test split (noisy files)",
        "",
        f"Clean above its noisy version in {100 * report['clean_above_noisy']:.1f}% of {report['n']} pairs.",
        "",
        "| metric | Pearson | Spearman | Kendall |",
        "|---|---|---|---|",
    ]
    for metric, corr in report["overall"].items():
        lines.append(f"| {metric} | {corr['pearson']:.3f} | {corr['spearman']:.3f} | {corr['kendall']:.3f} |")
    lines += ["", "Full report (JSON):", "", "```json", json.dumps(report["overall"], indent=1), "```", ""]
    return "\n".join(lines)


TERA_HPARAMS = """\
# TERA: self-supervised speech representations (Liu et al., 2021), pretrained with
# speechbrain-sqe's hparams/tera.yaml.
#   from speechbrain_sqe.inference.tera import TERA
#   tera = TERA.from_hparams(source="<this folder or a hub id>")
#   states = tera.hidden_states_file("speech.wav")   # num_layers + 1 tensors [1, frames, hidden]

sample_rate: {sample_rate}
# Shorter files are refused with a clear error.
min_seconds: {min_seconds}

tera: !new:speechbrain_sqe.lobes.tera.TERAModel
{model_kwargs}
modules:
    tera: !ref <tera>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        tera: !ref <tera>   # read from tera.ckpt beside this file
"""


def build_tera_hub(model, output_folder, card=None, min_seconds=0.05):
    """Writes a hub-ready TERA folder for ``model`` (hyperparams.yaml, tera.ckpt, README.md).

    Arguments
    ---------
    model : speechbrain_sqe.lobes.tera.TERAModel
        The trained model (its ``config`` gives the constructor arguments).
    output_folder : str
        The folder to write (created).
    card : str, optional
        The model card (README.md); a minimal one is written when None.
    min_seconds : float
        Shortest audio the interface accepts.

    Returns
    -------
    str
        ``output_folder``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.lobes.tera import TERAModel
    >>> model = TERAModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    >>> folder = build_tera_hub(model, tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['README.md', 'hyperparams.yaml', 'tera.ckpt']
    """
    hparams = TERA_HPARAMS.format(
        sample_rate=model.config["sample_rate"], min_seconds=min_seconds,
        model_kwargs=_yaml_kwargs(model.config),
    )
    card = card or "# TERA model\n\nPretrained with speechbrain-sqe (hparams/tera.yaml).\n"
    return write_hub_folder(output_folder, hparams, {"tera": model}, card)


def tera_model_card(config, curve, train_description, training, command):
    """Writes the model card text of a pretrained TERA model.

    Arguments
    ---------
    config : dict
        The model's constructor arguments (``TERAModel.config``).
    curve : list of dict
        Per-epoch ``{"epoch", "train_loss", "valid_loss"}`` rows.
    train_description : str
        What the model was trained on.
    training : dict
        Training facts (epochs, augmentation, seed...).
    command : str
        The command that trained it.

    Returns
    -------
    str
        Markdown text.

    Example
    -------
    >>> card = tera_model_card({"hidden_size": 192}, [{"epoch": 1, "train_loss": 0.9, "valid_loss": 0.8}],
    ...                        "clean speech", {"seed": 1}, "python train.py hparams/tera.yaml")
    >>> "| 1 | 0.9000 | 0.8000 |" in card
    True
    """
    lines = [
        "# TERA (speechbrain-sqe)",
        "",
        "Self-supervised speech representations: a Transformer encoder pretrained to reconstruct",
        "log-mel features altered in time, frequency and magnitude (Liu et al., 2021).",
        "",
        "```python",
        "from speechbrain_sqe.inference.tera import TERA",
        'tera = TERA.from_hparams(source="<this folder>")',
        'states = tera.hidden_states_file("speech.wav")  # num_layers + 1 tensors [1, frames, hidden]',
        "```",
        "",
        "## Model",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in config.items()]
    lines += ["", "## Training", "", f"- Data: {train_description}", f"- Command: `{command}`"]
    lines += [f"- {key}: {value}" for key, value in training.items()]
    lines += [
        f"- Exported: {datetime.date.today().isoformat()}",
        "",
        "## Loss curve (masked L1 on the altered positions)",
        "",
        "| epoch | train loss | valid loss |",
        "|---|---|---|",
    ]
    for row in curve:
        lines.append(f"| {row['epoch']} | {row['train_loss']:.4f} | {row['valid_loss']:.4f} |")
    return "\n".join(lines) + "\n"


VQ_ENHANCER_HPARAMS = """\
# VQ-VAE speech enhancer trained on clean speech only, with self-distillation under
# adversarial attack (Fu et al., ICLR 2024), trained with speechbrain-sqe's hparams/vq_enhance.yaml.
#   from speechbrain_sqe.inference.vq_enhancer import VQEnhancer
#   enhancer = VQEnhancer.from_hparams(source="<this folder or a hub id>")
#   enhancer.enhance_file("noisy.wav", output_path="enhanced.wav")

sample_rate: {sample_rate}
n_fft: {n_fft}
hop_length: {hop_length}
# Default fraction of the noisy input blended into the output (0: enhanced only);
# enhance_batch/enhance_file(mix=...) and `sqe enhance --mix` override it.
mix: {mix}
# Shorter files are refused with a clear error.
min_seconds: {min_seconds}

vqvae: !new:speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel
{model_kwargs}
modules:
    vqvae: !ref <vqvae>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        vqvae: !ref <vqvae>   # read from vqvae.ckpt beside this file
"""


def build_vq_enhancer_hub(model, output_folder, sample_rate=16000, n_fft=512, hop_length=128, mix=0.0,
                          min_seconds=0.1, card=None, extra_files=None):
    """Writes a hub-ready VQEnhancer folder for ``model``.

    Arguments
    ---------
    model : speechbrain_sqe.lobes.vqvae_se.VQVAEEnhancementModel
        The trained model (its ``config`` gives the constructor arguments).
    output_folder : str
        The folder to write (created).
    sample_rate, n_fft, hop_length : int
        The front end the model was trained with.
    mix : float
        The default fraction of the input blended into the output.
    min_seconds : float
        Shortest audio the interface accepts.
    card : str, optional
        The model card (README.md); a minimal one is written when None.
    extra_files : list of str, optional
        Files copied beside the model (plots the card shows).

    Returns
    -------
    str
        ``output_folder``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    >>> sorted(os.listdir(build_vq_enhancer_hub(model, tempfile.mkdtemp())))
    ['README.md', 'hyperparams.yaml', 'vqvae.ckpt']
    """
    import shutil

    config = dict(model.config)
    config["sync_distributed"] = False  # inference: never wait for other processes
    hparams = VQ_ENHANCER_HPARAMS.format(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, mix=float(mix),
        min_seconds=min_seconds, model_kwargs=_yaml_kwargs(config),
    )
    card = card or "# VQ enhancer\n\nTrained with speechbrain-sqe (hparams/vq_enhance.yaml).\n"
    write_hub_folder(output_folder, hparams, {"vqvae": model}, card)
    for path in extra_files or []:
        shutil.copy(path, output_folder)
    return output_folder
