"""Training corpora as WebDataset tar shards: written from any manifest, streamed into any recipe.

A corpus of many small files is slow to copy and to read from network or object storage, and a
corpus larger than one disk has to be split anyway; tar shards (the `WebDataset
<https://github.com/webdataset/webdataset>`_ layout SpeechBrain's data loader supports) fix both.

A shard folder, written by :func:`write_shards` (``python -m speechbrain_sqe.dataio.shards``)::

    shard-000000.tar, shard-000001.tar, ...   samples in the manifest's order; sample k is
                                              <k>.row.json      the manifest row (as SpeechBrain's
                                                                load_data_csv reads it, ID included)
                                              <k>.<column>.<ext> each audio column's file, its bytes
                                                                unchanged (decoded from the shard it
                                                                gives the samples the file gives)
    shards.json                               the index (source, audio columns, per-shard samples,
                                              hours, bytes); written last: no index, no shard folder

:class:`ShardedDataset` streams a shard folder through the data pipeline of the recipe's own
training dataset (a ``DynamicItemDataset`` built from the manifest), so a method needs no code for
shards: its YAML's ``train_shards`` switches the training set (``brains/base.py``). Each rank of a
DDP run reads its own shards (disjoint; every rank yields the same number of samples so the ranks
stay in step); shuffling is WebDataset's: the shard order per epoch, then a buffer.

What matches and what differs from ``webdataset.WebDataset``: the tar members and keys are
WebDataset's and the tar files are read and written with its ``tariterators``/``TarWriter``; the
shard-to-rank split, the equal per-rank sample count, the per-epoch seeding and the skip on an
intra-epoch resume are written here (``WebDataset``'s ``split_by_node`` gives ranks unequal sample
counts, which stalls DDP, and its shuffle is not reseeded by epoch).

Without shuffling, a recipe trained from shards and from the same manifest's files with the same
seed gives the same model (``tests/test_shards.py``): the samples come in the manifest's order and
decode to the same tensors.
"""

import argparse
import json
import logging
import os
import random
import tarfile

import torch
from speechbrain.dataio.dataio import load_data_csv

from speechbrain_sqe.dataio.audio import AudioBytes

logger = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
SHARD_PATTERN = "shard-{:06d}.tar"
#: File name endings that mark a manifest column as audio (its files go into the shards).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


class ShardError(ValueError):
    """A shard folder that cannot be written or read as asked; the message names it."""


def audio_columns(rows):
    """The manifest columns whose values are audio files (by their file name ending).

    Arguments
    ---------
    rows : dict
        Rows as ``load_data_csv`` returns them (``{ID: {column: value}}``).

    Returns
    -------
    list of str
        The audio columns, in the manifest's order.

    Example
    -------
    >>> audio_columns({"a": {"duration": 1.0, "wav": "/x/a.wav", "speaker": "s1"}})
    ['wav']
    """
    first = next(iter(rows.values()), {})
    return [column for column, value in first.items()
            if isinstance(value, str) and value.lower().endswith(AUDIO_EXTENSIONS)]


def write_shards(manifest, folder, samples_per_shard=1000, columns=None):
    """Writes a manifest's rows and audio files as tar shards with an index (resumable).

    Shard ``i`` holds rows ``i * samples_per_shard`` onwards in the manifest's order, so a rerun
    after an interruption keeps the complete shards (each is written as ``.partial`` and renamed)
    and writes the rest; the index is written last.

    Arguments
    ---------
    manifest : str
        SpeechBrain CSV (``ID``, ``duration`` and audio columns; ``$data_root`` is not expanded).
    folder : str
        The shard folder to write.
    samples_per_shard : int
        Samples per tar file (the last one holds the rest).
    columns : list of str, optional
        The audio columns to store; default: every column whose values are audio files.

    Returns
    -------
    dict
        The index (also written to ``<folder>/shards.json``).

    Raises
    ------
    ShardError
        For an empty manifest, no audio column, a column name with a dot, a missing audio file, or a
        folder holding shards of another manifest.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> root = tempfile.mkdtemp()
    >>> for name in "abc":
    ...     save_audio(os.path.join(root, name + ".wav"), torch.zeros(1600))
    >>> rows = "".join(f"{n},0.1,{root}/{n}.wav\\n" for n in "abc")
    >>> _ = open(os.path.join(root, "m.csv"), "w").write("ID,duration,wav\\n" + rows)
    >>> index = write_shards(os.path.join(root, "m.csv"), os.path.join(root, "shards"), 2)
    >>> [shard["samples"] for shard in index["shards"]], index["columns"]
    ([2, 1], ['wav'])
    """
    from webdataset import TarWriter

    if samples_per_shard < 1:
        raise ShardError(f"{folder}: samples_per_shard must be at least 1 (got {samples_per_shard})")
    rows = load_data_csv(manifest)
    if not rows:
        raise ShardError(f"{manifest}: the manifest holds no rows")
    columns = list(columns) if columns else audio_columns(rows)
    if not columns:
        raise ShardError(f"{manifest}: no column holds audio files (by their ending: "
                         f"{', '.join(AUDIO_EXTENSIONS)}); name them with columns=")
    for column in columns:
        if "." in column:
            raise ShardError(f"{manifest}: column '{column}' has a dot (WebDataset keys split at dots)")
    os.makedirs(folder, exist_ok=True)
    _check_same_source(folder, manifest, len(rows), samples_per_shard, columns)
    ids = list(rows)
    shards = []
    for number, start in enumerate(range(0, len(ids), samples_per_shard)):
        name = SHARD_PATTERN.format(number)
        path = os.path.join(folder, name)
        part = ids[start : start + samples_per_shard]
        if not os.path.exists(path):
            try:
                with open(path + ".partial", "wb") as stream:
                    writer = TarWriter(stream, encoder=False, mtime=0)  # mtime: the same bytes every run
                    try:
                        for offset, item_id in enumerate(part):
                            writer.write(_sample(start + offset, item_id, rows[item_id], columns, manifest))
                    finally:
                        writer.close()
            except BaseException:
                os.remove(path + ".partial")
                raise
            os.replace(path + ".partial", path)
            logger.info("wrote %s (%d samples)", path, len(part))
        shards.append({
            "file": name,
            "samples": len(part),
            "hours": sum(float(rows[item_id].get("duration", 0.0)) for item_id in part) / 3600.0,
            "bytes": os.path.getsize(path),
        })
    index = {
        "source": os.path.abspath(manifest),
        "columns": columns,
        "samples_per_shard": samples_per_shard,
        "samples": len(ids),
        "hours": sum(shard["hours"] for shard in shards),
        "shards": shards,
    }
    with open(os.path.join(folder, INDEX_NAME + ".partial"), "w", encoding="utf-8") as stream:
        json.dump(index, stream, indent=1)
    os.replace(os.path.join(folder, INDEX_NAME + ".partial"), os.path.join(folder, INDEX_NAME))
    return index


def _sample(position, item_id, row, columns, manifest):
    """One WebDataset sample: the row as JSON and each audio column's file bytes."""
    sample = {"__key__": f"{position:09d}", "row.json": json.dumps({"ID": item_id, **row}).encode()}
    for column in columns:
        path = row[column]
        if not os.path.isfile(path):
            raise ShardError(f"{manifest}: row '{item_id}', column '{column}': {path}: file not found")
        extension = os.path.splitext(path)[1].lstrip(".").lower() or "wav"
        with open(path, "rb") as stream:
            sample[f"{column}.{extension}"] = stream.read()
    return sample


def _check_same_source(folder, manifest, count, samples_per_shard, columns):
    """Refuses to add to a folder whose shards came from another manifest or layout (a rerun's
    shards must be the same rows)."""
    stamp_path = os.path.join(folder, "source.json")
    stamp = {"source": os.path.abspath(manifest), "samples": count, "samples_per_shard": samples_per_shard,
             "columns": columns}
    if os.path.exists(stamp_path):
        with open(stamp_path, encoding="utf-8") as stream:
            previous = json.load(stream)
        if previous != stamp:
            raise ShardError(f"{folder}: holds shards written from {previous} , not {stamp}; "
                             "write to an empty folder")
        return
    if any(name.endswith(".tar") for name in os.listdir(folder)):
        raise ShardError(f"{folder}: holds tar files of unknown origin; write to an empty folder")
    with open(stamp_path, "w", encoding="utf-8") as stream:
        json.dump(stamp, stream)


def read_index(folder):
    """The index of a complete shard folder.

    Arguments
    ---------
    folder : str
        A folder written by :func:`write_shards`.

    Returns
    -------
    dict
        The index (``shards`` with ``file``, ``samples``, ``hours``, ``bytes``).

    Raises
    ------
    ShardError
        When the folder or its index is missing (an interrupted or never run write), or a shard
        listed is missing.
    """
    path = os.path.join(folder, INDEX_NAME)
    if not os.path.isfile(path):
        raise ShardError(f"{folder}: no {INDEX_NAME} (not a shard folder, or its writing did not finish: "
                         "rerun `python -m speechbrain_sqe.dataio.shards`)")
    with open(path, encoding="utf-8") as stream:
        index = json.load(stream)
    for shard in index["shards"]:
        if not os.path.isfile(os.path.join(folder, shard["file"])):
            raise ShardError(f"{folder}: shard {shard['file']} listed in {INDEX_NAME} is missing")
    return index


class ShardedDataset(torch.utils.data.IterableDataset):
    """Streams a shard folder through the data pipeline of a recipe's dataset.

    Arguments
    ---------
    folder : str
        A shard folder (:func:`write_shards`).
    template : speechbrain.dataio.dataset.DynamicItemDataset
        The recipe's dataset over the same manifest's columns: its dynamic items and output keys
        turn each row into an item (audio columns are read from the shard, not from disk).
    shuffle : bool
        Shuffle the shard order every epoch and the samples in a buffer.
    buffer_size : int
        Samples in the shuffle buffer.
    seed : int
        Seed of the shuffles (with the epoch, the rank and the worker).
    rank, world_size : int, optional
        This process's rank and the number of ranks; default: from ``torch.distributed`` when it
        is initialized, else ``RANK``/``WORLD_SIZE`` from the environment, else 0 and 1.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> from speechbrain_sqe.dataio.pipelines import clean_speech_dataset
    >>> root = tempfile.mkdtemp()
    >>> for name in "abcd":
    ...     save_audio(os.path.join(root, name + ".wav"), torch.rand(1600) - 0.5)
    >>> rows = "".join(f"{n},0.1,{root}/{n}.wav\\n" for n in "abcd")
    >>> _ = open(os.path.join(root, "m.csv"), "w").write("ID,duration,wav\\n" + rows)
    >>> _ = write_shards(os.path.join(root, "m.csv"), os.path.join(root, "shards"), 2)
    >>> files = clean_speech_dataset(os.path.join(root, "m.csv"))
    >>> stream = ShardedDataset(os.path.join(root, "shards"), files)
    >>> [item["id"] for item in stream], len(stream)
    (['a', 'b', 'c', 'd'], 4)
    >>> all(torch.equal(item["sig"], files[n]["sig"]) for n, item in enumerate(stream))
    True
    >>> [item["id"] for item in ShardedDataset(os.path.join(root, "shards"), files, rank=1, world_size=2)]
    ['c', 'd']
    """

    def __init__(self, folder, template, shuffle=False, buffer_size=1000, seed=0, rank=None, world_size=None):
        super().__init__()
        self.folder = folder
        self.index = read_index(folder)
        self.pipeline = template.pipeline
        self.shuffle = shuffle
        self.buffer_size = max(1, int(buffer_size))
        self.seed = int(seed)
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        if len(self.index["shards"]) < self.world_size:
            raise ShardError(f"{folder}: {len(self.index['shards'])} shards for {self.world_size} ranks: "
                             "every rank needs its own shard (write smaller shards: --samples_per_shard)")
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        """Selects the epoch's shard order and shuffles; ``skip`` samples of it were already used (an
        intra-epoch resume: they are passed over without running the pipeline, so the random draws
        of the rest are those of the uninterrupted run)."""
        self.epoch, self.skip = int(epoch), int(skip)

    def assignment(self, epoch=None):
        """Every rank's shards in an epoch (default: the current one) and how many of their samples
        each rank yields: the same number on every rank (the smallest rank total, so the ranks stay
        in step; with shuffling, another epoch's assignment uses the rest).

        Returns
        -------
        (list of list of dict, int)
            The shards of each rank (index entries), and the samples per rank.
        """
        shards = list(self.index["shards"])
        if self.shuffle:  # the same permutation on every rank: disjoint shards
            random.Random(self.seed * 1000003 + (self.epoch if epoch is None else epoch)).shuffle(shards)
        per_rank = [shards[rank :: self.world_size] for rank in range(self.world_size)]
        return per_rank, min(sum(shard["samples"] for shard in own) for own in per_rank)

    def rank_shards(self):
        """This rank's shards this epoch, and the samples it yields (:meth:`assignment`)."""
        per_rank, count = self.assignment()
        return per_rank[self.rank], count

    def describe(self, epoch=None):
        """One line saying which shards every rank reads in an epoch (for the log).

        Example
        -------
        >>> import tempfile
        >>> from speechbrain_sqe.dataio.audio import save_audio
        >>> from speechbrain_sqe.dataio.pipelines import clean_speech_dataset
        >>> root = tempfile.mkdtemp()
        >>> for name in "abc":
        ...     save_audio(os.path.join(root, name + ".wav"), torch.rand(1600) - 0.5)
        >>> rows = "".join(f"{n},0.1,{root}/{n}.wav\\n" for n in "abc")
        >>> _ = open(os.path.join(root, "m.csv"), "w").write("ID,duration,wav\\n" + rows)
        >>> _ = write_shards(os.path.join(root, "m.csv"), os.path.join(root, "shards"), 1)
        >>> files = clean_speech_dataset(os.path.join(root, "m.csv"))
        >>> print(ShardedDataset(os.path.join(root, "shards"), files, rank=0, world_size=2).describe())
        rank 0 of 2 reads 2 of 3 shards (2 samples), rank 1 of 2 reads 1 of 3 shards (1 samples); 1 samples per rank per epoch
        """
        per_rank, count = self.assignment(epoch)
        total = len(self.index["shards"])
        ranks = ", ".join(
            f"rank {rank} of {self.world_size} reads {len(own)} of {total} shards "
            f"({sum(shard['samples'] for shard in own)} samples)" for rank, own in enumerate(per_rank))
        return f"{ranks}; {count} samples per rank per epoch"

    def __len__(self):
        return self.rank_shards()[1]

    def __iter__(self):
        shards, count = self.rank_shards()
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        if workers > 1 and self.skip:
            raise ShardError(f"{self.folder}: resuming inside an epoch from shards needs num_workers=0")
        # The rank's first `count` samples in shard order; each worker reads its own shards of them.
        mine, start = [], 0
        for number, shard in enumerate(shards):
            keep = max(0, min(shard["samples"], count - start))
            if keep and number % workers == worker_id:
                mine.append((shard, keep))
            start += shard["samples"]
        rng = random.Random(((self.seed * 1000003 + self.epoch) * 1009 + self.rank) * 101 + worker_id)
        samples = self._read(mine)
        if self.shuffle:
            samples = _buffer_shuffle(samples, self.buffer_size, rng)
        for position, sample in enumerate(samples):
            if position < self.skip:
                continue
            row = self._row(sample)
            try:
                item = self.pipeline.compute_outputs(row)
            except KeyError as error:  # the recipe's pipeline takes a column these shards lack
                raise ShardError(f"{sample['__shard__']}: the recipe's data pipeline needs a column the shards lack "
                                 f"({error.args[0]}); the shards have {sorted(row)} (written from another "
                                 "kind of manifest?)"
                                 ) from error
            yield item

    def _read(self, mine):
        from webdataset.tariterators import group_by_keys, tar_file_expander

        for shard, keep in mine:
            url = os.path.join(self.folder, shard["file"])
            try:
                with open(url, "rb") as stream:
                    files = tar_file_expander([{"url": url, "stream": stream}])
                    for number, sample in enumerate(group_by_keys(files)):
                        if number >= keep:
                            break
                        if "row.json" not in sample:
                            raise ShardError(f"{url}: sample {sample.get('__key__')} has no row.json")
                        sample["__shard__"] = url
                        yield sample
            except (OSError, ValueError, tarfile.TarError) as error:  # a damaged or truncated tar
                if isinstance(error, ShardError):
                    raise
                raise ShardError(f"{url}: cannot read the shard ({error})") from error

    def _row(self, sample):
        """The manifest row of a sample, its audio columns as in-memory files named
        ``<shard>/<key>.<column>.<ext>`` (what an error message shows)."""
        row = json.loads(sample["row.json"])
        item = {"id": row.pop("ID"), **row}
        for member, data in sample.items():
            column = member.split(".", 1)[0]
            if column in self.index["columns"] and isinstance(data, bytes):
                item[column] = AudioBytes(f"{sample['__shard__']}/{sample['__key__']}.{member}", data)
        return item


def _buffer_shuffle(samples, size, rng):
    """WebDataset's buffer shuffle: fill a buffer, emit a random element, refill."""
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def _rank_and_world(rank, world_size):
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ShardError(f"rank {rank} is not in 0..{world_size - 1}")
        return int(rank), int(world_size)
    # SpeechBrain's helpers for the process group and the rank; it has none for the world size.
    from speechbrain.utils.distributed import get_rank, is_distributed_initialized

    if is_distributed_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return get_rank() or 0, int(os.environ.get("WORLD_SIZE", "1"))


def main(argv=None):
    """``python -m speechbrain_sqe.dataio.shards MANIFEST FOLDER``: writes a manifest as shards."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_sqe.dataio.shards",
        description="Write a SpeechBrain CSV manifest and its audio files as WebDataset tar shards "
                    "(read by a recipe with --train_shards=FOLDER). A rerun resumes.")
    parser.add_argument("manifest", help="SpeechBrain CSV (ID, duration and audio columns)")
    parser.add_argument("folder", help="the shard folder to write")
    parser.add_argument("--samples_per_shard", type=int, default=1000,
                        help="samples per tar file (default 1000; a DDP run needs at least one shard per rank)")
    parser.add_argument("--columns", nargs="+", default=None,
                        help="audio columns to store (default: every column holding audio files)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        index = write_shards(args.manifest, args.folder, args.samples_per_shard, args.columns)
    except ShardError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.folder}: {index['samples']} samples, {index['hours']:.2f} h, {len(index['shards'])} shards, "
          f"columns {', '.join(index['columns'])}")


if __name__ == "__main__":
    main()
