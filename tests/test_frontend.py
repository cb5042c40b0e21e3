"""Tests of speechbrain_sqe.lobes.frontend (one front end for training, evaluation and inference)."""

import pytest
import torch

from speechbrain_sqe.lobes import spectral, tera
from speechbrain_sqe.lobes.frontend import (
    MAGNITUDE_FLOOR,
    SpectralFrontEnd,
    STFTMagnitude,
    TERAFeatures,
    frame_lengths,
    resynthesize,
    stft_magnitude,
)
from speechbrain_sqe.lobes.vqvae_se import (
    VQVAEEnhancementModel,
    enhance_waveforms,
    mix_with_input,
)


def _wavs(batch=3, samples=8000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=g)


def test_old_names_are_the_same_objects():
    assert spectral.STFTMagnitude is STFTMagnitude and issubclass(STFTMagnitude, SpectralFrontEnd)
    assert spectral.stft_magnitude is stft_magnitude and spectral.frame_lengths is frame_lengths
    assert tera.TERAFeatures is TERAFeatures


@pytest.mark.parametrize("hop, log1p", [(256, False), (128, True)])
def test_forward_and_frame_lengths_match_the_functions(hop, log1p):
    wavs, lengths = _wavs(), torch.tensor([1.0, 0.7, 0.4])
    frontend = SpectralFrontEnd(n_fft=512, hop_length=hop, log1p=log1p)
    old = STFTMagnitude(hop_length=hop, log1p=log1p)
    spec = frontend(wavs, lengths)
    assert spec.shape == (3, 1 + 8000 // hop, 257)
    assert torch.equal(spec, stft_magnitude(wavs, 512, hop, 512, lengths=lengths, log1p=log1p))
    assert torch.equal(spec, old(wavs, lengths))
    assert torch.equal(frontend.frame_lengths(lengths, 8000), frame_lengths(lengths, 8000, hop))
    assert frontend.num_frames(8000) == spec.shape[1]


@pytest.mark.parametrize("log1p", [True, False])
def test_round_trip_reconstructs_the_waveform(log1p):
    wavs, lengths = _wavs(), torch.tensor([1.0, 0.7, 0.4])
    frontend = SpectralFrontEnd(n_fft=512, hop_length=128, log1p=log1p)
    out = frontend.resynthesize(frontend(wavs), wavs)
    assert out.shape == wavs.shape and float((out - wavs).abs().max()) < 1e-4
    padded = frontend.resynthesize(frontend(wavs, lengths), wavs, lengths)
    for i, n in enumerate([8000, 5600, 3200]):
        alone = frontend.resynthesize(frontend(wavs[i : i + 1, :n]), wavs[i : i + 1, :n])
        torch.testing.assert_close(padded[i : i + 1, :n], alone, atol=1e-6, rtol=0)
        assert float((padded[i, :n] - wavs[i, :n]).abs().max()) < 1e-4
        assert float(padded[i, n:].abs().sum()) == 0.0


def test_resynthesize_undoes_compression_and_clamps():
    wavs = _wavs(2)
    frontend = SpectralFrontEnd(hop_length=128, log1p=True)
    spec = frontend(wavs) - 0.5  # some negative values, as a model could output
    expected = resynthesize(torch.expm1(spec).clamp(min=0.0), wavs, 512, 128)
    assert torch.equal(frontend.resynthesize(spec, wavs), expected)


def test_window_length_follows_n_fft():
    frontend = SpectralFrontEnd(n_fft=256, hop_length=64)
    assert frontend.win_length == 256 and frontend(_wavs(1)).shape == (1, 126, 129)
    out = frontend.resynthesize(frontend(_wavs(1)), _wavs(1))
    assert float((out - _wavs(1)).abs().max()) < 1e-4


def _trained_enhancer():
    torch.manual_seed(0)
    model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8, heads=4)
    model(stft_magnitude(_wavs(2, 8000, seed=1), hop_length=128, log1p=True))  # k-means init
    return model.eval()


def test_enhance_waveforms_runs_the_front_end_it_is_given():
    model, wavs, lengths = _trained_enhancer(), _wavs(), torch.tensor([1.0, 0.7, 0.4])
    frontend = SpectralFrontEnd(n_fft=512, hop_length=128, log1p=True)
    with torch.no_grad():
        out = enhance_waveforms(model, frontend, wavs, lengths, mix=0.2)
        # The former hard-coded chain, spelled out.
        spec = stft_magnitude(wavs, 512, 128, 512, lengths=lengths, log1p=True)
        flens = frame_lengths(lengths, 8000, 128)
        mag = torch.expm1(model.enhance_spec(spec, flens)).clamp(min=0.0)
        ref = mix_with_input(resynthesize(mag, wavs, 512, 128, lengths=lengths), wavs, 0.2)
        assert torch.equal(out, ref)
        assert torch.equal(enhance_waveforms(model, STFTMagnitude(hop_length=128, log1p=True), wavs, lengths, 0.2), out)
        for i, n in enumerate([8000, 5600, 3200]):
            alone = enhance_waveforms(model, frontend, wavs[i : i + 1, :n])
            torch.testing.assert_close(enhance_waveforms(model, frontend, wavs, lengths)[i : i + 1, :n], alone,
                                       atol=1e-5, rtol=0)


def test_vq_enhance_recipe_front_end_is_a_spectral_front_end():
    from hyperpyyaml import load_hyperpyyaml

    with open("hparams/vq_enhance.yaml") as f:
        text = f.read()
    start = text.index("sample_rate:")
    end = text.index("\n\n", text.index("frontend:"))
    hparams = load_hyperpyyaml(text[start:end])
    frontend = hparams["frontend"]
    assert isinstance(frontend, SpectralFrontEnd) and frontend.log1p
    assert (frontend.n_fft, frontend.hop_length, frontend.win_length) == (512, 128, 512)


def test_stft_magnitude_matches_the_plain_formula_with_and_without_gradients():
    """The magnitude is computed in torch.stft's memory order, in place when no gradient is needed:
    the same values as ``sqrt(clamp(re^2 + im^2))`` either way, and gradients reach the waveform."""
    from speechbrain_sqe.lobes.frontend import MAGNITUDE_FLOOR, stft_magnitude

    wav = torch.randn(2, 4000)
    window = torch.hann_window(512)
    spectrum = torch.view_as_real(torch.stft(wav, 512, 256, 512, window, center=True, pad_mode="reflect",
                                             return_complex=True)).transpose(1, 2)
    plain = torch.sqrt(torch.clamp(spectrum.pow(2).sum(-1), min=MAGNITUDE_FLOOR))
    with torch.no_grad():
        assert torch.allclose(stft_magnitude(wav), plain, atol=1e-6)
        assert torch.allclose(stft_magnitude(wav, log1p=True), torch.log1p(plain), atol=1e-6)
    leaf = wav.clone().requires_grad_(True)
    spec = stft_magnitude(leaf, log1p=True)
    assert torch.allclose(spec.detach(), torch.log1p(plain), atol=1e-6)
    spec.sum().backward()
    assert torch.isfinite(leaf.grad).all() and float(leaf.grad.abs().sum()) > 0


def test_centred_frames_equal_torch_stft_with_lengths():
    """The front end pads each utterance of a batch itself (its own reflect padding, then one
    ``center=False`` transform of the whole batch): the frames of ``torch.stft``'s centred transform
    of that utterance alone, for every utterance (zeros after its end), whatever the garbage
    beyond an utterance's end in the padded batch."""
    wav = _wavs(batch=4, samples=9000)
    wav[1, 4500:] = 1e3  # beyond utterance 1's end: must not leak into its frames
    lengths = torch.tensor([1.0, 0.5, 0.5, 0.8])
    window = torch.hamming_window(400)
    with torch.no_grad():
        spec = stft_magnitude(wav, n_fft=400, hop_length=160, win_length=400, lengths=lengths, window="hamming")
    assert spec.shape == (4, 1 + 9000 // 160, 201)
    for row, length in enumerate(lengths.tolist()):
        n = round(length * wav.shape[1])
        alone = torch.stft(wav[row, :n], 400, 160, 400, window, center=True, pad_mode="reflect",
                           return_complex=True).abs().pow(2).clamp(min=MAGNITUDE_FLOOR).sqrt().T
        assert torch.allclose(spec[row, : alone.shape[0]], alone, atol=1e-6)
        assert float(spec[row, alone.shape[0]:].abs().sum()) == 0.0


@pytest.mark.parametrize("log1p", [False, True])
def test_gradients_through_a_batch_with_lengths_are_each_utterances_own(log1p):
    """Training through the front end (a loss on enhanced waveforms of different lengths): the
    gradient of each utterance's frames reaches its own samples as if it were alone, none beyond."""
    wav = _wavs(batch=3, samples=8000).requires_grad_()
    lengths = torch.tensor([1.0, 0.7, 0.5])
    stft_magnitude(wav, lengths=lengths, log1p=log1p).square().sum().backward()
    for row, length in enumerate(lengths.tolist()):
        n = round(length * wav.shape[1])
        alone = wav.detach()[row, :n].clone().requires_grad_()
        stft_magnitude(alone, log1p=log1p).square().sum().backward()
        assert torch.allclose(wav.grad[row, :n], alone.grad, rtol=1e-4, atol=1e-4)
        assert float(wav.grad[row, n:].abs().sum()) == 0.0


def test_a_waveform_too_short_for_the_reflect_padding_is_refused_clearly():
    with pytest.raises(ValueError, match="100 samples is too short for the STFT's reflect padding"):
        stft_magnitude(torch.randn(2, 100))
    with pytest.raises(ValueError, match="too short"):  # one utterance of a batch too
        stft_magnitude(torch.randn(2, 4000), lengths=torch.tensor([1.0, 0.02]))


@pytest.mark.parametrize("log1p", [False, True])
def test_inference_rows_equal_the_batch_transform_bit_for_bit(log1p):
    """Without autograd each row is transformed alone into the output (session 45: no batch-sized
    temporaries, padding frames skipped); with it, the whole padded batch at once. Both give the
    same values to the last bit, zeros past each utterance's end, whatever lies beyond it."""
    wav = _wavs(batch=4, samples=9000, seed=3)
    wav[2, 6000:] = 7.0  # beyond utterance 2's end
    lengths = torch.tensor([1.0, 0.9, 0.6, 0.05])
    with torch.no_grad():
        rows = stft_magnitude(wav, hop_length=128, lengths=lengths, log1p=log1p)
        full = stft_magnitude(wav, hop_length=128, log1p=log1p)
    batch = stft_magnitude(wav.clone().requires_grad_(), hop_length=128, lengths=lengths, log1p=log1p).detach()
    batch_full = stft_magnitude(wav.clone().requires_grad_(), hop_length=128, log1p=log1p).detach()
    assert torch.equal(rows, batch) and torch.equal(full, batch_full)
    assert float(rows[3, 1 + 450 // 128 :].abs().sum()) == 0.0


def test_inference_resynthesis_equals_the_autograd_path_bit_for_bit():
    """Resynthesis row by row without autograd (two strided products instead of a broadcast over
    the real/imaginary pairs, the window applied in place, the envelope from a view) gives the
    autograd path's waveform to the last bit, digital silence (phase 0) included."""
    wav = _wavs(batch=3, samples=9000, seed=4)
    wav[0, 1000:4000] = 0.0
    lengths = torch.tensor([1.0, 0.75, 0.4])
    magnitude = stft_magnitude(wav, hop_length=128, lengths=lengths) * 0.6 + 0.01
    with torch.no_grad():
        rows = resynthesize(magnitude, wav, hop_length=128, lengths=lengths)
        whole = resynthesize(magnitude, wav, hop_length=128)
    grad = resynthesize(magnitude.clone().requires_grad_(), wav, hop_length=128, lengths=lengths).detach()
    grad_whole = resynthesize(magnitude.clone().requires_grad_(), wav, hop_length=128).detach()
    assert torch.isfinite(rows).all()
    from speechbrain_sqe.lobes.overlap_add import centred_spectra

    # the silent bins' path ran (exact zeros in the noisy spectrum: gain inf, nan without it)
    assert bool((centred_spectra(wav[:1], 512, 128, torch.hann_window(512)) == 0).any())
    assert torch.equal(rows, grad) and torch.equal(whole, grad_whole)
    assert float(rows[2, 3600:].abs().sum()) == 0.0
