"""Test helper: snapshots of a recipe Brain's training state, to check what a resumed run restores.

``probe(extras)`` is a context manager that wraps ``Brain.fit`` and the brain's
``on_fit_start``: ``record["fitted"]`` is the state when ``fit`` returned (the last epoch of an
uninterrupted run, before the best checkpoint is recovered for testing) and ``record["restored"]``
the state right after ``on_fit_start`` (what a resumed run recovered before training on). The state
holds every module's parameters and buffers, the optimizer's state, the epoch counter and the
``extras`` (name -> function of the brain), read from memory: not from the checkpoint files, so a
state the checkpointer forgot to save shows as a difference.
"""

import contextlib
import copy
import math

import pytest
import speechbrain as sb
import torch


def snapshot(brain, extras=None):
    """A deep copy of the brain's training state (see the module docstring)."""
    state = {f"modules.{key}": value for key, value in brain.modules.state_dict().items()}
    state["optimizer"] = brain.optimizer.state_dict()
    state["epoch"] = brain.hparams.epoch_counter.current
    for name, read in (extras or {}).items():
        state[name] = read(brain)
    return copy.deepcopy(state)


@contextlib.contextmanager
def probe(extras=None):
    """Records ``fitted`` and ``restored`` snapshots of every Brain fit in the block.

    Wraps ``speechbrain.Brain.fit`` (no recipe Brain overrides it); inside it, the brain's own
    ``on_fit_start`` (the subclass's, recovery included) is wrapped on the instance.
    """
    record = {}
    fit = sb.Brain.fit

    def fit_and_record(self, *args, **kwargs):
        on_fit_start = self.on_fit_start

        def on_fit_start_and_record():
            on_fit_start()
            record["restored"] = snapshot(self, extras)

        self.on_fit_start = on_fit_start_and_record
        try:
            result = fit(self, *args, **kwargs)
        finally:
            del self.on_fit_start
        record["fitted"] = snapshot(self, extras)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sb.Brain, "fit", fit_and_record)
        yield record


def differences(expected, got, path=""):
    """Paths where two snapshots differ (exact equality; tensors by value, dtype and shape)."""
    if isinstance(expected, torch.Tensor) or isinstance(got, torch.Tensor):
        same = (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)
                and expected.dtype == got.dtype and torch.equal(expected, got))
        return [] if same else [path]
    if isinstance(expected, dict) and isinstance(got, dict):
        out = [f"{path}.{key} (missing on one side)" for key in set(expected) ^ set(got)]
        for key in expected:
            if key in got:
                out += differences(expected[key], got[key], f"{path}.{key}")
        return out
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(expected) != len(got):
            return [f"{path} (length {len(expected)} != {len(got)})"]
        out = []
        for index, (a, b) in enumerate(zip(expected, got)):
            out += differences(a, b, f"{path}[{index}]")
        return out
    if isinstance(expected, float) and isinstance(got, float) and math.isnan(expected) and math.isnan(got):
        return []
    return [] if expected == got else [f"{path} ({expected!r} != {got!r})"]


def assert_restored(expected, restored):
    """``restored`` (a resumed run right after recovery) equals ``expected`` (the uninterrupted run)."""
    # Guard the guard: the states hold trained weights and a stepped optimizer.
    assert any(key.startswith("modules.") for key in expected)
    assert expected["optimizer"]["state"], "the uninterrupted run's optimizer has no state"
    diff = differences(expected, restored)
    assert not diff, f"a resumed run did not restore {len(diff)} entries, e.g. {diff[:8]}"
