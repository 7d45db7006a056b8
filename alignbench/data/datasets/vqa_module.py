"""LightningDataModule base shared by the VQA data sets."""

from __future__ import annotations

import torch

from ..base import SplitDataModule
from .vqa import batch_loader
from ...ranges import PositiveInt


class VQADataModule(SplitDataModule):
    """Common loaders and metadata; subclasses implement :meth:`build`.

    After :meth:`setup`: ``vocab`` (question tokens), ``answers`` (answer vocabulary),
    ``answer_types``, ``visual`` (``"pixels"`` or ``"regions"``), ``visual_dim``
    (region feature size, or None), ``image_size`` (pixels, or None).
    """

    name = "vqa"

    def __init__(self, batch_size: PositiveInt = 128, eval_batch_size: PositiveInt = 512, seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.answers: list[str] = []
        self.answer_types: list[str] = []

    def grounding_masks(self, split: str, questions: list[int]) -> torch.Tensor | None:
        """Ground truth for attention: bool ``[N, H, W]`` pixels of what each of the
        ``questions`` (indices into ``split``) is about, or None when the data set has none."""
        return None

    def metadata(self) -> dict:
        """What the task model needs to know about the data."""
        self.setup()
        return {
            "vocab_size": len(self.vocab),
            "answers": list(self.answers),
            "answer_types": list(self.answer_types),
            "visual": self.visual,
            "visual_dim": self.visual_dim,
            "image_size": self.image_size,
        }

    def _loader(self, split: str, train: bool):
        return batch_loader(self.splits[split], self.batch_size if train else self.eval_batch_size,
                            shuffle=train, seed=self.seed)
