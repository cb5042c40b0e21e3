"""Hyperparams files are code: every entry point refuses what its policy does not allow.

The matrix: each dangerous tag in ``CASES`` x each entry point in ``ENTRY_POINTS`` (the three
interfaces' ``from_hparams``, ``train.main`` with the tag in the recipe and in a command-line
override, and the three CLI commands that load a model). The CLI runs in-process for the matrix
(one subprocess per command checks the real exit status); its traceback/one-line format is not
asserted, only a non-zero exit and the tag's name.
"""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_tera_hub, build_vq_enhancer_hub, build_vqscore_hub
from hyperpyyaml import load_hyperpyyaml
from recipe_args import ROOT

import train
from speechbrain_sqe import cli
from speechbrain_sqe.inference.encoders import TERA
from speechbrain_sqe.inference.enhancement import VQEnhancer
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.tera import TERAModel
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel
from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
from speechbrain_sqe.utils.safe_load import (
    HUB_POLICY,
    RECIPE_POLICY,
    UnsafeHyperparamsError,
    check_hyperparams_file,
    find_untrusted_tags,
)

RECIPE = os.path.join(ROOT, "hparams", "vqscore.yaml")

# id: (YAML value with {tmp} for the test folder, text the refusal must name). Those that would
# run write {tmp}/pwned, which must not exist afterwards.
CASES = {
    "torch.save": ("!apply:torch.save [1, '{tmp}/pwned']", "!apply:torch.save"),
    "torch.load": ("!apply:torch.load ['{tmp}/x.pt']", "!apply:torch.load"),
    "torch.hub.load": ("!apply:torch.hub.load {{repo_or_dir: '{tmp}/repo', model: m, source: local}}",
                       "!apply:torch.hub.load"),
    "cpp_extension": ("!name:torch.utils.cpp_extension.load_inline", "torch.utils.cpp_extension.load_inline"),
    "ops.load_library": ("!apply:torch.ops.load_library ['{tmp}/lib.so']", "torch.ops.load_library"),
    "classes.load_library": ("!apply:torch.classes.load_library ['{tmp}/lib.so']",
                             "torch.classes.load_library"),
    "jit.load": ("!apply:torch.jit.load ['{tmp}/x.pt']", "torch.jit.load"),
    "torch.package": ("!new:torch.package.PackageImporter ['{tmp}/x.pt']", "torch.package.PackageImporter"),
    "os.system": ("!apply:os.system ['touch {tmp}/pwned']", "!apply:os.system"),
    "subprocess": ("!new:subprocess.Popen [[touch, '{tmp}/pwned']]", "!new:subprocess.Popen"),
    "exec": ("!apply:exec [\"open('{tmp}/pwned', 'w')\"]", "!apply:exec"),
    # An allowed module's import of torch, reached through the allowed prefix.
    "module-alias": ("!apply:speechbrain_sqe.lobes.vqvae.torch.save [1, '{tmp}/pwned']",
                     "speechbrain_sqe.lobes.vqvae.torch.save"),
    # HyperPyYAML calls !applyref: while it resolves references.
    "applyref": ("!applyref:os.system ['touch {tmp}/pwned']", "!applyref:os.system"),
    # A tuple-like string is parsed with PyYAML's unsafe loader.
    "python-in-tuple": ("(!!python/object/apply:os.system ['touch {tmp}/pwned'],)",
                        "!!python/object/apply:os.system"),
}


def _speech(path, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    wav = 0.1 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(t.size)
    soundfile.write(path, wav.astype(np.float32), 16000)
    return str(path)


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    """Small hub folders written by the export functions."""
    root = tmp_path_factory.mktemp("hubs")
    torch.manual_seed(0)
    return {
        "vqscore": build_vqscore_hub(VQVAEQualityModel(codebook_size=16), str(root / "vqscore")),
        "vq_enhancer": build_vq_enhancer_hub(
            VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8, sync_distributed=False),
            str(root / "vq_enhancer")),
        "tera": build_tera_hub(
            TERAModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), str(root / "tera")),
    }


def _bad_folder(hubs, kind, line, tmp_path):
    folder = tmp_path / f"bad_{kind}"
    shutil.copytree(hubs[kind], folder)
    with open(folder / "hyperparams.yaml", "a", encoding="utf-8") as stream:
        stream.write(f"\npwn: {line}\n")
    return str(folder)


def _cli(argv, capsys):
    """Runs the CLI in-process: (exit status, everything it said, the exception's text included)."""
    try:
        status, said = cli.main(argv), ""
    except SystemExit as exit_:
        status, said = exit_.code, ""
    except ValueError as error:  # the traceback path (a one-line message is the other)
        status, said = 1, f"{type(error).__name__}: {error}"
    captured = capsys.readouterr()
    return status, said + captured.err + captured.out


def _from_hparams(interface, kind):
    def run(hubs, line, tmp_path, capsys):
        interface.from_hparams(source=_bad_folder(hubs, kind, line, tmp_path), savedir=str(tmp_path / "save"))
    return run


def _train_file(hubs, line, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    with open(RECIPE, encoding="utf-8") as stream:
        recipe.write_text(stream.read() + f"\npwn: {line}\n")
    train.main([str(recipe), f"--output_folder={tmp_path}/out"])


def _train_override(hubs, line, tmp_path, capsys):
    train.main([RECIPE, f"--output_folder={tmp_path}/out", f"--seed={line}"])


def _cli_entry(command, kind):
    def run(hubs, line, tmp_path, capsys):
        folder = _bad_folder(hubs, kind, line, tmp_path)
        wav = _speech(tmp_path / "u.wav")
        argv = {
            "score": ["score", wav, "--model", folder, "--no-progress"],
            "enhance": ["enhance", wav, "--out-dir", str(tmp_path / "enhanced"), "--model", folder,
                        "--no-progress"],
            "analyze-ssl": ["analyze-ssl", "--model", folder, "--clean", str(tmp_path / "clean"),
                            "--noisy", str(tmp_path / "noisy"), "--output", str(tmp_path / "report"),
                            "--no-progress"],
        }[command]
        for side in ("clean", "noisy"):
            (tmp_path / side).mkdir()
            _speech(tmp_path / side / "p.wav", seed=side == "noisy")
        status, said = _cli(argv, capsys)
        assert status not in (0, None), said
        raise UnsafeHyperparamsError(said)  # the refusal, checked like the others
    return run


ENTRY_POINTS = {
    "VQScore.from_hparams": _from_hparams(VQScore, "vqscore"),
    "VQEnhancer.from_hparams": _from_hparams(VQEnhancer, "vq_enhancer"),
    "TERA.from_hparams": _from_hparams(TERA, "tera"),
    "train.py-recipe": _train_file,
    "train.py-override": _train_override,
    "sqe-score": _cli_entry("score", "vqscore"),
    "sqe-enhance": _cli_entry("enhance", "vq_enhancer"),
    "sqe-analyze-ssl": _cli_entry("analyze-ssl", "tera"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_dangerous_tag_is_refused(entry, case, hubs, tmp_path, capsys):
    value, named = CASES[case]
    line = value.format(tmp=tmp_path)
    (tmp_path / "repo").mkdir()  # a torch.hub repository that would write the marker
    (tmp_path / "repo" / "hubconf.py").write_text(
        f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n\ndef m():\n    return 1\n")
    with pytest.raises(UnsafeHyperparamsError) as refusal:
        ENTRY_POINTS[entry](hubs, line, tmp_path, capsys)
    assert named in str(refusal.value)
    if not entry.startswith("sqe-"):  # the CLI may word it in one line
        assert "trust" in str(refusal.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command,kind", [("score", "vqscore"), ("enhance", "vq_enhancer"),
                                          ("analyze-ssl", "tera")])
def test_cli_process_exits_non_zero(command, kind, hubs, tmp_path):
    folder = _bad_folder(hubs, kind, CASES["torch.save"][0].format(tmp=tmp_path), tmp_path)
    wav = _speech(tmp_path / "u.wav")
    for side in ("clean", "noisy"):
        (tmp_path / side).mkdir()
        _speech(tmp_path / side / "p.wav")
    args = {
        "score": [wav],
        "enhance": [wav, "--out-dir", str(tmp_path / "enhanced")],
        "analyze-ssl": ["--clean", str(tmp_path / "clean"), "--noisy", str(tmp_path / "noisy"),
                        "--output", str(tmp_path / "report")],
    }[command]
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_sqe.cli", command, *args, "--model", folder, "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False, cwd=str(tmp_path),
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode != 0
    assert "!apply:torch.save" in result.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("interface,kind", [(VQScore, "vqscore"), (VQEnhancer, "vq_enhancer"), (TERA, "tera")])
def test_trusted_folder_still_loads(interface, kind, hubs, tmp_path):
    folder = _bad_folder(hubs, kind, "!apply:os.getcwd []", tmp_path)
    with pytest.raises(UnsafeHyperparamsError, match="os.getcwd.*trust_hparams=True"):
        interface.from_hparams(source=folder)
    model = interface.from_hparams(source=folder, trust_hparams=True)
    assert model.hparams.pwn == os.getcwd()


def test_payloads_are_live_when_trusted(hubs, tmp_path):
    """The matrix would notice a regression: trusted, the same lines do run."""
    folder = _bad_folder(hubs, "vqscore", CASES["torch.save"][0].format(tmp=tmp_path), tmp_path)
    VQScore.from_hparams(source=folder, trust_hparams=True)
    assert (tmp_path / "pwned").exists()
    os.remove(tmp_path / "pwned")
    load_hyperpyyaml(f"pwn: {CASES['python-in-tuple'][0].format(tmp=tmp_path)}\n")
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "speechbrain_sqe", "pretrained", "*",
                                                              "hyperparams.yaml"))),
                         ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_shipped_hub_folders_pass_the_hub_policy(path):
    check_hyperparams_file(path)


def test_exported_hub_templates_pass_the_hub_policy(hubs):
    for folder in hubs.values():
        check_hyperparams_file(os.path.join(folder, "hyperparams.yaml"), policy=HUB_POLICY)


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(ROOT, "hparams", "*.yaml"))), ids=os.path.basename)
def test_recipes_pass_the_recipe_policy_only(recipe):
    check_hyperparams_file(recipe, policy=RECIPE_POLICY)
    # A hub folder has no business naming a Brain, an optimizer or a data preparation.
    with pytest.raises(UnsafeHyperparamsError, match="hub policy"):
        check_hyperparams_file(recipe)


@pytest.mark.parametrize("text,refused", [
    ("a: !new:torch.nn.Linear [2, 3]\nw: !name:torch.hann_window", []),
    ("a: !name:speechbrain.nnet.linear.Linear", []),
    # Class attributes (methods) are not constructors: no Pretrainer.collect_files, no Scheduler.save.
    ("a: !apply:speechbrain.utils.parameter_transfer.Pretrainer.collect_files [1]",
     ["!apply:speechbrain.utils.parameter_transfer.Pretrainer.collect_files"]),
    ("a: !apply:speechbrain.nnet.schedulers.NoamScheduler.save [1, x]",
     ["!apply:speechbrain.nnet.schedulers.NoamScheduler.save"]),
    # A re-export lands where it is defined, outside the policy.
    ("a: !name:speechbrain_sqe.brains.vq_enhance.safe_torch_recovery",
     ["!name:speechbrain_sqe.brains.vq_enhance.safe_torch_recovery"]),
    # Lobes that download or unpickle files, private names, modules, python tags.
    ("a: !new:speechbrain.lobes.models.beats.BEATs", ["!new:speechbrain.lobes.models.beats.BEATs"]),
    ("a: !name:torch.nn.modules.module._global_forward_hooks", ["!name:torch.nn.modules.module._global_forward_hooks"]),
    ("a: !name:torch.nn", ["!name:torch.nn"]),
    ("a: !module:os", ["!module:os"]),
    ("a: !!python/name:os.system", ["!!python/name:os.system"]),
    # `!ref <a.b>` is getattr, and an interpolated string can become a tuple.
    ("a: !new:torch.nn.Linear [2, 3]\nb: !ref <a.weight>", ["!apply:getattr"]),
    ("a: '!'\nb: !ref (<a><a>python/object/apply:os.getcwd [],)",
     ["!!python/object/apply:os.getcwd (inside a tuple)"]),
    ("a: !include:other.yaml", ["!include:other.yaml"]),
])
def test_find_untrusted_tags(text, refused):
    assert find_untrusted_tags(text) == refused


def test_recipe_includes_are_checked(tmp_path):
    (tmp_path / "good.yaml").write_text("opt: !name:torch.optim.Adam\n")
    (tmp_path / "bad.yaml").write_text("pwn: !apply:torch.save [1, x]\n")
    main = tmp_path / "main.yaml"
    main.write_text("part: !include:good.yaml\n")
    check_hyperparams_file(str(main), policy=RECIPE_POLICY)
    with pytest.raises(UnsafeHyperparamsError, match="hub policy.*!include:good.yaml"):
        check_hyperparams_file(str(main))
    main.write_text("part: !include:bad.yaml\n")
    with pytest.raises(UnsafeHyperparamsError, match=r"!apply:torch.save \(in bad.yaml\)"):
        check_hyperparams_file(str(main), policy=RECIPE_POLICY)
    main.write_text("part: !include:missing.yaml\n")
    with pytest.raises(UnsafeHyperparamsError, match="missing.yaml"):
        check_hyperparams_file(str(main), policy=RECIPE_POLICY)
