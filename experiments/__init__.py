"""Experiment definitions (Hydra configs) of ``alignbench compare``; installed as ``alignbench.experiments``."""
