"""Objective speech quality metrics, correlation statistics and the parallel evaluation runner."""
