"""alignbench: how does the attention alignment score function change accuracy and
the interpretability of attention in vision-and-language models?

Public entry points:

- :func:`alignbench.config.build_score` builds a score function from ``conf/score/``.
- :func:`alignbench.attention.attend` masks and normalises score logits.
- :mod:`alignbench.metrics` holds the metrics (VQA accuracy, attention entropy, ...).
"""

__version__ = "0.1.0"
