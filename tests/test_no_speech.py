"""No-speech input: the speech-activity measure, VQScore's frame weighting, and `sqe score` giving
silence, a DC offset and noise alone an empty score instead of a number that reads as quality."""

import csv

import numpy as np
import pytest
import soundfile
import torch
from hub_folders import build_vqscore_hub
from speech import add_noise, pink_noise, speech_like

from speechbrain_sqe import cli
from speechbrain_sqe.dataio.activity import has_speech, speech_frames
from speechbrain_sqe.inference.quality import VQScore
from speechbrain_sqe.lobes.spectral import stft_magnitude
from speechbrain_sqe.lobes.vqvae import VQVAEQualityModel

RATE = 16000


def _no_speech():
    """Inputs without speech, 2 s each (float32 numpy)."""
    rng = np.random.default_rng(3)
    n = 2 * RATE
    return {
        "silence": np.zeros(n, np.float32),
        "dc": np.full(n, 0.3, np.float32),
        "dc_and_floor": (0.3 + 1e-4 * rng.standard_normal(n)).astype(np.float32),
        "white": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "pink": (0.1 * pink_noise(n, seed=4)).astype(np.float32),
        "brown": (0.3 * np.cumsum(rng.standard_normal(n)) / np.sqrt(n)).astype(np.float32),
    }


@pytest.mark.parametrize("name", sorted(_no_speech()))
def test_inputs_without_speech_have_none(name):
    wav = torch.from_numpy(_no_speech()[name])
    assert not has_speech(wav, RATE)
    assert not speech_frames(wav, RATE)[0].any()


@pytest.mark.parametrize("snr", [None, 20, 0, -5])
def test_speech_is_found_clean_and_in_noise(snr):
    clean = speech_like(3.0, seed=1)
    wav = clean if snr is None else add_noise(clean, snr, kind="pink", seed=2)
    assert has_speech(torch.from_numpy(wav).float(), RATE)


def test_has_speech_reads_blocks_until_it_has_enough_voiced_time():
    """``has_speech`` stops at the first block of frames that completes the voiced time; speech
    found only past the first blocks, and voiced frames split across blocks, still count. Its answer
    is the whole file's (the voiced frames of ``speech_frames``)."""
    from speechbrain_sqe.dataio import activity

    speech, noise = speech_like(2.0, seed=7), 0.05 * np.random.default_rng(1).standard_normal(8 * RATE)
    late = np.concatenate([noise, speech]).astype(np.float32)  # speech after 8 s of noise: 8 blocks
    wav = torch.from_numpy(late)
    assert has_speech(wav, RATE)
    voiced = speech_frames(wav, RATE)[1]
    first = int(voiced.float().argmax())
    assert first >= 2 * activity.SPEECH_CHECK_FRAMES  # found beyond the first blocks
    # Only a few voiced frames' samples kept (about the voiced time needed, and one frame less):
    # the answer is still the whole file's.
    needed = int(-(-activity.MIN_VOICED_SECONDS * RATE // 256))
    for keep, expected in ((needed, True), (needed - 1, False)):
        mask = torch.zeros_like(voiced)
        mask[first : first + keep] = True  # zero everything but `keep` voiced frames
        frames_kept = torch.zeros_like(wav)
        for index in torch.nonzero(voiced & mask).flatten().tolist():
            frames_kept[index * 256 : index * 256 + 256] = wav[index * 256 : index * 256 + 256]
        whole = int(speech_frames(frames_kept, RATE)[1].sum()) * 256 / RATE >= activity.MIN_VOICED_SECONDS
        assert has_speech(frames_kept, RATE) == whole


def test_loudest_frames_first_keep_the_whole_file_answer():
    """``has_speech`` analyses the file's loudest frames first: they are rows of the file's frames,
    the loudest ones; where they are a loud noise burst, not speech, the blocks after them still find
    the quieter speech; any rate, hop and length (an empty file, one sample) gets the whole file's
    answer, alone or in a padded batch whatever its padding holds."""
    from speechbrain_sqe.dataio import activity

    rng = np.random.default_rng(5)
    speech = 0.3 * speech_like(2.0, seed=11)
    burst = 0.9 * rng.standard_normal(RATE // 2)
    wav = torch.from_numpy(np.concatenate([speech, burst]).astype(np.float32))
    loud, real, window, max_lag = activity._loudest_frames(wav[None], torch.tensor([wav.shape[0]]), RATE, 256,
                                                           activity.LOUDEST_FRAMES)
    every, _, _ = activity._frames(wav, RATE, 256)
    rows = [int(((every - row).abs().amax(dim=1) == 0).nonzero()[0]) for row in loud[0]]
    assert len(rows) == activity.LOUDEST_FRAMES and bool(real.all())
    assert min(rows) * 256 >= speech.shape[0] - window // 2  # the burst's frames
    assert activity._voiced_seconds(loud[0], window, max_lag, RATE, 256) < activity.MIN_VOICED_SECONDS
    assert has_speech(wav, RATE)
    assert not has_speech(torch.from_numpy(burst.astype(np.float32)), RATE)
    for rate, hop, length in ((16000, 256, 0), (16000, 256, 1), (8000, 100, 12345), (16000, 1024, 3000),
                              (16000, 64, 40000)):
        clip = torch.from_numpy(np.resize(speech, length).astype(np.float32))
        whole = int(speech_frames(clip, rate, hop)[1].sum()) * hop / rate >= activity.MIN_VOICED_SECONDS
        assert has_speech(clip, rate, hop) == whole, (rate, hop, length)
    # a batch: padding full of loud speech never counts for the shorter files
    clips = [speech, speech[:300], np.zeros(RATE, np.float32), burst, speech[: RATE // 4]]
    batch = torch.from_numpy(np.stack([np.resize(speech, 2 * RATE)] * len(clips)).astype(np.float32))
    for row, clip in enumerate(clips):
        batch[row, : clip.shape[0]] = torch.from_numpy(clip.astype(np.float32))
    answers = activity.has_speech_batch(batch, [clip.shape[0] for clip in clips], RATE)
    assert answers == [has_speech(torch.from_numpy(clip.astype(np.float32)), RATE) for clip in clips]
    assert answers == [True, False, False, False, True]
    with pytest.raises(ValueError, match="lengths in 0..32000"):
        activity.has_speech_batch(batch, [40000] * len(clips), RATE)


def test_speech_frames_follow_the_speech_and_line_up_with_stft_frames():
    speech = speech_like(2.0, seed=5)
    wav = np.concatenate([np.zeros(RATE), speech, 1e-4 * np.random.default_rng(0).standard_normal(RATE)])
    mask, voiced = speech_frames(torch.from_numpy(wav).float(), RATE, hop=256)
    assert mask.shape[0] == stft_magnitude(torch.zeros(1, wav.shape[0])).shape[1]
    seconds = torch.arange(mask.shape[0]) * 256 / RATE
    assert not mask[seconds < 0.8].any() and not mask[seconds > 3.3].any()  # silence, then a floor
    middle = (seconds > 1.2) & (seconds < 2.8)
    assert mask[middle].float().mean() > 0.6  # the syllables; the digital-zero gaps between them are not
    assert bool((mask | ~voiced).all())  # voiced frames are speech frames


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = VQVAEQualityModel(codebook_size=32)
    model.train()
    model(stft_magnitude(torch.stack([torch.from_numpy(speech_like(1.0, seed=s)).float() for s in range(3)])))
    return build_vqscore_hub(model.eval(), str(tmp_path_factory.mktemp("hub")))


def test_speech_weighting_averages_only_speech_frames(model_folder):
    scorer = VQScore.from_hparams(source=model_folder)
    wav = torch.from_numpy(np.concatenate([np.zeros(RATE), speech_like(2.0, seed=6)])).float()
    frames = scorer.score_frames_batch(wav[None])[0]
    mask, _ = speech_frames(wav, RATE, hop=256)
    assert 0 < mask.sum() < mask.shape[0]
    expected = frames[mask].mean()
    assert float(scorer.score_batch(wav[None], frame_weighting="speech")[0]) == pytest.approx(float(expected), abs=1e-6)
    assert float(scorer.score_batch(wav[None])[0]) == pytest.approx(float(frames.mean()), abs=1e-6)  # the paper's
    assert float(scorer.score_batch(wav[None], frame_weighting="all")[0]) != pytest.approx(float(expected), abs=1e-4)
    # A padded batch gives each file its own speech frames.
    short = wav[: RATE + RATE // 2]
    batch = torch.zeros(2, wav.shape[0])
    batch[0], batch[1, : short.shape[0]] = wav, short
    together = scorer.score_batch(batch, torch.tensor([1.0, short.shape[0] / wav.shape[0]]), frame_weighting="speech")
    alone = scorer.score_batch(short[None], frame_weighting="speech")[0]
    assert float(together[1]) == pytest.approx(float(alone), abs=1e-5)
    # Silence has no speech frame: NaN, never a number that reads as quality.
    assert torch.isnan(scorer.score_batch(torch.zeros(1, RATE), frame_weighting="speech")).all()
    with pytest.raises(ValueError, match="frame_weighting must be one of"):
        scorer.score_batch(wav[None], frame_weighting="loud")


def test_score_gives_no_speech_files_an_empty_score(model_folder, tmp_path, capsys):
    folder = tmp_path / "audio"
    folder.mkdir()
    for name, wav in _no_speech().items():
        soundfile.write(folder / f"{name}.wav", wav, RATE)
    soundfile.write(folder / "speech.wav", speech_like(2.0, seed=7).astype(np.float32), RATE)
    out = tmp_path / "scores.csv"
    status = cli.main(["score", str(folder), "--model", model_folder, "--csv", str(out), "--no-progress"])
    assert status == 0
    captured = capsys.readouterr()
    with open(out, newline="", encoding="utf-8") as stream:
        rows = {r["path"].rsplit("/", 1)[1][:-4]: r for r in csv.DictReader(stream)}
    assert set(rows) == {*_no_speech(), "speech"}
    for name in _no_speech():
        assert rows[name]["vqscore"] == "" and rows[name]["speech"] == "no", rows[name]
        assert f"NO SPEECH {folder / name}.wav: no speech found" in captured.err
    assert rows["speech"]["speech"] == "yes" and -1 <= float(rows["speech"]["vqscore"]) <= 1
    assert "scored 1 files" in captured.out


def test_score_frame_weighting_option(model_folder, tmp_path):
    path = tmp_path / "pause_then_speech.wav"
    soundfile.write(path, np.concatenate([np.zeros(RATE), speech_like(2.0, seed=8)]).astype(np.float32), RATE)
    values = {}
    for weighting in ("all", "speech"):
        out = tmp_path / f"{weighting}.csv"
        assert cli.main(["score", str(path), "--model", model_folder, "--csv", str(out), "--no-progress",
                         "--frame-weighting", weighting]) == 0
        with open(out, newline="", encoding="utf-8") as stream:
            values[weighting] = float(next(csv.DictReader(stream))["vqscore"])
    scorer = VQScore.from_hparams(source=model_folder)
    wav = scorer.load_file(str(path))
    assert values["speech"] == pytest.approx(float(scorer.score_batch(wav[None], frame_weighting="speech")[0]), abs=1e-5)
    assert values["all"] == pytest.approx(scorer.score_file(str(path)), abs=1e-5)
    assert values["all"] != pytest.approx(values["speech"], abs=1e-4)


def test_score_precision_option(model_folder, tmp_path):
    """``--precision float32`` gives the exact scores of the API; bfloat16 stays within 1e-3."""
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech_like(2.0, seed=9).astype(np.float32), RATE)
    values = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.csv"
        assert cli.main(["score", str(path), "--model", model_folder, "--csv", str(out), "--no-progress",
                         "--precision", precision]) == 0
        with open(out, newline="", encoding="utf-8") as stream:
            values[precision] = float(next(csv.DictReader(stream))["vqscore"])
    exact = VQScore.from_hparams(source=model_folder, precision="float32").score_file(str(path))
    assert values["float32"] == pytest.approx(exact, abs=1e-6)
    assert values["bfloat16"] == pytest.approx(exact, abs=1e-3)


def test_periodicity_is_yin_computed_directly():
    # The FFT-based difference (a circular correlation of 2^a 3^b 5^c samples) against YIN's
    # definition summed term by term: d(tau) = sum_j (x_j - x_{j+tau})^2 over the window.
    from speechbrain_sqe.dataio.activity import PITCH_RANGE, _fft_size, frame_activity

    assert [_fft_size(n) for n in (1, 7, 741, 1025)] == [1, 8, 750, 1080]
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)
    _, periodicity = frame_activity(torch.from_numpy(wav), RATE, hop=256)
    window, max_lag = 512, int(RATE / PITCH_RANGE[0]) + 1
    padded = np.pad(wav.astype(np.float64), (window // 2, window // 2 + max_lag + 256))
    for index in (10, 30, 50):
        frame = padded[index * 256 : index * 256 + window + max_lag]
        frame = frame - frame[:window].mean()
        lags = np.arange(1, max_lag + 1)
        difference = np.array([np.sum((frame[:window] - frame[lag : lag + window]) ** 2) for lag in lags])
        normalised = difference / np.maximum(np.cumsum(difference) / lags, 1e-12)
        expected = normalised[int(RATE / PITCH_RANGE[1]) - 1 :].min()
        assert float(periodicity[index]) == pytest.approx(expected, abs=1e-4)
    assert float(periodicity[30]) < 0.2  # a 180 Hz tone is strongly periodic
