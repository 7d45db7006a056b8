"""Image-text retrieval metric: Recall@K and median rank in both directions.

alignbench scores a retrieval model from one similarity matrix ``sims [n_images,
n_captions]`` and the image index of every caption, following the Flickr30K / MS-COCO
protocol of VSE++ and SCAN (5 captions per image there; any number per image here):

* ``i2t`` (sentence retrieval): each image ranks all captions; its rank is the best
  (smallest) rank among its own captions.
* ``t2i`` (image retrieval): each caption ranks all images; its rank is the rank of
  its own image.

Ranks are 1-based and found by counting, never by sorting: for a caption ``j`` of image
``g`` the t2i rank is ``1 + #{i : sims[i, j] > sims[g, j]}`` (plus the tie rule below).
The counts are taken over blocks of image rows of about ``BLOCK_ELEMENTS`` scores, one
pass for both directions, so the temporaries stay small (torch turns a boolean sum into
int64, which over a whole 5,000 x 25,000 matrix would be 1 GB). ``sims`` is never
copied (a tensor on a GPU stays there). Scores may be negative: nothing is thresholded.

Ties. The reference evaluation (SCAN / VSE++ ``evaluation.py``) takes the position in
``numpy.argsort(sims)[::-1]``. numpy's default argsort is not stable, so the order
inside a tie is unspecified there: the reference has no tie rule, and on tie-free
scores every rule gives exactly its numbers. alignbench makes ties deterministic and
independent of the order of images and captions with one of two rules:

* ``"pessimistic"`` (default): every other candidate scoring ``>=`` the target is ranked
  ahead of it, i.e. ``rank = 1 + #{non-relevant candidates with score >= target}``.
  The image's own captions never count against each other (in i2t the target is the
  best score among them).
* ``"optimistic"``: only strictly greater scores count, ``rank = 1 + #{score > target}``.

These are the worst and best positions over all tie orders, so a sort-based evaluation
that breaks ties in any order lands between them. The default is pessimistic so that a
degenerate score function (constant or saturated scores) cannot look good: all-equal
``sims`` give the worst rank, not R@1 = 100.

Median rank. ``medr`` is ``floor(np.median(ranks))`` of the 1-based ranks, where an
even count takes the mean of the two middle ranks as ``np.median`` does, then rounds
down. This equals the reference ``np.floor(np.median(ranks0)) + 1`` on 0-based ranks
exactly (the median commutes with the shift by one), so numbers are comparable with
published tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["BLOCK_ELEMENTS", "TIE_RULES", "recall_at_k", "retrieval_ranks"]

TIE_RULES: tuple[str, ...] = ("pessimistic", "optimistic")
# Scores compared per block: bounds the bool and int64 temporaries (about 1 MB + 8 MB);
# the peak memory then stays flat as the matrix grows.
BLOCK_ELEMENTS: int = 1 << 20


def _row_blocks(n_rows: int, n_cols: int) -> list[slice]:
    """Slices of consecutive rows covering ``[n_rows, n_cols]``, ~``BLOCK_ELEMENTS`` each."""
    step = max(1, BLOCK_ELEMENTS // n_cols)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def _as_sims(sims: Any) -> torch.Tensor:
    """Validate ``sims`` and return it as a 2-D real tensor ``[n_images, n_captions]``."""
    if isinstance(sims, torch.Tensor):
        tensor = sims.detach()
        if tensor.dtype == torch.bool or tensor.dtype.is_complex:
            raise ValueError(f"recall_at_k: sims must be real-valued, got dtype {tensor.dtype}")
    else:
        array = np.asarray(sims)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"recall_at_k: sims must be real-valued, got dtype {array.dtype}")
        if any(stride < 0 for stride in array.strides):
            array = array.copy()  # torch cannot view negative strides
        try:
            tensor = torch.from_numpy(array)
        except TypeError as err:
            raise ValueError(f"recall_at_k: unsupported sims dtype {array.dtype}") from err
    if tensor.dim() != 2:
        raise ValueError(
            f"recall_at_k: sims must be 2-D [n_images, n_captions], got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"recall_at_k: sims needs at least one image and one caption, got shape {tuple(tensor.shape)}")
    if tensor.dtype.is_floating_point:
        for rows in _row_blocks(*tensor.shape):
            bad = torch.nonzero(~torch.isfinite(tensor[rows]))
            if len(bad):
                i, j = int(bad[0, 0]) + rows.start, int(bad[0, 1])
                raise ValueError(f"recall_at_k: sims must be finite, got sims[{i}, {j}] = {tensor[i, j].item()}")
    return tensor


def _as_index(caption_image: Any, n_images: int, n_captions: int, device: torch.device) -> torch.Tensor:
    """Validate ``caption_image`` and return it as int64 ``[n_captions]`` on ``device``."""
    if isinstance(caption_image, torch.Tensor):
        index = caption_image.detach().cpu().numpy()
    else:
        index = np.asarray(caption_image)
    if index.ndim != 1:
        raise ValueError(f"recall_at_k: caption_image must be 1-D, got shape {index.shape}")
    if len(index) != n_captions:
        raise ValueError(
            f"recall_at_k: caption_image has {len(index)} entries but sims has {n_captions} captions (columns)"
        )
    if index.dtype.kind not in "iu":
        raise ValueError(f"recall_at_k: caption_image must hold integers, got dtype {index.dtype}")
    bad = np.flatnonzero((index < 0) | (index >= n_images))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"recall_at_k: caption_image[{j}] = {int(index[j])} is not an image index in [0, {n_images})"
        )
    return torch.from_numpy(index.astype(np.int64)).to(device)


def _check_ties(ties: str) -> None:
    if ties not in TIE_RULES:
        raise ValueError(f"recall_at_k: ties must be one of {TIE_RULES}, got {ties!r}")


def retrieval_ranks(
    sims: torch.Tensor | np.ndarray,
    caption_image: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    ties: str = "pessimistic",
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based retrieval ranks ``(i2t [n_images], t2i [n_captions])``, int64 on ``sims.device``.

    ``sims [n_images, n_captions]`` holds real, finite scores (higher = more similar);
    ``caption_image [n_captions]`` the image index of each caption. ``i2t[i]`` is the
    rank of image ``i``'s best-ranked caption among all captions, and 0 for an image
    without captions (such an image has nothing to retrieve; it stays a candidate in
    t2i). ``t2i[j]`` is the rank of caption ``j``'s image among all images. ``ties``
    is ``"pessimistic"`` or ``"optimistic"`` (see the module docstring).
    """
    _check_ties(ties)
    scores = _as_sims(sims)
    n_images, n_captions = scores.shape
    image = _as_index(caption_image, n_images, n_captions, scores.device)
    own = scores[image, torch.arange(n_captions, device=scores.device)]  # [n_captions]
    best = torch.zeros(n_images, dtype=scores.dtype, device=scores.device)
    best = best.scatter_reduce(0, image, own, "amax", include_self=False)  # [n_images]

    # Count the candidates ahead of each target: images per caption (t2i), captions per
    # image (i2t, against the image's best own caption). Pessimistic counts >=, which
    # includes the target itself; that stands in for the "1 +" of the rank.
    ahead = torch.gt if ties == "optimistic" else torch.ge
    t2i = torch.zeros(n_captions, dtype=torch.int64, device=scores.device)
    i2t = torch.zeros(n_images, dtype=torch.int64, device=scores.device)
    for rows in _row_blocks(n_images, n_captions):
        block = scores[rows]
        t2i += ahead(block, own[None, :]).sum(0)
        i2t[rows] = ahead(block, best[rows, None]).sum(1)
    if ties == "optimistic":
        t2i += 1
        i2t += 1
    else:  # own captions tied at the best score are not counted against the image
        own_at_best = torch.zeros(n_images, dtype=torch.int64, device=scores.device)
        own_at_best.index_add_(0, image, (own >= best[image]).long())
        i2t += 1 - own_at_best
    n_own = torch.bincount(image, minlength=n_images)
    i2t = torch.where(n_own > 0, i2t, torch.zeros_like(i2t))
    return i2t, t2i


def _median_rank(ranks: torch.Tensor) -> float:
    """``floor(np.median(ranks))`` of 1-based ``ranks [n]``: the reference medr."""
    return float(np.floor(np.median(ranks.cpu().numpy())))


def _recall(ranks: torch.Tensor, k: int) -> float:
    """Percentage of ``ranks [n]`` that are at most ``k``."""
    return 100.0 * int((ranks <= k).sum()) / ranks.numel()


def recall_at_k(
    sims: torch.Tensor | np.ndarray,
    caption_image: Sequence[int] | np.ndarray | torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    ties: str = "pessimistic",
) -> dict[str, float]:
    """Image-text retrieval Recall@K (percent), rsum and median ranks.

    ``sims [n_images, n_captions]`` (torch tensor or numpy array, any real dtype; finite)
    and ``caption_image [n_captions]`` (ints in ``[0, n_images)``) as in
    :func:`retrieval_ranks`. Returns, in this order, ``i2t_r{k}`` for each ``k`` in ``ks``,
    ``t2i_r{k}`` for each ``k``, ``rsum`` (sum of those recalls) and the median ranks
    ``i2t_medr`` and ``t2i_medr`` (``floor(np.median)`` of 1-based ranks, see the module
    docstring). i2t averages over the images that have at least one caption; images
    without captions are left out of i2t but remain candidates for t2i. Raises
    ``ValueError`` on bad shapes, indices, non-finite scores or ``ks`` (positive,
    distinct ints).
    """
    ks = tuple(ks)
    if not ks:
        raise ValueError("recall_at_k: ks must hold at least one K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"recall_at_k: each K must be a positive int, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"recall_at_k: ks must be distinct, got {ks}")
    i2t, t2i = retrieval_ranks(sims, caption_image, ties=ties)
    i2t = i2t[i2t > 0]  # images without captions have no i2t rank
    out: dict[str, float] = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{int(k)}"] = _recall(ranks, int(k))
    out["rsum"] = float(sum(out.values()))
    out["i2t_medr"] = _median_rank(i2t)
    out["t2i_medr"] = _median_rank(t2i)
    return out
