"""Text-to-image metrics, computed offline with separately trained evaluators.

* :func:`r_precision` (AttnGAN): each generated image ranks its own caption among
  ``candidates - 1`` captions of other images with a matching evaluator; the top-1 rate.
* :func:`frechet_distance`: Fréchet distance between two feature sets (Gaussian fits).
  On evaluator features this is *not* comparable with published Inception FID.
* :func:`attribute_accuracy`: a semantic-object-accuracy style check of a grid detector's
  reading of the generated images against the objects a caption describes.

Pure torch; features and detector outputs are inputs, so the functions are tested on
hand-made cases and the evaluators live in :mod:`alignbench.evaluation`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["r_precision", "frechet_distance", "attribute_accuracy"]


def r_precision(image_feats: torch.Tensor, caption_feats: torch.Tensor, caption_image: torch.Tensor,
                query_caption: torch.Tensor, candidates: int = 100, seed: int = 0,
                excluded: torch.Tensor | None = None, chunk: int = 64) -> float:
    """Percent of queries whose own caption ranks first among ``candidates`` captions.

    ``image_feats [N, d]``: one row per generated image; ``query_caption [N]``: the caption
    (row of ``caption_feats [C, d]``) each image was generated from; ``caption_image [C]``:
    the source image of every caption. The ``candidates - 1`` distractors of a query are
    drawn without replacement (fixed ``seed``, per query) from the captions of other
    source images, leaving out the pairs listed in ``excluded [2, E]`` (query row, caption)
    — e.g. other images' captions that are also true of the query's image, or the same
    text. Similarity is cosine; a tie with a distractor counts as a miss. Work and memory
    go by ``chunk`` queries at a time (``chunk × C`` random keys).
    """
    n, c = image_feats.shape[0], caption_feats.shape[0]
    if query_caption.shape != (n,):
        raise ValueError(f"query_caption must be [{n}], got {tuple(query_caption.shape)}")
    if candidates < 2:
        raise ValueError(f"r_precision: candidates must be >= 2, got {candidates}")
    img = F.normalize(image_feats.double(), dim=-1)
    cap = F.normalize(caption_feats.double(), dim=-1)
    source = caption_image[query_caption]
    banned = torch.zeros(0, dtype=torch.long) if excluded is None else excluded[0] * c + excluded[1]
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        keys = torch.rand(len(rows), c, generator=g, dtype=torch.float64)
        keys[caption_image[None, :] == source[rows, None]] = float("inf")  # the query's own image
        mine = banned[(banned >= start * c) & (banned < (start + len(rows)) * c)] - start * c
        keys.view(-1)[mine] = float("inf")
        if (short := int(torch.isfinite(keys).sum(1).min())) < candidates - 1:
            raise ValueError(f"r_precision needs {candidates - 1} distractor captions per query, "
                             f"some query has only {short}")
        distractors = keys.topk(candidates - 1, dim=1, largest=False).indices  # random distinct draws
        own = (img[rows] * cap[query_caption[rows]]).sum(-1)
        other = torch.einsum("nd,nkd->nk", img[rows], cap[distractors])
        hits += int((own > other.amax(1)).sum())
    return 100.0 * hits / n


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """``‖μa − μb‖² + tr(Σa) + tr(Σb) − 2 tr((Σa Σb)^½)`` of Gaussians fitted to ``[N, d]`` features.

    Computed in float64; ``tr((Σa Σb)^½)`` is the sum of the square roots of the
    eigenvalues of ``Σa Σb`` (real and non-negative for covariance matrices; rounding
    noise below zero is clipped).
    """
    for name, x in (("feats_a", feats_a), ("feats_b", feats_b)):
        if x.dim() != 2 or x.shape[0] < 2:
            raise ValueError(f"frechet_distance: {name} must be [N>=2, d], got {tuple(x.shape)}")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum()
    return float(value.clamp_min(0))


def attribute_accuracy(objectness: torch.Tensor, colour_logits: torch.Tensor, shape_logits: torch.Tensor,
                       objects: list[list[tuple[int, int, torch.Tensor]]], threshold: float = 0.5) -> dict[str, float]:
    """How often a grid detector finds each described object, in percent.

    Detector outputs per image and grid cell: ``objectness [N, G, G]`` (probability that
    an object's centre lies in the cell), ``colour_logits [N, G, G, C]`` and
    ``shape_logits [N, G, G, S]``. ``objects[n]`` lists the objects the caption of image
    ``n`` describes as ``(colour, shape, region)`` with ``region`` a bool ``[G, G]`` mask
    of the cells the caption allows (its location phrase; all cells if it has none).

    An object's ``colour`` (``shape``) is correct when a detected cell (objectness
    ``> threshold``) inside its region reads that colour (shape); the object is correct
    when one detected cell in the region reads both. Each detected cell serves one
    described object per check (taken greedily in the caption's order), so one drawn red
    circle cannot count for "a red circle and a small red circle". Returns
    ``attribute_acc`` (mean over the colour and shape checks of every object),
    ``colour_acc``, ``shape_acc`` and ``object_acc``. Images whose caption describes no
    object are skipped.
    """
    found = objectness > threshold
    colour, shape = colour_logits.argmax(-1), shape_logits.argmax(-1)
    hits: dict[str, list[bool]] = {"colour": [], "shape": [], "object": []}
    for n, described in enumerate(objects):
        used = {k: torch.zeros_like(found[n]) for k in hits}
        for c, s, region in described:
            cells = found[n] & region.to(found.device)
            ok = {"colour": cells & (colour[n] == c), "shape": cells & (shape[n] == s)}
            ok["object"] = ok["colour"] & ok["shape"]
            for k, fits in ok.items():
                free = (fits & ~used[k]).flatten().nonzero()
                hits[k].append(len(free) > 0)
                if len(free):
                    used[k].view(-1)[free[0]] = True
    if not hits["object"]:
        raise ValueError("attribute_accuracy: no described objects")
    out = {f"{k}_acc": 100.0 * sum(v) / len(v) for k, v in hits.items()}
    out["attribute_acc"] = (out["colour_acc"] + out["shape_acc"]) / 2
    return out
