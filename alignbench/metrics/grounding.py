"""Is attention where the evidence is? Grounding and faithfulness measures (pure functions).

Inputs are per-example attention mass over R regions, ``mass [N, R]`` (each row sums to
1; see :func:`region_mass` for how any map becomes one), and
for grounding the ground-truth coverage of each region, ``cover [N, R]`` in [0, 1]: the
fraction of the region's pixels that lie on an object the question or caption mentions.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..attention import to_joint

DELETION_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)


def region_mass(weights: torch.Tensor, normalization: str, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention mass per region ``[B, Lk]`` from maps ``[B, H, Lq, Lk]``: each map made a
    distribution over (query, key) pairs (:func:`~alignbench.attention.to_joint`), summed
    over queries, averaged over maps. The same marginal for every normalisation."""
    return to_joint(weights.float(), normalization, query_mask).sum(2).mean(1)


def pointing_hits(mass: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Pointing game: 1.0 where the most-attended region touches a ground-truth object
    (``cover > 0``), else 0.0; ``[N]``. Where several regions share the largest mass, the
    hit is the share of them that touch an object: the expected hit of a random pick among
    them (uniform attention, where every region ties, scores :func:`pointing_chance`; a
    first-region rule would score whatever happens to be stored first)."""
    mass = mass.nan_to_num(nan=float("-inf"))  # a NaN mass is never the top
    top = mass == mass.max(dim=1, keepdim=True).values
    return ((cover > 0) & top).sum(1).float() / top.sum(1).float()


def pointing_chance(cover: torch.Tensor) -> torch.Tensor:
    """The pointing-game hit rate of a uniformly random region: the fraction of regions
    that touch a ground-truth object, ``[N]``."""
    return (cover > 0).float().mean(dim=1)


def mass_inside(mass: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Attention mass on ground-truth pixels, ``[N]``: Σ_r mass_r · cover_r (attention
    spread evenly over each region's pixels). Uniform attention scores the object's area
    share, :func:`area_share`."""
    return (mass * cover).sum(dim=1)


def area_share(cover: torch.Tensor) -> torch.Tensor:
    """The share of the image that is ground truth (the mass inside of uniform attention)."""
    return cover.mean(dim=1)


def rank_descending(values: torch.Tensor, ties: torch.Tensor | None = None) -> torch.Tensor:
    """Indices ``[N, R]`` of each row of ``values`` from the highest value down; equal values
    are met in the order ``ties [N, R]`` gives (a permutation of each row), without it by index."""
    if ties is None:
        return values.argsort(dim=1, descending=True, stable=True)
    return ties.gather(1, values.gather(1, ties).argsort(dim=1, descending=True, stable=True))


def deletion_order(mass: torch.Tensor, generator: torch.Generator | None = None,
                   random: bool = False, valid: torch.Tensor | None = None,
                   ties: torch.Tensor | None = None) -> torch.Tensor:
    """Region indices ``[N, R]`` in the order they are deleted: most-attended first, or a
    random permutation per example. With ``valid [N, R]`` (bool) the invalid entries (e.g.
    padded words) come last in either order, after every valid one. ``ties [N, R]``: an
    order of the regions (e.g. the random one) in which regions of equal mass are met;
    without it, by index."""
    if random:
        keys = torch.rand(mass.shape, generator=generator)
        if valid is not None:
            keys = keys.masked_fill(~valid, 2.0)  # keys are < 1, so invalid entries sort last
        return keys.argsort(dim=1, stable=True)
    if valid is not None:
        mass = mass.masked_fill(~valid, float("-inf"))
    return rank_descending(mass, ties)


def keep_masks(order: torch.Tensor, fraction: float, counts: torch.Tensor | None = None) -> torch.Tensor:
    """Bool ``[N, R]``: True for regions kept after deleting the first ``round(fraction·R)``
    of ``order`` (never all of them: at least one region stays). With ``counts [N]`` (the
    number of valid entries per row, which ``order`` must list first, see
    :func:`deletion_order`), row ``i`` deletes ``min(round(fraction·counts_i), counts_i - 1)``."""
    n, r = order.shape
    if counts is None:
        k = min(int(round(fraction * r)), r - 1)
        keep = torch.ones(n, r, dtype=torch.bool)
        if k:
            keep.scatter_(1, order[:, :k], False)
        return keep
    counts = counts.to(torch.long)
    k = torch.minimum(torch.round(fraction * counts.double()).long(), (counts - 1).clamp_min(0))
    deleted = torch.arange(r)[None, :] < k[:, None]  # the first k_i entries of each row's order
    keep = torch.ones(n, r, dtype=torch.bool)
    keep.scatter_(1, order, ~deleted)
    return keep


def aopc(curve: list[float] | torch.Tensor, fractions: tuple[float, ...] = DELETION_FRACTIONS) -> float:
    """Area over the perturbation curve: the mean drop of the metric from its value with
    nothing deleted, over the deletion fractions after 0 (Samek et al. 2017)."""
    values = torch.as_tensor(curve, dtype=torch.float64)
    if len(values) != len(fractions):
        raise ValueError(f"aopc: {len(values)} curve points for {len(fractions)} fractions")
    return float((values[0] - values[1:]).mean())


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's τ-b between the rows of ``a`` and ``b`` (``[N, R]``), ``[N]``; a row in
    which either side is constant gives NaN."""
    da = torch.sign(a.unsqueeze(2) - a.unsqueeze(1))
    db = torch.sign(b.unsqueeze(2) - b.unsqueeze(1))
    upper = torch.triu(torch.ones(a.shape[1], a.shape[1], dtype=torch.bool, device=a.device), diagonal=1)
    da, db = da[:, upper].double(), db[:, upper].double()
    concord = (da * db).sum(1)
    denom = torch.sqrt((da != 0).sum(1).double() * (db != 0).sum(1).double())
    return torch.where(denom > 0, concord / denom.clamp_min(1e-300), torch.full_like(concord, float("nan")))


def region_cover(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """Fraction of each grid cell's pixels that are ground truth: ``masks [N, H, W]`` →
    ``[N, grid*grid]`` (row-major, as the grid encoder orders its regions)."""
    return F.adaptive_avg_pool2d(masks.float().unsqueeze(1), grid).flatten(1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``[..., A, B]`` of boxes ``a [..., A, 4]`` and ``b [..., B, 4]``
    as (x1, y1, x2, y2) on continuous coordinates (area ``(x2 - x1)·(y2 - y1)``); 0 where the
    union is empty."""
    a, b = a.double(), b.double()
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda x: (x[..., 2] - x[..., 0]).clamp_min(0) * (x[..., 3] - x[..., 1]).clamp_min(0)  # noqa: E731
    union = area(a)[..., :, None] + area(b)[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-300), torch.zeros_like(inter))


def phrase_recall_at_k(scores: torch.Tensor, region_boxes: torch.Tensor, gt_boxes: list[torch.Tensor],
                       ks: tuple[int, ...] = (1, 5, 10), iou_threshold: float = 0.5,
                       region_mask: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """Phrase localisation Recall@K (Flickr30k Entities, BAN's ANY-BOX protocol), in percent.

    ``scores [P, R]`` (higher = better) rank each phrase's regions ``region_boxes [P, R, 4]``
    (x1, y1, x2, y2); ``gt_boxes`` holds P tensors ``[n_p, 4]`` (n_p ≥ 1); ``region_mask
    [P, R]`` (bool, True = real region) keeps padding out of every ranking. A phrase is a hit
    at k when one of its k highest-scoring valid regions has IoU ≥ ``iou_threshold`` with one
    of its boxes. Returns ``r<k>`` for each k and ``upper_bound``: the phrases with any valid
    region over the threshold (no ranking can do better). Equal scores are ranked in a random
    order drawn from ``generator`` (without one, by region index): a control that scores every
    region alike then gets the chance rate, whatever order the regions are stored in.
    """
    p, r = scores.shape
    if p == 0:
        raise ValueError("phrase_recall_at_k: no phrases")
    if region_boxes.shape != (p, r, 4) or len(gt_boxes) != p:
        raise ValueError(f"phrase_recall_at_k: scores {tuple(scores.shape)} need region_boxes [{p}, {r}, 4] and "
                         f"{p} ground-truth box tensors, got {tuple(region_boxes.shape)} and {len(gt_boxes)}")
    valid = torch.ones(p, r, dtype=torch.bool) if region_mask is None else region_mask.bool().cpu()
    ranked_scores = scores.detach().float().cpu().masked_fill(~valid, float("-inf"))
    ties = None if generator is None else torch.rand(p, r, generator=generator).argsort(1)  # the order ties are met in
    order = rank_descending(ranked_scores, ties)
    good = torch.zeros(p, r, dtype=torch.bool)
    for i, boxes in enumerate(gt_boxes):
        boxes = torch.as_tensor(boxes).reshape(-1, 4)
        if not len(boxes):
            raise ValueError(f"phrase_recall_at_k: phrase {i} has no ground-truth box (leave such phrases out)")
        good[i] = (box_iou(region_boxes[i].cpu(), boxes.cpu()) >= iou_threshold).any(1) & valid[i]
    ranked = good.gather(1, order) & valid.gather(1, order)  # hits in ranking order, padding never counted
    out = {f"r{k}": float(ranked[:, :k].any(1).double().mean() * 100) for k in ks}
    out["upper_bound"] = float(good.any(1).double().mean() * 100)
    return out
