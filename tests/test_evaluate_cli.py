"""Tests of ``sqe evaluate`` (in-process through ``cli.main`` and once via the console script)."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from speech import synthesize

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.audio import load_audio, save_audio
from speechbrain_sqe.metrics import dnsmos as dnsmos_module
from speechbrain_sqe.metrics import runner

SENTENCES = {
    "a.wav": "The birch canoe slid on the smooth planks.",
    "b.wav": "Glue the sheet to the dark blue background.",
    "sub/c.wav": "It is easy to tell the depth of a well.",
}
PESQ_WB = 1.0832337
PESQ_NB = 1.6072081



def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """clean/ and enhanced/ with three good pairs (one in a subfolder) and problem files."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for name, text in SENTENCES.items():
        raw = root / "raw" / name.replace("/", "_")
        raw.parent.mkdir(parents=True, exist_ok=True)
        synthesize(raw, text)
        clean = load_audio(raw, sample_rate=16000).numpy()
        noise = rng.standard_normal(clean.shape[0]) * np.sqrt(np.mean(clean**2) / 10)  # 10 dB
        save_audio(str(root / "clean" / name), clean, 16000)
        save_audio(str(root / "enhanced" / name), clean + noise, 16000)
    first = load_audio(root / "clean" / "a.wav").numpy()
    save_audio(str(root / "clean" / "only_clean.wav"), first, 16000)  # no enhanced partner
    save_audio(str(root / "enhanced" / "extra.wav"), first, 16000)  # no clean partner
    save_audio(str(root / "clean" / "short.wav"), first[:3200], 16000)  # 0.2 s
    save_audio(str(root / "enhanced" / "short.wav"), first[:3200], 16000)
    save_audio(str(root / "clean" / "corrupt.wav"), first, 16000)
    (root / "enhanced" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    save_audio(str(root / "clean" / "silent.wav"), first, 16000)
    save_audio(str(root / "enhanced" / "silent.wav"), np.zeros_like(first), 16000)
    (root / "enhanced" / "notes.txt").write_text("not audio: ignored")
    return root


def good_pairs(corpus):
    refs = [str(corpus / "clean" / name) for name in SENTENCES]
    degs = [str(corpus / "enhanced" / name) for name in SENTENCES]
    return refs, degs


def test_known_pesq_values_in_process(shared_real, tmp_path, capsys):
    folder = os.path.join(shared_real, "pairs", "pesq_reference")
    out = tmp_path / "scores.csv"
    status = cli.main([
        "evaluate", "--ref", os.path.join(folder, "speech.wav"),
        "--deg", os.path.join(folder, "speech_bab_0dB.wav"),
        "--metrics", "pesq_wb", "pesq_nb", "--csv", str(out), "--no-progress",
    ])
    assert status == 0
    _, rows = read_csv(out)
    assert len(rows) == 1 and rows[0]["file"] == "speech_bab_0dB.wav"
    assert float(rows[0]["pesq_wb"]) == pytest.approx(PESQ_WB, abs=1e-6)
    assert float(rows[0]["pesq_nb"]) == pytest.approx(PESQ_NB, abs=1e-6)
    assert "| pesq_wb | 1.0832 |" in capsys.readouterr().out


def test_known_pesq_value_through_the_console_script(shared_real, tmp_path):
    script = shutil.which("sqe") or os.path.join(os.path.dirname(sys.executable), "sqe")
    if not os.path.exists(script):
        pytest.skip("the sqe console script is not installed")
    folder = os.path.join(shared_real, "pairs", "pesq_reference")
    out = tmp_path / "scores.csv"
    done = subprocess.run(
        [script, "evaluate", "--ref", os.path.join(folder, "speech.wav"),
         "--deg", os.path.join(folder, "speech_bab_0dB.wav"), "--metrics", "pesq_wb",
         "--csv", str(out)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _, rows = read_csv(out)
    assert float(rows[0]["pesq_wb"]) == pytest.approx(PESQ_WB, abs=1e-6)
    assert "evaluate" in done.stderr  # the progress bar


def test_folders_pair_by_name_and_problems_are_listed(corpus, tmp_path, capsys):
    out, failures_out = tmp_path / "scores.csv", tmp_path / "failures.csv"
    status = cli.main([
        "evaluate", "--ref", str(corpus / "clean"), "--deg", str(corpus / "enhanced"),
        "--metrics", "stoi", "si_sdr", "--csv", str(out), "--failures-csv", str(failures_out),
        "--no-progress",
    ])
    assert status == 1
    columns, rows = read_csv(out)
    assert columns == ["file", "ref", "deg", "duration_s", "stoi", "si_sdr"]
    assert [row["file"] for row in rows] == ["a.wav", "b.wav", "silent.wav", "sub/c.wav"]
    for row in rows:
        assert os.path.basename(row["ref"]) == os.path.basename(row["deg"])
    silent = rows[2]
    assert silent["si_sdr"] == ""  # the failed metric is blank, the row is kept
    assert 8.0 < float(rows[0]["si_sdr"]) < 12.0  # 10 dB white noise
    printed = capsys.readouterr().out
    for expected in ("only_clean.wav [unpaired_ref]", "extra.wav [unpaired_deg]",
                     "corrupt.wav [unreadable]", "short.wav [too_short]",
                     "silent.wav [metric_error]"):
        assert expected in printed
    assert "notes.txt" not in printed
    _, failures = read_csv(failures_out)
    assert {(f["file"], f["reason"]) for f in failures} == {
        ("corrupt.wav", "unreadable"), ("extra.wav", "unpaired_deg"),
        ("only_clean.wav", "unpaired_ref"), ("short.wav", "too_short"),
        ("silent.wav", "metric_error"),
    }
    corrupt = next(f for f in failures if f["file"] == "corrupt.wav")
    assert "corrupt.wav" in corrupt["message"]  # names the file


def test_jobs_two_gives_the_numbers_of_jobs_one(corpus, tmp_path):
    refs, degs = good_pairs(corpus)
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}.csv"
        assert cli.main(["evaluate", "--ref", *refs, "--deg", *degs, "--jobs", str(jobs),
                         "--csv", str(out), "--no-progress"]) == 0
        results[jobs] = read_csv(out)
    columns, rows = results[1]
    assert columns[4:] == ["pesq_wb", "stoi", "estoi", "si_sdr", "csig", "cbak", "covl"]
    assert [r["file"] for r in rows] == ["a.wav", "b.wav", "c.wav"]  # lists pair by base name
    assert results[2][0] == columns
    # Same numbers; compared at 1e-12 relative, as numpy's SIMD sums may differ in the last bit
    # with the memory alignment of the arrays (seen once in ESTOI), not with the process.
    for one, two in zip(rows, results[2][1]):
        assert [one[c] for c in columns[:4]] == [two[c] for c in columns[:4]]
        for column in columns[4:]:
            assert float(two[column]) == pytest.approx(float(one[column]), rel=1e-12, abs=1e-12)


def test_dnsmos_is_skipped_with_a_message_when_unavailable(corpus, tmp_path, capsys, monkeypatch):
    def unavailable():
        raise dnsmos_module.DnsmosUnavailableError(
            f"DNSMOS needs speechmos. Install the evaluation extra: {dnsmos_module.INSTALL_HINT}"
        )

    monkeypatch.setattr(dnsmos_module, "_load_speechmos", unavailable)
    refs, degs = good_pairs(corpus)
    out = tmp_path / "scores.csv"
    status = cli.main(["evaluate", "--ref", refs[0], "--deg", degs[0], "--metrics", "si_sdr",
                       "dnsmos_ovrl", "dnsmos_sig", "--csv", str(out), "--no-progress"])
    assert status == 0
    err = capsys.readouterr().err
    assert "skipping dnsmos_ovrl, dnsmos_sig" in err and "pip install speechbrain-sqe[eval]" in err
    assert read_csv(out)[0][4:] == ["si_sdr"]
    with pytest.raises(dnsmos_module.DnsmosUnavailableError):
        runner.evaluate(None, degs[0], ["dnsmos_ovrl"], progress=False)


def test_usage_errors_exit_2(corpus, capsys):
    refs, degs = good_pairs(corpus)
    assert cli.main(["evaluate", "--ref", refs[0], "--deg", degs[0], "--metrics", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err
    assert cli.main(["evaluate", "--deg", degs[0], "--metrics", "stoi"]) == 2
    assert "need reference files" in capsys.readouterr().err
    assert cli.main([]) == 2
    clash = [str(corpus / "clean" / "a.wav"), str(corpus / "enhanced" / "a.wav")]
    assert cli.main(["evaluate", "--ref", *clash, "--deg", degs[0]]) == 2
    assert "two reference files are named 'a.wav'" in capsys.readouterr().err


def test_summary_and_runner_api(corpus):
    refs, degs = good_pairs(corpus)
    result = runner.evaluate(refs, degs, ["si_sdr", "stoi"], progress=False)
    assert result.ok and len(result.rows) == 3
    summary = runner.summarize(result.rows, result.metrics)
    assert [entry["metric"] for entry in summary] == ["si_sdr", "stoi"]
    assert all(entry["n"] == 3 for entry in summary)
    si_sdr = [row["si_sdr"] for row in result.rows]
    assert summary[0]["mean"] == pytest.approx(np.mean(si_sdr))
    assert summary[0]["std"] == pytest.approx(np.std(si_sdr))
    table = runner.format_summary(summary)
    assert table.splitlines()[0].startswith("| metric")


def test_resume_of_a_run_with_a_failed_metric_still_reports_it(corpus, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    args = ["evaluate", "--ref", str(corpus / "clean"), "--deg", str(corpus / "enhanced"),
            "--metrics", "stoi", "si_sdr", "--csv", str(out), "--no-progress"]
    assert cli.main(args) == 1
    first = out.read_bytes()
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 1  # nothing left to score, but silent.wav has no si_sdr
    printed = capsys.readouterr().out
    assert "resuming" in printed and "4 file(s) already scored are kept" in printed
    assert "silent.wav [metric_error]" in printed and "no si_sdr in the resumed CSV" in printed
    assert "4 of 6 paired files scored" in printed  # short.wav and corrupt.wav are retried, and fail again
    assert "corrupt.wav [unreadable]" in printed
    assert out.read_bytes() == first


def test_evaluate_option_errors_are_one_line(corpus, tmp_path, capsys):
    base = ["evaluate", "--deg", str(corpus / "enhanced" / "a.wav"), "--ref", str(corpus / "clean" / "a.wav"),
            "--metrics", "pesq_wb", "--no-progress"]
    assert cli.main([*base, "--resume"]) == 2
    assert capsys.readouterr().err == "sqe evaluate: --resume needs --csv (the file whose rows are kept)\n"
    assert cli.main([*base, "--pesq-segment", "90"]) == 2
    assert capsys.readouterr().err == "sqe evaluate: PESQ segments must last 1 to 60 s, not 90\n"
