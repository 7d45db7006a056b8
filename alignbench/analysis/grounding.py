"""Interpretability of a phrase-grounding model: its attention is its answer.

In the other tasks attention is an intermediate step, and the protocol asks whether the
decision follows it. Here the phrase's attention over the regions *is* the localisation
(:class:`~alignbench.models.grounding.GroundingModule`), so grounding is measured by the task
metrics themselves (``phrase_r1`` is the pointing game on proposals) and the protocol's
deletion, flip and τ steps would only restate them; :func:`analyze_grounding` records how
much attention mass lands on the right regions against uniform attention, and the report
draws the maps (:func:`attention_examples`).
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from ..data.synthetic import boxes_mask

GRID = 16  # cells per side of the report's heatmaps


def analyze_grounding(model, datamodule, split: str = "test", examples: int = 500, costly_examples: int = 64,
                      ig_steps: int = 16, seed: int = 0) -> dict:
    """Attention mass on the right regions (IoU over the threshold with one of the phrase's
    boxes) and its chance rate (uniform attention), in percent, over the first ``examples``
    phrases with such a region. ``costly_examples``, ``ig_steps`` and ``seed`` are the shared
    analysis settings; grounding has no costly step."""
    from ..models.grounding import target_regions

    start = time.perf_counter()
    data = datamodule.splits[split]
    batch = data[list(range(min(examples, len(data))))]
    with torch.no_grad():
        where, _ = model.localise(batch)
    targets = target_regions(batch["region_boxes"], batch["gt_boxes"], batch["gt_count"], batch["region_mask"],
                             model.hparams.iou_threshold)
    has = targets.any(1)
    if not has.any():
        return {"metrics": {}, "deletion": {}, "seconds": time.perf_counter() - start}
    mass = (where * targets).sum(1)[has] * 100
    chance = (targets.sum(1) / batch["region_mask"].sum(1))[has] * 100
    return {"metrics": {"test/attn_mass_gt": float(mass.mean()), "test/attn_mass_chance": float(chance.mean())},
            "deletion": {}, "seconds": time.perf_counter() - start}


def _pixel_mass(where: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each region's mass spread evenly over its box's pixels, summed: ``[size, size]``."""
    heat = torch.zeros(size, size)
    for mass, box in zip(where.tolist(), boxes):
        cover = boxes_mask(box[None], size).float()
        heat += mass * cover / cover.sum().clamp_min(1.0)
    return heat


@torch.no_grad()
def attention_examples(model, datamodule, k: int = 8, split: str = "test"):
    """The first ``k`` test phrases for the report's side-by-side maps: their images, the
    captions with the phrase in [brackets], the attention as mass per cell of a
    :data:`GRID`×:data:`GRID` grid (each region's mass spread over its box), no predictions,
    and the phrases' true boxes (outlined); None without images."""
    data = datamodule.splits[split]
    if data.images is None:
        return None
    batch = data[list(range(min(k, len(data))))]
    where, _ = model.localise(batch)
    size = data.images.shape[-1]
    texts, heat, truth = [], [], []
    for i in range(len(where)):
        tokens = batch["caption"][i][batch["caption_mask"][i]].tolist()
        words = [datamodule.vocab.itos[t] for t in tokens]
        inside = batch["phrase_words"][i][: len(words)].tolist()
        texts.append(" ".join(f"[{w}]" if on else w for w, on in zip(words, inside)))
        valid = batch["region_mask"][i]
        pixels = _pixel_mass(where[i][valid], batch["region_boxes"][i][valid], size)
        heat.append(F.adaptive_avg_pool2d(pixels[None, None], GRID).flatten() * (size / GRID) ** 2)
        truth.append(boxes_mask(batch["gt_boxes"][i][: int(batch["gt_count"][i])], size))
    return data.images[batch["image_index"]].float() / 255, texts, torch.stack(heat), None, torch.stack(truth)
