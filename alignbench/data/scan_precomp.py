"""SCAN's precomputed retrieval layout (Flickr30K / COCO region features) as a data module.

``<data_path>/<data_name>_precomp/{train,dev,test}_ims.npy`` (``[N, 36, 2048]``, read
memory-mapped) and ``{split}_caps.txt`` (5 consecutive captions per image). ``dev`` is the
validation split. See :mod:`alignbench.data.scan_format` for the readers and their errors.
"""

from __future__ import annotations

import torch

from .retrieval_dataset import RetrievalDataModule, RetrievalSplit
from .scan_format import precomp_folder, read_scan_precomp
from .text import Vocab

SPLITS = {"train": "train", "val": "dev", "test": "test"}


class ScanPrecompDataModule(RetrievalDataModule):
    """Retrieval on SCAN precomputed features; ``limit`` caps images per split (tiny runs)."""

    name = "scan_precomp"

    def __init__(self, data_path: str, data_name: str = "f30k", test_split: str = "test",
                 limit: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder = precomp_folder(data_path, data_name)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"scan_precomp: {self.folder} is not a directory (data_path={data_path!r}, "
                                    f"data_name={data_name!r})")
        self.test_split, self.limit = test_split, limit
        self.visual = "regions"

    def build(self) -> dict[str, RetrievalSplit]:
        raw = {k: read_scan_precomp(self.folder, self.test_split if k == "test" else v) for k, v in SPLITS.items()}
        self.vocab = Vocab.build(raw["train"].captions)
        self.visual_dim = int(raw["train"].images.shape[-1])
        splits = {}
        for name, data in raw.items():
            images, captions, caption_image = data.images, data.captions, torch.as_tensor(data.caption_image)
            if self.limit is not None:
                images = images[: self.limit]
                keep = caption_image < images.shape[0]
                captions = [c for c, k in zip(captions, keep.tolist()) if k]
                caption_image = caption_image[keep]
            tokens, mask = self.vocab.encode_batch(captions)
            splits[name] = RetrievalSplit(tokens, mask, caption_image, regions=images)
        return splits
