"""What every recipe Brain shares: the contract with ``train.py``."""

import speechbrain as sb


class RecipeBrain(sb.Brain):
    """A SpeechBrain Brain that runs a whole recipe from its prepared manifests.

    ``train.py`` builds the Brain named by the YAML's ``brain_class`` and calls
    :meth:`run_recipe` with what the YAML's ``prepare_data`` returned. Subclasses implement
    :meth:`run_recipe` (typically: build datasets, ``fit``, ``evaluate`` the best checkpoint,
    export a hub-ready folder).
    """

    def run_recipe(self, manifests):
        """Trains, evaluates and exports.

        Arguments
        ---------
        manifests : dict
            Manifest paths by split name, as returned by the data preparation.
        """
        raise NotImplementedError

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
        key = {
            sb.Stage.TRAIN: "train_dataloader_opts",
            sb.Stage.VALID: "valid_dataloader_opts",
            sb.Stage.TEST: "test_dataloader_opts",
        }[stage]
        return dict(getattr(self.hparams, key, {}) or {})
