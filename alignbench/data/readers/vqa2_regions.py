"""Readers for bottom-up-attention region features (pure numpy, read lazily).

:func:`open_region_features` gives a read-only ``Mapping[int, RegionFeatures]`` over the
region features of one split, from an HDF5 file (+ image-id index), a directory of
per-image ``.npz`` files, or a base64 TSV. Values are read one image at a time;
:meth:`RegionFeatureStore.num_boxes` tells an image's region count without reading its
features, and :func:`count_over` how many images of a split have more regions than a
model keeps.
"""

from __future__ import annotations

import base64
import binascii
import os
import pickle
import re
import zipfile
import zlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

TSV_COLUMNS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
REGION_LAYOUTS = (
    "an HDF5 file (*.h5 / *.hdf5) with datasets image_features and image_bb; "
    "a directory of per-image *.npz files with keys x, bbox; "
    "a base64 TSV file (*.tsv, *.tsv.N) with columns " + ", ".join(TSV_COLUMNS)
)
PathLike = str | os.PathLike


class RegionFeatureFormatError(ValueError):
    """A region feature file does not follow its layout; the message names the file."""


def _bad(path: PathLike, what: str) -> RegionFeatureFormatError:
    return RegionFeatureFormatError(f"{path}: {what}")


@dataclass(frozen=True)
class RegionFeatures:
    """Regions of one image: ``features`` float32 [N, D]; ``boxes`` float32 [N, 4] as
    (x1, y1, x2, y2) in pixels; image size in pixels, None when the layout lacks it."""

    features: np.ndarray
    boxes: np.ndarray
    image_w: int | None = None
    image_h: int | None = None


class RegionFeatureStore(Mapping[int, RegionFeatures]):
    """Read-only map image id -> :class:`RegionFeatures` of one file/directory.

    ``dim`` is the feature size D. The id index is built on opening; arrays are read on
    access; :meth:`num_boxes` is the region count N of an image without its arrays. A
    missing id raises KeyError naming the id and the file.
    """

    layout = ""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._index: dict[int, Any] = {}
        self._dim: int | None = None

    @abstractmethod
    def _read(self, image_id: int, entry: Any) -> RegionFeatures: ...

    @abstractmethod
    def _count(self, image_id: int, entry: Any) -> int: ...

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self[next(iter(self._index))].features.shape[1])
        return self._dim

    def _check_dim(self, where: PathLike, features: np.ndarray) -> None:
        """Every image of a store has the same D (the first image read sets it)."""
        if self._dim is None:
            self._dim = int(features.shape[1])
        elif features.shape[1] != self._dim:
            raise _bad(where, f"features have D={features.shape[1]}, other images have D={self._dim}")

    def __getitem__(self, image_id: int) -> RegionFeatures:
        if image_id not in self:
            raise KeyError(f"image id {image_id!r} not in {self.layout} region features {self.path}")
        return self._read(int(image_id), self._index[int(image_id)])

    def num_boxes(self, image_id: int) -> int:
        """The number of regions N of an image (HDF5 / TSV: from the index; npz: from
        ``num_bbox`` or ``bbox``, the features unread). KeyError as for ``store[image_id]``."""
        if image_id not in self:
            raise KeyError(f"image id {image_id!r} not in {self.layout} region features {self.path}")
        return self._count(int(image_id), self._index[int(image_id)])

    def __contains__(self, image_id: object) -> bool:
        ok = isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool)
        return ok and int(image_id) in self._index  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Release open file handles (a later read reopens them)."""


def _size_from_spatial(boxes: np.ndarray, spatial: np.ndarray | None) -> tuple[int | None, int | None]:
    """Image (w, h) from ``spatial_features [N, 6]`` = (x1/w, y1/h, x2/w, y2/h, bw/w, bh/h)."""
    if spatial is None or spatial.shape != (len(boxes), 6):
        return None, None
    sizes = []
    for extent, scaled in ((boxes[:, 2] - boxes[:, 0], spatial[:, 4]), (boxes[:, 3] - boxes[:, 1], spatial[:, 5])):
        ok = (scaled > 1e-6) & (extent > 0)
        sizes.append(int(round(float(np.median(extent[ok] / scaled[ok])))) if ok.any() else None)
    return sizes[0], sizes[1]


class H5RegionFeatures(RegionFeatureStore):
    """HDF5 of the bottom-up-attention VQA preprocessing.

    Fixed boxes: ``image_features [N_img, K, D]``, ``image_bb [N_img, K, 4]``; adaptive
    boxes: ``image_features [N_box, D]``, ``image_bb [N_box, 4]``, ``pos_boxes [N_img, 2]``
    (start, end). Optional ``spatial_features`` (same leading dims, 6) gives the image
    size. Image id -> row: ``index_path``, else an ``image_ids [N_img]`` dataset, else the
    sibling pickle ``<stem>_imgid2idx.pkl`` (``train36.hdf5`` -> ``train36_imgid2idx.pkl``).
    """

    layout = "hdf5"

    def __init__(self, path: PathLike, index_path: PathLike | None = None) -> None:
        super().__init__(path)
        self._h5: h5py.File | None = None
        f = self._file()
        feats, bb = f.get("image_features"), f.get("image_bb")
        if not isinstance(feats, h5py.Dataset) or not isinstance(bb, h5py.Dataset):
            raise _bad(self.path, f"needs datasets 'image_features' and 'image_bb', has {sorted(f.keys())}")
        self._pos = np.asarray(f["pos_boxes"][()], dtype=np.int64) if "pos_boxes" in f else None
        if self._pos is None:
            ok = feats.ndim == 3 and bb.shape == (*feats.shape[:2], 4)
        else:
            pos = self._pos.reshape(-1, 2) if self._pos.ndim == 2 and self._pos.shape[1] == 2 else None
            ok = feats.ndim == 2 and bb.shape == (feats.shape[0], 4) and pos is not None and bool(
                ((0 <= pos[:, 0]) & (pos[:, 0] <= pos[:, 1]) & (pos[:, 1] <= feats.shape[0])).all())
        if not ok:
            pos = "" if self._pos is None else f", pos_boxes {self._pos.shape}"
            raise _bad(self.path, f"inconsistent shapes: image_features {feats.shape}, image_bb {bb.shape}{pos}")
        self._dim = int(feats.shape[-1])
        self._boxes_per_image = int(feats.shape[1]) if self._pos is None else 0  # fixed boxes: K
        self._spatial = "spatial_features" in f
        rows = feats.shape[0] if self._pos is None else len(self._pos)
        self._index = self._read_index(f, rows, index_path)

    def _read_index(self, f: h5py.File, rows: int, index_path: PathLike | None) -> dict[int, int]:
        if index_path is None and "image_ids" in f:
            where: PathLike = self.path
            ids = np.asarray(f["image_ids"][()]).reshape(-1)
            if len(ids) != rows:
                raise _bad(where, f"image_ids has {len(ids)} entries for {rows} images")
            mapping: Any = {int(i): r for r, i in enumerate(ids)}
            if len(mapping) != rows:
                raise _bad(where, "image_ids has duplicate ids")
        else:
            sibling = self.path.with_name(self.path.stem + "_imgid2idx.pkl")
            where = Path(index_path) if index_path is not None else sibling
            if not where.is_file():
                raise _bad(self.path, f"no 'image_ids' dataset and no image id index file {where}")
            try:
                with open(where, "rb") as fh:
                    mapping = pickle.load(fh, encoding="latin1")
            except Exception as e:  # any unpickling failure means a damaged index file
                raise _bad(where, f"unreadable image id index pickle ({type(e).__name__}: {e})") from e
            if not isinstance(mapping, dict):
                raise _bad(where, f"expected a dict {{image_id: row}}, got {type(mapping).__name__}")
        try:
            index = {int(k): int(v) for k, v in mapping.items()}
        except (TypeError, ValueError) as e:
            raise _bad(where, f"image ids and rows must be integers ({e})") from e
        outside = [k for k, v in index.items() if not 0 <= v < rows]
        if outside:
            raise _bad(where, f"rows outside [0, {rows}) for image ids {outside[:5]}")
        return index

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():  # reopen in forked workers
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as e:
                raise _bad(self.path, f"not a readable HDF5 file ({e})") from e
            self._pid = os.getpid()
        return self._h5

    def _read(self, image_id: int, row: int) -> RegionFeatures:
        f = self._file()
        sel: Any = row if self._pos is None else slice(int(self._pos[row, 0]), int(self._pos[row, 1]))
        try:
            features = np.asarray(f["image_features"][sel], dtype=np.float32)
            boxes = np.asarray(f["image_bb"][sel], dtype=np.float32)
            spatial = np.asarray(f["spatial_features"][sel]) if self._spatial else None
        except OSError as e:
            raise _bad(self.path, f"cannot read row {row} of image {image_id} ({e})") from e
        return RegionFeatures(features, boxes, *_size_from_spatial(boxes, spatial))

    def _count(self, image_id: int, row: int) -> int:
        if self._pos is None:
            return self._boxes_per_image
        return int(self._pos[row, 1] - self._pos[row, 0])

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None}


_NPZ_NAME = re.compile(r"^(?:.*_)?(\d+)(?:\.(?:jpg|jpeg|png))?\.npz$", re.IGNORECASE)


class NpzDirRegionFeatures(RegionFeatureStore):
    """Directory of per-image ``.npz`` files (py-bottom-up-attention / MCAN layout).

    File names ``COCO_train2014_000000000009.jpg.npz`` or ``9.npz``; keys ``x`` features
    ``[K, D]`` or ``[D, K]`` (told apart by ``num_bbox``), ``bbox [K, 4]``, optional
    ``num_bbox``, ``image_w``, ``image_h``. Other keys (e.g. ``info``) are ignored.
    """

    layout = "npz directory"

    def __init__(self, path: PathLike) -> None:
        super().__init__(path)
        for file in sorted(self.path.glob("*.npz")):
            match = _NPZ_NAME.match(file.name)
            if match is None:
                raise _bad(file, "no image id in the file name "
                                 "(expected e.g. COCO_train2014_000000000009.jpg.npz or 9.npz)")
            image_id = int(match.group(1))
            if image_id in self._index:
                raise _bad(file, f"image id {image_id} is also stored in {self._index[image_id].name}")
            self._index[image_id] = file
        if not self._index:
            raise ValueError(f"{self.path}: directory holds no .npz files; valid layouts: {REGION_LAYOUTS}")

    def _read(self, image_id: int, file: Path) -> RegionFeatures:
        try:
            with np.load(file, allow_pickle=False) as z:
                missing = [k for k in ("x", "bbox") if k not in z.files]
                if missing:
                    raise _bad(file, f"missing keys {missing} (has {z.files})")
                x, boxes = np.asarray(z["x"], dtype=np.float32), np.asarray(z["bbox"], dtype=np.float32)
                n = int(z["num_bbox"]) if "num_bbox" in z.files else len(boxes)
                size = [int(z[k]) if k in z.files else None for k in ("image_w", "image_h")]
        except RegionFeatureFormatError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            raise _bad(file, f"unreadable .npz ({type(e).__name__}: {e})") from e
        if boxes.shape != (n, 4) or x.ndim != 2:
            raise _bad(file, f"bbox {boxes.shape} / x {x.shape} do not fit num_bbox={n}")
        if x.shape[0] != n and x.shape[1] == n:
            x = np.ascontiguousarray(x.T)  # stored [D, K]
        elif x.shape[0] != n:
            raise _bad(file, f"x has shape {x.shape}, neither [num_bbox={n}, D] nor [D, num_bbox]")
        self._check_dim(file, x)
        return RegionFeatures(x, boxes, size[0], size[1])

    def _count(self, image_id: int, file: Path) -> int:
        try:
            with np.load(file, allow_pickle=False) as z:
                if "num_bbox" in z.files:
                    return int(z["num_bbox"])
                if "bbox" in z.files:
                    return len(z["bbox"])
                files = z.files
        except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as e:
            raise _bad(file, f"unreadable .npz ({type(e).__name__}: {e})") from e
        raise _bad(file, f"missing keys ['bbox'] (has {files})")


class TsvRegionFeatures(RegionFeatureStore):
    """Base64 TSV of the original bottom-up-attention extraction.

    One line per image, tab-separated ``image_id, image_w, image_h, num_boxes, boxes,
    features``; ``boxes`` / ``features`` are base64 float32 ``[num_boxes, 4]`` /
    ``[num_boxes, D]``. Opening scans the file once for line offsets; each access seeks
    to its line and decodes it.
    """

    layout = "tsv"

    def __init__(self, path: PathLike) -> None:
        super().__init__(path)
        offset = 0
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                columns = line.count(b"\t") + 1
                if columns != len(TSV_COLUMNS):
                    raise _bad(self.path, f"line {lineno} has {columns} tab-separated columns, "
                                          f"expected {len(TSV_COLUMNS)} ({', '.join(TSV_COLUMNS)})")
                tabs = [line.index(b"\t")]
                while len(tabs) < 4:  # up to num_boxes, without copying the long base64 columns
                    tabs.append(line.index(b"\t", tabs[-1] + 1))
                head, num = line[: tabs[0]], line[tabs[2] + 1: tabs[3]].strip()
                if not head.strip().isdigit():
                    raise _bad(self.path, f"line {lineno}: image_id {head[:40]!r} is not an integer")
                image_id = int(head)
                if image_id in self._index:
                    first = self._index[image_id][1]
                    raise _bad(self.path, f"line {lineno}: image id {image_id} repeats line {first}")
                self._index[image_id] = (start, lineno, int(num) if num.isdigit() else None)
        if not self._index:
            raise _bad(self.path, "no feature lines")

    def _decode(self, payload: bytes, n: int, name: str, lineno: int, width: int | None) -> np.ndarray:
        try:
            raw = base64.b64decode(payload, validate=True)
        except binascii.Error as e:
            raise _bad(self.path, f"line {lineno}: {name} is not valid base64 ({e})") from e
        if len(raw) % (4 * n) or not raw or (width is not None and len(raw) != 4 * n * width):
            raise _bad(self.path, f"line {lineno}: {name} decodes to {len(raw)} bytes, not "
                                  f"num_boxes={n} x {width or 'D'} float32 values (4 bytes each)")
        return np.frombuffer(raw, dtype=np.float32).reshape(n, -1).copy()

    def _read(self, image_id: int, entry: tuple[int, int, int | None]) -> RegionFeatures:
        start, lineno, _ = entry
        with open(self.path, "rb") as f:
            f.seek(start)
            fields = f.readline().rstrip(b"\r\n").split(b"\t")
        if len(fields) != len(TSV_COLUMNS):
            raise _bad(self.path, f"line {lineno} changed since the file was opened")
        try:
            w, h, n = int(float(fields[1])), int(float(fields[2])), int(fields[3])
        except ValueError as e:
            raise _bad(self.path, f"line {lineno}: image_w/image_h/num_boxes not numbers ({e})") from e
        if n < 1:
            raise _bad(self.path, f"line {lineno}: num_boxes={n}")
        boxes = self._decode(fields[4], n, "boxes", lineno, 4)
        features = self._decode(fields[5], n, "features", lineno, None)
        self._check_dim(self.path, features)
        return RegionFeatures(features, boxes, w, h)

    def _count(self, image_id: int, entry: tuple[int, int, int | None]) -> int:
        if entry[2] is None:
            raise _bad(self.path, f"line {entry[1]}: num_boxes is not a number")
        return entry[2]


def count_over(store: RegionFeatureStore, image_ids: list[int], max_regions: int) -> tuple[int, int]:
    """``(images, largest)``: how many of ``image_ids`` have more than ``max_regions``
    regions (a model keeping the first ``max_regions`` drops the rest), and the largest
    region count among ``image_ids`` (0 if none). Reads no feature array."""
    counts = [store.num_boxes(i) for i in image_ids]
    return sum(n > max_regions for n in counts), max(counts, default=0)


def open_region_features(path: PathLike, index_path: PathLike | None = None) -> RegionFeatureStore:
    """Open region features, choosing the layout by path (see :data:`REGION_LAYOUTS`).

    A directory -> per-image ``.npz`` files; ``*.h5`` / ``*.hdf5`` -> HDF5 (``index_path``
    overrides where the image id -> row pickle is found); ``*.tsv`` / ``*.tsv.N`` -> TSV.
    Anything else raises ValueError naming the path and the valid layouts.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"region features not found: {p}")
    if index_path is not None and p.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"{p}: index_path only applies to HDF5 region features")
    if p.is_dir():
        return NpzDirRegionFeatures(p)
    if p.suffix.lower() in (".h5", ".hdf5"):
        return H5RegionFeatures(p, index_path)
    if re.search(r"\.tsv(\.\d+)?$", p.name, re.IGNORECASE):
        return TsvRegionFeatures(p)
    raise ValueError(f"{p}: unknown region feature layout; valid layouts: {REGION_LAYOUTS}")
