"""`sqe score`: folders and files, CSV, per-frame outputs and plots, bad files in the exit code."""

import csv
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vqscore_hub

from speechbrain_sqe import cli
from speechbrain_sqe.inference.quality import DEFAULT_MODEL, VQScore
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel


def _tone_speech(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 110 + 80 * rng.random()
    return (0.1 * sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 8))).astype(np.float32)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = VQVAEQualityModel(codebook_size=32)
    model.train()
    model(stft_magnitude(torch.stack([torch.from_numpy(_tone_speech(1.0, s)) for s in range(3)])))
    return build_vqscore_hub(model.eval(), str(tmp_path_factory.mktemp("hub")))


@pytest.fixture
def audio_folder(tmp_path):
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    soundfile.write(folder / "a.wav", _tone_speech(1.2, 1), 16000)
    soundfile.write(folder / "sub" / "b.flac", _tone_speech(0.8, 2), 16000)
    stereo_48k = np.stack([_tone_speech(1.0, 3)] * 2, axis=1)
    soundfile.write(folder / "c_stereo_48k.wav", np.repeat(stereo_48k, 3, axis=0), 48000)
    return folder


def test_scores_folders_into_csv(model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    status = cli.main(["score", str(audio_folder), "--model", model_folder, "--csv", str(out),
                       "--batch-size", "2", "--workers", "0", "--no-progress"])
    assert status == 0
    with open(out, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [os.path.basename(r["path"]) for r in rows] == ["a.wav", "c_stereo_48k.wav", "b.flac"]
    # Each row holds its own file's score (as the Python interface computes it), not another's.
    scorer = VQScore.from_hparams(source=model_folder)
    for row in rows:
        assert float(row["vqscore"]) == pytest.approx(scorer.score_file(row["path"]), abs=1e-5), row
    assert len({round(float(r["vqscore"]), 4) for r in rows}) == 3
    assert abs(float(rows[1]["duration"]) - 1.0) < 0.01  # 48 kHz stereo read as 16 kHz mono
    assert "scored 3 files" in capsys.readouterr().out


def test_bad_file_is_reported_and_fails_the_exit_code(model_folder, audio_folder, tmp_path, capsys):
    (audio_folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    out = tmp_path / "scores.csv"
    status = cli.main(["score", str(audio_folder), "--model", model_folder, "--csv", str(out),
                       "--workers", "0", "--no-progress"])
    assert status == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.wav" in err and "1 of 4 files could not be scored" in err
    with open(out, newline="", encoding="utf-8") as stream:
        assert len(list(csv.DictReader(stream))) == 3


def test_frames_and_plots(model_folder, audio_folder, tmp_path):
    frames = tmp_path / "frames"
    status = cli.main(["score", str(audio_folder / "a.wav"), "--model", model_folder,
                       "--frames", str(frames), "--plot", "--workers", "0", "--no-progress"])
    assert status == 0
    with open(frames / "a.frames.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 + int(1.2 * 16000) // 256
    assert rows[1]["time_s"] == "0.016"
    assert (frames / "a.png").stat().st_size > 5000


def test_no_audio_found(model_folder, tmp_path, capsys):
    assert cli.main(["score", str(tmp_path), "--model", model_folder]) == 1
    assert "no audio files found" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists(os.path.join(DEFAULT_MODEL, "vqvae.ckpt")),
                    reason="no model shipped in this checkout")
def test_console_script_with_the_shipped_model(audio_folder):
    """The installed `sqe` works right after installation, with the model shipped in the package."""
    sqe = os.path.join(os.path.dirname(sys.executable), "sqe")
    result = subprocess.run([sqe, "score", str(audio_folder / "a.wav"), "--no-progress"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "a.wav" in result.stdout


def _rows(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_resume_skips_scored_files_and_drops_a_cut_line(model_folder, audio_folder, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    args = ["score", str(audio_folder), "--model", model_folder, "--csv", str(out), "--batch-size", "1",
            "--no-progress"]
    assert cli.main(args) == 0
    full = {r["path"]: r for r in _rows(out)}
    # An interrupted run: the first file's row with a marker value, then half a line.
    first = str(audio_folder / "a.wav")
    with open(out, "w", encoding="utf-8") as stream:
        stream.write(f"path,vqscore,duration,speech\n{first},0.123456,1.2,yes\n{audio_folder / 'sub'}/b.fl")
    capsys.readouterr()
    assert cli.main([*args, "--resume"]) == 0
    assert "resuming: 1 files already in" in capsys.readouterr().out
    rows = _rows(out)
    assert [r["path"] for r in rows] == list(full)  # input order, each file once
    assert rows[0]["vqscore"] == "0.123456"  # kept, not scored again
    for row in rows[1:]:
        assert row == full[row["path"]]


def test_rows_are_on_disk_after_each_batch(model_folder, audio_folder, tmp_path):
    """A run stopped by an error after its first batch keeps that batch's rows."""
    out = tmp_path / "scores.csv"
    from speechbrain_sqe.inference.batch_scoring import score_files
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV

    table = ScoresCSV(str(out), "vqscore")
    seen = []

    def stop_after_first(batch, bad):
        table.append(batch)
        seen.append(len(_rows(out)))
        raise KeyboardInterrupt

    scorer = VQScore.from_hparams(source=model_folder)
    files = [str(p) for p in sorted(audio_folder.rglob("*.*"))]
    with pytest.raises(KeyboardInterrupt):
        score_files(scorer, files, batch_size=2, progress=False, on_batch=stop_after_first)
    # the first batch: the longest file, a.wav (1.2 s), alone (b c | a: batches of 2, longest first)
    assert seen == [1] and len(_rows(out)) == 1 and _rows(out)[0]["path"].endswith("a.wav")


def test_resume_needs_csv_and_the_same_score(model_folder, audio_folder, tmp_path, capsys):
    assert cli.main(["score", str(audio_folder), "--model", model_folder, "--resume"]) == 2
    assert "--resume needs --csv" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("path,dnsmos_ovrl\nx.wav,3.1\n", encoding="utf-8")
    assert cli.main(["score", str(audio_folder), "--model", model_folder, "--csv", str(other),
                     "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(other) in err[0] and "dnsmos_ovrl" in err[0]
    assert other.read_text(encoding="utf-8") == "path,dnsmos_ovrl\nx.wav,3.1\n"  # untouched


def test_full_disk_keeps_the_rows_written_and_says_so_in_one_line(model_folder, audio_folder, tiny_disk, capsys):
    out = tiny_disk / "scores.csv"
    with open(tiny_disk / "filler", "wb") as stream:  # leave one 4 kB block free
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        stream.write(b"0" * (free - 4096))
    for index in range(30):  # rows of about 230 bytes: the block fills up after about 17
        soundfile.write(audio_folder / f"more_{index:02d}_{'x' * 180}.wav", _tone_speech(0.3, 10 + index), 16000)
    status = cli.main(["score", str(audio_folder), "--model", model_folder, "--csv", str(out),
                       "--batch-size", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert str(out) in err[0] and "No space left on device" in err[0] and "rows written before are kept" in err[0]
    rows = _rows(out)
    assert 1 <= len(rows) < 33
    for row in rows:  # every line complete
        assert -1 <= float(row["vqscore"]) <= 1 and row["speech"] == "yes"


def test_csv_must_be_a_regular_file(model_folder, audio_folder, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert cli.main(["score", str(audio_folder), "--model", model_folder, "--csv", str(fifo)]) == 2
    assert f"{fifo}: not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_resume_cuts_a_half_line_before_appending(tmp_path):
    from speechbrain_sqe.inference.scoring_outputs import ScoresCSV

    out = tmp_path / "scores.csv"
    out.write_text("path,vqscore,duration,speech\na.wav,0.5,1.0,yes\nb.wav,0.4", encoding="utf-8")
    table = ScoresCSV(str(out), "vqscore", resume=True)
    assert table.done == {"a.wav"}
    table.append([{"path": "b.wav", "vqscore": 0.25, "duration": 2.0, "speech": True}])
    # On disk before any final rewrite: whole lines only, as a second interruption would leave it.
    assert out.read_text(encoding="utf-8") == "path,vqscore,duration,speech\na.wav,0.5,1.0,yes\nb.wav,0.25,2.0,yes\n"


def test_unwritable_frames_folder_is_one_line(model_folder, audio_folder, capsys):
    if not os.path.isdir("/sys/fs"):
        pytest.skip("needs Linux's read-only /sys")
    status = cli.main(["score", str(audio_folder / "a.wav"), "--model", model_folder, "--frames",
                       "/sys/fs/sqe_frames", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "/sys/fs/sqe_frames" in err[0], err


def test_a_file_the_model_cannot_take_fails_alone(model_folder, audio_folder):
    """A batch that raises is scored file by file; only the file that raises again fails."""
    from speechbrain_sqe.inference.batch_scoring import score_files

    scorer = VQScore.from_hparams(source=model_folder)
    files = [str(audio_folder / "a.wav"), str(audio_folder / "sub" / "b.flac"), str(audio_folder / "c_stereo_48k.wav")]
    expected = {r["path"]: r["vqscore"] for r in score_files(scorer, files, batch_size=3, progress=False)[0]}
    real = scorer.score_batch
    refused = round(0.8 * 16000)  # b.flac's length: the model "cannot take" it

    def fails_on_b(wavs, lens=None):
        if any(round(float(length) * wavs.shape[-1]) == refused for length in (lens if lens is not None else [1.0])):
            raise RuntimeError("injected fault")
        return real(wavs, lens)

    scorer.score_batch = fails_on_b
    results, failures = score_files(scorer, files, batch_size=3, progress=False)
    assert failures == [(files[1], "cannot score: injected fault")]
    assert {r["path"]: r["vqscore"] for r in results} == pytest.approx(
        {p: v for p, v in expected.items() if p != files[1]}, abs=1e-5)
