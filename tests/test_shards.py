"""Training corpora as WebDataset tar shards (``dataio/shards.py``, ``train_shards`` of every recipe):
writing (resumable, refusing what it cannot do), streaming (the recipe's own pipeline, disjoint
shards per rank, per-epoch shuffles, a skip on resume, clear errors), and a recipe trained from
shards against the same recipe trained from files."""

import glob
import importlib.util
import json
import os
import signal

import pytest
import torch
from recipe_args import ROOT, assert_ranks_agree, recipe_args, run_ddp, tiny_corpus

import train
from speechbrain_sqe.dataio.audio import AudioLoadError, save_audio
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset, paired_dataset
from speechbrain_sqe.dataio.shards import (
    ShardedDataset,
    ShardError,
    main,
    read_index,
    write_shards,
)

_SPEC = importlib.util.spec_from_file_location("soak", os.path.join(ROOT, "benchmarks", "soak.py"))
soak = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(soak)


def _corpus(folder, count=7, stereo_8k=False):
    """``count`` random clips (different lengths) and their manifest; one column of each kind."""
    rows = []
    for number in range(count):
        name = f"utt{number}"
        path = os.path.join(folder, f"{name}.wav")
        save_audio(path, (torch.rand(1600 + 160 * number) - 0.5) * 0.5)
        rows.append(f"{name},{(1600 + 160 * number) / 16000},{path},spk{number % 3}")
    manifest = os.path.join(folder, "train.csv")
    with open(manifest, "w", encoding="utf-8") as stream:
        stream.write("ID,duration,wav,speaker\n" + "\n".join(rows) + "\n")
    return manifest


@pytest.fixture
def corpus(tmp_path):
    manifest = _corpus(str(tmp_path))
    write_shards(manifest, str(tmp_path / "shards"), samples_per_shard=3)
    return manifest, str(tmp_path / "shards")


def test_shards_hold_the_manifest_in_order_and_stream_the_same_items_as_files(corpus):
    manifest, folder = corpus
    index = read_index(folder)
    assert [shard["samples"] for shard in index["shards"]] == [3, 3, 1]
    assert index["samples"] == 7 and index["columns"] == ["wav"]
    assert abs(index["hours"] * 3600 - sum(0.1 + 0.01 * n for n in range(7))) < 1e-6
    files = clean_speech_dataset(manifest)
    items = list(ShardedDataset(folder, files))
    assert [item["id"] for item in items] == [f"utt{n}" for n in range(7)]
    for number, item in enumerate(items):
        assert set(item) == {"id", "sig"} and torch.equal(item["sig"], files[number]["sig"])


def test_the_pipeline_sees_the_other_columns_and_a_named_shard_member(corpus):
    """The row's columns reach the recipe's pipeline as the manifest has them (duration as float),
    and audio as in-memory files named after their shard member (what an error would show)."""
    manifest, folder = corpus
    files = clean_speech_dataset(manifest)
    seen = []

    def spy(wav, speaker, duration):
        seen.append((str(wav), speaker, duration))
        return speaker

    import speechbrain as sb

    files.add_dynamic_item(sb.utils.data_pipeline.takes("wav", "speaker", "duration")(
        sb.utils.data_pipeline.provides("spy")(spy)))
    files.set_output_keys(["id", "sig", "spy"])
    items = list(ShardedDataset(folder, files))
    assert [item["spy"] for item in items] == [f"spk{n % 3}" for n in range(7)]
    assert seen[0][0] == os.path.join(folder, "shard-000000.tar") + "/000000000.wav.wav"
    assert seen[0][2] == pytest.approx(0.1)


def test_ranks_read_disjoint_shards_and_the_same_number_of_samples(corpus):
    manifest, folder = corpus
    files = clean_speech_dataset(manifest)
    for epoch in range(3):
        ranks = []
        for rank in range(2):
            stream = ShardedDataset(folder, files, shuffle=True, seed=3, rank=rank, world_size=2)
            stream.set_epoch(epoch)
            ranks.append([item["id"] for item in stream])
            assert len(ranks[-1]) == len(stream)
        assert len(ranks[0]) == len(ranks[1])
        assert not set(ranks[0]) & set(ranks[1])
        # 3 shards of 3, 3 and 1 samples: one rank gets two shards, the other one; both yield the
        # smaller total (1 or 3 samples), never a sample of another rank's shards.
        assert len(ranks[0]) in (1, 3)
    with pytest.raises(ShardError, match="3 shards for 4 ranks"):
        ShardedDataset(folder, files, rank=0, world_size=4)


def test_shuffle_changes_with_the_epoch_and_repeats_with_the_seed(corpus):
    manifest, folder = corpus
    files = clean_speech_dataset(manifest)

    def order(epoch, seed=5, shuffle=True):
        stream = ShardedDataset(folder, files, shuffle=shuffle, seed=seed, buffer_size=4)
        stream.set_epoch(epoch)
        return [item["id"] for item in stream]

    assert order(1) == order(1)
    assert sorted(order(1)) == sorted(order(2)) == [f"utt{n}" for n in range(7)]
    assert len({tuple(order(epoch)) for epoch in range(6)}) > 1
    assert order(1, shuffle=False) == [f"utt{n}" for n in range(7)]


def test_skip_passes_over_samples_without_running_the_pipeline(corpus):
    """An intra-epoch resume: the rest of the epoch with the random draws of the uninterrupted run."""
    manifest, folder = corpus
    files = clean_speech_dataset(manifest, crop_seconds=0.05)  # random crops draw from torch's RNG
    stream = ShardedDataset(folder, files, shuffle=True, seed=2)
    stream.set_epoch(4)
    torch.manual_seed(0)
    whole = list(stream)
    torch.manual_seed(0)
    head = [next(iter(stream)) for _ in range(1)]  # the first sample, as the killed run drew it
    state = torch.get_rng_state()
    stream.set_epoch(4, skip=1)
    torch.set_rng_state(state)
    rest = list(stream)
    assert [item["id"] for item in head + rest] == [item["id"] for item in whole]
    assert all(torch.equal(a["sig"], b["sig"]) for a, b in zip(head + rest, whole))


def test_paired_columns_and_a_rerun_keeps_complete_shards(tmp_path):
    clean, noisy = tmp_path / "c.wav", tmp_path / "n.flac"
    save_audio(str(clean), torch.rand(3200) - 0.5)
    import soundfile

    soundfile.write(str(noisy), (torch.rand(3200) - 0.5).numpy(), 16000)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"ID,duration,clean_wav,noisy_wav\np,0.2,{clean},{noisy}\nq,0.2,{clean},{noisy}\n")
    folder = tmp_path / "shards"
    first = write_shards(str(manifest), str(folder), samples_per_shard=1)
    assert first["columns"] == ["clean_wav", "noisy_wav"]
    shard_bytes = (folder / "shard-000001.tar").read_bytes()
    # An interrupted write: the second shard and the index missing, a partial file left.
    (folder / "shard-000001.tar").unlink()
    (folder / "shards.json").unlink()
    (folder / "shard-000001.tar.partial").write_bytes(b"half")
    with pytest.raises(ShardError, match="no shards.json"):
        read_index(str(folder))
    assert write_shards(str(manifest), str(folder), samples_per_shard=1) == first
    assert (folder / "shard-000001.tar").read_bytes() == shard_bytes  # the same bytes again
    files = paired_dataset(str(manifest))
    items = list(ShardedDataset(str(folder), files))
    assert torch.equal(items[1]["noisy_sig"], files[1]["noisy_sig"])
    # Another manifest or layout into the same folder is refused, not mixed in.
    with pytest.raises(ShardError, match="write to an empty folder"):
        write_shards(str(manifest), str(folder), samples_per_shard=2)


def test_bad_input_is_named(tmp_path):
    manifest = _corpus(str(tmp_path), count=2)
    os.remove(tmp_path / "utt1.wav")
    with pytest.raises(ShardError, match=r"row 'utt1', column 'wav': .*utt1.wav: file not found"):
        write_shards(manifest, str(tmp_path / "a"))
    empty = tmp_path / "empty.csv"
    empty.write_text("ID,duration,wav\n")
    with pytest.raises(ShardError, match="holds no rows"):
        write_shards(str(empty), str(tmp_path / "b"))
    no_audio = tmp_path / "text.csv"
    no_audio.write_text("ID,duration,text\na,1.0,hello\n")
    with pytest.raises(ShardError, match="no column holds audio"):
        write_shards(str(no_audio), str(tmp_path / "c"))
    with pytest.raises(ShardError, match="not a shard folder"):
        read_index(str(tmp_path))
    with pytest.raises(SystemExit, match="error: .*holds no rows"):
        main([str(empty), str(tmp_path / "d")])


def test_damaged_shards_and_audio_are_named(corpus, tmp_path):
    manifest, folder = corpus
    files = clean_speech_dataset(manifest)
    with open(os.path.join(folder, "shard-000001.tar"), "r+b") as stream:
        stream.truncate(700)  # inside the first member
    with pytest.raises(ShardError, match="shard-000001.tar: cannot read the shard"):
        list(ShardedDataset(folder, files))
    os.remove(os.path.join(folder, "shard-000002.tar"))
    with pytest.raises(ShardError, match="shard-000002.tar listed in shards.json is missing"):
        ShardedDataset(folder, files)
    # Audio that is not audio: the loader's error names the shard member.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"not a wav file at all")
    (bad / "m.csv").write_text(f"ID,duration,wav\nx,1.0,{bad / 'x.wav'}\n")
    write_shards(str(bad / "m.csv"), str(bad / "shards"))
    with pytest.raises(AudioLoadError, match=r"shard-000000.tar/000000000.wav.wav: cannot read as audio"):
        list(ShardedDataset(str(bad / "shards"), clean_speech_dataset(str(bad / "m.csv"))))


def test_shards_of_another_kind_of_manifest_are_named(corpus):
    """Clean-speech shards given to a recipe whose pipeline reads noisy/clean pairs."""
    manifest, folder = corpus
    pairs = os.path.join(os.path.dirname(manifest), "pairs.csv")
    with open(pairs, "w", encoding="utf-8") as stream:
        stream.write("ID,duration,clean_wav,noisy_wav\nx,1.0,c.wav,n.wav\n")
    with pytest.raises(ShardError, match=r"shard-000000.tar: the recipe's data pipeline needs a column the shards lack \(.*_wav"):
        list(ShardedDataset(folder, paired_dataset(pairs)))


def test_command_line_writes_a_folder(tmp_path, capsys):
    manifest = _corpus(str(tmp_path), count=3)
    main([manifest, str(tmp_path / "s"), "--samples_per_shard=2"])
    printed = capsys.readouterr().out
    assert "3 samples" in printed and "2 shards" in printed
    assert json.loads((tmp_path / "s" / "shards.json").read_text())["samples_per_shard"] == 2


# ---------------------------------------------------------------- a recipe from shards

RECIPE = os.path.join(ROOT, "hparams", "vqscore.yaml")
TINY = tiny_corpus(valid_pairs=6, test_pairs=6) + (  # the soak's corpus (benchmarks/soak.py)
    " --codebook_size=32 --batch_size=4 --crop_seconds=1.0 --test_metrics=[pesq_wb] --metric_jobs=1")
IN_ORDER = "--train_dataloader_opts={batch_size: 4, shuffle: False}"


def _weights(out):
    return torch.load(out / "hub" / "vqvae.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def from_files(tmp_path_factory):
    """A tiny VQScore run from files in the manifest's order, and its training manifest as shards."""
    root = tmp_path_factory.mktemp("shard_recipe")
    data, out = root / "data", root / "files"
    train.main(recipe_args(RECIPE, data, out, 1, TINY, IN_ORDER) + ["--deterministic"])
    manifest = glob.glob(str(data / "**" / "train_clean.csv"), recursive=True)[0]
    write_shards(manifest, str(root / "shards"), samples_per_shard=4)
    return data, out, root / "shards"


def test_a_recipe_trained_from_shards_equals_the_one_trained_from_files(from_files, tmp_path):
    data, files_out, shards = from_files
    out = tmp_path / "shards_run"
    train.main(recipe_args(RECIPE, data, out, 1, TINY, IN_ORDER, f"--train_shards={shards}") + ["--deterministic"])
    reference, streamed = _weights(files_out), _weights(out)
    assert reference.keys() == streamed.keys()
    assert all(torch.equal(reference[key], streamed[key]) for key in reference)
    assert "Training from the shards" in (out / "log.txt").read_text()
    # And the comparison can fail: shuffled shards train another model.
    shuffled = tmp_path / "shuffled"
    train.main(recipe_args(RECIPE, data, shuffled, 1, TINY, f"--train_shards={shards}") + ["--deterministic"])
    assert not all(torch.equal(reference[key], _weights(shuffled)[key]) for key in reference)


def test_a_run_from_shards_killed_mid_epoch_resumes_to_the_uninterrupted_result(from_files, tmp_path):
    data, _, shards = from_files
    extra = (f"--train_shards={shards}", "--ckpt_interval_steps=1")
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert soak.run_train(soak.recipe_command("vqscore", data, reference, extra))[0] == 0
    assert soak.run_train(soak.recipe_command("vqscore", data, killed, extra), kill_at="train:2:2")[0] \
        == -signal.SIGKILL
    assert soak.run_train(soak.recipe_command("vqscore", data, killed, extra))[0] == 0
    assert soak.compare_runs(str(reference), str(killed)) == []


def test_ddp_ranks_train_from_their_own_shards(from_files, tmp_path):
    data, _, shards = from_files
    out = tmp_path / "ddp"
    result, ranks = run_ddp(recipe_args(RECIPE, data, out, 1, TINY, f"--train_shards={shards}"), out)
    assert result.returncode == 0, result.stderr[-12000:]
    assert_ranks_agree(ranks)
    log = (out / "log.txt").read_text()  # rank 0's log names every rank's shards
    total = read_index(str(shards))["shards"]
    assert f"rank 0 of 2 reads {len(total[0::2])} of {len(total)} shards" in log, log[-3000:]
    assert f"rank 1 of 2 reads {len(total[1::2])} of {len(total)} shards" in log, log[-3000:]
