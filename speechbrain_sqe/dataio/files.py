"""The one audio-file finder: which files in a folder are audio, and how inputs expand to files.

Every command and preparation that walks folders (``sqe score|enhance|evaluate``, the folder
corpora, the batch jobs) uses :func:`find_audio_files`, so they all take the same files.
"""

import os

__all__ = ["AUDIO_EXTENSIONS", "expand_audio_inputs", "find_audio_files"]

#: File name endings taken from folders (case-insensitive); other files there are ignored.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au")


def find_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Audio files below a folder (recursive), by path relative to it, sorted.

    Hidden files and folders (names starting with ``.``) are skipped.

    Arguments
    ---------
    folder : str
        The folder to walk (a missing folder gives an empty result).
    extensions : tuple of str
        File name endings to take (case-insensitive).

    Returns
    -------
    dict
        ``/``-separated relative name -> full path, in sorted order.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "spk"))
    >>> for name in ("spk/a.wav", "b.FLAC", "notes.txt", ".hidden.wav"):
    ...     open(os.path.join(root, name), "w").close()
    >>> list(find_audio_files(root))
    ['b.FLAC', 'spk/a.wav']
    """
    endings = tuple(ext.lower() for ext in extensions)
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(endings):
                continue
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder).replace(os.sep, "/")] = path
    return found


def expand_audio_inputs(inputs, extensions=AUDIO_EXTENSIONS):
    """Expands files and folders into a list of files: folders by :func:`find_audio_files`.

    A file named directly is kept whatever its extension (a bad one is reported when read).

    Arguments
    ---------
    inputs : str or list of str
        Files and folders.
    extensions : tuple of str
        File name endings taken from folders.

    Returns
    -------
    list of str
        The files, each folder expanded in sorted order.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.wav", "a.flac", "notes.txt"):
    ...     _ = open(os.path.join(folder, name), "w")
    >>> [os.path.basename(p) for p in expand_audio_inputs([folder, "x.txt"])]
    ['a.flac', 'b.wav', 'x.txt']
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            files += list(find_audio_files(item, extensions).values())
        else:
            files.append(item)
    return files
