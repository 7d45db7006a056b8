"""Reader for text-to-image data in AttnGAN's layout (CUB-200-2011 birds; COCO in AttnGAN / DM-GAN).

Pure numpy / Pillow / plain Python; nothing here builds tensors or batches.

- :func:`read_t2i_split`: one split (``train`` / ``test``) of an AttnGAN data root: image
  keys from ``<split>/filenames.pickle``, captions from ``text/<key>.txt`` and images from
  ``<images_dir>/<key>.jpg``, optionally cropped around CUB's bird bounding boxes.
- :func:`read_bboxes`: CUB's ``images.txt`` + ``bounding_boxes.txt`` as ``{key: (x, y, w, h)}``.
- :func:`bbox_crop_box`: AttnGAN's square crop box around a bounding box.

Malformed inputs raise FileNotFoundError / ValueError naming the offending file.
"""

from __future__ import annotations

import os
import pickle
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets.text import read_utf8

PathLike = str | os.PathLike
T2I_SPLITS = ("train", "test")
FILENAMES_FILE = "{split}/filenames.pickle"
TEXT_DIR = "text"
CUB_IMAGES_DIR = "CUB_200_2011/images"
IMAGES_DIR = "images"
IMAGES_LIST = "CUB_200_2011/images.txt"
BBOX_FILE = "CUB_200_2011/bounding_boxes.txt"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class T2ISplit:
    """One split of an AttnGAN text-to-image data root.

    Attributes:
        keys: the N image keys (``<class folder>/<image stem>``), in ``filenames.pickle`` order.
        captions: N lists of exactly ``captions_per_image`` stripped captions, in file order.
        images: uint8 [N, 3, S, S] RGB, channels first (S = ``image_size``); without
            ``image_size`` [N, 3, H, W], the common size of the (cropped) images.
        root: the data root read.
    """

    keys: list[str]
    captions: list[list[str]]
    images: np.ndarray
    root: Path


def _has_control(key: str) -> bool:
    """True if ``key`` holds a control character (Unicode category Cc: ``\\r``, ``\\n``, ``\\t``, NUL, ...)."""
    return any(unicodedata.category(c) == "Cc" for c in key)


def _read_keys(path: Path) -> list[str]:
    """Keys of a ``filenames.pickle`` (Python 2 ``str`` decoded as latin-1, bytes as UTF-8).

    A key holding a control character (Unicode category Cc, e.g. the ``"\\r"`` a CRLF
    conversion leaves at the end of each key of a text-mode pickle) is a ValueError naming
    the file, the first such key, how many there are and the likely cause.
    """
    if not path.is_file():
        raise FileNotFoundError(f"AttnGAN filenames list not found: {path}")
    try:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="latin1")
    except Exception as e:  # unpickling can raise almost anything on a corrupt file
        raise ValueError(f"{path}: not a readable pickle ({e!r})") from e
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"{path}: expected a pickled list of keys, got {type(raw).__name__}")  # noqa: TRY004
    keys = []
    for i, k in enumerate(raw):
        if isinstance(k, bytes):
            k = k.decode("utf-8")
        if not isinstance(k, str) or not k:
            raise ValueError(f"{path}: entry {i} is not a non-empty string key ({k!r})")
        keys.append(k)
    bad = [i for i, k in enumerate(keys) if _has_control(k)]
    if bad:
        raise ValueError(f"{path}: {len(bad)} of {len(keys)} keys contain control characters (first: entry {bad[0]} "
                         f"{keys[bad[0]]!r}); the file was likely converted to CRLF line endings or opened in text "
                         "mode: use the original binary filenames.pickle")
    return keys


def _read_captions(path: Path, n: int) -> list[str]:
    """First ``n`` non-blank lines of a caption file, stripped (AttnGAN skips empty lines)."""
    text = read_utf8(path, "caption file")
    caps = [line.strip() for line in text.split("\n") if line.strip()]
    if len(caps) < n:
        raise ValueError(f"{path}: {len(caps)} non-empty captions, expected at least captions_per_image={n}")
    return caps[:n]


def read_bboxes(root: PathLike) -> dict[str, tuple[int, int, int, int]]:
    """CUB bounding boxes ``{key: (x, y, w, h)}`` from ``CUB_200_2011/{images,bounding_boxes}.txt``.

    ``images.txt`` lines are ``<id> <class folder>/<file>.jpg`` (key = path without extension),
    ``bounding_boxes.txt`` lines ``<id> <x> <y> <width> <height>`` (floats), joined on the id.
    Values are truncated to int as AttnGAN's ``load_bbox`` does (``.astype(int)``).
    """
    base = Path(root)
    paths = [base / IMAGES_LIST, base / BBOX_FILE]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"crop_to_bbox=True needs CUB's bounding box files; missing: {', '.join(missing)}")
    tables: list[dict[str, list[str]]] = []
    for path, n_fields in zip(paths, (2, 5)):
        table = {}
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != n_fields:
                raise ValueError(f"{path}: line {lineno} has {len(fields)} fields, expected {n_fields}")
            table[fields[0]] = fields[1:]
        tables.append(table)
    names, boxes = tables
    result = {}
    for image_id, (name,) in names.items():
        if image_id not in boxes:
            raise ValueError(f"{paths[1]}: no bounding box for image id {image_id} ({name}) of {paths[0]}")
        try:
            x, y, w, h = (int(float(v)) for v in boxes[image_id])
        except ValueError as e:
            raise ValueError(f"{paths[1]}: non-numeric bounding box for image id {image_id} ({e})") from e
        result[os.path.splitext(name)[0]] = (x, y, w, h)
    return result


def bbox_crop_box(bbox: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """AttnGAN's crop box ``(x1, y1, x2, y2)`` for ``bbox = (x, y, w, h)`` in a width x height image.

    A square of side 2r, r = int(max(w, h) * 0.75), centred on the box centre (integer
    division as in ``get_imgs``), clipped to the image (so it may end up non-square).
    """
    x, y, w, h = bbox
    r = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def _find_image(images_dir: Path, key: str) -> Path:
    for ext in IMAGE_EXTENSIONS:
        path = images_dir / f"{key}{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"image not found: {images_dir / key}{IMAGE_EXTENSIONS[0]} "
                            f"(also tried {IMAGE_EXTENSIONS[1:]})")


def _load_image(path: Path, bbox: tuple[int, int, int, int] | None, image_size: int | None) -> np.ndarray:
    """RGB image as uint8 [3, H, W]: optionally cropped (AttnGAN rule), then resized bilinearly."""
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if bbox is not None:
        box = bbox_crop_box(bbox, *img.size)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{path}: bounding box {bbox} gives an empty crop {box} of a {img.size} image")
        img = img.crop(box)
    if image_size is not None:
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def read_t2i_split(
    root: PathLike,
    split: str,
    captions_per_image: int = 10,
    image_size: int | None = None,
    images_dir: PathLike | None = None,
    crop_to_bbox: bool = False,
    limit: int | None = None,
) -> T2ISplit:
    """Read one split of an AttnGAN data root (e.g. ``data/birds`` or ``data/coco``).

    Keys come from ``<root>/<split>/filenames.pickle`` (first ``limit`` if given). Each key's
    captions are the non-blank lines of ``<root>/text/<key>.txt``, stripped; as in AttnGAN
    only the first ``captions_per_image`` are kept (CUB has 10, COCO 5) and extra lines are
    ignored. The image is ``<images_dir>/<key>`` + ``.jpg`` / ``.jpeg`` / ``.png``, where
    ``images_dir`` (relative to ``root`` unless absolute) defaults to ``CUB_200_2011/images``
    if present, else ``images``. With ``crop_to_bbox`` each image is first cropped around its
    CUB bounding box (:func:`read_bboxes`, :func:`bbox_crop_box`). With ``image_size`` each
    image is resized to image_size x image_size (Pillow bilinear); otherwise all must share
    one size. Images are uint8 RGB, channels first: [N, 3, S, S] with S = ``image_size``,
    else [N, 3, H, W].

    Raises ValueError for an unknown split, an empty split, too few captions, mixed image
    sizes without ``image_size``, keys with control characters (a CRLF-converted pickle)
    and malformed files; FileNotFoundError for a missing
    pickle, caption file, image or bounding box file. Every message names the file.
    """
    if split not in T2I_SPLITS:
        raise ValueError(f"unknown AttnGAN split {split!r}; expected one of {T2I_SPLITS} (AttnGAN has no val split)")
    if captions_per_image < 1:
        raise ValueError(f"captions_per_image must be >= 1, got {captions_per_image}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    base = Path(root)
    pickle_path = base / FILENAMES_FILE.format(split=split)
    keys = _read_keys(pickle_path)[:limit]
    if not keys:
        raise ValueError(f"{pickle_path}: split is empty (no keys)")
    if images_dir is None:
        images_dir = CUB_IMAGES_DIR if (base / CUB_IMAGES_DIR).is_dir() else IMAGES_DIR
    img_dir = base / images_dir
    bboxes = read_bboxes(base) if crop_to_bbox else None
    captions = [_read_captions(base / TEXT_DIR / f"{key}.txt", captions_per_image) for key in keys]
    images: np.ndarray | None = None
    first = Path()
    for i, key in enumerate(keys):
        path = _find_image(img_dir, key)
        if bboxes is not None and key not in bboxes:
            raise ValueError(f"{base / IMAGES_LIST}: no entry for image key {key!r} (needed by crop_to_bbox)")
        bbox = None if bboxes is None else bboxes[key]
        arr = _load_image(path, bbox, image_size)
        if images is None:
            images, first = np.empty((len(keys), *arr.shape), dtype=np.uint8), path
        elif arr.shape != images.shape[1:]:
            (h, w), (h0, w0) = arr.shape[1:], images.shape[2:]
            raise ValueError(
                f"{path}: images of mixed sizes: {w}x{h} (WxH) here, {w0}x{h0} for {first}; "
                "pass image_size to resize them"
            )
        images[i] = arr
    assert images is not None
    return T2ISplit(keys=keys, captions=captions, images=images, root=base)
