"""Phrase grounding on the synthetic scenes: captions with marked phrases, and region
proposals that make localisation a ranking problem with a ceiling below 100%.

Each caption names one to ``max_phrases`` objects of its scene, each by a phrase unique in
the scene ("a small red circle and a blue square"): the phrase's words are its span, its
object's exact box its ground truth. Objects whose description is not unique (a twin) are
never named. The regions of an image are proposals, as a detector would give: for every
object ``per_object`` boxes jittered in scale and position (some overlap the object with IoU
below the localisation threshold), and distractor boxes anywhere, ``regions`` in all.
So a phrase may have no proposal over the threshold (the upper bound is below 100) and
several proposals over it (a ranking has more than one right answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenes import Scene

SHAPE_NOUN = {"circle": "circle", "square": "square", "triangle": "triangle"}


@dataclass
class GroundingConfig:
    """``max_phrases`` objects named per caption (at most, at least one); ``per_object``
    jittered proposals per object, ``regions`` proposals per image in all (the rest are
    distractors); ``scale_jitter`` and ``shift_jitter`` bound a proposal's side scale
    (``1 ± scale_jitter``) and centre shift (``± shift_jitter`` of the side)."""

    max_phrases: int = 3
    per_object: int = 4
    regions: int = 24
    scale_jitter: float = 0.4
    shift_jitter: float = 0.35

    def __post_init__(self) -> None:
        if self.max_phrases < 1 or self.per_object < 1:
            raise ValueError(f"max_phrases and per_object must be >= 1, got {self.max_phrases}, {self.per_object}")
        if not 0.0 <= self.scale_jitter < 1.0 or self.shift_jitter < 0.0:
            raise ValueError(f"need 0 <= scale_jitter < 1 and shift_jitter >= 0, got {self.scale_jitter}, "
                             f"{self.shift_jitter}")


def unique_description(scene: Scene, i: int) -> list[str] | None:
    """The fewest attribute words that pick out object ``i`` in its scene (colour and shape,
    with the size word when needed), or None when it has a twin."""
    o = scene.objects[i]
    same = [k for k, p in enumerate(scene.objects) if p.colour == o.colour and p.shape == o.shape]
    if same == [i]:
        return [o.colour, SHAPE_NOUN[o.shape]]
    if [k for k in same if scene.objects[k].size == o.size] == [i]:
        return [o.size, o.colour, SHAPE_NOUN[o.shape]]
    return None


def grounding_captions(scene: Scene, rng: np.random.Generator, n: int, config: GroundingConfig) -> list[dict]:
    """``n`` captions of ``scene``: ``{"caption": text, "phrases": [(start, end, object)]}``
    with word spans ``[start, end)`` of the caption's words; empty when no object is unique."""
    nameable = [i for i in range(len(scene.objects)) if unique_description(scene, i) is not None]
    out = []
    for _ in range(n if nameable else 0):
        k = int(rng.integers(1, min(config.max_phrases, len(nameable)) + 1))
        words: list[str] = []
        phrases = []
        for j, obj in enumerate(rng.permutation(nameable)[:k].tolist()):
            if j:
                words.append("and")
            start = len(words)
            words += ["a", *unique_description(scene, obj)]
            phrases.append((start, len(words), obj))
        out.append({"caption": " ".join(words), "phrases": phrases})
    return out


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[A, B]`` of boxes (x1, y1, x2, y2) on continuous coordinates."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def region_proposals(scene: Scene, rng: np.random.Generator, image_size: int, config: GroundingConfig) -> np.ndarray:
    """``[regions, 4]`` proposal boxes (x1, y1, x2, y2) in pixels, clipped to the image, in
    random order: ``per_object`` jittered boxes per object, then distractors."""
    boxes = []
    for obj in scene.objects[: config.regions // config.per_object]:
        x1, y1, x2, y2 = obj.box
        side, cx, cy = max(x2 - x1, y2 - y1), (x1 + x2) / 2, (y1 + y2) / 2
        for _ in range(config.per_object):
            s = side * rng.uniform(1 - config.scale_jitter, 1 + config.scale_jitter)
            dx, dy = rng.uniform(-config.shift_jitter, config.shift_jitter, 2) * side
            boxes.append((cx + dx - s / 2, cy + dy - s / 2, cx + dx + s / 2, cy + dy + s / 2))
    while len(boxes) < config.regions:  # distractors: anywhere, any size an object could have
        s = rng.uniform(0.1, 0.45) * image_size
        x, y = rng.uniform(0, image_size - s, 2)
        boxes.append((x, y, x + s, y + s))
    out = np.clip(np.asarray(boxes, dtype=np.float32), 0, image_size)
    return out[rng.permutation(len(out))]
