"""A checkpointed training phase, for recipes that switch objectives part-way through a run."""

import json

from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


# SpeechBrain's EpochCounter stores the epoch only; a two-step recipe also needs to know which step
# it was in, so that a resumed run does not redo the switch (or skip it). Nothing in SpeechBrain
# does this, hence this small recoverable.
@register_checkpoint_hooks
class TrainingPhase:
    """The current phase of a multi-step recipe, saved and restored by the Checkpointer.

    Arguments
    ---------
    initial : int
        The first phase.

    Example
    -------
    >>> import tempfile, os
    >>> phase = TrainingPhase()
    >>> phase.current
    1
    >>> phase.current = 2
    >>> path = os.path.join(tempfile.mkdtemp(), "phase.ckpt")
    >>> phase._save(path)
    >>> restored = TrainingPhase()
    >>> restored._recover(path)
    >>> restored.current
    2
    """

    def __init__(self, initial=1):
        self.current = initial

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"phase": self.current}, stream)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch  # the phase is the same whether or not the epoch had ended
        with open(path, encoding="utf-8") as stream:
            self.current = int(json.load(stream)["phase"])

    def __repr__(self):
        return f"TrainingPhase(current={self.current})"
