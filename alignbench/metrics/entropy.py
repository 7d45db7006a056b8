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
    """Normalised entropy of where each query looks, per sample and map: ``[B, H]``.

    One definition for every normalisation, so that scores are comparable: the map
    ``[B, H, Lq, Lk]`` is read as a distribution over (query, key) pairs (row maps give
    each valid query the same mass), and the result is the conditional entropy of the
    key given the query, ``Σ_i p(i) · H(A_i· / p(i)) / log n_k``: 0 = every query attends
    to one key, 1 = every query attends uniformly over the valid keys. For row maps this
    is the mean over valid queries of each row's entropy; for co-attention's outer
    product it is the entropy of the key marginal.
    """
    from ..attention import to_joint

    batch, _, lq, lk = weights.shape
    kmask = key_mask if key_mask is not None else torch.ones(batch, lk, dtype=torch.bool, device=weights.device)
    qmask = query_mask if query_mask is not None else torch.ones(batch, lq, dtype=torch.bool, device=weights.device)
    joint = to_joint(weights.float(), normalization, qmask)
    mass = joint.sum(-1)  # [B, H, Lq]
    rows = joint / mass.unsqueeze(-1).clamp_min(1e-30)
    entropy = attention_entropy(rows, kmask)  # [B, H, Lq]
    total = mass.sum(-1)
    return torch.where(total > 0, (mass * entropy).sum(-1) / total.clamp_min(1e-30), torch.zeros_like(total))
