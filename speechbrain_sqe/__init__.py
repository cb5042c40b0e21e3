"""speechbrain-sqe: self-supervised speech quality estimation and enhancement for SpeechBrain."""

import logging

__version__ = "0.1.0"


def _drop_torchvision_warning(record):
    """SpeechBrain warns "torchvision is not available - cannot save figures" whenever its
    ``train_logger`` module is imported (every recipe run): that saver only serves its
    ``ProgressSampleLogger`` image samples, which no recipe here uses; our plots (matplotlib) are
    saved regardless. Only that one message is dropped."""
    return "torchvision is not available" not in record.getMessage()


# Installed before any recipe imports speechbrain.utils.train_logger (getLogger returns the same object).
logging.getLogger("speechbrain.utils.train_logger").addFilter(_drop_torchvision_warning)
