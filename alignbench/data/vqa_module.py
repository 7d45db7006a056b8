"""LightningDataModule base shared by the VQA data sets."""

from __future__ import annotations

from .base import SplitDataModule
from .vqa_dataset import batch_loader


class VQADataModule(SplitDataModule):
    """Common loaders and metadata; subclasses implement :meth:`build`.

    After :meth:`setup`: ``vocab`` (question tokens), ``answers`` (answer vocabulary),
    ``answer_types``, ``visual`` (``"pixels"`` or ``"regions"``), ``visual_dim``
    (region feature size, or None), ``image_size`` (pixels, or None).
    """

    name = "vqa"

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 512, seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.answers: list[str] = []
        self.answer_types: list[str] = []

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

    def sizes(self) -> dict[str, int]:
        self.setup()
        return {split: len(ds) for split, ds in self.splits.items()}

    def train_dataloader(self):
        return batch_loader(self.splits["train"], self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self):
        return batch_loader(self.splits["val"], self.eval_batch_size, shuffle=False, seed=self.seed)

    def test_dataloader(self):
        return batch_loader(self.splits["test"], self.eval_batch_size, shuffle=False, seed=self.seed)
