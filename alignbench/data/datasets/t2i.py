"""Tensor storage, batching and the data-module base of text-to-image data sets.

A :class:`T2ITensors` split holds every caption as tokens, the image each describes
(``uint8 [N_img, 3, S, S]``, decoded once) and, for the synthetic scenes, the truth the
evaluators need: each image's objects (centre, colour, shape) and each caption's
described objects (colour, shape, location phrase).

Batches (by caption): ``caption [B, L]``, ``caption_mask [B, L]``, ``image [B, 3, S, S]``
(float in [0, 1]), ``caption_index [B]`` and ``image_index [B]``. Training draws captions
at random; evaluation takes each image's first caption, in image order, so every score is
judged on the same captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..base import SplitDataModule, batch_loader_of
from ...ranges import PositiveInt


@dataclass
class T2ITensors:
    """One split. ``objects`` (optional, synthetic scenes): ``centre [N_img, K, 2]`` and ``boxes [N_img, K, 4]`` (x0, y0, x1, y1) in
    pixels, ``colour``/``shape [N_img, K]`` (index, -1 = no object). ``described``
    (optional): per caption a list of ``(colour, shape, location)`` with a colour and
    shape index and a location key of :data:`~alignbench.data.generator.captions.LOC_WORDS`
    or None."""

    captions: torch.Tensor
    caption_mask: torch.Tensor
    caption_image: torch.Tensor
    images: torch.Tensor
    texts: list[str]
    objects: dict[str, torch.Tensor] | None = None
    described: list[list[tuple[int, int, str | None]]] | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.captions) == 0 or len(self.images) == 0:
            raise ValueError("text-to-image split is empty")
        if (self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3
                or self.images.shape[2] != self.images.shape[3]):
            raise ValueError(f"images must be uint8 [N, 3, S, S], got {self.images.dtype} {tuple(self.images.shape)}")
        sizes = {"captions": len(self.captions), "caption_mask": len(self.caption_mask),
                 "caption_image": len(self.caption_image), "texts": len(self.texts)}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"one entry per caption needed, got {sizes}")
        n = len(self.images)
        counts = torch.bincount(self.caption_image, minlength=n)
        if int(counts.min()) == 0:
            raise ValueError(f"image {int(counts.argmin())} has no caption")
        self.first_caption = torch.cumsum(counts, 0) - counts  # captions are grouped by image
        expected = torch.arange(n).repeat_interleave(counts)
        if not torch.equal(self.caption_image, expected):
            j = int((self.caption_image != expected).nonzero()[0])
            raise ValueError(f"captions must be grouped by image, in image order; caption {j} is of image "
                             f"{int(self.caption_image[j])} where image {int(expected[j])} was expected")

    def __len__(self) -> int:
        """Number of captions."""
        return len(self.captions)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def batch(self, caption_ids: list[int]) -> dict:
        idx = torch.as_tensor(caption_ids, dtype=torch.long)
        width = int(self.caption_mask[idx].sum(1).max())
        rows = self.caption_image[idx]
        return {"caption": self.captions[idx, :width], "caption_mask": self.caption_mask[idx, :width],
                "image": self.images[rows].float().div_(255.0), "caption_index": idx, "image_index": rows}


class _Batches(Dataset):
    def __init__(self, split: T2ITensors, ids: torch.Tensor) -> None:
        self.split, self.ids = split, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, positions: list[int]) -> dict:
        return self.split.batch(self.ids[positions].tolist())


class T2IDataModule(SplitDataModule):
    """Loaders and metadata for text-to-image; subclasses implement :meth:`build`.

    ``eval_images`` caps the images of the validation and test splits that are generated
    and judged (``None``: all of them). ``rendered`` says whether each image is an exact
    render of the scene its captions describe (synthetic data), which enables the pixel terms.
    """

    rendered = False

    def __init__(self, batch_size: PositiveInt = 64, eval_batch_size: PositiveInt = 250, eval_images: PositiveInt | None = None,
                 seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.eval_images = eval_images

    def metadata(self) -> dict:
        self.setup()
        return {"vocab_size": len(self.vocab), "image_size": self.image_size, "rendered": self.rendered}

    def eval_captions(self, split: str) -> torch.Tensor:
        """Caption rows judged on ``split``: the first caption of each (capped) image."""
        self.setup()
        first = self.splits[split].first_caption
        return first if self.eval_images is None else first[: self.eval_images]

    def _loader(self, split: str, train: bool) -> DataLoader:
        data = self.splits[split]
        if train:
            ids = torch.arange(len(data.captions))
            sampler = RandomSampler(range(len(ids)), generator=torch.Generator().manual_seed(self.seed))
            batches = BatchSampler(sampler, self.batch_size, drop_last=True)
        else:
            ids = self.eval_captions(split)
            batches = BatchSampler(SequentialSampler(range(len(ids))), self.eval_batch_size, drop_last=False)
        return batch_loader_of(_Batches(data, ids), batches, train)
