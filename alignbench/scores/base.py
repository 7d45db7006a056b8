"""Base class shared by every attention alignment score function.

A score maps a query sequence ``[B, Lq, Dq]`` and a key sequence ``[B, Lk, Dk]`` to raw
logits ``[B, H, Lq, Lk]``. It never masks, never applies a softmax and never pools over
queries or keys: every logit is a function of one (query_i, key_j) pair. How the logits
are normalised is declared by :attr:`AlignmentScore.normalization` and carried out by
:func:`alignbench.attention.attend`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

NORMALIZATIONS = ("row", "joint", "co")


class AlignmentScore(nn.Module):
    """Common checks and attributes of a score function.

    Subclasses set ``normalization`` (``row``: softmax over keys for each query;
    ``joint``: softmax over all query-key pairs; ``co``: co-attention's factorised map)
    and ``heads`` (number of maps H the score returns).

    A score is written in two stages so that cross-modal evaluation of every query
    sequence against every key sequence can reuse per-sequence work:
    :meth:`prepare_query` / :meth:`prepare_key` map each sequence on its own (e.g. ``W k``),
    and :meth:`combine` turns prepared pairs into logits. A subclass may instead override
    :meth:`score` alone; :func:`cross_logits` then falls back to pairing raw inputs.
    """

    normalization: str = "row"
    heads: int = 1
    # logits confined to a fixed interval (cosine, tanh/sigmoid): such a score multiplies them by a
    # LearnedTemperature whose initial value its YAML declares, the same for every bounded score
    bounded: bool = False
    # a control whose logits do not depend on the inputs (uniform attention)
    is_control: bool = False

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

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        """Per-sequence query work ``[B, Lq, Dq] -> [B, Lq, *]`` (identity by default)."""
        return query

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        """Per-sequence key work ``[B, Lk, Dk] -> [B, Lk, *]`` (identity by default)."""
        return key

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, H, Lq, Lk]`` from prepared ``query [B, Lq, *]`` and ``key [B, Lk, *]``."""
        raise NotImplementedError(f"{type(self).__name__} implements score() only")

    def score(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return self.combine(self.prepare_query(query), self.prepare_key(key))

    def score_heads(self, queries: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Multi-map scores in a model that gives each map its own queries: logits
        ``[B, H, Lq, Lk]`` whose map ``h`` is computed from ``queries[:, h]``
        (``queries [B, H, Lq, Dq]``, ``key [B, Lk, Dk]``). The default scores the stacked
        queries once and keeps each map's own block (H times the work of one call; a score
        may do better, as BAN does)."""
        b, h, lq, d = queries.shape
        if h != self.heads:
            raise ValueError(f"{type(self).__name__}: {h} query sequences for {self.heads} maps")
        logits = self(queries.reshape(b, h * lq, d), key)  # [B, H, H·Lq, Lk]
        return torch.stack([logits[:, i, i * lq:(i + 1) * lq] for i in range(h)], 1)

    def marginal_logits(
        self, query: torch.Tensor, key: torch.Tensor,
        pool_keys: Callable[[torch.Tensor], torch.Tensor], pool_queries: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``co`` scores: logits of the query marginal ``[B, H, Lq]`` and of the key marginal
        ``[B, H, Lk]`` from ``query [B, Lq, Dq]``, ``key [B, Lk, Dk]`` and the score's own
        pairwise logits, which only :mod:`alignbench.attention` may pool (it applies the
        masks): ``pool_keys(values [B, Lk, D]) -> [B, H, Lq, D]`` sums ``values`` over the
        valid keys weighted by each query's logits, ``pool_queries(values [B, Lq, D]) ->
        [B, H, Lk, D]`` over the valid queries. ``None`` (the default) takes each
        position's strongest logit to a valid position of the other side (max pooling)."""
        return None

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


class LearnedTemperature(nn.Module):
    """A learned scalar ``s > 0`` (kept as ``log s``) that multiplies bounded logits.

    The one scaling rule for scores whose logits lie in a fixed interval: without it a
    softmax over tens of regions cannot become sharp (logits in [-1, 1] over 64 regions
    give at most 0.105 to one region). ``initial`` comes from the score's YAML and is the
    same for every bounded score.
    """

    def __init__(self, owner: str, initial: float) -> None:
        super().__init__()
        if isinstance(initial, bool) or not isinstance(initial, (int, float)) or not float(initial) > 0:
            raise ValueError(f"{owner}: temperature must be a number > 0, got {initial!r}")
        self.initial = float(initial)
        self.log_value = nn.Parameter(torch.tensor(math.log(self.initial)))

    @property
    def value(self) -> float:
        return float(self.log_value.detach().exp())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.log_value.exp().to(logits.dtype) * logits

    def extra_repr(self) -> str:
        return f"initial={self.initial:g}"


def positive_int(owner: str, label: str, value: object) -> int:
    """Validate a positive integer hyper-parameter, naming the score and the bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {label} must be a positive int, got {value!r}")
    return value


def cross_logits(score: nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Logits of every query sequence against every key sequence.

    ``query [Nq, Lq, Dq]``, ``key [Nk, Lk, Dk]`` → ``[Nk, Nq, H, Lq, Lk]``. Scores built on
    :class:`AlignmentScore` prepare each sequence once and pair the prepared tensors;
    any other score module is called on the expanded raw pairs.
    """
    nq, nk = query.shape[0], key.shape[0]
    if isinstance(score, AlignmentScore):
        score._check_inputs(query[:1], key[:1])
        try:
            pq, pk = score.prepare_query(query), score.prepare_key(key)
            # every logit depends on one (query_i, key_j) pair only, so all sequences can be
            # paired at once as one long query and one long key sequence: one large product
            # instead of Nq·Nk small ones, and no Nk-fold copy of the queries
            lq, lk = pq.shape[1], pk.shape[1]
            logits = score.combine(pq.reshape(1, nq * lq, *pq.shape[2:]), pk.reshape(1, nk * lk, *pk.shape[2:]))
            h = logits.shape[1]
            return logits.view(h, nq, lq, nk, lk).permute(3, 1, 0, 2, 4).contiguous()
        except NotImplementedError:
            pass
    q = query.unsqueeze(0).expand(nk, *query.shape).reshape(nk * nq, *query.shape[1:])
    k = key.unsqueeze(1).expand(nk, nq, *key.shape[1:]).reshape(nk * nq, *key.shape[1:])
    logits = score(q, k)
    return logits.view(nk, nq, *logits.shape[1:])


# What the task models take: anything called as ``score(q_dim=..., k_dim=...)`` that returns a
# score (a score class, or the partial Hydra builds from a ``conf/score/`` entry).
ScoreFactory = Callable[..., AlignmentScore]
