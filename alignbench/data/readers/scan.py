"""Readers for image-text retrieval data in SCAN's precomputed layout (Flickr30K, COCO).

Pure numpy / plain Python; nothing here builds tensors or batches.

- :func:`read_scan_precomp`: one split of a ``<data_path>/<data_name>_precomp/`` folder
  (``f30k_precomp``, ``coco_precomp``) holding ``{split}_ims.npy`` region features and
  ``{split}_caps.txt`` captions. Splits are ``train``, ``dev``, ``test`` (COCO also
  ``testall``: the 5K-image test set, evaluated whole or as 5 folds of 1K images).
- :func:`check_alignment`: the caption-to-image consistency checks the reader applies.
- :func:`read_karpathy_captions`: raw captions of one split of Karpathy's
  ``dataset_{coco,flickr30k,flickr8k}.json``.

Malformed inputs raise FileNotFoundError / ValueError naming the offending file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike
IMS_FILE = "{split}_ims.npy"
CAPS_FILE = "{split}_caps.txt"
SCAN_SPLITS = ("train", "dev", "test", "testall")
CAPTIONS_PER_IMAGE = 5
KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "dev": ("val",), "test": ("test",)}


@dataclass
class ScanSplit:
    """One split of a SCAN precomp folder.

    Attributes:
        images: region features [N_rows, R, D] (float32, R=36 and D=2048 in the released
            data); a read-only memory map when read with ``mmap=True``.
        captions: the C captions, in file order.
        caption_image: int64 [C]; row of ``images`` described by each caption.
        captions_per_image: captions per feature row: 5 when C == 5 * N_rows (caption
            ``c`` describes row ``c // 5``), 1 when C == N_rows (one row per caption).
        ims_path, caps_path: the files read, used in error messages (None if built in memory).
    """

    images: np.ndarray
    captions: list[str]
    caption_image: np.ndarray
    captions_per_image: int
    ims_path: Path | None = None
    caps_path: Path | None = None

    @property
    def num_images(self) -> int:
        """Number of feature rows N_rows."""
        return int(self.images.shape[0])


def precomp_folder(data_path: PathLike, data_name: str) -> Path:
    """``<data_path>/<data_name>_precomp``; ``data_name`` may be ``f30k`` or ``f30k_precomp``."""
    name = data_name if data_name.endswith("_precomp") else f"{data_name}_precomp"
    return Path(data_path) / name


def _where(split: ScanSplit) -> str:
    files = [str(p) for p in (split.ims_path, split.caps_path) if p is not None]
    return " / ".join(files) if files else "ScanSplit"


def check_alignment(split: ScanSplit) -> None:
    """Check that captions and feature rows line up; raise ValueError naming the files.

    Requires ``images`` 3-D [N_rows, R, D] with N_rows >= 1, R >= 1, D >= 1, at least one
    caption, ``caption_image`` of shape [C], ``captions_per_image`` in {1, 5} and
    ``caption_image[c] == c // captions_per_image`` for all c (consecutive caption blocks),
    which also implies C == captions_per_image * N_rows.
    """
    where, ims, caps = _where(split), split.images, split.captions
    if ims.ndim != 3:
        raise ValueError(f"{where}: image features must be 3-D [N_images, regions, dim], got shape {ims.shape}")
    if min(ims.shape) == 0:
        raise ValueError(f"{where}: empty split (image features of shape {ims.shape})")
    if not caps:
        raise ValueError(f"{where}: empty split (no captions)")
    cpi = split.captions_per_image
    if cpi not in (1, CAPTIONS_PER_IMAGE):
        raise ValueError(f"{where}: captions_per_image must be 1 or {CAPTIONS_PER_IMAGE}, got {cpi}")
    if len(caps) != cpi * ims.shape[0]:
        raise ValueError(
            f"{where}: {len(caps)} captions for {ims.shape[0]} image rows; expected "
            f"{CAPTIONS_PER_IMAGE} x {ims.shape[0]} = {CAPTIONS_PER_IMAGE * ims.shape[0]} "
            f"(5 consecutive captions per image) or exactly {ims.shape[0]} (one row per caption)"
        )
    expected = np.arange(len(caps), dtype=np.int64) // cpi
    ci = np.asarray(split.caption_image)
    if ci.shape != expected.shape or not np.array_equal(ci, expected):
        raise ValueError(
            f"{where}: caption_image must map caption c to image row c // {cpi} "
            f"(shape {expected.shape}), got shape {ci.shape}"
        )


def _read_captions(path: Path) -> list[str]:
    """One caption per line, surrounding whitespace stripped; blank lines are errors."""
    captions = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: line {lineno} is not valid UTF-8 ({e})") from e
            if not text:
                raise ValueError(f"{path}: line {lineno} is an empty caption")
            captions.append(text)
    return captions


def _load_features(path: Path, mmap: bool) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy array (truncated or corrupt?): {e}") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive saved under the .npy name
        arr.close()
        raise ValueError(f"{path}: expected a single .npy array, got {type(arr).__name__}")  # noqa: TRY004
    if arr.ndim != 3:
        raise ValueError(f"{path}: image features must be 3-D [N_images, regions, dim], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path}: image features must be floating point, got dtype {arr.dtype}")
    return arr


def read_scan_precomp(folder: PathLike, split: str, mmap: bool = True) -> ScanSplit:
    """Read ``{split}_ims.npy`` and ``{split}_caps.txt`` from a SCAN precomp folder.

    ``folder`` is the ``<data_name>_precomp`` folder itself (see :func:`precomp_folder`).
    ``{split}_ims.npy`` holds features [N_rows, R, D]; with ``mmap=True`` (default) it is
    memory-mapped read-only, since train features are tens of GB. ``{split}_caps.txt`` holds
    one caption per line, whitespace-stripped as SCAN reads it.

    Rows follow SCAN's rule: if N_rows != C (number of captions) each row has 5 consecutive
    captions (SCAN's ``im_div = 5``), here required to be exact: C == 5 * N_rows; if N_rows
    == C there is one row per caption (``im_div = 1``, ``captions_per_image = 1``). All
    captions are returned; SCAN itself iterates only the first 5000 captions of ``dev``.

    Raises FileNotFoundError naming a missing file (and the splits present), ValueError
    naming the file for unreadable / non-3-D / non-float features, empty splits, empty or
    non-UTF-8 caption lines (with line number) and caption / row count mismatches.
    """
    base = Path(folder)
    ims_path, caps_path = base / IMS_FILE.format(split=split), base / CAPS_FILE.format(split=split)
    for path in (ims_path, caps_path):
        if not path.is_file():
            present = sorted(p.name[: -len("_caps.txt")] for p in base.glob("*_caps.txt")) if base.is_dir() else []
            raise FileNotFoundError(
                f"SCAN precomp split {split!r}: missing {path} "
                f"(splits with captions in {base}: {present or 'none'}; known splits: {SCAN_SPLITS})"
            )
    captions = _read_captions(caps_path)
    images = _load_features(ims_path, mmap)
    if images.shape[0] == 0 or not captions:
        raise ValueError(
            f"{ims_path} / {caps_path}: empty split ({images.shape[0]} image rows, {len(captions)} captions)"
        )
    cpi = 1 if images.shape[0] == len(captions) else CAPTIONS_PER_IMAGE
    result = ScanSplit(
        images=images,
        captions=captions,
        caption_image=np.arange(len(captions), dtype=np.int64) // cpi,
        captions_per_image=cpi,
        ims_path=ims_path,
        caps_path=caps_path,
    )
    check_alignment(result)
    return result


def _karpathy_entry(path: Path, i: int, entry: Any) -> tuple[str, str, list[str]]:
    """(split, filename, stripped raw sentences) of ``images[i]``; ValueError naming the file."""
    try:
        split, filename = entry["split"], entry["filename"]
        raws = [s["raw"] for s in entry["sentences"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: images[{i}] lacks split / filename / sentences[].raw ({e!r})") from e
    if not isinstance(split, str) or not isinstance(filename, str) or not all(isinstance(r, str) for r in raws):
        raise ValueError(f"{path}: images[{i}] has a non-string split, filename or raw sentence")
    return split, filename, [r.strip() for r in raws]


def load_karpathy_json(path: str | os.PathLike, missing: str) -> dict[str, Any]:
    """Karpathy's split file (``dataset_{flickr8k,flickr30k,coco}.json``) as a dict with an
    ``images`` list; FileNotFoundError with the message ``missing``, ValueError naming the
    file when it is not valid JSON or has no ``images`` list."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(missing)
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{p}: expected a JSON object with an 'images' list (Karpathy's split file)")
    return data


def read_karpathy_captions(path: PathLike, split: str) -> tuple[list[str], list[list[str]]]:
    """Image filenames and raw captions of one split of a Karpathy split JSON.

    The file (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``)
    is ``{"images": [{"filename", "imgid", "split", "sentids", "sentences": [{"tokens",
    "raw", "imgid", "sentid"}], ...}], "dataset": ...}``; COCO entries also carry
    ``filepath`` (``train2014`` / ``val2014``) and ``cocoid``.

    ``split`` is ``train``, ``val`` (alias ``dev``) or ``test``. As is customary, ``train``
    includes the ``restval`` images (COCO's remaining val2014 images), in file order.
    Returns ``(filenames, captions)``: ``filenames[i]`` is the entry's ``filename`` as stored
    (for COCO join it with ``filepath``), ``captions[i]`` its ``raw`` sentences with
    surrounding whitespace stripped, all of them (a few COCO images have more than 5).
    Raises FileNotFoundError / ValueError naming the file for missing or malformed files.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"unknown Karpathy split {split!r}; expected one of {sorted(KARPATHY_SPLITS)}")
    p = Path(path)
    data = load_karpathy_json(p, f"Karpathy split file not found: {p}")
    wanted = KARPATHY_SPLITS[split]
    filenames: list[str] = []
    captions: list[list[str]] = []
    for i, entry in enumerate(data["images"]):
        entry_split, filename, raws = _karpathy_entry(p, i, entry)
        if entry_split in wanted:
            filenames.append(filename)
            captions.append(raws)
    return filenames, captions
