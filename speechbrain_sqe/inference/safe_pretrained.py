"""The base of every task interface: ``Pretrained`` loading that checks the hyperparams file and
reads weights without pickle, the one audio-file reader and the one batch check of the interfaces."""

import os
from typing import ClassVar

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import LocalStrategy, fetch

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.utils.safe_load import check_hyperparams_file, safe_torch_recovery


class SafePretrained(Pretrained):
    """A SpeechBrain ``Pretrained`` whose ``from_hparams`` is safe by default.

    Compared with SpeechBrain's own ``from_hparams``, the hyperparams file is checked first (object
    tags outside what a hub folder needs (:data:`speechbrain_sqe.utils.safe_load.HUB_POLICY`: the
    project's lobes, SpeechBrain's model constructors and Pretrainer, a short list of torch names) are
    refused unless
    ``trust_hparams=True``), and every checkpoint is read with ``torch.load(weights_only=True)``.
    ``source`` is a local folder or a hub id, as in SpeechBrain.

    Task bases (:class:`~speechbrain_sqe.inference.quality.QualityPredictor`,
    :class:`~speechbrain_sqe.inference.enhancement.Enhancer`,
    :class:`~speechbrain_sqe.inference.encoders.SSLEncoder`) set :attr:`TASK`; a hub folder names
    its interface, so :func:`speechbrain_sqe.inference.hub.load_model` loads any model of a task.
    """

    #: The task this interface serves (``quality``, ``enhancement``, ``ssl_encoder``).
    TASK = None
    #: How error messages name the task.
    TASK_DESCRIPTION = "model"
    #: Every interface reads these hyperparams (checked by SpeechBrain's ``Pretrained``).
    HPARAMS_NEEDED = ("sample_rate", "min_seconds")
    #: Shortest audio a hub folder of this interface accepts by default (seconds).
    MIN_SECONDS = 0.1
    #: Header of the hyperparams file of an exported folder.
    HUB_TITLE = ""
    #: Whether batch jobs' ``threads="auto"`` runs whole batches side by side on a CPU, one torch
    #: thread each (:func:`~speechbrain_sqe.inference.batching.batch_threads`): faster for small
    #: models; a model whose large matrix products use every thread well sets False.
    SIDE_BY_SIDE_BATCHES = True
    #: Batch jobs pad each batch's length up to a multiple of this many hops of the interface's
    #: ``frontend`` (:attr:`batch_length_multiple`; 1: to its longest file). Worth it where oneDNN
    #: convolutions dominate: their kernels are built per input shape (VQScore sets 16).
    BATCH_FRAMES_MULTIPLE = 1
    #: Constructor-argument changes for inference, by module (e.g. no DDP codebook sync).
    INFERENCE_OVERRIDES: ClassVar[dict] = {}
    #: Comments written above the settings of an exported hyperparams file.
    SETTING_COMMENTS: ClassVar[dict] = {"min_seconds": "Shorter files are refused with a clear error."}

    @classmethod
    def hub_spec(cls, modules, frontend=None, files=(), sample_rate=16000, min_seconds=None, **settings):
        """The :class:`~speechbrain_sqe.inference.hub.HubSpec` of a folder this interface loads.

        Arguments
        ---------
        modules : dict
            ``{name: torch.nn.Module}`` with weights (the interface's ``MODULES_NEEDED``).
        frontend : torch.nn.Module, optional
            The front end used in training.
        files : sequence of str
            Files copied beside the model (plots shown by the card).
        sample_rate : int
            The model's rate.
        min_seconds : float, optional
            Shortest accepted audio (default: :attr:`MIN_SECONDS`).
        **settings : dict
            More plain hyperparams the interface reads (e.g. ``mix``).

        Returns
        -------
        speechbrain_sqe.inference.hub.HubSpec
            The spec.
        """
        from speechbrain_sqe.inference.hub import HubSpec

        settings = {"sample_rate": sample_rate,
                    "min_seconds": cls.MIN_SECONDS if min_seconds is None else min_seconds, **settings}
        return HubSpec(cls, dict(modules), settings, frontend, dict(cls.INFERENCE_OVERRIDES), list(files),
                       cls.HUB_TITLE, dict(cls.SETTING_COMMENTS))

    @classmethod
    def export(cls, folder, modules, frontend=None, card=None, **kwargs):
        """Writes a hub folder this interface loads (see :meth:`hub_spec`); returns ``folder``.

        Arguments
        ---------
        folder : str
            The folder to write.
        modules : dict
            ``{name: torch.nn.Module}`` with weights.
        frontend : torch.nn.Module, optional
            The front end used in training.
        card : str, optional
            The model card (a minimal one when None).
        **kwargs : dict
            More arguments of :meth:`hub_spec`.

        Returns
        -------
        str
            ``folder``.
        """
        from speechbrain_sqe.inference.hub import write_hub_folder

        spec = cls.hub_spec(modules, frontend=frontend, **kwargs)
        card = card or f"# {cls.__name__} model\n\nExported with speechbrain-sqe.\n"
        return write_hub_folder(spec, folder, card)

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file="hyperparams.yaml",
        savedir=None,
        overrides=None,
        trust_hparams=False,
        local_strategy=LocalStrategy.NO_LINK,
        run_opts=None,
        **kwargs,
    ):
        """Fetches, checks and loads an interface.

        Arguments
        ---------
        source : str
            A local folder or a model hub id.
        hparams_file : str
            The hyperparams file name inside ``source``.
        savedir : str, optional
            Where fetched files go (defaults to ``source`` itself when it is a local folder).
        overrides : dict, optional
            Changes to the hyperparams.
        trust_hparams : bool
            Load the hyperparams even if they construct objects outside the hub policy.
        local_strategy : speechbrain.utils.fetching.LocalStrategy
            How local sources are made available in ``savedir``.
        run_opts : dict, optional
            SpeechBrain run options (e.g. ``{"device": "cuda"}``).
        **kwargs : dict
            Passed to the class constructor.

        Returns
        -------
        SafePretrained
            The loaded interface.
        """
        if savedir is None and os.path.isdir(str(source)):
            savedir = str(source)
        hparams_path = fetch(
            filename=hparams_file, source=source, savedir=savedir, local_strategy=local_strategy
        )
        check_hyperparams_file(hparams_path, trust_hparams=trust_hparams, overrides=overrides)
        with open(hparams_path, encoding="utf-8") as stream:
            hparams = load_hyperpyyaml(stream, overrides or {})
        hparams["savedir"] = savedir
        pretrainer = hparams["pretrainer"]
        pretrainer.set_collect_in(savedir)
        pretrainer.collect_files(default_source=source, local_strategy=local_strategy)
        pretrainer.add_custom_hooks({name: safe_torch_recovery for name in pretrainer.loadables})
        pretrainer.load_collected()
        if run_opts and str(run_opts.get("device")) == "cuda":  # SpeechBrain warns on "cuda" without an index
            run_opts = {**run_opts, "device": "cuda:0"}
        return cls(modules=hparams["modules"], hparams=hparams, run_opts=run_opts, **kwargs)

    def load_file(self, path):
        """Reads one file through the package's loader (resampled to ``hparams.sample_rate``,
        downmixed, validated; shorter than ``hparams.min_seconds`` is refused).

        Arguments
        ---------
        path : str
            The audio file.

        Returns
        -------
        torch.Tensor
            The waveform, ``[time]``.
        """
        return load_audio(path, self.hparams.sample_rate, min_duration=self.hparams.min_seconds)

    @property
    def sample_rate(self):
        """The rate the model works at (inputs are resampled to it, outputs are at it)."""
        return self.hparams.sample_rate

    @property
    def batch_length_multiple(self):
        """Samples to a multiple of which batch jobs pad each batch's length: ``BATCH_FRAMES_MULTIPLE``
        hops of the ``frontend`` (1 without one). The results are unchanged (masked processing)."""
        frontend = getattr(self, "frontend", None)
        if self.BATCH_FRAMES_MULTIPLE == 1 or frontend is None:
            return 1
        return self.BATCH_FRAMES_MULTIPLE * int(frontend.hop_length)

    def as_batch(self, wavs, wav_lens=None):
        """The checked padded batch every interface method takes: float ``[batch, time]`` and
        relative lengths, on the model's device.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` or one waveform ``[time]``, at :attr:`sample_rate`.
        wav_lens : torch.Tensor, optional
            Relative lengths in ``[0, 1]``; None means all full length.

        Returns
        -------
        wavs : torch.Tensor
            ``[batch, time]``.
        wav_lens : torch.Tensor or None
            ``[batch]``.

        Raises
        ------
        ValueError
            For another number of dimensions, or lengths that do not match the batch.
        """
        if not isinstance(wavs, torch.Tensor):
            raise TypeError(f"expected a waveform tensor [batch, time], got {type(wavs).__name__}")
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"expected waveforms [batch, time], got shape {tuple(wavs.shape)}")
        wavs = wavs.float().to(self.device)
        if wav_lens is not None:
            wav_lens = torch.as_tensor(wav_lens).float().to(self.device)
            if wav_lens.shape != (wavs.shape[0],):
                raise ValueError(f"expected {wavs.shape[0]} relative lengths, got shape {tuple(wav_lens.shape)}")
        return wavs, wav_lens
