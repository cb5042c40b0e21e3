"""Reading training speech from tar shards against reading the files: one epoch of a recipe's
training pipeline (decode, resample, random crop, gain) through a DataLoader, and the write.

    python benchmarks/bench_shards.py [--manifest CSV] [--limit N] [--samples_per_shard 200]

Default manifest: the real-speech training split (``data/manifest/.../train_clean.csv``, made by
any recipe run with ``--corpus=manifest``), else a corpus of 5 s random files made here. Prints a
markdown table: seconds, samples/s and x real time per way of reading, and the shard folder's size
against the files'.
"""

import argparse
import glob
import os
import sys
import tempfile
import time

import torch
from speechbrain.dataio.batch import PaddedBatch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from speechbrain_sqe.dataio.audio import save_audio
from speechbrain_sqe.dataio.pipelines import clean_speech_dataset
from speechbrain_sqe.dataio.shards import ShardedDataset, write_shards


def default_manifest(folder, limit):
    found = sorted(glob.glob("data/manifest/*/train_clean.csv"))
    if found:
        return found[0]
    rows = []
    for number in range(limit):
        path = os.path.join(folder, f"f{number}.wav")
        save_audio(path, (torch.rand(80000) - 0.5) * 0.2)
        rows.append(f"f{number},5.0,{path}")
    manifest = os.path.join(folder, "made.csv")
    with open(manifest, "w", encoding="utf-8") as stream:
        stream.write("ID,duration,wav\n" + "\n".join(rows) + "\n")
    return manifest


def limited(manifest, folder, limit):
    with open(manifest, encoding="utf-8") as stream:
        lines = stream.readlines()
    path = os.path.join(folder, "limited.csv")
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(lines[: limit + 1])
    return path


def epoch_seconds(dataset, shuffle):
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, collate_fn=PaddedBatch,
                                         **({"shuffle": True} if shuffle else {}))
    start, samples = time.time(), 0
    for batch in loader:
        samples += batch.sig.data.shape[0]
    return time.time() - start, samples


def folder_bytes(paths):
    return sum(os.path.getsize(path) for path in paths)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--limit", type=int, default=400, help="rows of the manifest used")
    parser.add_argument("--samples_per_shard", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as work:
        manifest = limited(args.manifest or default_manifest(work, args.limit), work, args.limit)
        files = clean_speech_dataset(manifest, crop_seconds=3.0, gain_range=(0.5, 1.5))
        hours = sum(float(files.data[key]["duration"]) for key in files.data_ids) / 3600
        start = time.time()
        index = write_shards(manifest, os.path.join(work, "shards"), args.samples_per_shard)
        write_seconds = time.time() - start
        shard_bytes = sum(shard["bytes"] for shard in index["shards"])
        source_bytes = folder_bytes({files.data[key]["wav"] for key in files.data_ids})
        print(f"manifest: {args.manifest or 'default'} ({len(files)} files, {hours * 60:.1f} min); "
              f"shards written in {write_seconds:.1f} s, {len(index['shards'])} shards, "
              f"{shard_bytes / 1e6:.1f} MB (files {source_bytes / 1e6:.1f} MB)\n")
        print("| read | seconds | samples/s | x real time |")
        print("|---|---|---|---|")
        for name, dataset, shuffle in [
            ("files, shuffled (sampler)", files, True),
            ("files, in order", files, False),
            ("shards, shuffled (shard order + buffer 1000)",
             ShardedDataset(os.path.join(work, "shards"), files, shuffle=True), False),
            ("shards, in order", ShardedDataset(os.path.join(work, "shards"), files), False),
        ]:
            seconds, samples = epoch_seconds(dataset, shuffle)
            print(f"| {name} | {seconds:.2f} | {samples / seconds:.0f} | {hours * 3600 / seconds:.0f} |")


if __name__ == "__main__":
    main()
