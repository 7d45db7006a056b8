"""Ground truth for the text-to-image analysis on the synthetic scenes: which caption
words describe which object (:func:`phrase_words`, :func:`phrase_object`), and each
object's box in the real render.

Boxes are the split's ``objects["boxes"]`` (``[N_img, K, 4]`` pixel boxes x1, y1, x2, y2,
the scene's own); a split without them has no grounding truth.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ..data.generator.captions import SHAPE_WORDS, Phrase, in_location, parse_caption
from ..data.generator.scenes import COLOUR_NAMES, SHAPES, SceneConfig
from ..data.datasets.text import tokenize

NOUNS = {w for ws in SHAPE_WORDS.values() for w in ws}
NOUNS |= {w + ("es" if w.endswith("x") else "s") for w in NOUNS}  # count phrases: "two boxes"


def phrase_words(text: str) -> list[tuple[int, int, Phrase]]:
    """``(colour position, shape position, phrase)`` in the caption's tokens for each
    singular phrase that names a colour and a shape ("a large red disc" → the positions of
    "red" and "disc"); empty for text outside the synthetic caption grammar."""
    try:
        parts, _ = parse_caption(text)
    except ValueError:
        return []
    tokens = tokenize(text)
    phrases = [ph for first, _, second in parts for ph in (first, second) if ph is not None]
    nouns = [i for i, t in enumerate(tokens) if t in NOUNS]  # one noun per phrase, in text order
    if len(nouns) != len(phrases):
        return []
    return [(pos - 1, pos, ph) for pos, ph in zip(nouns, phrases)
            if ph.det in ("a", "the") and ph.desc[1] and ph.desc[2] and pos > 0 and tokens[pos - 1] == ph.desc[1]]


def phrase_object(ph: Phrase, colour: list[int], shape: list[int], boxes: torch.Tensor, image_size: int) -> int | None:
    """The object slot a phrase describes: the one of its colour and shape, told apart by
    the size word (box width) and the location phrase when there are several; None when
    not exactly one fits."""
    _, c, s = ph.desc
    found = [k for k in range(len(colour)) if colour[k] == COLOUR_NAMES.index(c) and shape[k] == SHAPES.index(s)]
    if len(found) > 1 and ph.desc[0] is not None:
        config = SceneConfig(image_size=image_size)
        cut = (config.size_range("small")[1] + config.size_range("large")[0]) / 2
        found = [k for k in found if ("large" if float(boxes[k, 2] - boxes[k, 0]) > cut else "small") == ph.desc[0]]
    if len(found) > 1 and ph.loc is not None:
        found = [k for k in found if in_location(SimpleNamespace(cx=float(boxes[k, 0] + boxes[k, 2]) / 2,
                                                                  cy=float(boxes[k, 1] + boxes[k, 3]) / 2),
                                                  ph.loc, image_size)]
    return found[0] if len(found) == 1 else None


def grounding_targets(split, caption_ids: list[int]) -> list[list[tuple[int, int, torch.Tensor]]]:
    """Per caption of ``split`` (a :class:`~alignbench.data.datasets.t2i.T2ITensors`) the
    ``(colour position, shape position, box mask bool [S, S])`` of each object it
    describes with a colour and a shape and that :func:`phrase_object` places; empty lists
    without object boxes (e.g. CUB)."""
    from ..data.synthetic import boxes_mask

    if split.objects is None or "boxes" not in split.objects:
        return [[] for _ in caption_ids]
    out = []
    for j in caption_ids:
        row = int(split.caption_image[j])
        colour, shape = split.objects["colour"][row], split.objects["shape"][row]
        boxes = split.objects["boxes"][row]
        found = []
        for c_pos, s_pos, ph in phrase_words(split.texts[j]):
            k = phrase_object(ph, colour.tolist(), shape.tolist(), boxes, split.image_size)
            if k is not None:
                found.append((c_pos, s_pos, boxes_mask(boxes[k][None], split.image_size)))
        out.append(found)
    return out
