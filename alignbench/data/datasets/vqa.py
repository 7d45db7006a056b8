"""Tensor storage and batching shared by every VQA data set.

A :class:`VQATensors` split holds every question as tensors, plus the images of the
split decoded once (``uint8 [N_img, 3, H, W]``) or their region features
(``float [N_img, K, D]`` with a region mask and boxes). Batches are gathered by index
in one vectorised step (the data loader yields whole batches), so loading is never the
bottleneck. Batch dict:

- ``question [B, Lq]`` long, ``question_mask [B, Lq]`` bool
- ``image_row [B]``: row of each question's image in the image tensors below, which
  hold each distinct image of the batch once (``U`` images)
- ``image [U, 3, H, W]`` float in [0, 1]  *or*  ``regions [U, K, D]``, ``region_mask [U, K]``,
  ``boxes [U, K, 4]`` (pixels) and ``image_wh [U, 2]`` from a :class:`RegionSource`
- ``target [B, A]`` soft answer scores, ``answers`` list of human answer lists,
  ``answer_type`` list of str, ``index [B]`` example ids within the split
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from ..base import batch_loader_of


class RegionSource(Protocol):
    """Region features of a split's images, gathered by image row.

    ``gather(rows [U])`` returns ``regions [U, K, D]`` float, ``region_mask [U, K]`` bool,
    ``boxes [U, K, 4]`` (pixels) and ``image_wh [U, 2]``.
    """

    def gather(self, rows: torch.Tensor) -> dict[str, torch.Tensor]: ...


@dataclass
class VQATensors(Dataset):
    """One split of a VQA data set as tensors (see module docstring for the batch layout)."""

    question: torch.Tensor  # [N, Lq] long
    question_mask: torch.Tensor  # [N, Lq] bool
    image_index: torch.Tensor  # [N] long, row in images/regions
    target_index: torch.Tensor  # [N, T] long, answer ids (-1 = none)
    target_score: torch.Tensor  # [N, T] float, official score of each answer id
    answers: list[list[str]]
    answer_type: list[str]
    num_answers: int
    images: torch.Tensor | None = None  # [N_img, 3, H, W] uint8
    regions: "RegionSource | None" = None  # gathers region features by image row
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.question.shape[0]
        if n == 0:
            raise ValueError("VQA split has no questions")
        for name in ("question_mask", "image_index", "target_index", "target_score"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"VQA split: {name} has {getattr(self, name).shape[0]} rows, expected {n}")
        if (self.images is None) == (self.regions is None):
            raise ValueError("VQA split needs exactly one of images or regions")

    def __len__(self) -> int:
        return self.question.shape[0]

    def __getitem__(self, indices: list[int]) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)
        img = self.image_index[idx]
        lengths = self.question_mask[idx].sum(1)
        width = int(lengths.max())
        target = torch.zeros(len(idx), self.num_answers)
        tidx, tscore = self.target_index[idx], self.target_score[idx]
        valid = tidx >= 0
        target[torch.nonzero(valid, as_tuple=True)[0], tidx[valid]] = tscore[valid]
        batch = {
            "question": self.question[idx, :width],
            "question_mask": self.question_mask[idx, :width],
            "target": target,
            "answers": [self.answers[i] for i in indices],
            "answer_type": [self.answer_type[i] for i in indices],
            "index": idx,
            "image_index": img,
        }
        # each distinct image of the batch is stored (and encoded) once; image_row maps
        # every question to its image's row
        uniq, batch["image_row"] = torch.unique(img, return_inverse=True)
        if self.images is not None:
            batch["image"] = self.images[uniq].float().div_(255.0)
        else:
            batch.update(self.regions.gather(uniq))
        return batch


class ImageGroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` questions that keep each image's questions together.

    Every epoch the images are shuffled (and the questions within each image), the
    questions are laid out image after image and cut into batches, so a batch holds few
    distinct images and the visual encoder runs once per image rather than once per
    question. ``len()`` is exact. Deterministic given ``seed``.
    """

    def __init__(self, image_index: torch.Tensor, batch_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        order = torch.argsort(image_index, stable=True)
        _, counts = torch.unique_consecutive(image_index[order], return_counts=True)
        self.groups = list(torch.split(order, counts.tolist()))

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.cat([
            self.groups[g][torch.randperm(len(self.groups[g]), generator=self.generator)]
            for g in torch.randperm(len(self.groups), generator=self.generator).tolist()
        ])
        yield from (chunk.tolist() for chunk in torch.split(order, self.batch_size))

    def __len__(self) -> int:
        total = sum(len(g) for g in self.groups)
        return -(-total // self.batch_size)


def batch_loader(dataset: VQATensors, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A loader that yields whole batches gathered by :meth:`VQATensors.__getitem__`.

    Training batches group questions by image (:class:`ImageGroupedBatchSampler`);
    evaluation batches follow the stored order.
    """
    if shuffle:
        sampler = ImageGroupedBatchSampler(dataset.image_index, batch_size, seed)
    else:
        sampler = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return batch_loader_of(dataset, sampler, train=shuffle)


def single_answer_targets(answers: list[str], answer_vocab: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for data sets with one answer per question: ``[N, 1]`` ids and scores of 1.

    An answer outside ``answer_vocab`` raises ``ValueError`` naming it.
    """
    lookup = {a: i for i, a in enumerate(answer_vocab)}
    missing = sorted({a for a in answers if a not in lookup})
    if missing:
        raise ValueError(f"answers {missing[:5]} are not in the answer vocabulary {answer_vocab}")
    ids = torch.tensor([lookup[a] for a in answers], dtype=torch.long).unsqueeze(1)
    return ids, torch.ones(len(answers), 1)


def grid_boxes(image_size: int, grid: int) -> torch.Tensor:
    """Pixel boxes ``[grid*grid, 4]`` (x1, y1, x2, y2) of a regular grid, row-major."""
    step = image_size / grid
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    x1, y1 = xs.flatten().float() * step, ys.flatten().float() * step
    return torch.stack([x1, y1, x1 + step, y1 + step], dim=1)
