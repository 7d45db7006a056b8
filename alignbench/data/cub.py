"""Text-to-image data in AttnGAN's layout (CUB-200-2011 birds, COCO) as a data module.

``<data_path>/{train,test}/filenames.pickle``, ``text/<key>.txt`` and the images folder; see
:mod:`alignbench.data.readers.cub` for the reader and its errors. AttnGAN has no
validation split: ``val_fraction`` of the train images (chosen by ``split_seed``, the same
for every run) are held out for model selection. Images are resized to ``image_size`` and
cached as tensors. There are no object annotations, so attribute accuracy and the pixel
terms do not apply; R-precision and FID-feat do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import cached
from .readers.cub import read_t2i_split
from .datasets.t2i import T2IDataModule, T2ITensors
from .datasets.text import Vocab
from ..ranges import PositiveInt


class CubDataModule(T2IDataModule):
    """AttnGAN-layout text-to-image data; ``limit`` caps the images per split (tiny runs)."""

    name = "cub_format"

    def __init__(self, data_path: str, image_size: PositiveInt = 64, captions_per_image: PositiveInt = 10,
                 crop_to_bbox: bool = True, images_dir: str | None = None, val_fraction: float = 0.05,
                 split_seed: int = 1234, limit: PositiveInt | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(data_path).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"cub_format: data_path {str(self.root)!r} is not a directory")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"cub_format: val_fraction must be in (0, 1), got {val_fraction!r}")
        self.image_size, self.captions_per_image = image_size, captions_per_image
        self.crop_to_bbox, self.images_dir = crop_to_bbox, images_dir
        self.val_fraction, self.split_seed, self.limit = val_fraction, split_seed, limit

    def _read(self, split: str) -> dict:
        data = read_t2i_split(self.root, split, self.captions_per_image, self.image_size, self.images_dir,
                              self.crop_to_bbox, self.limit)
        return {"keys": data.keys, "captions": data.captions, "images": torch.from_numpy(data.images)}

    def build(self) -> dict[str, T2ITensors]:
        key = {"v": 1, "root": str(self.root.resolve()), "size": self.image_size, "cpi": self.captions_per_image,
               "crop": self.crop_to_bbox, "images_dir": self.images_dir, "limit": self.limit}
        raw = {s: cached(f"cub-{s}", {**key, "split": s}, lambda s=s: self._read(s)) for s in ("train", "test")}
        n = len(raw["train"]["keys"])
        held = np.random.default_rng(self.split_seed).permutation(n)[: max(1, int(n * self.val_fraction))]
        is_val = np.zeros(n, dtype=bool)
        is_val[held] = True
        if is_val.all():
            raise ValueError(f"cub_format: the train split of {self.root} has too few images ({n}) "
                             "to hold out a val split")
        parts = {"train": np.flatnonzero(~is_val), "val": np.flatnonzero(is_val)}
        sources = {"train": (raw["train"], parts["train"]), "val": (raw["train"], parts["val"]),
                   "test": (raw["test"], np.arange(len(raw["test"]["keys"])))}
        self.vocab = Vocab.build(c for i in parts["train"] for c in raw["train"]["captions"][i])
        splits = {}
        for name, (data, rows) in sources.items():
            texts = [c for i in rows for c in data["captions"][i]]
            tokens, mask = self.vocab.encode_batch(texts)
            caption_image = torch.arange(len(rows)).repeat_interleave(self.captions_per_image)
            splits[name] = T2ITensors(tokens, mask, caption_image, data["images"][torch.as_tensor(rows)], texts,
                                      extras={"keys": [data["keys"][i] for i in rows]})
        return splits
