"""Pretrained interfaces (SpeechBrain ``Pretrained`` subclasses) and hub export."""
