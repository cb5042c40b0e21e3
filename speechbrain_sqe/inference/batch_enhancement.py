"""Enhancing many files: plan the output names, then decode, batch, enhance and write.

:func:`output_paths` maps inputs (files and folders) to output files in one folder, keeping the
relative sub-path of files found in folders; :func:`check_output_paths` refuses collisions,
outputs that would replace an input, and (unless asked) existing outputs, before any work is done.
:func:`enhance_files` reads files with the enhancer's loader in a DataLoader
(:mod:`speechbrain_sqe.inference.batching`), batches files of similar length, enhances each
padded batch with its relative lengths (each file comes out as if enhanced alone) and writes
16-bit wav files; bad files are reported, not fatal.
"""

import contextlib
import errno
import os
import tempfile

import soundfile
from tqdm import tqdm

from speechbrain_sqe.dataio.audio import wav_bytes
from speechbrain_sqe.dataio.files import expand_audio_inputs
from speechbrain_sqe.inference.batching import batch_threads, map_batches


class OutputPathError(ValueError):
    """Raised when the planned outputs cannot be written (collision, overwrite, input folder)."""


class OutputWriteError(OSError):
    """Raised when the output folder stops taking files (read-only, full); the run stops there."""


#: Write errors that no later file would escape: the run stops instead of failing every file.
_FATAL_WRITE_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM)


def _key(path):
    return os.path.normcase(os.path.realpath(path))


def output_paths(inputs, out_dir):
    """Expands inputs into audio files and the enhanced file each one is written to.

    A file given directly goes to ``out_dir/<stem>.wav``; a file found (recursively) in a folder
    keeps its path relative to that folder, as ``.wav`` (``in/sub/a.flac`` -> ``out/sub/a.wav``).

    Arguments
    ---------
    inputs : list of str
        Audio files and folders (see :func:`~speechbrain_sqe.dataio.files.expand_audio_inputs`).
    out_dir : str
        The output folder.

    Returns
    -------
    files : list of str
        The input files, in :func:`expand_audio_inputs` order.
    outputs : list of str
        The output file of each.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "sub"))
    >>> for name in ("a.wav", os.path.join("sub", "a.flac")):
    ...     _ = open(os.path.join(folder, name), "w")
    >>> files, outputs = output_paths([folder, "x/noisy.flac"], "out")
    >>> [os.path.relpath(p, folder) for p in files[:2]], outputs
    (['a.wav', 'sub/a.flac'], ['out/a.wav', 'out/sub/a.wav', 'out/noisy.wav'])
    """
    files, outputs = [], []
    for item in inputs:
        found = expand_audio_inputs([item])
        for path in found:
            relative = os.path.relpath(path, item) if os.path.isdir(item) else os.path.basename(path)
            outputs.append(os.path.join(out_dir, os.path.splitext(relative)[0] + ".wav"))
        files += found
    return files, outputs


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or below it (real paths, so links do not hide it)."""
    path, folder = _key(path), _key(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def complete_output(path):
    """Whether ``path`` is a finished output: a readable audio file whose header matches its size.

    A file cut short (a run killed by the system while the operating system wrote it, a full disk)
    has a header promising more samples than the file holds, or no readable header at all.

    Arguments
    ---------
    path : str
        An output file.

    Returns
    -------
    bool
        True for a complete, readable audio file.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> save_audio(path, torch.zeros(1600))
    >>> complete_output(path)
    True
    >>> with open(path, "r+b") as stream:
    ...     _ = stream.truncate(1000)
    >>> complete_output(path), complete_output(path + ".missing")
    (False, False)
    """
    try:
        with open(path, "rb") as stream:
            header = stream.read(12)
        riff = header[:4] == b"RIFF" and header[8:12] == b"WAVE"
        if riff and os.path.getsize(path) < int.from_bytes(header[4:8], "little") + 8:
            return False  # the RIFF size counts every byte the complete file holds
        return soundfile.info(path).frames > 0
    except (RuntimeError, OSError, ValueError):  # soundfile's errors are RuntimeErrors
        return False


def writable_folder(folder):
    """Creates ``folder`` and checks that a file can be written in it; raises OutputPathError.

    Arguments
    ---------
    folder : str
        The output folder.

    Raises
    ------
    OutputPathError
        Naming the folder and the reason (read-only, no space, not a folder...).

    Example
    -------
    >>> writable_folder("/dev/null/out")
    Traceback (most recent call last):
     ...
    speechbrain_sqe.inference.batch_enhancement.OutputPathError: cannot write into the output folder /dev/null/out: Not a directory
    """
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sqe-write-check-") as probe:
            probe.write(b"0" * 4096)
            probe.flush()
    except OSError as error:
        raise OutputPathError(f"cannot write into the output folder {folder}: "
                              f"{error.strerror or error}") from error


def check_output_paths(inputs, files, outputs, out_dir, overwrite=False, resume=False):
    """Refuses a plan that would lose data; call before enhancing anything.

    Arguments
    ---------
    inputs : list of str
        The files and folders the user gave.
    files : list of str
        The input audio files.
    outputs : list of str
        The output file of each input file.
    out_dir : str
        The output folder.
    overwrite : bool
        Allow replacing existing outputs (never an input file).
    resume : bool
        Existing outputs are allowed (the caller skips the complete ones); not with ``overwrite``.

    Raises
    ------
    OutputPathError
        When ``out_dir`` is (or is inside) an input folder, two inputs share an output, an output is
        an input file, or an output exists and neither ``overwrite`` nor ``resume`` is given; the
        message names the files.

    Example
    -------
    >>> check_output_paths(["x/a.wav", "y/a.wav"], ["x/a.wav", "y/a.wav"], ["o/a.wav", "o/a.wav"], "o")
    Traceback (most recent call last):
     ...
    speechbrain_sqe.inference.batch_enhancement.OutputPathError: x/a.wav and y/a.wav would both be written to o/a.wav; enhance them into different --out-dir folders
    """
    if overwrite and resume:
        raise OutputPathError("--overwrite and --resume exclude each other: --resume keeps complete "
                              "outputs, --overwrite replaces them")
    for item in inputs:
        if os.path.isdir(item) and _key(item) == _key(out_dir):
            raise OutputPathError(
                f"the output folder {out_dir} is the input folder {item}; choose another --out-dir"
            )
        if os.path.isdir(item) and _inside(out_dir, item):
            # Its outputs would be found, and enhanced again, by the next run on the input folder.
            raise OutputPathError(
                f"the output folder {out_dir} is inside the input folder {item}; the next run on "
                f"{item} would enhance the outputs again; choose an --out-dir outside it"
            )
    sources = {_key(path): path for path in files}
    claimed = {}
    for path, out in zip(files, outputs):
        key = _key(out)
        if key in claimed:
            raise OutputPathError(
                f"{claimed[key]} and {path} would both be written to {out}; enhance them into "
                "different --out-dir folders"
            )
        claimed[key] = path
        if key in sources:
            raise OutputPathError(f"the output of {path} would replace the input file {sources[key]}")
    if not overwrite and not resume:
        existing = [out for out in outputs if os.path.lexists(out)]
        if existing:
            others = len(existing) - 1
            more = f" (and {others} more output{'s' if others > 1 else ''})" if others else ""
            raise OutputPathError(
                f"{existing[0]} already exists{more}; pass --resume to keep complete outputs and "
                "enhance the rest, or --overwrite to replace them"
            )


def _reason(path, message):
    """The error message without its leading ``path: `` (the report names the file already)."""
    prefix = f"{path}: "
    return message.removeprefix(prefix)


def _write(path, wav, sample_rate):
    """Writes through a temporary file, so an interrupted run leaves no truncated output."""
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".{name}.partial.wav")
    data = wav_bytes(wav, sample_rate)  # encoded first: a full disk then raises a real OSError
    try:
        os.makedirs(folder or ".", exist_ok=True)
        with open(partial, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _fatal(error):
    if isinstance(error, OSError):
        return error.errno in _FATAL_WRITE_ERRORS
    text = str(error).lower()  # libsndfile reports through RuntimeError text
    return "no space" in text or "read-only" in text or "permission denied" in text


def _strerror(error):
    return (error.strerror if isinstance(error, OSError) and error.strerror else str(error)).strip()


def _enhance(enhancer, names, wavs, lens, options):
    """Enhanced waveforms (trimmed) or error messages, one per file; a failing batch is retried
    one file at a time so that one bad file (or running out of memory) does not fail the rest."""
    counts = [round(float(length) * wavs.shape[1]) for length in lens]
    try:
        enhanced = enhancer.enhance_batch(wavs, lens, **options)
        return [enhanced[row, :count] for row, count in enumerate(counts)]
    except (ValueError, RuntimeError) as error:
        if len(names) == 1:
            return [f"cannot enhance: {error}"]
    results = []
    for row, count in enumerate(counts):
        try:
            results.append(enhancer.enhance_batch(wavs[row, :count], **options))
        except (ValueError, RuntimeError) as error:
            results.append(f"cannot enhance: {error}")
    return results


def enhance_files(enhancer, files, out_paths, batch_size=8, progress=True, threads="auto", **options):
    """Enhances audio files in length-sorted batches and writes each as a 16-bit wav.

    Arguments
    ---------
    enhancer : speechbrain_sqe.inference.enhancement.Enhancer
        The loaded interface (any enhancer).
    files : list of str
        Input audio files (any rate or channel count: resampled and downmixed).
    out_paths : list of str
        The output file of each input (distinct; folders are created).
    batch_size : int
        Files per batch. A padded batch gives each file the same output as alone.
    progress : bool
        Show a tqdm progress bar.
    threads : int or str
        Batch threads (:func:`~speechbrain_sqe.inference.batching.map_batches`): ``"auto"`` (one
        per torch thread on a CPU; serial on a GPU or for an interface whose
        ``SIDE_BY_SIDE_BATCHES`` is False), or a number (1: serial). Files are written
        here, in batch order, while the threads enhance the next batches.
    **options : dict
        The enhancer's method options (its ``OPTIONS``, e.g. the VQ enhancer's ``mix``), checked
        before any file is read.

    Returns
    -------
    written : list of dict
        ``{"path", "output", "duration"}`` (duration in seconds) of each enhanced file, in the
        order of ``files``.
    failures : list of tuple
        ``(path, reason)`` of the files that could not be enhanced or written, in input order.

    Raises
    ------
    OutputWriteError
        When the output folder stops taking files (read-only, no space): the files written
        before stay complete (each is written through a temporary name).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_sqe.dataio.audio import save_audio
    >>> from speechbrain_sqe.inference.enhancement import VQEnhancer
    >>> from speechbrain_sqe.lobes.vqvae_se import VQVAEEnhancementModel
    >>> model = VQVAEEnhancementModel(channels=(32, 16), codebook_dim=16, codebook_size=8)
    >>> enhancer = VQEnhancer.from_hparams(source=VQEnhancer.export(tempfile.mkdtemp(), {"vqvae": model}))
    >>> folder = tempfile.mkdtemp()
    >>> noisy = os.path.join(folder, "noisy.wav")
    >>> save_audio(noisy, 0.1 * torch.randn(8000))
    >>> outputs = [os.path.join(folder, "out", name) for name in ("noisy.wav", "missing.wav")]
    >>> written, failures = enhance_files(enhancer, [noisy, "missing.wav"], outputs, progress=False)
    >>> [(os.path.basename(w["output"]), w["duration"]) for w in written], failures
    ([('noisy.wav', 0.5)], [('missing.wav', 'file not found')])
    """
    if len(files) != len(out_paths):
        raise ValueError(f"{len(files)} files but {len(out_paths)} output paths")
    if len({_key(out) for out in out_paths}) != len(out_paths):
        raise ValueError("two files would be written to the same output path")
    options = enhancer.parse_options(f"{name}={value}" for name, value in options.items() if value is not None)
    source_of = dict(zip(out_paths, files))
    rate = enhancer.sample_rate

    def enhance_batch(names, wavs, lens, bad):
        return names, (_enhance(enhancer, names, wavs, lens, options) if names else []), bad

    batches = map_batches(out_paths, enhancer.load_file, enhance_batch, batch_size,
                          batch_threads(threads, getattr(enhancer, "device", "cpu"),
                                        side_by_side=getattr(enhancer, "SIDE_BY_SIDE_BATCHES", True)),
                          source_of=source_of, length_multiple=getattr(enhancer, "batch_length_multiple", 1))
    written, failed = {}, {}
    # closing: a stop (a write error, Ctrl-C) ends the batch threads at once, not when collected
    with contextlib.closing(batches), tqdm(total=len(files), desc="enhancing", unit="file",
                                           disable=not progress) as bar:
        for names, enhanced, bad in batches:
            for out, message in bad:
                failed[out] = _reason(source_of[out], message)
            if names:
                for out, wav in zip(names, enhanced):
                    if isinstance(wav, str):
                        failed[out] = wav
                        continue
                    try:
                        _write(out, wav, rate)
                    except (OSError, RuntimeError) as error:  # soundfile's errors are RuntimeErrors
                        if _fatal(error):
                            raise OutputWriteError(
                                f"cannot write {out}: {_strerror(error)}; stopped after {len(written)} "
                                "files written (rerun with --resume once there is room)") from error
                        failed[out] = f"cannot write {out}: {error}"
                        continue
                    written[out] = {"path": source_of[out], "output": out, "duration": wav.shape[0] / rate}
            bar.update(len(names) + len(bad))
    return ([written[out] for out in out_paths if out in written],
            [(source_of[out], failed[out]) for out in out_paths if out in failed])


def enhance_summary(written, elapsed, out_dir):
    """The one-line report of a run.

    Arguments
    ---------
    written : list of dict
        What :func:`enhance_files` returned first.
    elapsed : float
        Wall seconds the enhancement took.
    out_dir : str
        The output folder.

    Returns
    -------
    str
        ``enhanced N files (X s of audio) in Y s (Z x real time) -> DIR``.

    Example
    -------
    >>> enhance_summary([{"duration": 3.0}, {"duration": 1.5}], 0.5, "out")
    'enhanced 2 files (4.5 s of audio) in 0.50 s (9.0 x real time) -> out'
    """
    audio = sum(item["duration"] for item in written)
    speed = audio / elapsed if elapsed > 0 else float("inf")
    return (f"enhanced {len(written)} files ({audio:.1f} s of audio) in {elapsed:.2f} s "
            f"({speed:.1f} x real time) -> {out_dir}")

