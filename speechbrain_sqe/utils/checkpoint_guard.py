"""Checkpoints that a kill interrupted while they were being written are never loaded.

SpeechBrain's Checkpointer writes a checkpoint's ``CKPT.yaml`` first and its recoverables in place
after it, so a process killed during a save leaves a folder that looks like the newest checkpoint
but lacks files or holds a truncated one; the next run then fails to load it. :class:`SaveComplete`
is registered as the last recoverable and writes ``complete.ckpt`` after all the others;
:func:`set_aside_incomplete` renames the folders without it (``incomplete-CKPT+...``, kept for
inspection) before recovery, so the run resumes from the last complete checkpoint.
"""

import logging
import os

from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)

#: The recoverable name (its file is ``complete.ckpt``).
NAME = "complete"
_CONTENT = "complete\n"


@register_checkpoint_hooks
class SaveComplete:
    """Marks a checkpoint as completely written; register it after every other recoverable.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> SaveComplete()._save(os.path.join(folder, "complete.ckpt"))
    >>> is_complete(folder)
    True
    """

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(_CONTENT)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del path, end_of_epoch  # nothing to restore: the file only says the save finished


def is_complete(checkpoint_folder):
    """Whether the checkpoint folder's save finished (its ``complete.ckpt`` is written)."""
    path = os.path.join(checkpoint_folder, f"{NAME}.ckpt")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as stream:
        return stream.read() == _CONTENT


def set_aside_incomplete(save_folder):
    """Renames the checkpoint folders of ``save_folder`` whose save did not finish.

    Arguments
    ---------
    save_folder : str
        The Checkpointer's folder.

    Returns
    -------
    list of str
        The renamed folders (new paths).

    Example
    -------
    >>> import tempfile
    >>> save = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(save, "CKPT+1"))
    >>> open(os.path.join(save, "CKPT+1", "CKPT.yaml"), "w").close()
    >>> [os.path.basename(path) for path in set_aside_incomplete(save)]
    ['incomplete-CKPT+1']
    """
    moved = []
    if not os.path.isdir(save_folder):
        return moved
    for name in sorted(os.listdir(save_folder)):
        folder = os.path.join(save_folder, name)
        if name.startswith("CKPT+") and os.path.isdir(folder) and not is_complete(folder):
            target = os.path.join(save_folder, "incomplete-" + name)
            os.replace(folder, target)
            logger.warning("%s: checkpoint save did not finish (the process was stopped); set aside as %s",
                           folder, target)
            moved.append(target)
    return moved
