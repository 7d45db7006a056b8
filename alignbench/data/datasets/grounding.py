"""Tensor storage, batching and the data-module base of phrase grounding.

A :class:`GroundingSplit` holds every caption as tokens, every phrase as a word mask over its
caption with its ground-truth boxes, and every image's regions: features ``[N_img, R, D]``,
boxes ``[N_img, R, 4]`` (x1, y1, x2, y2 in pixels) and a validity mask (padding is never a
region). One example is one phrase; a batch of phrases carries:

``caption [P, L]``, ``caption_mask [P, L]``, ``phrase_words [P, L]`` (the phrase's words),
``regions [P, R, D]``, ``region_boxes [P, R, 4]``, ``region_boxes_norm [P, R, 4]`` (divided by
the image's width and height), ``region_mask [P, R]``, ``gt_boxes [P, G, 4]`` with
``gt_count [P]`` (the first ``gt_count`` rows are real), ``phrase_index [P]`` and
``image_index [P]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

from torch.nn import functional as F

from ..base import SplitDataModule, batch_loader_of
from ...ranges import PositiveInt


def crop_features(images: torch.Tensor, boxes: torch.Tensor, crop: int = 8) -> torch.Tensor:
    """Region features from pixels: each box of ``boxes [N, R, 4]`` (pixels) sampled bilinearly
    on a ``crop``×``crop`` grid of ``images uint8 [N, 3, S, S]`` (RoIAlign with one sample per
    bin), flattened to ``[N, R, 3·crop²]`` in [0, 1]."""
    n, r = boxes.shape[:2]
    size = images.shape[-1]
    steps = (torch.arange(crop, dtype=torch.float32) + 0.5) / crop  # bin centres in [0, 1]
    x1, y1, x2, y2 = boxes.float().unbind(-1)  # [N, R]
    xs = x1[..., None] + (x2 - x1)[..., None] * steps  # [N, R, crop]
    ys = y1[..., None] + (y2 - y1)[..., None] * steps
    grid = torch.stack([xs[:, :, None, :].expand(n, r, crop, crop), ys[:, :, :, None].expand(n, r, crop, crop)], -1)
    grid = grid / size * 2 - 1  # pixel coordinates to [-1, 1] (align_corners=False)
    out = F.grid_sample(images.float() / 255, grid.reshape(n, r * crop, crop, 2), align_corners=False)
    return out.reshape(n, 3, r, crop, crop).permute(0, 2, 1, 3, 4).reshape(n, r, 3 * crop * crop)


@dataclass
class GroundingSplit:
    """One split of phrase grounding (see the module docstring)."""

    captions: torch.Tensor  # [C, L] tokens
    caption_mask: torch.Tensor  # [C, L] bool
    caption_image: torch.Tensor  # [C] image index
    phrase_caption: torch.Tensor  # [P] caption index
    phrase_words: torch.Tensor  # [P, L] bool
    gt_boxes: torch.Tensor  # [P, G, 4] pixels
    gt_count: torch.Tensor  # [P]
    regions: torch.Tensor | None  # [N_img, R, D] (None: read per batch by ``read_regions``)
    region_boxes: torch.Tensor | None  # [N_img, R, 4] pixels
    region_mask: torch.Tensor | None  # [N_img, R] bool
    image_sizes: torch.Tensor  # [N_img, 2] width, height
    images: torch.Tensor | None = None  # [N_img, 3, H, W] uint8, for the report's pictures
    # for large data sets: image indices [U] -> (features [U, R, D], boxes [U, R, 4], mask [U, R]), read on demand
    read_regions: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        if len(self.phrase_caption) == 0:
            raise ValueError("grounding split has no phrase with a box")
        if (self.gt_count < 1).any():
            raise ValueError("grounding split: every phrase needs at least one ground-truth box")

    def __len__(self) -> int:
        """Number of phrases."""
        return len(self.phrase_caption)

    def __getitem__(self, phrases: list[int]) -> dict:
        idx = torch.as_tensor(phrases, dtype=torch.long)
        cap = self.phrase_caption[idx]
        img = self.caption_image[cap]
        width = int(self.caption_mask[cap].sum(1).max())
        if self.read_regions is None:
            feats, boxes, region_mask = self.regions[img].float(), self.region_boxes[img].float(), self.region_mask[img]
        else:  # each distinct image of the batch read once
            uniq, row = torch.unique(img, return_inverse=True)
            feats, boxes, region_mask = (t[row] for t in self.read_regions(uniq))
            feats, boxes = feats.float(), boxes.float()
        scale = self.image_sizes[img].float().repeat(1, 2)[:, None, :]  # [P, 1, 4]: w, h, w, h
        return {"caption": self.captions[cap, :width], "caption_mask": self.caption_mask[cap, :width],
                "phrase_words": self.phrase_words[idx, :width], "regions": feats,
                "region_boxes": boxes, "region_boxes_norm": boxes / scale, "region_mask": region_mask,
                "gt_boxes": self.gt_boxes[idx].float(), "gt_count": self.gt_count[idx],
                "phrase_index": idx, "image_index": img}


class GroundingDataModule(SplitDataModule):
    """Base of the phrase-grounding data modules: batches of phrases (training shuffled with
    the run's seed, evaluation in split order), and what the model needs to know."""

    def __init__(self, batch_size: PositiveInt = 128, eval_batch_size: PositiveInt = 512, seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.visual = "regions"

    def metadata(self) -> dict:
        self.setup()
        return {"vocab_size": len(self.vocab), "visual_dim": self.visual_dim}

    def _loader(self, split: str, train: bool):
        data = self.splits[split]
        if train:
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(self.seed))
            batches = BatchSampler(sampler, self.batch_size, drop_last=False)
        else:
            batches = BatchSampler(SequentialSampler(data), self.eval_batch_size, drop_last=False)
        return batch_loader_of(data, batches, train)
