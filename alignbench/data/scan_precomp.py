"""SCAN's precomputed retrieval layout (Flickr30K / COCO region features) as a data module.

``<data_path>/<data_name>_precomp/{train,dev,test}_ims.npy`` (``[N, 36, 2048]``, read
memory-mapped) and ``{split}_caps.txt`` (5 consecutive captions per image). ``dev`` is the
validation split. See :mod:`alignbench.data.readers.scan` for the readers and their errors.

Grounding ground truth from Flickr30k Entities (optional, ``entities_path``: the folder
holding the official ``Annotations/`` and ``Sentences/``) needs, per split, the Flickr30k
image id of each feature row and the region boxes, in the precomp folder:

- ``{split}_flickr_ids.txt`` (our file): the Flickr photo id of each ``{split}_ims.npy``
  row, one a line, in row order (e.g. ``1000092795``; a ``.jpg`` suffix is allowed);
- or, without it, SCAN's own ``{split}_ids.txt`` plus ``karpathy_json`` (the path of
  Karpathy's ``dataset_flickr30k.json``). SCAN's file is not a list of Flickr ids: each
  line is the image's position in the JSON's ``"images"`` list (its ``imgid``), one line
  per feature row; the ids are the ``filename`` stems at those positions. Our file wins
  when both are there; SCAN's file without ``karpathy_json`` is an error saying so;
- ``{split}_boxes.npy``: ``[N, 36, 4]`` region boxes ``x1, y1, x2, y2`` in the image's
  pixel coordinates, as bottom-up-attention feature extractors save them.

Caption ``i`` of ``{split}_caps.txt`` is sentence ``i % 5`` of the image of row ``i // 5``;
its text is checked against that Entities sentence. Region ``r`` is ground truth for a
caption when its box has IoU >= 0.5 with a box of an entity the caption's phrases mention
(:mod:`alignbench.data.readers.flickr30k_entities`). The test split's files are required when
``entities_path`` is set (checked at construction, read in :meth:`build`); other splits are
read when :meth:`grounding_masks` asks for them. Neither ``entities_path`` nor
``karpathy_json`` enters the config hash (they change the analysis, not the training).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .readers.flickr30k_entities import BOXES_FILE, caption_region_truth, check_ids_source, read_region_boxes, split_image_ids
from .datasets.retrieval import RetrievalDataModule, RetrievalSplit
from .readers.scan import CAPTIONS_PER_IMAGE, precomp_folder, read_scan_precomp
from .datasets.text import Vocab
from ..ranges import PositiveInt

SPLITS = {"train": "train", "val": "dev", "test": "test"}


class ScanPrecompDataModule(RetrievalDataModule):
    """Retrieval on SCAN precomputed features; ``limit`` caps images per split (tiny runs);
    ``entities_path`` adds Flickr30k Entities grounding truth, ``karpathy_json`` maps SCAN's
    own ``{split}_ids.txt`` to Flickr ids for it (see the module docstring)."""

    name = "scan_precomp"

    def __init__(self, data_path: str, data_name: str = "f30k", test_split: str = "test",
                 limit: PositiveInt | None = None, entities_path: str | None = None, karpathy_json: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder = precomp_folder(data_path, data_name)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"scan_precomp: {self.folder} is not a directory (data_path={data_path!r}, "
                                    f"data_name={data_name!r})")
        if karpathy_json is not None and entities_path is None:
            raise ValueError(f"scan_precomp: karpathy_json={karpathy_json!r} is set but entities_path is not; "
                             "karpathy_json only maps SCAN's ids for the Flickr30k Entities grounding")
        self.test_split, self.limit = test_split, limit
        self.visual = "regions"
        self.entities_path = None if entities_path is None else Path(entities_path)
        self.karpathy_json = None if karpathy_json is None else Path(karpathy_json)
        self._layout: dict[str, tuple[int, int]] = {}  # split -> (feature rows in the files, captions per row)
        self._truth: dict[str, torch.Tensor] = {}
        if self.entities_path is not None:
            self._check_entities_files()

    def _file_split(self, split: str) -> str:
        return self.test_split if split == "test" else SPLITS[split]

    def _check_entities_files(self) -> None:
        """FileNotFoundError naming the first missing folder or test-split file (the image
        ids: see :func:`~alignbench.data.readers.flickr30k_entities.check_ids_source`)."""
        test = self._file_split("test")
        needed = [(self.entities_path, "the Flickr30k Entities folder"),
                  (self.entities_path / "Annotations", "Flickr30k Entities Annotations/<image_id>.xml"),
                  (self.entities_path / "Sentences", "Flickr30k Entities Sentences/<image_id>.txt"),
                  (self.folder / BOXES_FILE.format(split=test), "the region boxes [N, 36, 4]")]
        for path, what in needed:
            if not path.exists():
                raise FileNotFoundError(f"scan_precomp: entities_path is set but {path} is missing ({what})")
        check_ids_source(self.folder, test, self.karpathy_json)

    def build(self) -> dict[str, RetrievalSplit]:
        raw = {k: read_scan_precomp(self.folder, self._file_split(k)) for k in SPLITS}
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
            splits[name] = RetrievalSplit(tokens, mask, caption_image, regions=images, extras={"texts": captions})
            self._layout[name] = (data.num_images, data.captions_per_image)
        if self.entities_path is not None:  # the analysed split: read (and checked) before any training
            self._truth = {"test": self._entities_truth("test", splits["test"])}
        return splits

    def _entities_truth(self, split: str, data: RetrievalSplit) -> torch.Tensor:
        """Bool ``[C, R]`` region truth of every caption of ``split`` (see the module docstring)."""
        rows, per_image = self._layout[split]
        file_split = self._file_split(split)
        caps = self.folder / f"{file_split}_caps.txt"
        if per_image != CAPTIONS_PER_IMAGE:
            raise ValueError(f"{caps}: Flickr30k Entities grounding needs {CAPTIONS_PER_IMAGE} consecutive captions "
                             f"per feature row, but the file has one row per caption")
        ids, source = split_image_ids(self.folder, file_split, rows, self.karpathy_json)
        boxes = read_region_boxes(self.folder / BOXES_FILE.format(split=file_split), (rows, int(data.regions.shape[1])))
        n = data.n_images  # the first rows when ``limit`` is set
        truth = caption_region_truth(self.entities_path, ids[:n], data.extras["texts"], boxes[:n],
                                     CAPTIONS_PER_IMAGE, ids_file=source)
        return torch.from_numpy(truth)

    def grounding_masks(self, split: str, captions: list[int]) -> torch.Tensor | None:
        """Region-level ground truth: bool ``[len(captions), R]`` (R feature regions), True
        where a region matches a box of what the caption (index into ``split``) mentions;
        None without ``entities_path``."""
        if self.entities_path is None:
            return None
        self.setup()
        if split not in self._truth:
            self._truth[split] = self._entities_truth(split, self.splits[split])
        return self._truth[split][torch.as_tensor(captions, dtype=torch.long)]
