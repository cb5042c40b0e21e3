"""Analysis: correlation reports, SSL robustness, plots."""
