"""Length-sorted batches with a budget of padded audio (``inference.batching.budget_batches``), and
batches padded to a multiple of a length."""

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_sqe.inference.batching import (
    MAX_PADDED_SAMPLES,
    budget_batches,
    collate_padded,
    length_sorted_loader,
    map_batches,
)
from speechbrain_sqe.inference.distributed_jobs import batch_shard


def _random_durations(seed, count=60):
    rng = np.random.default_rng(seed)
    short = rng.uniform(1, 20, count).tolist()
    long = rng.uniform(100, 4000, count // 4).tolist()  # recordings of minutes to an hour
    return [float(x) for x in rng.permutation(short + long)]


def test_budget_batches_keep_order_size_and_budget():
    for seed in range(5):
        durations = sorted(_random_durations(seed))
        batches = budget_batches(durations, 8, max_seconds=600.0)
        assert [i for batch in batches for i in batch] == list(range(len(durations)))
        for batch in batches:
            assert 1 <= len(batch) <= 8
            assert len(batch) == 1 or len(batch) * durations[batch[-1]] <= 600.0
            assert batch[0] // 8 == batch[-1] // 8  # never across a group of batch_size
    assert budget_batches([1.0] * 5, 2, max_seconds=None) == [[0, 1], [2, 3], [4]]


def test_ranks_of_a_distributed_job_batch_as_one_process():
    """Each rank's share (``batch_shard``), batched alone, gives exactly the one-process batches."""
    for seed in range(5):
        durations = _random_durations(seed)
        order = sorted(range(len(durations)), key=lambda i: durations[i])
        alone = [[order[i] for i in batch] for batch in budget_batches([durations[i] for i in order], 8)]
        for world in (2, 3):
            together = []
            for share in batch_shard(durations, 8, world):
                mine = sorted(share, key=lambda i: durations[i])
                together += [[mine[i] for i in batch] for batch in budget_batches([durations[i] for i in mine], 8)]
            assert sorted(together) == sorted(alone), (seed, world)


def test_loader_splits_batches_of_long_files(tmp_path):
    paths = []
    for name, seconds in [("a", 1.0), ("b", 1.0), ("c", 3.0), ("d", 3.0), ("e", 3.0)]:
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, np.zeros(int(seconds * 16000), dtype=np.float32), 16000)
        paths.append(str(path))
    def load(path):
        return torch.as_tensor(soundfile.read(path, dtype="float32")[0])
    sizes = [len(batch[0]) for batch in length_sorted_loader(paths, load, 4, max_batch_seconds=7.0)]
    # a b | c d (a b c would pad to 3 x 3 s = 9 s > 7 s) | e (next group of 4), the longest first
    assert sizes == [1, 2, 2]
    sizes = [len(batch[0]) for batch in length_sorted_loader(paths, load, 4, max_batch_seconds=None)]
    assert sizes == [1, 4]


def test_batches_padded_to_a_multiple_keep_each_files_samples():
    """``length_multiple`` pads the batch, in both the threaded and the serial path, and the relative
    lengths still give each file's own sample count back."""
    lengths = {"a": 5, "bb": 9, "ccc": 16, "dddd": 17}
    load = lambda name: torch.arange(1, lengths[name] + 1, dtype=torch.float32)
    for threads in (1, 2):
        seen = list(map_batches(list(lengths), load, lambda names, wavs, lens, bad: (names, wavs, lens),
                                batch_size=2, threads=threads, length_multiple=8))
        assert [wavs.shape[1] for _, wavs, _ in seen] == [24, 16]  # 17 -> 24 samples, 9 -> 16
        for names, wavs, lens in seen:
            for row, name in enumerate(names):
                count = round(float(lens[row]) * wavs.shape[1])
                assert count == lengths[name]
                assert torch.equal(wavs[row, :count], load(name)) and not wavs[row, count:].any()
    with pytest.raises(ValueError, match="length_multiple must be a positive"):
        collate_padded([("a", torch.ones(3), None)], length_multiple=0)
    # A batch longer than MAX_PADDED_SAMPLES keeps its length: float32 relative lengths then read
    # back each file's samples exactly (padded, a 20-minute file could come back a sample off).
    long = MAX_PADDED_SAMPLES + 3
    _, wavs, lens, _ = collate_padded([("a", torch.ones(long), None), ("b", torch.ones(5), None)], 4096)
    assert wavs.shape[1] == long and float(lens[0]) == 1.0
    for n in range(2**24 + 1, 2**24 + 4096 * 64, 4093):  # why: padded rows past 2**24 do drift
        target = -(-n // 4096) * 4096
        if round(float(torch.tensor([n / target])[0]) * target) != n:
            break
    else:
        raise AssertionError("no drift found past 2**24: the limit may be raised")
