"""Base class shared by every attention alignment score function.

A score maps a query sequence ``[B, Lq, Dq]`` and a key sequence ``[B, Lk, Dk]`` to raw
logits ``[B, H, Lq, Lk]``. It never masks, never applies a softmax and never pools over
queries or keys: every logit is a function of one (query_i, key_j) pair. How the logits
are normalised is declared by :attr:`AlignmentScore.normalization` and carried out by
:func:`alignbench.attention.attend`.
"""

from __future__ import annotations

import torch
from torch import nn

NORMALIZATIONS = ("row", "joint", "co")


class AlignmentScore(nn.Module):
    """Common checks and attributes of a score function.

    Subclasses set ``normalization`` (``row``: softmax over keys for each query;
    ``joint``: softmax over all query-key pairs; ``co``: co-attention's factorised map)
    and ``heads`` (number of maps H the score returns), and implement :meth:`score`.
    """

    normalization: str = "row"
    heads: int = 1

    def __init__(self, q_dim: int, k_dim: int) -> None:
        super().__init__()
        name = type(self).__name__
        for label, value in (("q_dim", q_dim), ("k_dim", k_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: {label} must be a positive int, got {value!r}")
        self.q_dim = q_dim
        self.k_dim = k_dim

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Return raw logits ``[B, H, Lq, Lk]`` for ``query [B, Lq, Dq]`` and ``key [B, Lk, Dk]``."""
        self._check_inputs(query, key)
        logits = self.score(query, key)
        return logits

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor) -> None:
        name = type(self).__name__
        if query.dim() != 3 or key.dim() != 3:
            raise ValueError(
                f"{name}: expected query [B, Lq, {self.q_dim}] and key [B, Lk, {self.k_dim}], "
                f"got query {tuple(query.shape)} and key {tuple(key.shape)}"
            )
        if query.shape[-1] != self.q_dim:
            raise ValueError(f"{name}: query feature size {query.shape[-1]} != q_dim={self.q_dim}")
        if key.shape[-1] != self.k_dim:
            raise ValueError(f"{name}: key feature size {key.shape[-1]} != k_dim={self.k_dim}")
        if query.shape[0] != key.shape[0]:
            raise ValueError(f"{name}: batch sizes differ: query {query.shape[0]} vs key {key.shape[0]}")

    def extra_repr(self) -> str:
        return f"q_dim={self.q_dim}, k_dim={self.k_dim}, normalization={self.normalization}, heads={self.heads}"


def positive_int(owner: str, label: str, value: object) -> int:
    """Validate a positive integer hyper-parameter, naming the score and the bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {label} must be a positive int, got {value!r}")
    return value
