"""`sqe analyze-ssl`: a TERA hub folder over clean/noisy pairs, tables and report files."""

import csv

import pytest
import torch
from hub_folders import build_tera_hub
from speech import add_white_noise, synthesize

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.lobes.tera import TERAModel


@pytest.fixture(scope="module")
def tera_hub(tmp_path_factory):
    torch.manual_seed(0)
    model = TERAModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    return build_tera_hub(model.eval(), str(tmp_path_factory.mktemp("tera_hub")))


@pytest.fixture(scope="module")
def pairs_manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    clean = load_audio(synthesize(folder / "clean.wav")).numpy()
    lines = ["ID,duration,clean_wav,noisy_wav,snr,noise_type,t60,reverb"]
    for index, snr in enumerate((0, 0, 10, 10, 20, 20)):
        noisy = folder / f"noisy{index}.wav"
        save_audio(noisy, add_white_noise(clean, snr, seed=index) * 0.5)
        lines.append(f"u{index},1.0,{folder}/clean.wav,{noisy},{snr},white,0.0,False")
    manifest = folder / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_analyze_ssl_reports_per_layer_and_snr(tera_hub, pairs_manifest, tmp_path, capsys):
    out = tmp_path / "report"
    status = cli.main(["analyze-ssl", "--model", tera_hub, "--pairs", str(pairs_manifest),
                       "--output", str(out), "--batch-size", "4", "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "layer 0" in printed and "layer 2" in printed and "TERA" in printed
    with open(out / "ssl_robustness.csv", newline="", encoding="utf-8") as stream:
        rows = [r for r in csv.DictReader(stream) if r["group"] == "snr" and r["layer"] == "0"]
    cosine = {r["condition"]: float(r["cosine"]) for r in rows}
    # The input representation (layer 0) is closer to clean at higher SNR.
    assert cosine["0"] < cosine["10"] < cosine["20"]
    assert (out / "ssl_robustness_snr.png").stat().st_size > 1000


def test_analyze_ssl_needs_pairs(tera_hub, capsys):
    assert cli.main(["analyze-ssl", "--model", tera_hub]) == 2
    assert "give --pairs" in capsys.readouterr().err


def test_shipped_tera_loads_and_runs(tmp_path):
    """The small TERA shipped in the package loads with from_hparams and gives 4 hidden states."""
    import os

    from speechbrain_sqe.inference.encoders import TERA

    if not os.path.exists(os.path.join(TERA.DEFAULT_SOURCE, "tera.ckpt")):
        pytest.skip("no TERA model shipped in this checkout")
    tera = TERA.from_hparams(source=TERA.DEFAULT_SOURCE, savedir=str(tmp_path / "tera"))
    states = tera.hidden_states(torch.randn(2, 16000) * 0.1, torch.tensor([1.0, 0.5]))
    assert len(states) == 4 and states[0].shape == (2, 101, 192)


def test_manifest_without_id_column_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("clean_wav,noisy_wav\na.wav,b.wav\n")
    assert cli.main(["analyze-ssl", "--pairs", str(manifest), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(manifest) in err and "missing column(s) ID" in err
    missing = tmp_path / "nothing.csv"
    assert cli.main(["analyze-ssl", "--pairs", str(missing), "--output", str(tmp_path / "out")]) == 2
    assert "pairs manifest does not exist" in capsys.readouterr().err


def test_unpairable_and_unreadable_files_are_listed_and_the_rest_analysed(tera_hub, pairs_manifest, tmp_path,
                                                                           capsys):
    """Like `sqe evaluate`: a file without a partner or an unreadable file is listed, the others are
    analysed, and the exit status is 1."""
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    clean.mkdir()
    noisy.mkdir()
    folder = pairs_manifest.parent
    for index in range(3):
        (clean / f"u{index}.wav").write_bytes((folder / "clean.wav").read_bytes())
        (noisy / f"u{index}.wav").write_bytes((folder / f"noisy{index * 2}.wav").read_bytes())
    (clean / "lonely.wav").write_bytes((folder / "clean.wav").read_bytes())  # no noisy partner
    (noisy / "u2.wav").write_bytes(b"RIFF not audio")  # paired, unreadable
    out = tmp_path / "report"
    status = cli.main(["analyze-ssl", "--model", tera_hub, "--clean", str(clean), "--noisy", str(noisy),
                       "--output", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 1
    assert "FAILED lonely.wav" in captured.err and "FAILED u2.wav: unreadable" in captured.err
    assert "2 files or pairs could not be analysed" in captured.err
    with open(out / "ssl_robustness.csv", newline="", encoding="utf-8") as stream:
        overall = [r for r in csv.DictReader(stream) if r["group"] == "overall" and r["layer"] == "0"]
    assert overall and int(overall[0]["n"]) == 2


def test_analyze_ssl_defaults_to_shipped_tera_and_documents_the_report_folder():
    parser = cli.build_parser()
    args = parser.parse_args(["analyze-ssl", "--pairs", "test.csv"])
    assert args.model is None and args.output == "ssl_robustness"
    sub = parser._subparsers._group_actions[0].choices["analyze-ssl"]
    help_text = " ".join(sub.format_help().split())
    assert "default: ssl_robustness/ in the current folder" in help_text
    assert "clean/noisy pairs per batch (default 8)" in help_text
