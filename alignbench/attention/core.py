"""Masking and normalisation of score logits ``[B, H, Lq, Lk]``.

Three normalisations, declared by each score:

- ``row``: softmax over the valid keys of each valid query (each row sums to 1).
- ``joint``: softmax over all valid (query, key) pairs of each head (BAN; sums to 1).
- ``co``: co-attention. The key marginal is a softmax over the valid keys of marginal
  logits, the query marginal likewise over the valid queries, and the map is their outer
  product (sums to 1). The marginal logits are the score's own (learned, see
  :func:`score_attention`) or, by default, each key's largest logit over the valid
  queries (and vice versa).

Masked positions get exactly 0. A sample with no valid key (or query) gets all-zero
weights, never NaN. Arithmetic runs in float32 and the result has the logits' dtype.
"""

from __future__ import annotations

import torch

from ..scores.base import NORMALIZATIONS


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``logits`` over ``dim`` restricted to ``valid`` (bool, broadcastable).

    Invalid entries get 0; a slice with no valid entry is all zeros.
    """
    x = logits.float().masked_fill(~valid, float("-inf"))
    peak = x.amax(dim=dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    exp = torch.exp(x - peak)  # exp(-inf) = 0 at invalid entries
    total = exp.sum(dim=dim, keepdim=True)
    return exp / total.clamp_min(torch.finfo(exp.dtype).tiny)


def _check_mask(mask: torch.Tensor | None, batch: int, length: int, label: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise ValueError(f"attend: {label} must be a bool tensor (True = valid), got dtype {mask.dtype}")
    if mask.shape != (batch, length):
        raise ValueError(f"attend: {label} must have shape {(batch, length)}, got {tuple(mask.shape)}")
    return mask


def pair_mask(
    shape: torch.Size, key_mask: torch.Tensor | None, query_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """Bool ``[B, 1, Lq, Lk]`` of valid (query, key) pairs for logits of ``shape``."""
    batch, _, lq, lk = shape
    valid = torch.ones(batch, 1, lq, lk, dtype=torch.bool, device=device)
    if key_mask is not None:
        valid = valid & key_mask[:, None, None, :]
    if query_mask is not None:
        valid = valid & query_mask[:, None, :, None]
    return valid


def attend(
    logits: torch.Tensor,
    normalization: str,
    key_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    marginals: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Attention weights ``[B, H, Lq, Lk]`` from raw score logits of the same shape.

    ``key_mask [B, Lk]`` and ``query_mask [B, Lq]`` are bool, True = valid. ``marginals``
    (``co`` only): the logits of the query marginal ``[B, H, Lq]`` and of the key marginal
    ``[B, H, Lk]``; without them each position's largest logit to the other side is used.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"attend: unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
    if logits.dim() != 4:
        raise ValueError(f"attend: logits must be [B, H, Lq, Lk], got shape {tuple(logits.shape)}")
    batch, heads, lq, lk = logits.shape
    key_mask = _check_mask(key_mask, batch, lk, "key_mask")
    query_mask = _check_mask(query_mask, batch, lq, "query_mask")
    valid = pair_mask(logits.shape, key_mask, query_mask, logits.device)

    if normalization == "row":
        weights = masked_softmax(logits, valid, dim=-1)
    elif normalization == "joint":
        flat = masked_softmax(logits.reshape(batch, heads, lq * lk), valid.reshape(batch, 1, lq * lk), dim=-1)
        weights = flat.view(batch, heads, lq, lk)
    else:
        key_valid = valid.any(dim=2)  # [B, 1, Lk]
        query_valid = valid.any(dim=3)  # [B, 1, Lq]
        if marginals is None:
            x = logits.float().masked_fill(~valid, float("-inf"))
            key_logits = torch.where(key_valid, x.amax(dim=2), torch.zeros((), device=x.device))
            query_logits = torch.where(query_valid, x.amax(dim=3), torch.zeros((), device=x.device))
        else:
            query_logits, key_logits = marginals
            if query_logits.shape != (batch, heads, lq) or key_logits.shape != (batch, heads, lk):
                raise ValueError(f"attend: marginal logits must be [B, H, Lq] = {(batch, heads, lq)} and "
                                 f"[B, H, Lk] = {(batch, heads, lk)}, got {tuple(query_logits.shape)} and "
                                 f"{tuple(key_logits.shape)}")
        key_marginal = masked_softmax(key_logits, key_valid, dim=-1)
        query_marginal = masked_softmax(query_logits, query_valid, dim=-1)
        weights = query_marginal.unsqueeze(-1) * key_marginal.unsqueeze(-2)
    return weights.to(logits.dtype)


def to_joint(weights: torch.Tensor, normalization: str, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Turn any attention map ``[B, H, Lq, Lk]`` into a distribution over pairs (sums to 1).

    Row maps are divided by the number of valid queries (each query weighs the same);
    joint and co maps already sum to 1 and are returned as they are.
    """
    if normalization != "row":
        return weights
    if query_mask is None:
        count = torch.full((weights.shape[0],), weights.shape[2], device=weights.device, dtype=weights.dtype)
    else:
        count = query_mask.sum(dim=1).to(weights.dtype)
    return weights / count.clamp_min(1)[:, None, None, None]


def conditional(weights: torch.Tensor, normalization: str, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each query's distribution over the keys ``[B, H, Lq, Lk]`` from a map of any
    normalisation: the map as a distribution over pairs (:func:`to_joint`), each row divided
    by its mass. Row maps come back as they are; a query with no mass gets a zero row.
    This is what a query reads when it takes its context from a joint or co map."""
    if normalization == "row":
        return weights
    joint = to_joint(weights, normalization, query_mask)
    return joint / joint.sum(-1, keepdim=True).clamp_min(torch.finfo(joint.dtype).tiny)


def score_attention(
    score,
    query: torch.Tensor,
    key: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """score → mask + normalise: attention ``[B, H, Lq, Lk]`` of ``query [B, Lq, Dq]`` over
    ``key [B, Lk, Dk]`` in the normalisation ``score`` declares. ``logits`` (``[B, H, Lq,
    Lk]``): the score's logits when the caller has them already (e.g. pre-processed).

    For a ``co`` score the pairwise logits are masked here, then handed to the score's
    :meth:`~alignbench.scores.AlignmentScore.marginal_logits` only as pooling functions,
    so padded positions never reach the valid ones.
    """
    if logits is None:
        logits = score(query, key)
    marginals = None
    if score.normalization == "co":
        valid = pair_mask(logits.shape, _check_mask(key_mask, logits.shape[0], logits.shape[3], "key_mask"),
                          _check_mask(query_mask, logits.shape[0], logits.shape[2], "query_mask"), logits.device)
        affinity = logits.masked_fill(~valid, 0)

        def pool_keys(values: torch.Tensor) -> torch.Tensor:  # [B, Lk, D] -> [B, H, Lq, D]
            return affinity.to(values.dtype) @ values.unsqueeze(1)

        def pool_queries(values: torch.Tensor) -> torch.Tensor:  # [B, Lq, D] -> [B, H, Lk, D]
            return affinity.transpose(-1, -2).to(values.dtype) @ values.unsqueeze(1)

        marginals = score.marginal_logits(query, key, pool_keys, pool_queries)
    return attend(logits, score.normalization, key_mask, query_mask, marginals)


def attended_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sum of ``values [B, Lk, D]`` with ``weights [B, H, Lq, Lk]``; returns ``[B, H, Lq, D]``."""
    return weights.to(values.dtype) @ values.unsqueeze(1)
