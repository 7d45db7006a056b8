"""Text-to-image metrics, computed offline with separately trained evaluators.

* :func:`r_precision` (AttnGAN): each generated image ranks its own caption among
  ``candidates - 1`` captions of other images with a matching evaluator; the top-1 rate.
* :func:`frechet_distance`: Fréchet distance between two feature sets (Gaussian fits), by
  torchmetrics' ``FrechetInceptionDistance`` with the given feature network.
  On evaluator features this is *not* comparable with published Inception FID.
* :func:`attribute_accuracy`: a semantic-object-accuracy style check of a grid detector's
  reading of the generated images against the objects a caption describes.

Pure torch; features and detector outputs are inputs, so the functions are tested on
hand-made cases and the evaluators live in :mod:`alignbench.models.t2i_evaluators`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

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


class _GivenFeatures(nn.Module):
    """The feature extractor of :func:`frechet_distance`: ``extract`` applied in chunks."""

    def __init__(self, extract: Callable[[torch.Tensor], torch.Tensor], num_features: int, chunk: int) -> None:
        super().__init__()
        self.extract, self.num_features, self.chunk = extract, num_features, chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.extract(part) for part in x.split(self.chunk)]).double()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor,
                     extract: Callable[[torch.Tensor], torch.Tensor] | None = None, chunk: int = 500) -> float:
    """``‖μr − μf‖² + tr(Σr) + tr(Σf) − 2 tr((Σr Σf)^½)`` of Gaussians fitted to the features
    ``extract(x) [N, d]`` of ``real`` and ``fake`` (``extract=None``: the inputs are the
    features), by torchmetrics' :class:`~torchmetrics.image.fid.FrechetInceptionDistance`
    with ``extract`` as its feature network (float64 statistics, states that sum across
    processes). Rounding noise below zero is clipped.
    """
    for name, x in (("real", real), ("fake", fake)):
        if x.shape[0] < 2 or (extract is None and x.dim() != 2):
            raise ValueError(f"frechet_distance: {name} must hold N>=2 examples{'' if extract else ' as [N, d]'}, "
                             f"got {tuple(x.shape)}")
    extract = extract or (lambda x: x)
    with torch.no_grad():
        dim = int(extract(real[:1]).shape[-1])
        # the callers hand in every image already (gathered across processes): no second reduction
        fid = FrechetInceptionDistance(feature=_GivenFeatures(extract, dim, chunk), reset_real_features=False,
                                       sync_on_compute=False)
        fid.update(real, real=True)
        fid.update(fake, real=False)
        return float(fid.compute().double().clamp_min(0))


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
