"""Neural building blocks (nn.Modules only: no file I/O, no metrics)."""
