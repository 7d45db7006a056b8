"""Flickr30k Entities (Plummer et al., IJCV 2017) readers, and its boxes as region-level
ground truth for the captions of SCAN's precomputed features.

The official layout (https://github.com/BryanPlummer/flickr30k_entities) has two files per
Flickr30k image id:

- ``Sentences/<image_id>.txt``: the image's 5 captions, one a line, with the annotated
  phrases marked ``[/EN#<entity id>/<type 1>/.../<type n> <word 1> ... <word n>]``
  (e.g. ``[/EN#18/people A man] with [/EN#19/bodyparts pierced ears] .``). Phrases of one
  coreference chain share the entity id; id ``0`` (type ``notvisual``) is a non-visual
  phrase that has no box.
- ``Annotations/<image_id>.xml``: PASCAL-VOC-like; ``<size>`` holds ``<width>`` and
  ``<height>``; each ``<object>`` has one or more ``<name>`` (the entity ids it belongs to)
  and either ``<bndbox>`` (``xmin``, ``ymin``, ``xmax``, ``ymax``, 1-based pixels) or the
  flags ``<nobndbox>`` / ``<scene>``.

The SCAN side (see :mod:`alignbench.data.scan_precomp`) adds per split the Flickr30k image
id of each ``{split}_ims.npy`` row and ``{split}_boxes.npy`` (``[N, R, 4]`` region boxes
``x1, y1, x2, y2`` in the image's pixel coordinates). The ids come from our own
``{split}_flickr_ids.txt`` (:data:`IDS_FILE`: one Flickr photo id a line, e.g.
``1000092795``, a ``.jpg`` suffix allowed), else from SCAN's ``{split}_ids.txt``
(:data:`SCAN_IDS_FILE`) mapped through Karpathy's ``dataset_flickr30k.json``. SCAN's file
is not a list of Flickr ids: each line is the integer position of the image in the JSON's
``"images"`` list (Karpathy's ``imgid``, 0 = ``1000092795.jpg``), one line per feature row
(SCAN's ``util/convert_data.py`` stacks one ``_ims.npy`` row per line); see
:func:`split_image_ids`. Region ``r`` is ground truth for a caption when its box has IoU >=
:data:`IOU_THRESHOLD` with a box of an entity the caption's phrases mention (the Flickr30k
Entities localisation criterion); scene, no-box and non-visual entities have no box and
mark no region.

Pure numpy / plain Python. Malformed inputs raise FileNotFoundError / ValueError naming the file.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .scan import load_karpathy_json
from ..datasets.text import read_utf8, tokenize

PathLike = str | os.PathLike
NON_VISUAL = "0"
IOU_THRESHOLD = 0.5
IDS_FILE = "{split}_flickr_ids.txt"  # ours: one Flickr photo id per feature row
SCAN_IDS_FILE = "{split}_ids.txt"  # SCAN's: positions in Karpathy's dataset_flickr30k.json, one per row
BOXES_FILE = "{split}_boxes.npy"
_MARKUP = re.compile(r"\[/EN#(\d+)/(\S*)")


@dataclass(frozen=True)
class Phrase:
    """One annotated phrase: its words, the index of its first word in the sentence, its
    entity (coreference chain) id and its coarse types (``people``, ``bodyparts``, ...)."""

    text: str
    first_word_index: int
    entity_id: str
    types: tuple[str, ...]

    @property
    def visual(self) -> bool:
        """False for the non-visual id 0, which has no box."""
        return self.entity_id != NON_VISUAL


@dataclass(frozen=True)
class Sentence:
    """A caption without markup (words joined by single spaces) and its phrases in order."""

    text: str
    phrases: tuple[Phrase, ...]


@dataclass
class ImageAnnotation:
    """One ``Annotations/<id>.xml``: image size, ``boxes`` (entity id → float64 ``[K, 4]``
    x1, y1, x2, y2, 0-based: the file's values minus 1, as the official reader returns them)
    and the entity ids flagged ``scene`` (the whole scene) or ``nobox`` (not visible)."""

    width: int
    height: int
    boxes: dict[str, np.ndarray]
    scene: tuple[str, ...] = ()
    nobox: tuple[str, ...] = ()
    path: Path | None = None

    def boxes_of(self, entity_ids: Iterable[str]) -> np.ndarray:
        """All boxes ``[K, 4]`` of the given entities (ids without boxes add none)."""
        parts = [self.boxes[e] for e in entity_ids if e in self.boxes]
        return np.concatenate(parts) if parts else np.zeros((0, 4))


def parse_sentence(line: str, where: str = "sentence") -> Sentence:
    """Parse one marked-up caption line (``where`` names it in errors, e.g. file and line).

    Tokens are whitespace-separated. ``[/EN#<id>/<types>`` opens a phrase, whose last word
    ends with ``]`` (a lone ``]`` token also closes it). Outside phrases every token is a
    word, as in the official reader. Raises ValueError for malformed markup, a phrase opened
    inside another, an empty phrase and a phrase never closed.
    """
    words: list[str] = []
    phrases: list[Phrase] = []
    opened: tuple[int, str, tuple[str, ...]] | None = None
    phrase_words: list[str] = []
    for token in line.split():
        if token.startswith("[/EN#"):
            if opened is not None:
                raise ValueError(f"{where}: {token!r} opens a phrase inside the phrase starting at word "
                                 f"{opened[0]} (nested markup is not part of the format)")
            match = _MARKUP.fullmatch(token)
            types = tuple(t for t in match.group(2).split("/") if t) if match else ()
            if match is None or token.endswith("]") or not types:
                raise ValueError(f"{where}: malformed phrase markup {token!r}; expected "
                                 "[/EN#<id>/<type>[/<type>...] followed by the phrase's words and ']'")
            opened, phrase_words = (len(words), match.group(1), types), []
            continue
        if opened is None:
            words.append(token)
            continue
        closes = token.endswith("]")
        word = token[:-1] if closes else token
        if word:
            words.append(word)
            phrase_words.append(word)
        if closes:
            if not phrase_words:
                raise ValueError(f"{where}: empty phrase [/EN#{opened[1]}/...] at word {opened[0]}")
            phrases.append(Phrase(" ".join(phrase_words), opened[0], opened[1], opened[2]))
            opened = None
    if opened is not None:
        raise ValueError(f"{where}: the phrase [/EN#{opened[1]}/... starting at word {opened[0]} is never closed "
                         "with ']'")
    return Sentence(" ".join(words), tuple(phrases))


def read_sentences(path: PathLike) -> list[Sentence]:
    """The captions of one ``Sentences/<image_id>.txt``, in file order (blank lines skipped,
    as the official reader does)."""
    p = Path(path)
    text = read_utf8(p, "Flickr30k Entities sentences file")
    return [parse_sentence(line, f"{p}: line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _number(parent: ET.Element, tag: str, where: str) -> float:
    node = parent.find(tag)
    try:
        return float(node.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{where}: missing or non-numeric <{tag}>") from None


def _flag(obj: ET.Element, tag: str, where: str) -> bool | None:
    node = obj.find(tag)
    return None if node is None else _number(obj, tag, where) > 0


def read_annotation(path: PathLike) -> ImageAnnotation:
    """Parse one ``Annotations/<image_id>.xml`` (see the module docstring).

    An object's box belongs to every entity id it names. Raises FileNotFoundError for a
    missing file and ValueError naming the file for XML that is not well formed, a missing
    ``<size>``, an object without ``<name>``, a non-numeric or inverted box, and an object
    with neither ``<bndbox>`` nor ``<nobndbox>`` / ``<scene>``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Flickr30k Entities annotation file not found: {p}")
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{p}: not well-formed XML ({e})") from e
    size = root.find("size")
    if size is None:
        raise ValueError(f"{p}: no <size> element")
    width, height = int(_number(size, "width", f"{p}: <size>")), int(_number(size, "height", f"{p}: <size>"))
    boxes: dict[str, list[list[float]]] = {}
    scene: list[str] = []
    nobox: list[str] = []
    for k, obj in enumerate(root.findall("object")):
        names = [n.text.strip() for n in obj.findall("name") if n.text and n.text.strip()]
        where = f"{p}: object {k} ({', '.join(names)})"
        if not names:
            raise ValueError(f"{p}: object {k} has no <name> (entity id)")
        bndbox = obj.find("bndbox")
        if bndbox is not None:
            x1, y1, x2, y2 = (_number(bndbox, t, where) - 1 for t in ("xmin", "ymin", "xmax", "ymax"))
            if x2 < x1 or y2 < y1:
                raise ValueError(f"{where}: inverted box (xmin, ymin, xmax, ymax) = "
                                 f"({x1 + 1:g}, {y1 + 1:g}, {x2 + 1:g}, {y2 + 1:g})")
            for name in names:
                boxes.setdefault(name, []).append([x1, y1, x2, y2])
            continue
        no_box, is_scene = _flag(obj, "nobndbox", where), _flag(obj, "scene", where)
        if no_box is None and is_scene is None:
            raise ValueError(f"{where}: neither <bndbox> nor <nobndbox> / <scene>")
        nobox += names if no_box else []
        scene += names if is_scene else []
    return ImageAnnotation(width, height, {e: np.asarray(b, dtype=np.float64) for e, b in boxes.items()},
                           tuple(scene), tuple(nobox), p)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union ``[A, B]`` of boxes ``a [A, 4]`` and ``b [B, 4]`` (x1, y1,
    x2, y2, continuous coordinates); 0 where the union is empty."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def region_truth(regions: np.ndarray, targets: np.ndarray, threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Bool ``[R]``: regions ``[R, 4]`` whose IoU with any target box ``[K, 4]`` is >= ``threshold``."""
    if len(targets) == 0:
        return np.zeros(len(regions), dtype=bool)
    return (box_iou(regions, targets) >= threshold).any(axis=1)


def _lines(p: Path, what: str) -> list[str]:
    """The stripped lines of a UTF-8 file, none of them empty (ValueError naming the line)."""
    try:
        lines = [line.strip() for line in p.read_bytes().decode("utf-8").splitlines()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not valid UTF-8 ({e})") from e
    for n, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"{p}: line {n} is empty (expected {what})")
    return lines


def read_image_ids(path: PathLike, rows: int) -> list[str]:
    """Our ``{split}_flickr_ids.txt``: one Flickr30k photo id per line (a ``.jpg`` suffix is
    dropped), exactly ``rows`` of them (one per feature row, in row order)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Flickr30k Entities grounding: missing {p} (one Flickr photo id per feature row)")
    ids = _lines(p, "a Flickr30k photo id")
    if len(ids) != rows:
        raise ValueError(f"{p}: {len(ids)} image ids for {rows} feature rows; expected one id per row")
    return [i[: -len(".jpg")] if i.lower().endswith(".jpg") else i for i in ids]


def read_scan_positions(path: PathLike, rows: int, per_row: int = 5) -> list[int]:
    """SCAN's ``{split}_ids.txt``: one integer per line, the image's position in Karpathy's
    ``dataset_flickr30k.json`` ``"images"`` list, one line per feature row (``rows`` lines).

    A file with ``per_row`` lines per row (one per caption), each row's ``per_row`` lines
    equal, is read as one position per row. Any other count raises ValueError naming both
    counts.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Flickr30k Entities grounding: missing SCAN's {p} (Karpathy positions)")
    positions = []
    for n, line in enumerate(_lines(p, "an image position in dataset_flickr30k.json"), 1):
        if not (line.isascii() and line.isdigit()):
            raise ValueError(f"{p}: line {n} is {line!r}, not an image position (a non-negative integer index "
                             "into dataset_flickr30k.json's images list)")
        positions.append(int(line))
    if len(positions) == per_row * rows and rows:
        blocks = np.asarray(positions).reshape(rows, per_row)
        if (blocks == blocks[:, :1]).all():  # one line per caption: the row's position repeated
            return blocks[:, 0].tolist()
    if len(positions) != rows:
        ims = p.name.replace("_ids.txt", "_ims.npy")
        raise ValueError(f"{p}: {len(positions)} lines for {rows} feature rows of {ims}; SCAN's ids file has one image "
                         f"position per feature row (or {per_row} equal lines per row, one per caption)")
    return positions


def read_karpathy_image_ids(path: PathLike) -> list[str]:
    """Flickr photo ids (``filename`` without ``.jpg``) of Karpathy's ``dataset_flickr30k.json``,
    in the order of its ``"images"`` list (``{"images": [{"filename": "1000092795.jpg",
    "imgid": 0, "split": "train", "sentences": [...], ...}, ...], "dataset": "flickr30k"}``).

    Raises FileNotFoundError / ValueError naming the file for a missing or malformed file,
    another dataset, and an entry whose ``imgid`` is not its position (SCAN's ids are
    positions, which Karpathy's ``imgid`` equals).
    """
    p = Path(path)
    data = load_karpathy_json(p, f"karpathy_json: {p} not found (Karpathy's dataset_flickr30k.json)")
    if data.get("dataset", "flickr30k") != "flickr30k":
        raise ValueError(f"{p}: dataset is {data['dataset']!r}; SCAN's f30k ids index Karpathy's "
                         "dataset_flickr30k.json (dataset 'flickr30k')")
    ids = []
    for i, entry in enumerate(data["images"]):
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{p}: images[{i}] has no filename")
        if entry.get("imgid", i) != i:
            raise ValueError(f"{p}: images[{i}] ({name}) has imgid {entry['imgid']!r}; SCAN's ids are positions "
                             "in this list, which Karpathy's file numbers 0, 1, 2, ... as imgid")
        ids.append(name[: -len(".jpg")] if name.lower().endswith(".jpg") else name)
    return ids


def check_ids_source(folder: PathLike, split: str, karpathy_json: PathLike | None = None) -> None:
    """FileNotFoundError unless the image ids of ``split`` can be read (see :func:`split_image_ids`):
    our ``{split}_flickr_ids.txt``, or SCAN's ``{split}_ids.txt`` with ``karpathy_json``."""
    base = Path(folder)
    ours, scan = base / IDS_FILE.format(split=split), base / SCAN_IDS_FILE.format(split=split)
    if karpathy_json is not None and not Path(karpathy_json).is_file():
        raise FileNotFoundError(f"karpathy_json: {karpathy_json} not found (Karpathy's dataset_flickr30k.json)")
    if ours.is_file():
        return
    if karpathy_json is not None:
        if not scan.is_file():
            raise FileNotFoundError(f"Flickr30k Entities grounding: neither {ours} (Flickr photo ids) nor SCAN's "
                                    f"{scan} (positions that karpathy_json maps) exists")
        return
    if scan.is_file():
        raise FileNotFoundError(
            f"Flickr30k Entities grounding: missing {ours}; {scan.name} beside it is SCAN's file, whose lines are "
            f"image positions in Karpathy's dataset_flickr30k.json 'images' list, not Flickr photo ids: provide "
            f"{ours.name} (one Flickr photo id per {split}_ims.npy row) or set data.karpathy_json to Karpathy's "
            "dataset_flickr30k.json to map SCAN's positions")
    raise FileNotFoundError(f"Flickr30k Entities grounding: missing {ours} (one Flickr photo id per feature row), "
                            f"and no SCAN {scan.name} to map with karpathy_json")


def split_image_ids(folder: PathLike, split: str, rows: int,
                    karpathy_json: PathLike | None = None) -> tuple[list[str], str]:
    """The Flickr photo id of each of the ``rows`` feature rows of ``split``, and where they
    came from (for error messages).

    Our ``{split}_flickr_ids.txt`` wins when present (:func:`read_image_ids`); otherwise
    SCAN's ``{split}_ids.txt`` (:func:`read_scan_positions`) is mapped through
    ``karpathy_json`` (:func:`read_karpathy_image_ids`). Errors as in
    :func:`check_ids_source`, plus ValueError for a position outside the JSON's list.
    """
    check_ids_source(folder, split, karpathy_json)
    base = Path(folder)
    ours, scan = base / IDS_FILE.format(split=split), base / SCAN_IDS_FILE.format(split=split)
    if ours.is_file() or karpathy_json is None:
        return read_image_ids(ours, rows), str(ours)
    positions = read_scan_positions(scan, rows)
    flickr = read_karpathy_image_ids(karpathy_json)
    outside = [(row, pos) for row, pos in enumerate(positions) if pos >= len(flickr)]
    if outside:
        row, pos = outside[0]
        raise ValueError(f"{scan}: row {row} has position {pos}, outside the {len(flickr)} images of {karpathy_json} "
                         f"({len(outside)} of {rows} rows are): is it Karpathy's dataset_flickr30k.json?")
    return [flickr[pos] for pos in positions], f"{scan} (mapped through {karpathy_json})"


def read_region_boxes(path: PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Region boxes float64 ``[N, R, 4]`` (``shape`` = (N, R) of the features), in pixels."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Flickr30k Entities grounding: missing {p} (region boxes [N, R, 4])")
    try:
        boxes = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{p}: not a readable .npy array ({e})") from e
    if not isinstance(boxes, np.ndarray) or boxes.shape != (*shape, 4):
        got = boxes.shape if isinstance(boxes, np.ndarray) else type(boxes).__name__
        raise ValueError(f"{p}: region boxes must have shape {(*shape, 4)} (x1, y1, x2, y2 per feature region), "
                         f"got {got}")
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all() or (boxes[..., 2] < boxes[..., 0]).any() or (boxes[..., 3] < boxes[..., 1]).any():
        raise ValueError(f"{p}: region boxes must be finite x1, y1, x2, y2 with x2 >= x1 and y2 >= y1")
    if boxes.size and np.abs(boxes).max() <= 1.0:
        raise ValueError(f"{p}: every region box lies within [0, 1]: normalised coordinates? expected pixels")
    return boxes


def _check_in_image(boxes: np.ndarray, ann: ImageAnnotation, where: str) -> None:
    slack_x, slack_y = max(2.0, 0.01 * ann.width), max(2.0, 0.01 * ann.height)
    if (boxes[:, [0, 2]].min() < -slack_x or boxes[:, [0, 2]].max() > ann.width + slack_x
            or boxes[:, [1, 3]].min() < -slack_y or boxes[:, [1, 3]].max() > ann.height + slack_y):
        raise ValueError(f"{where}: region boxes span x {boxes[:, [0, 2]].min():g}..{boxes[:, [0, 2]].max():g}, "
                         f"y {boxes[:, [1, 3]].min():g}..{boxes[:, [1, 3]].max():g}, outside the "
                         f"{ann.width}x{ann.height} image of {ann.path}: boxes must be in its pixel coordinates")


def caption_region_truth(entities_path: PathLike, image_ids: Sequence[str], captions: Sequence[str],
                         region_boxes: np.ndarray, captions_per_image: int = 5,
                         threshold: float = IOU_THRESHOLD, ids_file: PathLike = "the image ids") -> np.ndarray:
    """Bool ``[C, R]``: the regions each caption's visual phrases point at.

    Caption ``c`` is sentence ``c % captions_per_image`` of image ``image_ids[c //
    captions_per_image]``, whose boxes are ``region_boxes [N, R, 4]``. Its text must equal
    that Entities sentence after tokenising (:func:`alignbench.data.datasets.text.tokenize`: lower
    case, ``.,?!`` dropped); otherwise ValueError (``ids_file`` is likely in the wrong order).
    """
    folder = Path(entities_path)
    truth = np.zeros((len(captions), region_boxes.shape[1]), dtype=bool)
    for row in range(-(-len(captions) // captions_per_image)):
        image_id = image_ids[row]
        sentences_path = folder / "Sentences" / f"{image_id}.txt"
        sentences = read_sentences(sentences_path)
        own = range(row * captions_per_image, min(len(captions), (row + 1) * captions_per_image))
        for c in own:  # the texts first: a wrong id order shows here, before the boxes disagree with the image
            k = c % captions_per_image
            if k >= len(sentences):
                raise ValueError(f"{sentences_path}: {len(sentences)} sentences; caption {c} is sentence {k + 1} "
                                 f"of image {image_id} (row {row} of {ids_file})")
            if tokenize(sentences[k].text) != tokenize(captions[c]):
                raise ValueError(f"caption {c} {captions[c]!r} is sentence {k + 1} of image {image_id} (row {row} "
                                 f"of {ids_file}), but {sentences_path} has {sentences[k].text!r}: are the ids in "
                                 "the order of the feature rows?")
        ann = read_annotation(folder / "Annotations" / f"{image_id}.xml")
        _check_in_image(region_boxes[row], ann, f"row {row} (image {image_id})")
        for c in own:
            entities = {p.entity_id for p in sentences[c % captions_per_image].phrases if p.visual}
            truth[c] = region_truth(region_boxes[row], ann.boxes_of(sorted(entities)), threshold)
    return truth
