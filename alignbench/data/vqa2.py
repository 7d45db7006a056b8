"""VQA v2 in its official layout with bottom-up region features (for users with the data).

Expected under ``root``: the official question/annotation JSON files (see
:func:`~alignbench.data.readers.vqa2.find_vqa2_files`) and region features in one of the
layouts of :func:`~alignbench.data.readers.vqa2.open_region_features` (``.h5`` + imgid2idx
pickle, a directory of per-image ``.npz``, or the base64 ``.tsv``), one path per split.
Splits: ``train`` = train2014 minus ``val_fraction`` of its images (held out for model
selection, chosen by ``split_seed``), ``test`` = val2014 (the test-dev server split has no
answers). The answer and question vocabularies come from the train part only; answers
given for at least ``min_answer_count`` questions are kept;
targets are the official per-answer scores (soft targets).

A model sees the first ``max_regions`` regions of an image. Images with more are counted
when a split is built (from the layout's index or ``num_bbox``, no features read): one
warning per split on the ``alignbench`` logger says how many and the largest count, and
:meth:`VQA2DataModule.sizes` (the run record's ``data_sizes``) adds
``<split>_images_over_max_regions``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..metrics.vqa import answer_scores
from .datasets.text import Vocab
from .readers.vqa2 import RegionFeatureStore, build_answer_vocab, find_vqa2_files, open_region_features, read_vqa2_split
from .readers.vqa2_regions import count_over
from .datasets.vqa import VQATensors
from .datasets.vqa_module import VQADataModule
from ..ranges import PositiveInt

ANSWER_TYPES = ["yes/no", "number", "other"]
log = logging.getLogger("alignbench")


class StoreRegions:
    """A :class:`~alignbench.data.datasets.vqa.RegionSource` that reads a feature store lazily.

    Images with more than ``max_regions`` regions keep the first ``max_regions`` (the data
    module counts them and warns); fewer are zero-padded and masked.
    """

    def __init__(self, store: RegionFeatureStore, image_ids: list[int], max_regions: int) -> None:
        self.store, self.image_ids, self.max_regions = store, image_ids, max_regions

    def gather(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        k, d = self.max_regions, self.store.dim
        out = {"regions": torch.zeros(len(rows), k, d), "region_mask": torch.zeros(len(rows), k, dtype=torch.bool),
               "boxes": torch.zeros(len(rows), k, 4), "image_wh": torch.ones(len(rows), 2)}
        for i, row in enumerate(rows.tolist()):
            item = self.store[self.image_ids[row]]
            n = min(k, item.features.shape[0])
            out["regions"][i, :n] = torch.from_numpy(np.ascontiguousarray(item.features[:n]))
            out["boxes"][i, :n] = torch.from_numpy(np.ascontiguousarray(item.boxes[:n]))
            out["region_mask"][i, :n] = True
            if item.image_w and item.image_h:
                out["image_wh"][i] = torch.tensor([float(item.image_w), float(item.image_h)])
            else:  # no image size in the layout: normalise boxes by their extent
                out["image_wh"][i] = out["boxes"][i, :n, 2:].amax(0).clamp_min(1.0)
        return out


class VQA2DataModule(VQADataModule):
    """VQA v2 (official JSON + region features). See the module docstring for the layout."""

    name = "vqa2"

    def __init__(self, root: str, train_features: str, test_features: str, max_regions: PositiveInt = 36,
                 min_answer_count: PositiveInt = 9, val_fraction: float = 0.05, limit: PositiveInt | None = None,
                 split_seed: int = 1234, **kwargs) -> None:
        super().__init__(**kwargs)
        self.split_seed = split_seed
        if not root or not Path(root).is_dir():
            raise FileNotFoundError(f"vqa2: data.root {root!r} is not a directory")
        self.root, self.max_regions, self.limit = Path(root), max_regions, limit
        self.features = {"train": train_features, "test": test_features}
        self.min_answer_count, self.val_fraction = min_answer_count, val_fraction
        self.visual = "regions"
        self.over_max_regions: dict[str, int] = {}  # split -> images with more than max_regions regions

    def _feature_path(self, split: str) -> Path:
        path = Path(self.features[split])
        return path if path.is_absolute() else self.root / path

    def _count_over(self, split: str, store: RegionFeatureStore, image_ids: list[int]) -> None:
        """Record (and warn once about) the images of ``split`` with more than ``max_regions`` regions."""
        over, largest = count_over(store, image_ids, self.max_regions)
        self.over_max_regions[split] = over
        if over:
            log.warning("vqa2: %s of %s images of the %s split in %s have more than max_regions=%d regions "
                        "(up to %d); only the first %d are used", f"{over:,}", f"{len(image_ids):,}", split,
                        store.path.name, self.max_regions, largest, self.max_regions)

    def _tensors(self, split: str, examples: list[dict], store: RegionFeatureStore,
                 answer_ids: dict[str, int]) -> VQATensors:
        if self.limit is not None:
            examples = examples[: self.limit]
        if not examples:
            raise ValueError(f"vqa2: a split under {self.root} has no questions")
        image_ids = sorted({e["image_id"] for e in examples})
        missing = [i for i in image_ids if i not in store]
        if missing:
            raise KeyError(f"vqa2: {len(missing)} images (e.g. {missing[:3]}) have no features in {store.path}")
        self._count_over(split, store, image_ids)
        row = {image_id: r for r, image_id in enumerate(image_ids)}
        tokens, mask = self.vocab.encode_batch(
            [e["question"] for e in examples],
            names=[f"vqa2: question {e.get('question_id', i)} under {self.root}" for i, e in enumerate(examples)])
        width = max(1, max(len(e["answers"]) for e in examples))
        tidx = torch.full((len(examples), width), -1, dtype=torch.long)
        tscore = torch.zeros(len(examples), width)
        for i, e in enumerate(examples):
            kept = [(answer_ids[a], s) for a, s in answer_scores(e["answers"]).items() if a in answer_ids]
            for j, (a, s) in enumerate(kept):
                tidx[i, j], tscore[i, j] = a, s
        return VQATensors(
            question=tokens, question_mask=mask,
            image_index=torch.tensor([row[e["image_id"]] for e in examples], dtype=torch.long),
            target_index=tidx, target_score=tscore, answers=[e["answers"] for e in examples],
            answer_type=[e["answer_type"] for e in examples], num_answers=len(self.answers),
            regions=StoreRegions(store, image_ids, self.max_regions),
        )

    def build(self) -> dict[str, VQATensors]:
        train = read_vqa2_split(*find_vqa2_files(self.root, "train2014"))
        test = read_vqa2_split(*find_vqa2_files(self.root, "val2014"))
        rng = np.random.default_rng(self.split_seed)  # the same held-out images for every run seed
        images = sorted({e["image_id"] for e in train})
        n_val = max(1, int(round(len(images) * self.val_fraction)))
        val_images = set(rng.choice(images, size=n_val, replace=False).tolist())
        fit = [e for e in train if e["image_id"] not in val_images]
        self.answers = build_answer_vocab(fit, self.min_answer_count)
        if not self.answers:
            raise ValueError(f"vqa2: no train answer occurs in {self.min_answer_count}+ questions under {self.root}")
        self.answer_types = list(ANSWER_TYPES)
        answer_ids = {a: i for i, a in enumerate(self.answers)}
        self.vocab = Vocab.build(e["question"] for e in fit)
        train_store = open_region_features(self._feature_path("train"))
        test_store = open_region_features(self._feature_path("test"))
        self.visual_dim = train_store.dim
        return {
            "train": self._tensors("train", fit, train_store, answer_ids),
            "val": self._tensors("val", [e for e in train if e["image_id"] in val_images], train_store, answer_ids),
            "test": self._tensors("test", test, test_store, answer_ids),
        }

    def sizes(self) -> dict[str, int]:
        """Questions per split, and ``<split>_images_over_max_regions``: the images of each
        split with more than ``max_regions`` regions (only their first ``max_regions`` are used)."""
        sizes = super().sizes()
        return {**sizes, **{f"{split}_images_over_max_regions": n for split, n in self.over_max_regions.items()}}
