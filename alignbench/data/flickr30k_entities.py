"""Flickr30k Entities phrase grounding as a data module (the protocol of Plummer et al. and BAN).

``root`` is the official release's layout (https://github.com/BryanPlummer/flickr30k_entities):
``train.txt``, ``val.txt``, ``test.txt`` (one Flickr30k image id a line) and the unzipped
``annotations.zip``: ``Sentences/<id>.txt`` and ``Annotations/<id>.xml`` (read by
:mod:`~alignbench.data.readers.flickr30k_entities`). ``features`` is the image regions in any
layout :func:`~alignbench.data.readers.vqa2_regions.open_region_features` reads (HDF5 with
``image_features`` and ``image_bb``, a folder of per-image ``.npz`` files with ``x`` and
``bbox``, or a bottom-up TSV); ``{split}`` in the path is replaced by the split's name. The
boxes are the regions' own (x1, y1, x2, y2 in the image's pixels), as the Recall@K protocol
needs.

Every sentence of a split's images is a caption; every phrase whose entity has a box is an
example with all of that entity's boxes as its truth (a hit is a region over IoU 0.5 with any
of them: BAN's ANY-BOX protocol). Phrases without a box (non-visual, ``nobox``, ``scene``) or
without a word are left out and counted in :attr:`excluded` (the run record's data sizes).
Regions are read from the feature store per batch (:class:`RegionReader`), never all at once.
Problems found at construction (a missing folder, split file or feature file, an image
without features) raise naming the file; features without boxes, or boxes outside the
annotated image (features of a resized image), raise naming the file when first read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .datasets.grounding import GroundingDataModule, GroundingSplit
from .datasets.text import Vocab, tokenize
from .readers.flickr30k_entities import read_annotation, read_sentences
from .readers.vqa2_regions import open_region_features
from ..ranges import PositiveInt

SPLITS = {"train": "train", "val": "val", "test": "test"}  # our split -> the release's split file


def aligned_tokens(text: str, first_word: int, n_words: int) -> tuple[list[str], tuple[int, int]]:
    """The caption's tokens (:func:`~alignbench.data.datasets.text.tokenize`, word by word) and
    the token span ``[start, end)`` of the phrase's ``n_words`` words from ``first_word``."""
    tokens: list[str] = []
    start = end = None
    for i, word in enumerate(text.split()):
        if i == first_word:
            start = len(tokens)
        tokens += tokenize(word)
        if i == first_word + n_words - 1:
            end = len(tokens)
    if start is None or end is None or end <= start:
        raise ValueError(f"phrase at word {first_word} ({n_words} words) is not in {text!r}")
    return tokens, (start, end)


class Flickr30kEntitiesDataModule(GroundingDataModule):
    """Flickr30k Entities phrase grounding (see the module docstring). ``max_regions`` keeps
    each image's first regions (padding fills the rest); ``limit`` caps the images per split."""

    name = "flickr30k_entities"

    def __init__(self, root: str, features: str, features_index: str | None = None, max_regions: PositiveInt = 100,
                 limit: PositiveInt | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.features, self.features_index = Path(root).expanduser(), features, features_index
        self.max_regions, self.limit = max_regions, limit
        self.excluded: dict[str, int] = {}
        for sub in ("Sentences", "Annotations"):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(f"flickr30k_entities: {self.root / sub} is not a directory "
                                        "(the unzipped annotations.zip of the official release)")
        self.ids = {split: self._split_ids(split) for split in SPLITS}
        stores = {split: self._store(split) for split in SPLITS}
        for split, ids in self.ids.items():
            missing = [i for i in ids if int(i) not in stores[split]]
            if missing:
                raise ValueError(f"{self._features_path(split)}: no region features for image {missing[0]} "
                                 f"of {self.root / (SPLITS[split] + '.txt')} ({len(missing)} missing in all)")
        self.visual_dim = next(iter(stores.values())).dim
        for store in stores.values():
            store.close()

    def _split_ids(self, split: str) -> list[str]:
        path = self.root / f"{SPLITS[split]}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"flickr30k_entities: {path} not found (one image id a line)")
        ids = [line.strip().removesuffix(".jpg") for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip()]
        if bad := next((i for i in ids if not i.isdigit()), None):
            raise ValueError(f"{path}: {bad!r} is not a Flickr30k image id")
        if not ids:
            raise ValueError(f"{path}: no image ids")
        return ids[: self.limit] if self.limit else ids

    def _features_path(self, split: str) -> Path:
        return Path(self.features.format(split=split)).expanduser()

    def _store(self, split: str):
        path = self._features_path(split)
        if not path.exists():
            raise FileNotFoundError(f"flickr30k_entities: region features {path} not found")
        index = self.features_index.format(split=split) if self.features_index else None
        return open_region_features(path, index)

    def sizes(self) -> dict:
        return {**super().sizes(), **{f"excluded_{k}": v for k, v in self.excluded.items()}}

    def _read_split(self, split: str) -> dict:
        captions, caption_image, phrases, sizes = [], [], [], []
        for n, image_id in enumerate(self.ids[split]):
            ann = read_annotation(self.root / "Annotations" / f"{image_id}.xml")
            sizes.append((ann.width, ann.height))
            for sentence in read_sentences(self.root / "Sentences" / f"{image_id}.txt"):
                tokens = tokenize(sentence.text)
                for ph in sentence.phrases:
                    truth = ann.boxes_of([ph.entity_id]) if ph.visual else np.zeros((0, 4))
                    key = None if len(truth) else ("non_visual" if not ph.visual else "no_box")
                    if key is None:
                        try:
                            tokens, span = aligned_tokens(sentence.text, ph.first_word_index, len(ph.text.split()))
                        except ValueError:  # a phrase of punctuation only: no word to attend with
                            key = "no_words"
                    if key is not None:
                        self.excluded[f"{split}_{key}"] = self.excluded.get(f"{split}_{key}", 0) + 1
                        continue
                    phrases.append((len(captions), span, truth))
                captions.append(" ".join(tokens))
                caption_image.append(n)
        reader = RegionReader(self._features_path(split), self.features_index and self.features_index.format(split=split),
                              self.ids[split], sizes, self.max_regions)
        return {"captions": captions, "caption_image": caption_image, "phrases": phrases, "sizes": sizes,
                "reader": reader}

    def build(self) -> dict[str, GroundingSplit]:
        raw = {split: self._read_split(split) for split in SPLITS}
        self.vocab = Vocab.build(raw["train"]["captions"])
        return {split: _split(data, self.vocab) for split, data in raw.items()}


class RegionReader:
    """The regions of a split's images, read from the feature store when a batch needs them
    (the features of Flickr30k do not fit in memory at once): image indices ``[U]`` →
    features ``[U, max_regions, D]``, boxes ``[U, max_regions, 4]`` and a mask of the real
    regions. Every image's boxes are checked against its annotated size."""

    def __init__(self, path: Path, index: str | None, ids: list[str], sizes: list[tuple[int, int]],
                 max_regions: int) -> None:
        self.path, self.index, self.ids, self.sizes, self.max_regions = path, index, ids, sizes, max_regions
        self._store = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None}  # each process opens its own

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._store is None:
            self._store = open_region_features(self.path, self.index)
        dim = self._store.dim
        feats = torch.zeros(len(images), self.max_regions, dim)
        boxes = torch.zeros(len(images), self.max_regions, 4)
        mask = torch.zeros(len(images), self.max_regions, dtype=torch.bool)
        for row, n in enumerate(images.tolist()):
            image_id, (width, height) = self.ids[n], self.sizes[n]
            regions = self._store[int(image_id)]
            if regions.boxes is None or len(regions.boxes) != len(regions.features):
                raise ValueError(f"{self.path}: image {image_id} has features without a box each")
            if regions.image_w and regions.image_h and (regions.image_w, regions.image_h) != (width, height):
                raise ValueError(f"{self.path}: image {image_id}'s regions were found on a "
                                 f"{regions.image_w}x{regions.image_h} image, its annotation is {width}x{height}")
            b = np.asarray(regions.boxes, dtype=np.float32)
            if len(b) and (b.min() < -1 or (b[:, [0, 2]] > width + 1).any() or (b[:, [1, 3]] > height + 1).any()):
                raise ValueError(f"{self.path}: image {image_id} has region boxes outside its {width}x{height} pixels")
            k = min(len(b), self.max_regions)
            feats[row, :k] = torch.from_numpy(np.asarray(regions.features[:k], dtype=np.float32))
            boxes[row, :k], mask[row, :k] = torch.from_numpy(b[:k]), True
        return feats, boxes, mask


def _split(raw: dict, vocab: Vocab) -> GroundingSplit:
    tokens, mask = vocab.encode_batch(raw["captions"])
    phrases = raw["phrases"]
    words = torch.zeros(len(phrases), tokens.shape[1], dtype=torch.bool)
    most = max((len(t) for _, _, t in phrases), default=1)
    gt = torch.zeros(len(phrases), most, 4)
    for p, (_, (start, end), truth) in enumerate(phrases):
        words[p, start:end] = True
        gt[p, : len(truth)] = torch.as_tensor(truth, dtype=torch.float32)
    return GroundingSplit(tokens, mask, torch.tensor(raw["caption_image"], dtype=torch.long),
                          torch.tensor([c for c, _, _ in phrases], dtype=torch.long), words, gt,
                          torch.tensor([len(t) for _, _, t in phrases], dtype=torch.long), None, None, None,
                          torch.tensor(raw["sizes"], dtype=torch.long), read_regions=raw["reader"])
