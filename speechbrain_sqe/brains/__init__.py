"""One SpeechBrain Brain subclass per method, with the data pipeline it needs."""
