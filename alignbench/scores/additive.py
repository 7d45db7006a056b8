"""Additive (concat) score ``wᵀ tanh(W₁q + W₂k)`` (Bahdanau et al. 2015).

Every logit needs its own ``tanh`` over ``hidden_dim`` values, so a call costs
``B·Lq·Lk·hidden_dim`` tanh evaluations (the price of this family). What is avoidable is
memory traffic: written naively, the ``[B, Lq, Lk, hidden_dim]`` tensor goes through main
memory several times (sum, tanh, reduction by ``w``; in the backward pass the saved tanh,
its gradient and the reductions over keys and queries). :func:`additive_logits` computes
it block by block instead, each block small enough to stay in the CPU cache, and
recomputes the tanh in the backward pass rather than storing it. On one CPU thread, at
the retrieval-evaluation and text-to-image sizes, that made the forward pass about 6×
and forward+backward about 4× faster (``benchmarks/bench_additive.py`` measures whole
evaluations and training steps), and the extra memory of a call is one block whatever
``hidden_dim``. The values are those of the plain formula up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import AlignmentScore, positive_int
from ..ranges import PositiveInt

# elements of one [b, lq, Lk, hidden] block: 512 KiB of float32, well inside a core's L2 cache
BLOCK_ELEMENTS = 1 << 17


def _blocks(batch: int, lq: int, lk: int, hidden: int, budget: int):
    """Index ranges ``(batch slice, query slice)`` of blocks of at most ``budget`` elements
    (one query row at least): whole batch items when one fits, query rows otherwise."""
    per_item = lq * lk * hidden
    if per_item <= budget:
        step = budget // max(per_item, 1)
        for b in range(0, batch, step):
            yield slice(b, b + step), slice(0, lq)
    else:
        rows = max(1, budget // (lk * hidden))
        for b in range(batch):
            for r in range(0, lq, rows):
                yield slice(b, b + 1), slice(r, r + rows)


class _AdditiveLogits(torch.autograd.Function):
    """``w · tanh(q_i + k_j)`` for every (i, j), blocked; backward recomputes the tanh."""

    @staticmethod
    def forward(ctx, query: torch.Tensor, key: torch.Tensor, vector: torch.Tensor, budget: int) -> torch.Tensor:
        batch, lq, hidden = query.shape
        lk = key.shape[1]
        w = vector.to(query.dtype).reshape(hidden, 1)
        out = query.new_empty(batch, lq, lk)
        for bs, rs in _blocks(batch, lq, lk, hidden, budget):
            t = torch.add(query[bs, rs].unsqueeze(2), key[bs].unsqueeze(1)).tanh_()  # [b, r, Lk, hidden]
            out[bs, rs] = (t @ w).squeeze(-1)
        ctx.save_for_backward(query, key, vector)
        ctx.budget = budget
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        query, key, vector = ctx.saved_tensors
        batch, lq, hidden = query.shape
        lk = key.shape[1]
        grad = grad.to(query.dtype)
        w = vector.to(query.dtype).reshape(hidden)
        acc = torch.promote_types(query.dtype, torch.float32)  # sums over blocks: at least float32
        grad_q = torch.zeros_like(query) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(key, dtype=acc) if ctx.needs_input_grad[1] else None
        grad_w = query.new_zeros(1, hidden, dtype=acc) if ctx.needs_input_grad[2] else None
        for bs, rs in _blocks(batch, lq, lk, hidden, ctx.budget):
            t = torch.add(query[bs, rs].unsqueeze(2), key[bs].unsqueeze(1)).tanh_()  # [b, r, Lk, hidden]
            g = grad[bs, rs]  # [b, r, Lk]
            if grad_w is not None:  # Σ g·tanh over all pairs
                grad_w += g.reshape(1, -1) @ t.reshape(-1, hidden)
            if grad_q is None and grad_k is None:
                continue
            t.mul_(t).neg_().add_(1).mul_(g.unsqueeze(-1))  # g·(1 − tanh²): the gradient of q_i + k_j, over w
            if grad_q is not None:
                grad_q[bs, rs] = t.sum(2) * w
            if grad_k is not None:
                grad_k[bs] += t.sum(1) * w
        if grad_k is not None:
            grad_k = grad_k.to(key.dtype)
        if grad_w is not None:
            grad_w = grad_w.to(vector.dtype).reshape(vector.shape)
        return grad_q, grad_k, grad_w, None


def additive_logits(query: torch.Tensor, key: torch.Tensor, vector: torch.Tensor,
                    budget: int | None = None) -> torch.Tensor:
    """``out[b, i, j] = Σ_h vector[h] · tanh(query[b, i, h] + key[b, j, h])`` → ``[B, Lq, Lk]``.

    ``query [B, Lq, h]`` and ``key [B, Lk, h]`` (already mapped by W₁, W₂), ``vector``
    ``[1, h]`` or ``[h]``. Computed in blocks of at most ``budget`` (default
    :data:`BLOCK_ELEMENTS`) elements of the ``[B, Lq, Lk, h]`` tensor, which is never built
    whole; differentiable in all three inputs (the backward pass recomputes each block's
    tanh). Arithmetic in the inputs' (promoted) dtype, as the unblocked formula does under
    autocast; sums over blocks in the backward pass accumulate in float32 at least.
    """
    if query.dim() != 3 or key.dim() != 3 or query.shape[0] != key.shape[0] or query.shape[2] != key.shape[2]:
        raise ValueError(f"additive_logits: expected query [B, Lq, h] and key [B, Lk, h], "
                         f"got {tuple(query.shape)} and {tuple(key.shape)}")
    if vector.numel() != query.shape[2]:
        raise ValueError(f"additive_logits: vector has {vector.numel()} values for hidden size {query.shape[2]}")
    dtype = torch.promote_types(query.dtype, key.dtype)
    budget = BLOCK_ELEMENTS if budget is None else budget
    with torch.autocast(query.device.type, enabled=False):
        return _AdditiveLogits.apply(query.to(dtype), key.to(dtype), vector, budget)


class AdditiveScore(AlignmentScore):
    """Additive score with hidden size ``hidden_dim``; logits ``[B, 1, Lq, Lk]``.

    Costs ``B·Lq·Lk·hidden_dim`` tanh evaluations (the price of this family), computed by
    :func:`additive_logits` in cache-sized blocks: the ``[B, Lq, Lk, hidden_dim]`` tensor
    is never held whole, in the forward or the backward pass.
    """

    normalization = "row"

    def __init__(self, q_dim: int, k_dim: int, hidden_dim: PositiveInt = 64) -> None:
        super().__init__(q_dim, k_dim)
        self.hidden_dim = positive_int(type(self).__name__, "hidden_dim", hidden_dim)
        self.query_map = nn.Linear(q_dim, hidden_dim, bias=False)
        self.key_map = nn.Linear(k_dim, hidden_dim, bias=True)
        self.vector = nn.Linear(hidden_dim, 1, bias=False)

    def prepare_query(self, query: torch.Tensor) -> torch.Tensor:
        return self.query_map(query)

    def prepare_key(self, key: torch.Tensor) -> torch.Tensor:
        return self.key_map(key)

    def combine(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return additive_logits(query, key, self.vector.weight).unsqueeze(1)
