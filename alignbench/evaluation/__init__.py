"""Evaluators trained offline and shared by every run of a comparison."""
