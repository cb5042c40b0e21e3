"""BSSE lobes and interface: shapes, gradients, padded batches, frame alignment for any SSL hop, the
three feature modes x three fine-tuning modes, the front end, and the exported enhancer's level."""

import tempfile

import pytest
import torch

from speechbrain_sqe.inference.encoders import SSLWrapperEncoder
from speechbrain_sqe.inference.enhancement import (
    BSSEEnhancer,
    bsse_frontend,
    speech_energy,
)
from speechbrain_sqe.inference.hub import load_model
from speechbrain_sqe.lobes.blstm_mask import BLSTMMaskNet
from speechbrain_sqe.lobes.bsse import (
    FEATURE_MODES,
    FINETUNE_MODES,
    BSSEModel,
    LayerNormWeightedSum,
    align_frames,
    bsse_forward,
    check_ssl_hop,
    configure_ssl_finetuning,
    log1p_l1_loss,
    log_magnitude_l1_loss,
    residual_noise_loss,
    ssl_front_end,
    ssl_hidden_states,
)
from speechbrain_sqe.lobes.tera import TERAModel

torch.manual_seed(0)


def _tera():
    return TERAModel(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, dropout=0.0)


def _model(feature="cross", ssl_hop_length=160):
    return BSSEModel(feature, ssl_layers=3, ssl_size=16, ssl_hop_length=ssl_hop_length, proj_size=16,
                     hidden_size=12)


def _wavs(batch=2, samples=8000, seed=0):
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


class _FrameIndexUpstream(torch.nn.Module):
    """A fake SSL upstream at ``hop`` samples whose every hidden state holds the frame index."""

    def __init__(self, hop, layers=3, dim=16):
        super().__init__()
        self.hop, self.layers, self.dim = hop, layers, dim
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, wavs, lens):  # like SpeechBrain's HF wrappers: stacked [layers, batch, frames, dim]
        frames = (wavs.shape[1] - 400) // self.hop + 1  # a conv front end without padding (wav2vec 2.0 style)
        index = torch.arange(frames, dtype=wavs.dtype).view(1, 1, frames, 1)
        return self.scale * index.expand(self.layers, wavs.shape[0], frames, self.dim)


# ---------------------------------------------------------------- the mask network
def test_blstm_mask_shapes_directions_summed_and_gradients():
    net = BLSTMMaskNet(input_size=10, output_size=7, proj_size=8, hidden_size=6)
    x = torch.randn(3, 15, 10, requires_grad=True)
    mask = net(x)
    assert mask.shape == (3, 15, 7) and bool(((mask > 0) & (mask < 1)).all())
    assert net.out.in_features == 6  # the two directions are summed, not concatenated
    mask.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    # Bidirectional: the first frame's mask depends on the last frame's input.
    later = x.detach().clone()
    later[:, -1] += 1.0
    assert not torch.allclose(net(later)[:, 0], mask[:, 0].detach())


def test_blstm_mask_padded_batch_equals_each_alone():
    net = BLSTMMaskNet(input_size=5, output_size=4, proj_size=8, hidden_size=8).eval()
    x = torch.randn(3, 20, 5)
    lengths = torch.tensor([1.0, 0.55, 0.3])
    mask = net(x, lengths)
    for i, n in enumerate([20, 11, 6]):
        assert torch.allclose(mask[i, :n], net(x[i : i + 1, :n])[0], atol=1e-6)
        assert float(mask[i, n:].detach().abs().sum()) == 0.0


# ---------------------------------------------------------------- features and alignment
def test_weighted_sum_layer_norm_per_layer_and_equal_start():
    ws = LayerNormWeightedSum(3, 8)
    assert torch.allclose(ws.layer_weights(), torch.full((3,), 1 / 3))
    assert len(ws.norms) == 3 and all(norm.elementwise_affine for norm in ws.norms)
    states = torch.randn(3, 2, 5, 8) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    expected = sum(torch.nn.functional.layer_norm(s, (8,)) for s in states) / 3
    assert torch.allclose(ws(states), expected, atol=1e-5)  # each layer normalised before the sum


@pytest.mark.parametrize("hop, expected", [
    (160, [0, 1, 2, 3, 4, 5, 5]),          # 10 ms (TERA): identity, last frame padded
    (320, [0, 0, 1, 1, 2, 2, 3]),          # 20 ms (WavLM): repeated x2
    (480, [0, 0, 0, 1, 1, 1, 2]),          # any other hop: the latest SSL frame at or before
])
def test_align_frames_any_hop(hop, expected):
    ssl = torch.arange(6.0).view(1, 6, 1)
    assert align_frames(ssl, 7, hop, 160)[0, :, 0].tolist() == [float(v) for v in expected]


def test_align_frames_pads_with_each_utterances_own_last_frame():
    ssl = torch.arange(10.0).view(1, 10, 1).repeat(2, 1, 1)
    out = align_frames(ssl, 12, 320, 160, ssl_frames=torch.tensor([10, 3]))
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert out[1, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]  # never reads the padding


def test_20ms_upstream_frames_land_on_the_stft_frames():
    """A wav2vec-style upstream (20 ms, no padding): STFT frame t reads SSL frame t // 2, the last
    SSL frame repeated to the end, with the model's weighted sum in between."""
    upstream = _FrameIndexUpstream(320)
    wavs = _wavs(1, 8000)
    states, counts = ssl_hidden_states(upstream, wavs, torch.ones(1))
    assert states.shape[2] == 24 and counts.tolist() == [24]
    spec = bsse_frontend()(wavs)
    assert spec.shape[1] == 51
    aligned = align_frames(states[0], spec.shape[1], 320, 160, counts)
    assert aligned[0, :, 0].tolist() == [min(t // 2, 23) for t in range(51)]
    model = _model("ssl", ssl_hop_length=320)
    features = model.features(spec, None, states, counts)
    assert features.shape == (1, 51, 16)


def test_10ms_tera_frames_equal_the_stft_frames():
    tera = _tera().eval()
    wavs = _wavs(2, 8000)
    lengths = torch.tensor([1.0, 0.6])
    states, counts = ssl_hidden_states(tera, wavs, lengths)
    spec = bsse_frontend()(wavs, lengths)
    frame_lengths = bsse_frontend().frame_lengths(lengths, 8000)
    assert states.shape[2] == spec.shape[1]
    assert counts.tolist() == torch.round(frame_lengths * spec.shape[1]).long().tolist()  # same frame counts
    model = _model("ssl").eval()
    weighted = model.weighted(states)
    assert torch.equal(model.features(spec, frame_lengths, states, counts)[0], weighted[0])  # identity


@pytest.mark.parametrize("feature", FEATURE_MODES)
def test_padded_batch_equals_each_utterance_alone(feature):
    tera, model = _tera().eval(), _model(feature).eval()
    frontend = bsse_frontend()
    wavs = _wavs(3, 9600, seed=1)
    lengths = torch.tensor([1.0, 0.62, 0.31])
    with torch.no_grad():
        _, enhanced, frame_lengths = bsse_forward(model, frontend, wavs, lengths, tera)
        for i in range(3):
            n = round(float(lengths[i]) * 9600)
            _, alone, _ = bsse_forward(model, frontend, wavs[i : i + 1, :n], None, tera)
            frames = alone.shape[1]
            assert round(float(frame_lengths[i]) * enhanced.shape[1]) == frames
            assert torch.allclose(enhanced[i, :frames], alone[0], atol=1e-5), i
            assert float(enhanced[i, frames:].abs().sum()) == 0.0


def test_a_hop_other_than_the_upstreams_is_refused():
    check_ssl_hop(_tera(), 160)
    check_ssl_hop(SSLWrapperEncoder(_FrameIndexUpstream(320), 3, 16, frame_hop_seconds=0.02), 320)
    check_ssl_hop(_FrameIndexUpstream(320), 160)  # says nothing of its hop: not checked
    with pytest.raises(ValueError, match="frame hop is 320 samples"):
        check_ssl_hop(SSLWrapperEncoder(_FrameIndexUpstream(320), 3, 16, frame_hop_seconds=0.02), 160)


def test_input_sizes_of_the_three_feature_modes():
    assert [_model(feature).input_size for feature in FEATURE_MODES] == [201, 16, 217]
    assert _model("spectrum").weighted is None
    with pytest.raises(ValueError, match="feature"):
        BSSEModel("raw")


# ---------------------------------------------------------------- feature x fine-tuning modes
def _front_end_names(tera):
    return {f"{prefix}.{name}" for prefix, module in (("encoder.input_proj", tera.encoder.input_proj),
                                                      ("encoder.input_norm", tera.encoder.input_norm))
            for name, _ in module.named_parameters()}


@pytest.mark.parametrize("feature", FEATURE_MODES)
@pytest.mark.parametrize("mode", FINETUNE_MODES)
def test_feature_and_finetuning_modes_train_what_they_should(feature, mode):
    tera, model = _tera(), _model(feature)
    trainable = configure_ssl_finetuning(tera, mode if model.uses_ssl else "frozen")
    model.train()
    train_ssl = model.uses_ssl and mode != "frozen"
    if train_ssl:
        tera.train()
    _, enhanced, frame_lengths = bsse_forward(model, bsse_frontend(), _wavs(2, 6400), torch.tensor([1.0, 0.7]),
                                              tera, train_ssl=train_ssl)
    log1p_l1_loss(enhanced, torch.zeros_like(enhanced), frame_lengths).backward()
    assert all(p.grad is not None for p in model.parameters())  # weights, layer norms, mask net
    with_grad = {name for name, p in tera.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    front = _front_end_names(tera)
    layers = {name for name, _ in tera.named_parameters() if name.startswith("encoder.layers.")}
    assert not any(name.startswith("head.") for name in with_grad)  # TERA's head never trains
    if not train_ssl:
        assert with_grad == set() and trainable == [] and not tera.training
    elif mode == "pf":
        assert with_grad == layers and not (with_grad & front)
        assert len(trainable) == len(layers)
    else:  # ef
        assert with_grad == layers | front
        assert len(trainable) == len(layers | front)


def test_front_end_of_a_wav2vec_style_wrapper():
    class Transformers(torch.nn.Module):  # transformers' WavLMModel: .feature_extractor, .encoder
        def __init__(self):
            super().__init__()
            self.feature_extractor = torch.nn.Conv1d(1, 4, 3)
            self.encoder = torch.nn.Linear(4, 4)

    class HFWrapper(torch.nn.Module):  # SpeechBrain's wrapper keeps the transformers model in .model
        def __init__(self):
            super().__init__()
            self.model = Transformers()

    wrapper = HFWrapper()
    encoder = SSLWrapperEncoder(wrapper, layer_count=2, hidden_size=4, frame_hop_seconds=0.02)
    assert ssl_front_end(encoder) == [wrapper.model.feature_extractor]
    trainable = configure_ssl_finetuning(encoder, "pf")
    assert {id(p) for p in trainable} == {id(p) for p in wrapper.model.encoder.parameters()}
    with pytest.raises(ValueError, match="front_end_modules"):
        ssl_front_end(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- front end, loss, interface
def test_front_end_is_the_references_stft():
    wav = _wavs(1, 4000)[0]
    x = torch.stft(wav, 400, 160, 400, window=torch.hamming_window(400), center=True, pad_mode="reflect",
                   return_complex=True)
    reference = torch.log1p(x.abs()).T  # the reference adds 1e-6 to |X|; we floor |X|^2 at 1e-7
    ours = bsse_frontend()(wav.unsqueeze(0))[0]
    assert ours.shape == (26, 201) and torch.allclose(ours, reference, atol=1e-3)
    back = bsse_frontend().resynthesize(ours.unsqueeze(0), wav.unsqueeze(0))[0]
    assert torch.allclose(back, wav, atol=1e-4)  # expm1 of log1p with the noisy (own) phase


def test_log1p_l1_loss_counts_valid_frames_only():
    target = torch.zeros(2, 10, 3)
    estimate = torch.ones(2, 10, 3)
    estimate[1, 5:] = 50.0
    assert float(log1p_l1_loss(estimate, target, torch.tensor([1.0, 0.5]))) == pytest.approx(1.0)


@pytest.mark.parametrize("feature", ["spectrum", "cross"])
def test_exported_enhancer_keeps_the_speech_level(feature):
    model = _model(feature)
    modules = {"enhancer": model} if feature == "spectrum" else {"enhancer": model, "ssl": _tera()}
    folder = BSSEEnhancer.export(tempfile.mkdtemp(), modules)
    enhancer = load_model(folder, task="enhancement")
    assert isinstance(enhancer, BSSEEnhancer) and (enhancer.upstream is None) == (feature == "spectrum")
    t = torch.arange(16000) / 16000
    speech = 0.3 * torch.sin(2 * torch.pi * 220 * t) * (t > 0.4)
    noisy = speech + 0.02 * torch.randn(16000, generator=torch.Generator().manual_seed(3))
    out = enhancer.enhance_batch(noisy)
    assert out.shape == noisy.shape
    # The output's whole energy is the energy the speech brings to the input (keep_speech_level).
    assert float(speech_energy(out, noise_quantile=0.0)) == pytest.approx(float(speech_energy(noisy)), rel=0.02)


def test_ssl_model_without_its_upstream_is_refused():
    folder = BSSEEnhancer.export(tempfile.mkdtemp(), {"enhancer": _model("cross")})
    with pytest.raises(ValueError, match="no 'ssl' module"):
        BSSEEnhancer.from_hparams(source=folder)


def test_log_magnitude_loss_counts_noise_left_in_pauses():
    """log1p L1 hardly sees a residual 20 dB above a pause's floor (magnitudes near 0), the log
    magnitude L1 counts it as it counts the same ratio in loud speech; both are 0 when equal."""
    pause, loud = torch.full((1, 5, 4), 1e-2), torch.full((1, 5, 4), 2.0)
    as_log1p = torch.log1p
    residual_in_pause = log_magnitude_l1_loss(as_log1p(pause * 10), as_log1p(pause))
    residual_in_speech = log_magnitude_l1_loss(as_log1p(loud * 10), as_log1p(loud))
    assert float(residual_in_pause) == pytest.approx(float(residual_in_speech), rel=0.05)
    assert float(log1p_l1_loss(as_log1p(pause * 10), as_log1p(pause))) < 0.1 * float(
        log1p_l1_loss(as_log1p(loud * 10), as_log1p(loud)))
    assert float(log_magnitude_l1_loss(as_log1p(loud), as_log1p(loud))) == 0.0
    # Padding does not count, and the loss trains a mask toward suppressing the pause.
    mask = torch.full((1, 5, 4), 0.9, requires_grad=True)
    noisy = as_log1p(pause * 10)
    log_magnitude_l1_loss(mask * noisy, as_log1p(pause), torch.tensor([1.0])).backward()
    assert bool((mask.grad > 0).all())  # a smaller mask lowers the loss


def test_recipe_loss_adds_the_weighted_log_magnitude_term():
    from speechbrain_sqe.brains.bsse import BSSEBrain

    enhanced, target = torch.rand(2, 6, 5), torch.rand(2, 6, 5)
    lengths = torch.tensor([1.0, 0.5])
    plain = log1p_l1_loss(enhanced, target, lengths)
    for weight in (0.0, 0.25):
        brain = BSSEBrain(modules={}, hparams={"log_magnitude_weight": weight, "log_magnitude_floor": 1e-3})
        expected = plain + weight * log_magnitude_l1_loss(enhanced, target, lengths, 1e-3)
        assert torch.allclose(brain.compute_objectives((enhanced, target, lengths), None, None), expected)


def test_residual_noise_loss_counts_the_noise_the_mask_lets_through():
    """No mask: the whole noise; a closed mask: none; in between the noise scaled by the mask's linear
    gain; one-sided (a smaller mask always lowers it) and padding does not count."""
    noisy = torch.full((2, 5, 4), 3.0).log1p()
    noise = torch.full((2, 5, 4), 1.0).log1p()
    assert float(residual_noise_loss(noisy, noisy, noise)) == pytest.approx(float(noise.mean()))
    assert float(residual_noise_loss(torch.zeros_like(noisy), noisy, noise)) == 0.0
    third = torch.full((2, 5, 4), 1.0).log1p()  # |Y| = |X| / 3: a gain of 1/3 on the noise too
    assert float(residual_noise_loss(third, noisy, noise)) == pytest.approx(float(torch.tensor(1 / 3).log1p()))
    padded = noisy.clone()
    padded[1, 3:] = 100.0  # beyond the second utterance's length
    lengths = torch.tensor([1.0, 0.6])
    assert float(residual_noise_loss(padded, noisy, noise, lengths)) == pytest.approx(float(noise.mean()))
    mask = torch.full((2, 5, 4), 0.8, requires_grad=True)
    residual_noise_loss(mask * noisy, noisy, noise, lengths).backward()
    assert bool((mask.grad[0] > 0).all()) and bool((mask.grad[1, 3:] == 0).all())


def test_recipe_loss_adds_the_weighted_residual_noise_term_in_training_only():
    from speechbrain_sqe.brains.bsse import BSSEBrain

    enhanced, target, noisy, noise = (torch.rand(2, 6, 5) for _ in range(4))
    lengths = torch.tensor([1.0, 0.5])
    brain = BSSEBrain(modules={}, hparams={"residual_noise_weight": 0.5})
    plain = brain.compute_objectives((enhanced, target, lengths), None, None)  # validation: no noise
    assert torch.allclose(plain, log1p_l1_loss(enhanced, target, lengths))
    with_noise = brain.compute_objectives((enhanced, target, lengths, noisy, noise), None, None)
    assert torch.allclose(with_noise, plain + 0.5 * residual_noise_loss(enhanced, noisy, noise, lengths))


def test_ratio_mask_loss_weighs_every_bin_alike_and_is_zero_at_the_ideal_mask():
    from speechbrain_sqe.lobes.bsse import ratio_mask_loss

    generator = torch.Generator().manual_seed(0)
    speech = torch.rand(2, 5, 4, generator=generator)
    noisy_mag = speech + torch.rand(2, 5, 4, generator=generator)
    noisy, clean = noisy_mag.log1p(), speech.log1p()
    assert float(ratio_mask_loss(clean, noisy, clean)) == pytest.approx(0.0, abs=1e-7)  # the ideal gain
    # Level-free: the same gains on a 1000 x quieter mixture cost the same (log1p would not).
    quiet = ratio_mask_loss((0.5 * noisy_mag / 1000).log1p(), (noisy_mag / 1000).log1p(), (speech / 1000).log1p())
    loud = ratio_mask_loss((0.5 * noisy_mag).log1p(), noisy, clean)
    assert float(quiet) == pytest.approx(float(loud), rel=1e-3)
    # A target above the mixture (a reverberant tail the dry speech lacks is the other way) caps at 1.
    assert float(ratio_mask_loss(noisy, noisy, (2 * noisy_mag).log1p())) == pytest.approx(0.0, abs=1e-7)
    padded = (0.5 * noisy_mag).log1p()
    padded[1, 3:] = 0.0  # beyond the second utterance's length
    lengths = torch.tensor([1.0, 0.6])
    unpadded = (0.5 * noisy_mag).log1p()
    assert float(ratio_mask_loss(padded, noisy, clean, lengths)) == pytest.approx(
        float(ratio_mask_loss(unpadded, noisy, clean, lengths)))
    mask = torch.full((2, 5, 4), 0.9, requires_grad=True)
    ratio_mask_loss(mask * noisy, noisy, torch.zeros_like(clean), lengths).backward()  # silence: lower the gain
    assert bool((mask.grad[0] > 0).all()) and bool((mask.grad[1, 3:] == 0).all())
    assert bool(torch.isfinite(mask.grad).all())


def test_recipe_loss_adds_the_weighted_gain_term_in_training_only():
    from speechbrain_sqe.brains.bsse import BSSEBrain
    from speechbrain_sqe.lobes.bsse import ratio_mask_loss

    enhanced, target, noisy, noise = (torch.rand(2, 6, 5) for _ in range(4))
    lengths = torch.tensor([1.0, 0.5])
    brain = BSSEBrain(modules={}, hparams={"gain_loss_weight": 2.0})
    plain = brain.compute_objectives((enhanced, target, lengths), None, None)  # validation: the plain L1
    assert torch.allclose(plain, log1p_l1_loss(enhanced, target, lengths))
    trained = brain.compute_objectives((enhanced, target, lengths, noisy), None, None)
    assert torch.allclose(trained, plain + 2.0 * ratio_mask_loss(enhanced, noisy, target, lengths))
    both = BSSEBrain(modules={}, hparams={"gain_loss_weight": 2.0, "residual_noise_weight": 0.5})
    assert torch.allclose(both.compute_objectives((enhanced, target, lengths, noisy, noise), None, None),
                          trained + 0.5 * residual_noise_loss(enhanced, noisy, noise, lengths))


def test_overestimate_weight_costs_noise_left_in_more_than_speech_taken_and_trains_only():
    import speechbrain as sb

    from speechbrain_sqe.brains.bsse import BSSEBrain

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 6, 5, generator=generator)
    lengths = torch.tensor([1.0, 0.5])
    above, below = target + 0.2, target - 0.2
    assert float(log1p_l1_loss(above, target, lengths, overestimate_weight=4.0)) == pytest.approx(0.8)
    assert float(log1p_l1_loss(below, target, lengths, overestimate_weight=4.0)) == pytest.approx(0.2)
    assert float(log1p_l1_loss(above, target, lengths, overestimate_weight=1.0)) == pytest.approx(
        float(log1p_l1_loss(above, target, lengths)))
    # Its minimiser over a spread of targets is their quantile 1 / (1 + w), not their median.
    targets = torch.linspace(0.0, 1.0, 101).reshape(1, 101, 1)
    candidates = torch.linspace(0.0, 1.0, 101)
    costs = [float(log1p_l1_loss(torch.full_like(targets, c), targets, overestimate_weight=4.0)) for c in candidates]
    assert float(candidates[int(torch.tensor(costs).argmin())]) == pytest.approx(0.2, abs=0.011)
    # The recipe: asymmetric in training, the plain L1 in validation (the checkpoint's criterion).
    brain = BSSEBrain(modules={}, hparams={"overestimate_weight": 4.0})
    trained = brain.compute_objectives((above, target, lengths), None, sb.Stage.TRAIN)
    validated = brain.compute_objectives((above, target, lengths), None, sb.Stage.VALID)
    assert float(trained) == pytest.approx(0.8) and float(validated) == pytest.approx(0.2)


def test_training_mixture_is_the_speech_plus_the_noise_it_reports(tmp_path):
    """The recipe's on-the-fly mixture (SpeechBrain's AddNoise on a noise manifest, noise varied) is
    the speech plus the noise :meth:`corrupt_with_noise` returns, both zero past each length."""
    import soundfile as sf
    from speechbrain.augment.time_domain import AddNoise

    from speechbrain_sqe.brains.bsse import BSSEBrain
    from speechbrain_sqe.dataio.noise_variation import NoiseVariation

    noise_file = tmp_path / "noise.wav"
    sf.write(noise_file, 0.1 * torch.randn(32000, generator=torch.Generator().manual_seed(1)).numpy(), 16000)
    manifest = tmp_path / "noise.csv"
    manifest.write_text(f"ID,duration,wav,wav_format,wav_opts\nn0,2.0,{noise_file},wav,\n")
    brain = BSSEBrain(modules={}, hparams={"reverb_prob": 0.0, "noise_variation": NoiseVariation(prob=1.0)})
    brain.add_reverb = None
    brain.add_noise = AddNoise(csv_file=str(manifest), snr_low=0, snr_high=0, noise_sample_rate=16000,
                               clean_sample_rate=16000)
    t = torch.arange(16000) / 16000
    clean = torch.stack([0.3 * torch.sin(2 * torch.pi * 200 * t), 0.2 * torch.sin(2 * torch.pi * 300 * t)])
    lens = torch.tensor([1.0, 0.5])
    noisy, noise = brain.corrupt_with_noise(clean, lens)
    valid = torch.ones_like(clean)
    valid[1, 8000:] = 0
    assert torch.allclose(noisy, clean * valid + noise, atol=1e-6)
    assert float(noise[:, :8000].abs().mean()) > 0.01 and float(noise[1, 8000:].abs().max()) == 0.0


def test_two_noise_mixture_keeps_the_snr_and_sums_two_draws(tmp_path):
    """``noise_mixture_prob``: the noise is the sum of two training-noise draws at the first draw's
    power (the SNR the mixer chose), and the mixture is still the speech plus that noise."""
    import soundfile as sf
    from speechbrain.augment.time_domain import AddNoise

    from speechbrain_sqe.brains.bsse import BSSEBrain

    rows = ["ID,duration,wav,wav_format,wav_opts"]
    for index, freq in enumerate((500.0, 3000.0)):  # two tonal "noises" whose sum is recognisable
        path = tmp_path / f"n{index}.wav"
        sf.write(path, (0.1 * torch.sin(2 * torch.pi * freq * torch.arange(32000) / 16000)).numpy(), 16000)
        rows.append(f"n{index},2.0,{path},wav,")
    manifest = tmp_path / "noise.csv"
    manifest.write_text("\n".join(rows) + "\n")
    clean = 0.2 * torch.randn(8, 16000, generator=torch.Generator().manual_seed(0))
    lens = torch.ones(8)

    def corrupt(prob):
        torch.manual_seed(3)
        brain = BSSEBrain(modules={}, hparams={"reverb_prob": 0.0, "noise_mixture_prob": prob})
        brain.add_reverb = None
        brain.add_noise = AddNoise(csv_file=str(manifest), snr_low=5, snr_high=5, noise_sample_rate=16000,
                                   clean_sample_rate=16000)
        return brain.corrupt_with_noise(clean, lens)

    _, noise_one = corrupt(0.0)
    noisy_two, noise_two = corrupt(1.0)
    assert torch.allclose(noisy_two, clean + noise_two, atol=1e-6)
    # same power as the single draw (the SNR the mixer drew: 5 dB for both)
    assert torch.allclose(noise_two.pow(2).mean(1), noise_one.pow(2).mean(1), rtol=1e-3)
    # every utterance now holds both tones (energy at 500 Hz and at 3 kHz), none did before
    spectrum = torch.fft.rfft(noise_two, dim=1).abs()
    both = (spectrum[:, 500] > 0.1 * spectrum.max(1).values) & (spectrum[:, 3000] > 0.1 * spectrum.max(1).values)
    assert bool(both.all())
    spectrum_one = torch.fft.rfft(noise_one, dim=1).abs()
    assert not bool(((spectrum_one[:, 500] > 0.1 * spectrum_one.max(1).values)
                     & (spectrum_one[:, 3000] > 0.1 * spectrum_one.max(1).values)).any())
