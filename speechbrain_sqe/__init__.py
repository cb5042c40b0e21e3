"""speechbrain-sqe: self-supervised speech quality estimation and enhancement for SpeechBrain."""

__version__ = "0.1.0"
