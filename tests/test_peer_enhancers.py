"""The peer enhancers of the benchmark (noisereduce, pyroomacoustics Wiener, RNNoise) and the
benchmark script end to end on two synthetic pairs with a tiny untrained VQ enhancer, and with any
enhancer (a tiny untrained BSSE) and its dry reference."""

import csv
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
RATE = 16000


def load_benchmark_module(name):
    """Imports ``benchmarks/<name>.py`` (``benchmarks`` is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


peers = load_benchmark_module("peer_enhancers")
#: Python module needed by each peer (for importorskip).
PEER_MODULES = {"noisereduce": "noisereduce", "wiener": "pyroomacoustics", "rnnoise": "pyrnnoise"}


def speech_like(seconds, rate=RATE, seed=0):
    """A voiced, speech-like signal: a gliding harmonic tone with a syllabic envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 3 * t + 6 * rng.random())
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return 0.1 * voiced * envelope


def noisy_example(noise_std=0.01, seed=0):
    """(clean, noisy, silent): 0.5 s silence, 1 s speech-like sound, 1 s silence, 1 s speech-like
    sound, plus stationary white noise throughout; ``silent`` is a slice of the second silence,
    0.3 s after the speech (the Wiener filter only adapts once it has heard speech)."""
    gap = np.zeros(RATE)
    clean = np.concatenate([gap[:RATE // 2], speech_like(1.0, seed=seed), gap, speech_like(1.0, seed=seed + 1)])
    noise = np.random.default_rng(seed + 2).standard_normal(clean.shape[0]) * noise_std
    silent = slice(int(1.8 * RATE), int(2.45 * RATE))
    return torch.tensor(clean, dtype=torch.float32), torch.tensor(clean + noise, dtype=torch.float32), silent


def lag(reference, estimate, max_lag=800):
    """Shift (samples) of ``estimate`` behind ``reference`` maximising their correlation."""
    from scipy.signal import correlate, correlation_lags

    ref, est = reference.numpy().astype(np.float64), estimate.numpy().astype(np.float64)
    values = correlate(est, ref, mode="full", method="fft")
    lags = correlation_lags(len(est), len(ref), mode="full")
    keep = np.abs(lags) <= max_lag
    return int(lags[keep][np.argmax(values[keep])])


@pytest.mark.parametrize("name", sorted(peers.PEERS))
def test_peer_reduces_noise_keeps_length_speech_and_alignment(name):
    pytest.importorskip(PEER_MODULES[name])
    clean, noisy, silent = noisy_example()
    enhanced = peers.PEERS[name](noisy)
    assert enhanced.shape == noisy.shape and enhanced.dtype == torch.float32
    assert torch.isfinite(enhanced).all()
    # White noise in the silent stretch: at least 3 dB less (noisereduce and RNNoise remove far
    # more; the Wiener filter about 8 dB).
    assert enhanced[silent].pow(2).mean() < 0.5 * noisy[silent].pow(2).mean()
    # The speech survives within 10 dB (noisereduce's default gate takes about 6 dB off it; the
    # others keep its level) and stays aligned with the input (the peers' delays compensated).
    speech = clean.abs() > 0
    assert enhanced[speech].pow(2).mean() > 0.1 * clean[speech].pow(2).mean()
    assert enhanced[speech].pow(2).mean() < 2.0 * noisy[speech].pow(2).mean()
    assert abs(lag(clean, enhanced)) <= 2


@pytest.mark.parametrize("name", sorted(peers.PEERS))
def test_peer_accepts_odd_lengths_and_silence(name):
    pytest.importorskip(PEER_MODULES[name])
    for wav in (torch.zeros(RATE // 2), torch.randn(12345) * 0.01):
        out = peers.PEERS[name](wav)
        assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_missing_package_names_the_bench_extra(monkeypatch):
    real_import = peers.importlib.import_module

    def fake_import(name, *args):
        if name == "noisereduce":
            raise ImportError("No module named 'noisereduce'")
        return real_import(name, *args)

    monkeypatch.setattr(peers.importlib, "import_module", fake_import)
    with pytest.raises(ImportError, match=r"pip install -e \.\[bench\]"):
        peers.noisereduce_enhance(torch.zeros(RATE))
    assert "pip install -e .[bench]" in peers.check_peers(["noisereduce"])["noisereduce"]


def test_benchmark_end_to_end(tmp_path):
    from hub_folders import build_vq_enhancer_hub

    from speechbrain_sqe.dataio.audio import load_audio, save_audio
    from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel

    bench = load_benchmark_module("bench_enhance_peers")
    model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    hub = build_vq_enhancer_hub(model, str(tmp_path / "hub"))
    data = tmp_path / "embedded"
    rows = []
    for index, snr in enumerate((5.0, 0.0)):
        clean = speech_like(1.2, seed=index)
        noise = np.random.default_rng(10 + index).standard_normal(clean.shape[0])
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr / 10))
        uid = f"test_{index:04d}"
        paths = {kind: str(data / "test" / kind / f"{uid}.wav") for kind in ("clean", "noisy")}
        save_audio(paths["clean"], clean, RATE)
        save_audio(paths["noisy"], clean + noise, RATE)
        rows.append({"ID": uid, "duration": 1.2, "clean_wav": paths["clean"], "noisy_wav": paths["noisy"],
                     "snr": snr, "noise_type": "white", "t60": 0.0, "reverb": False, "voice": "", "text": ""})
    with open(data / "test.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    out = tmp_path / "out"
    results = bench.main([
        "--embedded", str(data), "--model", hub, "--out", str(out), "--sets", "embedded",
        "--mix", "0.5", "--metrics", "pesq_wb", "si_sdr", "--no-dnsmos", "--jobs", "1", "--no-progress",
        "--threads", "1",
    ])
    available = [name for name in peers.PEERS if not peers.check_peers([name])[name]]
    systems = ["noisy", "vq", "vq+mix0.5"] + available
    summary = results["embedded"]
    assert [row["system"] for row in summary] == systems
    assert all(row["n"] == 2 and row["rtf"] >= 0 for row in summary)
    by_name = {row["system"]: row for row in summary}
    assert np.isfinite(by_name["vq"]["vqscore"])
    # The reported PESQ of each system is the mean of PESQ(clean, that system's output) over the pairs.
    from speechbrain_sqe.metrics.registry import compute_metrics

    for name in ("noisy", "vq"):
        pesq = [compute_metrics(load_audio(row["clean_wav"], RATE, warn=False),
                                load_audio(str(out / "embedded" / name / f"{row['ID']}.wav"), RATE, warn=False),
                                ["pesq_wb"])["pesq_wb"] for row in rows]
        assert by_name[name]["pesq_wb"] == pytest.approx(np.mean(pesq), abs=1e-3), name
    for name in systems:
        for row in rows:
            enhanced = load_audio(str(out / "embedded" / name / f"{row['ID']}.wav"), RATE, warn=False)
            assert enhanced.shape[0] == int(1.2 * RATE)
    report = (out / "peers.md").read_text()
    assert all(f"| {name} " in report for name in systems) and "pesq_wb by SNR" in report
    with open(out / "peers_embedded.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 * len(systems) and {"pesq_wb", "si_sdr", "vqscore", "rtf", "snr"} <= set(table[0])
    assert (out / "peers_spectrograms.png").stat().st_size > 10000


def test_benchmark_on_a_manifest_scores_against_the_reverberant_reference(tmp_path):
    """``--manifest`` runs a set named after the file; ``auto`` takes ``clean_reverb_wav`` as the
    reference where the manifest has it (``--reference clean_wav`` the dry speech)."""
    from hub_folders import build_vq_enhancer_hub

    from speechbrain_sqe.dataio.audio import load_audio, save_audio
    from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    from speechbrain_sqe.metrics.registry import compute_metrics

    pytest.importorskip("noisereduce")
    bench = load_benchmark_module("bench_enhance_peers")
    hub = build_vq_enhancer_hub(VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8),
                                str(tmp_path / "hub"))
    rows = []
    for index in range(2):
        dry = speech_like(1.2, seed=index)
        wet = np.convolve(dry, np.exp(-np.arange(1600) / 300.0) * 0.05)[: dry.shape[0]] + dry
        noisy = wet + np.random.default_rng(index).standard_normal(dry.shape[0]) * 0.02
        paths = {kind: str(tmp_path / kind / f"u{index}.wav") for kind in ("clean", "clean_reverb", "noisy")}
        for kind, wav in zip(("clean", "clean_reverb", "noisy"), (dry, wet, noisy)):
            save_audio(paths[kind], wav, RATE)
        rows.append({"ID": f"u{index}", "duration": 1.2, "clean_wav": paths["clean"],
                     "clean_reverb_wav": paths["clean_reverb"], "noisy_wav": paths["noisy"], "snr": 5.0})
    manifest = tmp_path / "speakers.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    common = ["--model", hub, "--manifest", str(manifest), "--peers", "noisereduce", "--metrics", "si_sdr",
              "--no-dnsmos", "--no-vqscore", "--jobs", "1", "--no-progress", "--threads", "1", "--no-figure"]
    for reference in ("auto", "clean_wav"):
        out = tmp_path / reference
        results = bench.main(common + ["--out", str(out), "--reference", reference])
        assert list(results) == ["speakers"]
        noisy = {row["system"]: row for row in results["speakers"]}["noisy"]
        column = "clean_reverb_wav" if reference == "auto" else "clean_wav"
        expected = [compute_metrics(load_audio(row[column], RATE, warn=False),
                                    load_audio(row["noisy_wav"], RATE, warn=False), ["si_sdr"])["si_sdr"]
                    for row in rows]
        assert noisy["si_sdr"] == pytest.approx(np.mean(expected), abs=1e-3)
        assert f"reference column {column}" in (out / "peers.md").read_text()


def build_bsse_hub(folder):
    """A tiny untrained BSSE hub folder (spectrum feature: no SSL upstream), written by its export."""
    from speechbrain_sqe.inference.enhancement import BSSEEnhancer
    from speechbrain_sqe.lobes.bsse import BSSEModel

    torch.manual_seed(0)
    return BSSEEnhancer.export(folder, {"enhancer": BSSEModel("spectrum", proj_size=16, hidden_size=16)})


def reverberant_manifest(folder, count=2, seconds=1.2):
    """``speakers.csv`` in ``folder``: dry and reverberant clean speech and noisy mixtures, as the
    real test sets (``ID, clean_wav, clean_reverb_wav, noisy_wav, snr, reverb, noise_type``)."""
    from speechbrain_sqe.dataio.audio import save_audio

    rows = []
    for index in range(count):
        dry = speech_like(seconds, seed=index)
        wet = np.convolve(dry, np.exp(-np.arange(1600) / 300.0) * 0.05)[: dry.shape[0]] + dry
        noisy = wet + np.random.default_rng(index).standard_normal(dry.shape[0]) * 0.02
        paths = {kind: str(folder / kind / f"u{index}.wav") for kind in ("clean", "clean_reverb", "noisy")}
        for kind, wav in zip(("clean", "clean_reverb", "noisy"), (dry, wet, noisy)):
            save_audio(paths[kind], wav, RATE)
        rows.append({"ID": f"u{index}", "duration": seconds, "clean_wav": paths["clean"],
                     "clean_reverb_wav": paths["clean_reverb"], "noisy_wav": paths["noisy"], "snr": 5.0,
                     "reverb": True, "noise_type": "white"})
    manifest = folder / "speakers.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, rows


def test_benchmark_any_enhancer_and_the_dry_reference_of_a_dereverberating_one(tmp_path):
    """``--enhancer x=<BSSE hub>`` (loaded with load_model) writes rows for x; since BSSE
    dereverberates, ``auto`` scores every system against both references: ``speakers`` against
    clean_reverb_wav (as without BSSE) and ``speakers_dry`` against the dry clean_wav."""
    from hub_folders import build_vq_enhancer_hub

    from speechbrain_sqe.dataio.audio import load_audio
    from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    from speechbrain_sqe.metrics.registry import compute_metrics

    pytest.importorskip("noisereduce")
    bench = load_benchmark_module("bench_enhance_peers")
    vq = build_vq_enhancer_hub(VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8),
                               str(tmp_path / "vq"))
    bsse = build_bsse_hub(str(tmp_path / "bsse"))
    manifest, rows = reverberant_manifest(tmp_path)
    out = tmp_path / "out"
    results = bench.main(["--model", vq, "--enhancer", f"x={bsse}", "--manifest", str(manifest), "--limit", "1",
                          "--peers", "noisereduce", "--metrics", "si_sdr", "--no-dnsmos", "--jobs", "1",
                          "--no-progress", "--threads", "1", "--no-figure", "--out", str(out)])
    assert list(results) == ["speakers", "speakers_dry"]
    systems = ["noisy", "vq", "x", "noisereduce"]
    for table, column in (("speakers", "clean_reverb_wav"), ("speakers_dry", "clean_wav")):
        by_name = {row["system"]: row for row in results[table]}
        assert list(by_name) == systems and all(row["n"] == 1 for row in results[table])
        for name in systems:  # every system scored against this table's reference
            expected = compute_metrics(load_audio(rows[0][column], RATE, warn=False),
                                       load_audio(str(out / "speakers" / name / "u0.wav"), RATE, warn=False),
                                       ["si_sdr"])["si_sdr"]
            assert by_name[name]["si_sdr"] == pytest.approx(expected, abs=1e-3), (table, name)
        with open(out / f"peers_{table}.csv", newline="") as handle:
            assert [row["system"] for row in csv.DictReader(handle)] == systems
    assert results["speakers_dry"][0]["si_sdr"] != pytest.approx(results["speakers"][0]["si_sdr"], abs=1e-3)
    assert np.isfinite([row["vqscore"] for row in results["speakers_dry"]]).all()  # reused, not recomputed
    report = (out / "peers.md").read_text()
    assert "## speakers_dry: 1 files" in report and "reference column clean_wav" in report
    assert "BSSEEnhancer(" in report and "dereverberates" in report
    # A named reference: one table, even with BSSE.
    results = bench.main(["--no-vq", "--enhancer", f"x={bsse}", "--manifest", str(manifest), "--limit", "1",
                          "--peers", "noisereduce", "--metrics", "si_sdr", "--no-dnsmos", "--no-vqscore",
                          "--jobs", "1", "--no-progress", "--threads", "1", "--no-figure", "--out", str(out),
                          "--reference", "clean_wav"])
    assert list(results) == ["speakers"] and [row["system"] for row in results["speakers"]] == ["noisy", "x",
                                                                                               "noisereduce"]


def test_benchmark_refuses_clashing_enhancer_names(tmp_path):
    bench = load_benchmark_module("bench_enhance_peers")
    for argv in (["--enhancer", "vq=a"], ["--enhancer", "rnnoise=a"], ["--enhancer", "a=x", "--enhancer", "a=y"],
                 ["--enhancer", "noslash"], ["--no-vq", "--mix", "0.2"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
