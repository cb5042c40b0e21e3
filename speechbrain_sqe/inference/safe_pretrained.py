"""``Pretrained`` loading that checks the hyperparams file and reads weights without pickle."""

import os

from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import LocalStrategy, fetch

from speechbrain_sqe.dataio.audio import load_audio
from speechbrain_sqe.utils.safe_load import check_hyperparams_file, safe_torch_recovery


class SafePretrained(Pretrained):
    """A SpeechBrain ``Pretrained`` whose ``from_hparams`` is safe by default.

    Compared with SpeechBrain's own ``from_hparams``, the hyperparams file is checked first (object
    tags outside ``speechbrain``, ``speechbrain_sqe`` and ``torch`` are refused unless
    ``trust_hparams=True``), and every checkpoint is read with ``torch.load(weights_only=True)``.
    ``source`` is a local folder or a hub id, as in SpeechBrain.
    """

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
            Load the hyperparams even if they construct objects outside the trusted modules.
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
        check_hyperparams_file(hparams_path, trust_hparams=trust_hparams)
        with open(hparams_path, encoding="utf-8") as stream:
            hparams = load_hyperpyyaml(stream, overrides or {})
        hparams["savedir"] = savedir
        pretrainer = hparams["pretrainer"]
        pretrainer.set_collect_in(savedir)
        pretrainer.collect_files(default_source=source, local_strategy=local_strategy)
        pretrainer.add_custom_hooks({name: safe_torch_recovery for name in pretrainer.loadables})
        pretrainer.load_collected()
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
