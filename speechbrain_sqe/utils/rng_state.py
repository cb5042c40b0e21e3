"""The random generators' states as a checkpoint recoverable, so that a resumed run draws what the
uninterrupted run would have drawn.

SpeechBrain's Checkpointer saves the modules, the optimizer, the epoch counter, the Brain's step and
the dataloader position, but not the generators (torch CPU and CUDA, numpy, python ``random``).
Without them a run resumed from a checkpoint draws other random crops, augmentations and noise than
the run that was not interrupted, and ends with another model. :class:`RNGState` captures the four
generators of every process (all ranks under DDP, gathered by :meth:`RNGState.gather` on all ranks
right before a save, since SpeechBrain's savers run on the main process only), and restores each
rank's own states when a checkpoint is recovered.

The file holds tensors, numbers and lists only, so it loads with ``torch.load(weights_only=True)``.
"""

import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


def capture(generators=None):
    """The states of this process's generators, as plain tensors, numbers and lists.

    Arguments
    ---------
    generators : dict, optional
        More ``torch.Generator`` objects by name (a dataloader's own generator...).

    Returns
    -------
    dict
        ``torch``, ``cuda`` (one state per device), ``numpy``, ``python`` and ``generators`` entries.

    Example
    -------
    >>> state = capture()
    >>> first = torch.rand(3)
    >>> restore(state)
    >>> torch.equal(torch.rand(3), first)
    True
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "generators": {name: generator.get_state() for name, generator in (generators or {}).items()},
    }


def restore(state, generators=None):
    """Sets this process's generators to ``state`` (from :func:`capture`).

    Arguments
    ---------
    state : dict
        What :func:`capture` returned.
    generators : dict, optional
        The named ``torch.Generator`` objects given to :func:`capture`.
    """
    for name, generator in (generators or {}).items():
        generator.set_state(state["generators"][name])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # A resumed run on fewer devices restores the devices it has.
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss"]))


def _rank_and_size():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@register_checkpoint_hooks
class RNGState:
    """The generators of every process, saved with each checkpoint and restored on recovery.

    Call :meth:`gather` on every process right before a checkpoint is saved (the template does).

    Arguments
    ---------
    generators : dict, optional
        More ``torch.Generator`` objects by name, saved and restored with the global ones.

    Example
    -------
    >>> import os, tempfile
    >>> rng = RNGState()
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.ckpt")
    >>> rng.gather()
    >>> rng._save(path)
    >>> expected = torch.rand(2), np.random.rand(), random.random()
    >>> rng._recover(path)
    >>> again = torch.rand(2), np.random.rand(), random.random()
    >>> torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
    True
    """

    def __init__(self, generators=None):
        self.generators = dict(generators or {})
        self.states = None

    def gather(self):
        """Captures the states of all processes (a collective under DDP: call it on every rank)."""
        state = capture(self.generators)
        _, size = _rank_and_size()
        if size == 1:
            self.states = [state]
            return
        states = [None] * size
        torch.distributed.all_gather_object(states, state)
        self.states = states

    @mark_as_saver
    def _save(self, path):
        # A save that no gather preceded (a checkpoint saved outside the template) stores this process.
        states = self.states if self.states is not None else [capture(self.generators)]
        torch.save({"ranks": states}, path)
        self.states = None

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch  # the generators continue from where they were, whatever the save point
        states = torch.load(path, weights_only=True)["ranks"]
        rank, size = _rank_and_size()
        if len(states) != size:
            raise ValueError(
                f"{path}: random states of {len(states)} processes saved, this run has {size}; "
                "resume with the same number of processes"
            )
        restore(states[rank], self.generators)
