"""The recipe template every method's Brain plugs into (the contract with ``train.py``).

``train.py`` builds the Brain named by the YAML's ``brain_class`` and calls :meth:`RecipeBrain.run_recipe`
with the manifests the YAML's ``prepare_data`` returned. The template owns the run::

    datasets -> prepare (reference metrics...) -> fit (recover, log, checkpoint the best by the
    selection key) -> test the best checkpoint -> report and export on the main process

A method supplies only what is its own:

- :meth:`datasets` (``{"train": ..., "valid": ..., "test": ...}``; a missing ``test`` skips the test
  stage), :meth:`compute_forward` and :meth:`compute_objectives` (SpeechBrain's);
- its selection key: :attr:`SELECTION_KEY` and :attr:`SELECTION_MODE` (``"max"``/``"min"``), or
  :meth:`selection` when it changes during training;
- :meth:`stage_statistics` (what validation and test measure besides the loss);
- :meth:`test_report` (writes the report of the tested model, returns its summary);
- :meth:`hub_spec` and :meth:`model_card` (the exported folder and its card).

SpeechBrain's ``Brain`` gives fit/evaluate, the checkpointer, DDP and the loggers; what it lacks for
a whole recipe (the run above, DDP unwrapping, the command line for the card) is written here once.

A killed run resumes exactly: every checkpoint (end of epoch, and SpeechBrain's intra-epoch ones with
``--ckpt_interval_steps``/``--ckpt_interval_minutes``) also holds the random generators of every
process (:class:`~speechbrain_sqe.utils.rng_state.RNGState`), including the train loader's own
generator, so the resumed run draws the same crops, augmentations and batches as the uninterrupted
one; a checkpoint whose save was interrupted is set aside
(:mod:`~speechbrain_sqe.utils.checkpoint_guard`); the export is written to a temporary folder and
renamed. ``SQE_KILL_AT`` (``train:<epoch>:<step>``,
``valid:<epoch>:<batch>``, ``save:<epoch>`` (inside a checkpoint save, its other files written) or
``export``) sends the process SIGKILL at that point: the hook of the
kill/resume soak (``tests/test_soak.py``, ``benchmarks/soak.py``).

``max_train_minutes`` (any recipe; null: no limit) ends training after the first validation that
finishes past that many minutes of this process's run of the recipe (a budget, e.g. a lent GPU's
time): the
epoch counter stops there, the best checkpoint is tested and exported as after a full run, and the
same command run again resumes and trains on towards ``number_of_epochs``. SpeechBrain has epoch
and step limits but no wall-clock one.
"""

import logging
import os
import shutil
import signal
import sys
import time

import speechbrain as sb
import torch
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.distributed import (
    if_main_process,
    main_process_only,
    run_on_main,
)

from speechbrain_sqe.dataio.prepare import CORPUS_ORIGINS
from speechbrain_sqe.inference.hub import build_model_card, write_hub_folder
from speechbrain_sqe.utils.checkpoint_guard import NAME as COMPLETE_MARKER
from speechbrain_sqe.utils.checkpoint_guard import SaveComplete, set_aside_incomplete
from speechbrain_sqe.utils.rng_state import RNGState

logger = logging.getLogger(__name__)

_LOADER_KEYS = {
    sb.Stage.TRAIN: "train_dataloader_opts",
    sb.Stage.VALID: "valid_dataloader_opts",
    sb.Stage.TEST: "test_dataloader_opts",
}


def bare(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself).

    Arguments
    ---------
    module : torch.nn.Module
        A module, maybe wrapped.

    Returns
    -------
    torch.nn.Module
        The unwrapped module.

    Example
    -------
    >>> net = torch.nn.Linear(2, 2)
    >>> bare(net) is net
    True
    """
    return getattr(module, "module", module)


def kill_point(point):
    """Sends this process SIGKILL when ``SQE_KILL_AT`` names ``point`` (the soak's fault injection).

    Arguments
    ---------
    point : str
        ``train:<epoch>:<step>``, ``valid:<epoch>:<batch>``, ``save:<epoch>`` or ``export``.

    Example
    -------
    >>> kill_point("export")  # SQE_KILL_AT is not set: nothing happens
    """
    if os.environ.get("SQE_KILL_AT") == point:
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


class RecipeBrain(sb.Brain):
    """A SpeechBrain Brain that runs a whole recipe from its prepared manifests (see the module doc)."""

    #: The validation statistic that picks the checkpoint, and whether larger is better.
    SELECTION_KEY = "loss"
    SELECTION_MODE = "min"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The train loader draws its workers' base seed from its own generator, reseeded from the
        # epoch number when the epoch's iterator is made (_fit_train), not from the global one: a
        # loader iterator re-made after a mid-epoch recovery then draws nothing the uninterrupted run
        # did not, and workers (if any) get the same seeds. Both generators are checkpointed.
        self.loader_generator = torch.Generator()
        self.rng_state = RNGState(generators={"train_loader": self.loader_generator})
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("rng_state", self.rng_state)

    # ------------------------------------------------------------------ what a method supplies
    def datasets(self, manifests):
        """The method's datasets by stage name (``train``, ``valid``, optional ``test``).

        Arguments
        ---------
        manifests : dict
            Manifest paths by split name, as returned by the data preparation.

        Returns
        -------
        dict
            ``{"train": dataset, "valid": dataset[, "test": dataset]}``.
        """
        raise NotImplementedError

    def prepare(self, manifests, data):
        """Work before training that needs the manifests or datasets (reference metrics, a schedule
        sized to the number of updates...); default none."""

    def selection(self):
        """The selection key and mode now: ``(key, "max" or "min")``."""
        return self.SELECTION_KEY, self.SELECTION_MODE

    def stage_statistics(self, stage):
        """Statistics of a validation or test stage besides its loss (default none).

        Arguments
        ---------
        stage : speechbrain.Stage
            ``VALID`` or ``TEST``.

        Returns
        -------
        dict
            Name -> number, logged and (in validation) stored with the checkpoint.
        """
        return {}

    def keep_policy(self):
        """Which checkpoints survive a save: SpeechBrain's ``max_keys``/``min_keys`` (default: the
        best by the current selection key)."""
        key, mode = self.selection()
        return {f"{mode}_keys": [key]}

    def checkpoint_meta(self, stats):
        """What is stored with a validation checkpoint (default: the statistics)."""
        return stats

    def test_report(self, manifests):
        """Writes the report of the tested (best) model; runs on the main process only.

        Returns
        -------
        dict or None
            The report summary the model card shows.
        """
        return

    def hub_spec(self, report):
        """The :class:`~speechbrain_sqe.inference.hub.HubSpec` of the exported folder (None: no export)."""
        return

    def model_card(self, report, manifests):
        """The model card text of the exported folder."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the template
    def run_recipe(self, manifests):
        """Fits, tests the best checkpoint, writes the report and exports (the main process).

        Arguments
        ---------
        manifests : dict
            Manifest paths by split name, as returned by the data preparation.

        Returns
        -------
        dict or None
            The report summary (None on the other ranks).
        """
        start = self.fit_start = time.time()
        data = self.datasets(manifests)
        data["train"] = self.training_stream(data["train"])
        self.prepare(manifests, data)
        self.fit(
            self.hparams.epoch_counter,
            data["train"],
            data["valid"],
            train_loader_kwargs=self.loader_options(sb.Stage.TRAIN),
            valid_loader_kwargs=self.loader_options(sb.Stage.VALID),
        )
        self.train_minutes = (time.time() - start) / 60.0
        self.test_best(data.get("test"))
        report = self.test_report(manifests) if if_main_process() else None
        if if_main_process():
            self.export(report, manifests)
        return report

    def training_stream(self, train_set):
        """The training set streamed from tar shards when the YAML's ``train_shards`` names a shard
        folder (written from the training manifest by ``python -m speechbrain_sqe.dataio.shards``),
        else ``train_set`` itself.

        The shards go through ``train_set``'s own pipeline (crops, augmentation, gain), so no method
        needs code for them; the train loader's ``shuffle`` becomes the shards' shuffle (shard order
        per epoch, then a buffer of ``shard_buffer`` samples), and each DDP rank reads its own shards.
        """
        folder = getattr(self.hparams, "train_shards", None)
        if not folder:
            return train_set
        from speechbrain_sqe.dataio.shards import ShardedDataset

        shuffle = bool(dict(getattr(self.hparams, "train_dataloader_opts", {}) or {}).get("shuffle", False))
        stream = ShardedDataset(folder, train_set, shuffle=shuffle, seed=int(getattr(self.hparams, "seed", 0) or 0),
                                buffer_size=getattr(self.hparams, "shard_buffer", 1000))
        logger.info("Training from the shards in %s (epoch 1%s): %s", folder,
                    ", reshuffled every epoch" if shuffle else "", stream.describe(epoch=1))
        return stream

    def test_best(self, test_set):
        """Recovers the best checkpoint (by :meth:`selection`) and runs the test stage on it."""
        key, mode = self.selection()
        if test_set is None:
            if self.checkpointer is not None:
                self.checkpointer.recover_if_possible(**{f"{mode}_key": key})
            return
        self.evaluate(test_set, test_loader_kwargs=self.loader_options(sb.Stage.TEST), **{f"{mode}_key": key})

    def export(self, report, manifests):
        """Writes the hub folder of the best model with its card (``hparams.hub_folder``).

        The folder is written as ``<hub_folder>.partial`` and renamed when complete (a previous
        export is replaced only then), so a kill during the export leaves no half-written hub folder
        and a rerun exports again.
        """
        spec = self.hub_spec(report)
        if spec is None:
            return None
        folder = os.path.normpath(self.hparams.hub_folder)
        partial, previous = folder + ".partial", folder + ".previous"
        for leftover in (partial, previous):
            shutil.rmtree(leftover, ignore_errors=True)
        write_hub_folder(spec, partial, self.model_card(report, manifests))
        kill_point("export")
        if os.path.exists(folder):
            os.replace(folder, previous)
        os.replace(partial, folder)
        shutil.rmtree(previous, ignore_errors=True)
        logger.info("Exported the trained model to %s", folder)
        return folder

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """The soak's kill point in training (after the step, before any intra-epoch checkpoint)."""
        kill_point(f"train:{self.hparams.epoch_counter.current}:{self.step}")

    def evaluate_batch(self, batch, stage):
        """SpeechBrain's, with the soak's kill point in validation."""
        loss = super().evaluate_batch(batch, stage)
        if stage == sb.Stage.VALID:
            self.valid_batches = getattr(self, "valid_batches", 0) + 1
            kill_point(f"valid:{self.hparams.epoch_counter.current}:{self.valid_batches}")
        return loss

    def init_optimizers(self):
        """SpeechBrain's, then the completeness marker as the last recoverable, and checkpoints whose
        save a kill interrupted set aside before SpeechBrain recovers the newest one."""
        super().init_optimizers()
        if self.checkpointer is None:
            return
        self.checkpointer.recoverables.pop(COMPLETE_MARKER, None)  # re-added: written after the optimizer
        @main_process_only
        def save_marker(marker, path):
            kill_point(f"save:{self.hparams.epoch_counter.current}")  # the soak's kill inside a save
            marker._save(path)

        self.checkpointer.add_recoverable(COMPLETE_MARKER, SaveComplete(), custom_save_hook=save_marker)
        run_on_main(set_aside_incomplete, args=[str(self.checkpointer.checkpoints_dir)])

    def _fit_train(self, train_set, epoch, enable):
        # SpeechBrain's training epoch; its iterator is made inside, after this reseed.
        self.loader_generator.manual_seed(int(getattr(self.hparams, "seed", 0) or 0) * 100003 + int(epoch))
        stream = getattr(train_set, "dataset", train_set)
        if hasattr(stream, "set_epoch"):  # shards: this epoch's order; after a mid-epoch resume, the
            stream.set_epoch(epoch, skip=self.step * (getattr(train_set, "batch_size", 1) or 1))  # rest
        return super()._fit_train(train_set, epoch, enable)

    def _train_loader_specifics(self, dataset, loader_kwargs):
        # SpeechBrain's, with ``epoch_updates`` (any recipe's YAML): an epoch is that many batches
        # in a seeded random order, new each epoch (ReproducibleRandomSampler; passes chained when
        # the set holds fewer), so a small corpus does not validate every few updates and a large
        # one validates often. Shuffled map-style loaders only: under DDP or for shard streams an
        # epoch stays one pass (SpeechBrain's distributed sampler has no sample count).
        updates = getattr(self.hparams, "epoch_updates", None)
        if updates and loader_kwargs.get("shuffle") and not self.distributed_launch:
            loader_kwargs = dict(loader_kwargs)
            del loader_kwargs["shuffle"]
            self.train_sampler = ReproducibleRandomSampler(
                dataset, seed=int(self.hparams.seed), num_samples=int(updates) * int(loader_kwargs["batch_size"]))
            loader_kwargs["sampler"] = self.train_sampler
        return super()._train_loader_specifics(dataset, loader_kwargs)

    def _save_intra_epoch_ckpt(self):
        # SpeechBrain's intra-epoch save runs on every rank: gather the generators first.
        self.rng_state.gather()
        super()._save_intra_epoch_ckpt()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stage; keeps the best checkpoints by the selection key after validation."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update(self.stage_statistics(stage))
        if stage == sb.Stage.VALID:
            self.valid_batches = 0
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, **self.epoch_meta(), "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.rng_state.gather()  # every rank, before the main process saves
            self.checkpointer.save_and_keep_only(
                meta=self.checkpoint_meta(stats),
                num_to_keep=getattr(self.hparams, "keep_checkpoints", 1),
                **self.keep_policy(),
            )
            self.stop_when_over_budget()
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )

    def stop_when_over_budget(self):
        """Ends training here when ``max_train_minutes`` of this run have passed (after the epoch's
        checkpoint; the main process decides for every rank, so all stop at the same epoch).

        Returns
        -------
        bool
            Whether training stops at this epoch.
        """
        budget = getattr(self.hparams, "max_train_minutes", None)
        counter = self.hparams.epoch_counter
        if budget is None or counter.current >= counter.limit:
            return False
        used = (time.time() - getattr(self, "fit_start", time.time())) / 60.0
        over = torch.tensor([float(used >= float(budget))])
        if torch.distributed.is_initialized():
            over = over.to(self.device)
            torch.distributed.broadcast(over, src=0)
        if not bool(over.item()):
            return False
        logger.info("max_train_minutes=%s reached (%.1f min): training stops after epoch %d of %d; the "
                    "same command resumes it", budget, used, counter.current, counter.limit)
        counter.limit = counter.current
        self.stopped_by_budget = counter.current  # the test stage then recovers the best epoch
        return True

    def epoch_meta(self):
        """More fields of the epoch's log line (e.g. the training step); default none."""
        return {}

    # ------------------------------------------------------------------ helpers
    def features(self, wavs, lens):
        """The recipe's ``frontend`` of a padded batch (each utterance as alone) and the relative
        frame lengths: what the model sees in training, validation, test and, through the hub
        folder, inference."""
        frontend = self.hparams.frontend
        return frontend(wavs, lens), frontend.frame_lengths(lens, wavs.shape[1])

    def module(self, name):
        """The module ``name`` without its DistributedDataParallel wrapper."""
        return bare(self.modules[name])

    def loader_options(self, stage):
        """The dataloader options of ``stage`` from the YAML (``train_dataloader_opts``...).

        Arguments
        ---------
        stage : speechbrain.Stage
            The stage.

        Returns
        -------
        dict
            Keyword arguments for the dataloader.
        """
        options = dict(getattr(self.hparams, _LOADER_KEYS[stage], {}) or {})
        if stage == sb.Stage.TRAIN:
            options.setdefault("generator", self.loader_generator)
            if getattr(self.hparams, "train_shards", None):
                options.pop("shuffle", None)  # a stream shuffles itself (training_stream)
                # SpeechBrain pads batches of a DynamicItemDataset by default, not of a stream.
                options.setdefault("collate_fn", sb.dataio.batch.PaddedBatch)
        return options

    @staticmethod
    def command_line():
        """The command that ran this recipe (for the model card)."""
        return "python train.py " + " ".join(sys.argv[1:])

    def build_card(self, title, interface, summary, usage, manifests, results, facts=None, data=None,
                   data_license=None):
        """A model card with the shared sections filled from this run (data and its origin, command,
        training facts) and the method's own summary, usage and measured results.

        Arguments
        ---------
        title : str
            The model's name.
        interface : type
            The interface that loads the export.
        summary : str
            What the model does.
        usage : str
            Python lines using ``model``.
        manifests : dict
            The run's manifests (the training data named in the card).
        results : str
            Markdown of the measured results.
        facts : dict, optional
            The method's training facts (epochs kept, augmentation...).
        data, data_license : str, optional
            What the model was trained on and its origin, where the recipe's ``corpus`` does not
            say it (e.g. a label set made elsewhere); default: from ``corpus`` and ``source_folder``.

        Returns
        -------
        str
            Markdown text.
        """
        corpus = getattr(self.hparams, "corpus", "")
        source = getattr(self.hparams, "source_folder", None)
        if data is None:
            data = f"corpus '{corpus}'" + (f" from {_card_path(source)}" if source else "")
        return build_model_card(
            title, summary, interface, usage,
            data=f"{data} ({_card_path(manifests.get('train_clean'))})",
            data_license=CORPUS_ORIGINS.get(corpus, "") if data_license is None else data_license,
            command=self.command_line(), training=self.training_facts(**(facts or {})), results=results,
        )

    def training_facts(self, **facts):
        """Facts every model card states (seed, time, threads, device) plus the method's own."""
        return {
            **facts,
            "seed": getattr(self.hparams, "seed", None),
            "training time": f"{getattr(self, 'train_minutes', 0.0):.1f} min "
                             f"({torch.get_num_threads()} torch threads, {self.device})"
                             + (f"; stopped by max_train_minutes={self.hparams.max_train_minutes} after "
                                f"epoch {self.stopped_by_budget}" if getattr(self, "stopped_by_budget", 0) else ""),
        }


def _card_path(path):
    """A path as a model card shows it: relative to the working directory where it lies inside it
    (a card must not carry the training machine's absolute paths), else as given.

    >>> import os
    >>> _card_path(os.path.join(os.getcwd(), "data", "train.csv")) == os.path.join("data", "train.csv")
    True
    >>> _card_path("/elsewhere/train.csv")
    '/elsewhere/train.csv'
    """
    if not path:
        return path
    relative = os.path.relpath(os.path.abspath(path), os.getcwd())
    return path if relative.startswith("..") and os.path.isabs(path) else relative
