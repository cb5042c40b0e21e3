"""The quality report: cached reference metrics, correlations per condition, files written."""

import json
import os

import numpy as np
from speech import add_white_noise, synthesize

from speechbrain_sqe.analysis.quality_report import (
    load_reference_metrics,
    write_quality_report,
)
from speechbrain_sqe.dataio.audio import load_audio, save_audio


def _pairs_manifest(folder):
    clean = load_audio(synthesize(folder / "speech.wav")).numpy()
    lines = ["ID,duration,clean_wav,noisy_wav,snr,noise_type,reverb"]
    for index, snr in enumerate((0, 5, 10, 20)):
        noisy = folder / f"noisy{index}.wav"
        save_audio(noisy, add_white_noise(clean, snr, seed=index) * 0.5)
        lines.append(f"u{index},1.0,{folder}/speech.wav,{noisy},{snr},white,False")
    manifest = folder / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_reference_metrics_are_cached_and_invalidated(tmp_path):
    manifest = _pairs_manifest(tmp_path)
    cache = tmp_path / "cache.csv"
    first = load_reference_metrics(str(manifest), str(cache), ["pesq_wb"], jobs=1)
    assert [round(first[f"u{i}"]["pesq_wb"], 2) for i in range(4)] == sorted(
        round(first[f"u{i}"]["pesq_wb"], 2) for i in range(4))
    mtime = cache.stat().st_mtime_ns
    assert load_reference_metrics(str(manifest), str(cache), ["pesq_wb"]) == first
    assert cache.stat().st_mtime_ns == mtime  # reused, not recomputed
    # Regenerated audio (same IDs, new content) must be rescored, not read from the cache.
    save_audio(tmp_path / "noisy0.wav", load_audio(tmp_path / "speech.wav"))
    os.utime(tmp_path / "noisy0.wav", ns=(mtime + 10**9, mtime + 10**9))
    again = load_reference_metrics(str(manifest), str(cache), ["pesq_wb"])
    assert again["u0"]["pesq_wb"] > first["u3"]["pesq_wb"]


def test_reference_metrics_survive_a_linked_folder(tmp_path):
    """The same files named through a link (a moved or linked data folder) reuse the cached values."""
    folder = tmp_path / "data"
    folder.mkdir()
    manifest = _pairs_manifest(folder)
    cache = tmp_path / "cache.csv"
    first = load_reference_metrics(str(manifest), str(cache), ["stoi"], jobs=1)
    os.symlink(folder, tmp_path / "link")
    linked = tmp_path / "linked.csv"
    linked.write_text(manifest.read_text().replace(str(folder), str(tmp_path / "link")))
    mtime = cache.stat().st_mtime_ns
    assert load_reference_metrics(str(linked), str(cache), ["stoi"]) == first
    assert cache.stat().st_mtime_ns == mtime  # reused, not recomputed


def test_report_files_and_correlations(tmp_path):
    manifest = _pairs_manifest(tmp_path)
    reference = load_reference_metrics(str(manifest), str(tmp_path / "cache.csv"), ["pesq_wb"])
    # A score that follows the SNR perfectly: Spearman 1 with PESQ, clean always above noisy.
    scores = {f"u{i}": {"vqscore_noisy": 0.5 + 0.1 * i, "vqscore_clean": 0.95} for i in range(4)}
    out = tmp_path / "report"
    summary = write_quality_report(scores, reference, str(manifest), str(out))
    assert summary["clean_above_noisy"] == 1.0
    assert np.isclose(summary["overall"]["pesq_wb"]["spearman"], 1.0)
    assert set(summary["per_condition"]["snr"]) == {"0", "5", "10", "20"}
    assert json.loads((out / "correlations.json").read_text())["n"] == 4
    assert "| pesq_wb | " in (out / "correlations.md").read_text()
    assert (out / "scatter.png").stat().st_size > 1000
