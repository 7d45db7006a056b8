"""Entropy of attention distributions."""

from __future__ import annotations

import math

import torch


def attention_entropy(
    weights: torch.Tensor, key_mask: torch.Tensor | None = None, normalized: bool = True
) -> torch.Tensor:
    """Entropy of each attention distribution along the last dim of ``weights [..., L]``.

    ``key_mask`` (bool, True = valid) is ``[B, L]`` for ``weights [B, ..., L]`` or has the
    full shape of ``weights``; it sets the support size ``n`` of each distribution. With
    ``normalized=True`` the entropy is divided by ``log n``: 0 = one-hot, 1 = uniform
    (a support of one position has entropy 0). All-zero rows (fully masked) give 0.
    Returns ``weights.shape[:-1]`` in float32.
    """
    w = weights.float()
    if key_mask is None:
        support = torch.full(w.shape[:-1], w.shape[-1], dtype=torch.float32, device=w.device)
    else:
        if key_mask.dtype != torch.bool:
            raise ValueError(f"attention_entropy: key_mask must be bool, got {key_mask.dtype}")
        mask = key_mask
        if mask.shape != w.shape:
            if mask.dim() != 2 or mask.shape[0] != w.shape[0] or mask.shape[1] != w.shape[-1]:
                raise ValueError(
                    f"attention_entropy: key_mask shape {tuple(mask.shape)} fits neither weights "
                    f"{tuple(w.shape)} nor [B, L] = {(w.shape[0], w.shape[-1])}"
                )
            mask = mask.view(mask.shape[0], *([1] * (w.dim() - 2)), mask.shape[1]).expand_as(w)
        w = w.masked_fill(~mask, 0.0)
        support = mask.sum(-1).float()
    plogp = torch.where(w > 0, w * torch.log(w.clamp_min(1e-30)), torch.zeros_like(w))
    entropy = -plogp.sum(-1)
    if not normalized:
        return entropy
    denom = torch.log(support.clamp_min(1.0))
    return torch.where(denom > 0, entropy / denom.clamp_min(math.log(2) * 1e-6), torch.zeros_like(entropy))


def map_entropy(
    weights: torch.Tensor,
    normalization: str,
    key_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean normalised entropy per sample and head ``[B, H]`` of maps ``[B, H, Lq, Lk]``.

    Row maps: mean over valid queries of each query's entropy over valid keys.
    Joint and co maps: entropy of the whole map over all valid (query, key) pairs.
    """
    batch, heads, lq, lk = weights.shape
    kmask = key_mask if key_mask is not None else torch.ones(batch, lk, dtype=torch.bool, device=weights.device)
    qmask = query_mask if query_mask is not None else torch.ones(batch, lq, dtype=torch.bool, device=weights.device)
    if normalization == "row":
        rows = attention_entropy(weights, kmask)  # [B, H, Lq]
        q = qmask[:, None, :].float()
        return (rows * q).sum(-1) / q.sum(-1).clamp_min(1.0)
    pairs = (qmask[:, :, None] & kmask[:, None, :]).reshape(batch, lq * lk)
    return attention_entropy(weights.reshape(batch, heads, lq * lk), pairs)
