"""Tensor storage, batching and the data-module base shared by the retrieval data sets.

A :class:`RetrievalSplit` holds every caption as tokens and every image decoded once
(pixels ``uint8 [N_img, 3, H, W]``) or as region features ``[N_img, R, D]`` (possibly
memory-mapped). Two batch kinds:

- training (by caption): ``caption [B, L]``, ``caption_mask [B, L]``, the distinct images
  of the batch once (``image [U, 3, H, W]`` or ``regions [U, R, D]``) and
  ``image_row [B]`` (each caption's row among them);
- evaluation (by image, in split order): ``image``/``regions`` of the batch's images,
  ``image_index [U]`` and all their captions with ``caption_image [C]`` (split image index).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..base import SplitDataModule, batch_loader_of
from ...ranges import PositiveInt


@dataclass
class RetrievalSplit:
    """One split: ``captions [C, L]`` tokens, ``caption_mask``, ``caption_image [C]`` and images."""

    captions: torch.Tensor
    caption_mask: torch.Tensor
    caption_image: torch.Tensor
    images: torch.Tensor | None = None  # [N_img, 3, H, W] uint8
    regions: np.ndarray | torch.Tensor | None = None  # [N_img, R, D]
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_images = (self.images if self.images is not None else self.regions).shape[0]
        if len(self.captions) == 0 or n_images == 0:
            raise ValueError("retrieval split is empty")
        self.n_images = n_images
        order = torch.argsort(self.caption_image, stable=True)
        counts = torch.bincount(self.caption_image, minlength=n_images)
        self._captions_of = torch.split(order, counts.tolist())

    def __len__(self) -> int:
        """Number of captions."""
        return len(self.captions)

    def visual(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.images is not None:
            return {"image": self.images[rows].float().div_(255.0)}
        feats = torch.as_tensor(np.asarray(self.regions[rows.numpy()], dtype=np.float32))
        return {"regions": feats}

    def train_batch(self, caption_ids: list[int]) -> dict:
        idx = torch.as_tensor(caption_ids, dtype=torch.long)
        width = int(self.caption_mask[idx].sum(1).max())
        uniq, image_row = torch.unique(self.caption_image[idx], return_inverse=True)
        return {"caption": self.captions[idx, :width], "caption_mask": self.caption_mask[idx, :width],
                "image_row": image_row, "image_index": uniq, **self.visual(uniq)}

    def captions_of(self, image: int) -> torch.Tensor:
        """Indices of the captions of ``image``, in caption order (as :meth:`eval_batch` lists them)."""
        return self._captions_of[image]

    def eval_batch(self, image_ids: list[int]) -> dict:
        rows = torch.as_tensor(image_ids, dtype=torch.long)
        caps = torch.cat([self._captions_of[i] for i in image_ids])
        width = int(self.caption_mask[caps].sum(1).max())
        return {"caption": self.captions[caps, :width], "caption_mask": self.caption_mask[caps, :width],
                "caption_image": self.caption_image[caps], "image_index": rows, **self.visual(rows)}


class _Batches(Dataset):
    def __init__(self, split: RetrievalSplit, train: bool) -> None:
        self.split, self.train = split, train

    def __len__(self) -> int:
        return len(self.split.captions) if self.train else self.split.n_images

    def __getitem__(self, ids: list[int]) -> dict:
        return self.split.train_batch(ids) if self.train else self.split.eval_batch(ids)


class RetrievalDataModule(SplitDataModule):
    """Loaders and metadata for retrieval; subclasses implement :meth:`build`.

    After :meth:`setup`: ``vocab``, ``visual`` (``pixels``/``regions``), ``visual_dim``,
    ``image_size`` and ``splits`` (train/val/test :class:`RetrievalSplit`).
    """

    def __init__(self, batch_size: PositiveInt = 64, eval_batch_size: PositiveInt = 100, seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, seed)

    def metadata(self) -> dict:
        self.setup()
        return {"vocab_size": len(self.vocab), "visual": self.visual, "visual_dim": self.visual_dim,
                "image_size": self.image_size}

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = _Batches(self.splits[split], train)
        if train:
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(self.seed))
            batches = BatchSampler(sampler, self.batch_size, drop_last=True)
        else:
            batches = BatchSampler(SequentialSampler(data), self.eval_batch_size, drop_last=False)
        return batch_loader_of(data, batches, train)
