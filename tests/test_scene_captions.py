"""Tests of the caption view of the synthetic scenes (alignbench.data.generator.captions).

Captions are re-checked here with a separate keyword reader and plain centre comparisons
(:func:`reread`), not with the module's own parser, so the two have to agree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from alignbench.data.generator.captions import (
    CAPTION_STREAM, Caption, CaptionConfig, build_caption_examples, caption_ambiguity, caption_ambiguity_counts,
    caption_is_true, ground_caption, parse_caption, scene_captions,
)
from alignbench.data.generator.questions import QUESTION_STREAM
from alignbench.data.generator.scenes import SCENE_STREAM, Scene, SceneObject, generate_scenes

N_SCENES = 2000


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return generate_scenes(N_SCENES, seed=5)


@pytest.fixture(scope="module")
def examples(scenes) -> list[dict]:
    return build_caption_examples(scenes, seed=9)


# ---------------------------------------------------------------- independent re-reader
NUMBER = {"two": 2, "three": 3, "four": 4, "five": 5}
SIZE = {"small": "small", "little": "small", "large": "large", "big": "large"}
COLOUR = ("red", "green", "blue", "yellow", "purple", "cyan")
NOUN = {"circle": "circle", "disc": "circle", "square": "square", "box": "square", "triangle": "triangle",
        "pyramid": "triangle", "object": None, "shape": None, "thing": None}
PLURAL = {"boxes" if w == "box" else w + "s": s for w, s in NOUN.items()}
NOUN.update(PLURAL)
RELATION = {"to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right",
            "above": "above", "over": "above", "below": "below", "under": "below", "next to": "near",
            "beside": "near", "near": "near"}
PLACE = {"left": "left", "right": "right", "top": "top", "bottom": "bottom"}
NP = re.compile(r"\b(a|an|the|two|three|four|five) (?:(small|little|large|big) )?"
                rf"(?:({'|'.join(COLOUR)}) )?({'|'.join(sorted(NOUN, key=len, reverse=True))})\b")


def _offset(a: SceneObject, b: SceneObject, rel: str) -> float:
    """How far ``a`` lies in direction ``rel`` from ``b``, in units of the level margin."""
    d = {"left": b.cx - a.cx, "right": a.cx - b.cx, "above": b.cy - a.cy, "below": a.cy - b.cy}[rel]
    return d / ((a.width + b.width) / 4)


def reread(scene: Scene, text: str) -> list[int]:
    """Objects a caption describes, asserting along the way that every statement is true and
    every singular phrase names exactly one object."""
    if "background" in text:
        assert ("dark" in text or "black" in text) == (scene.background < 96), text
        text = re.sub(r" on an? [a-z ]+ background$", "", text)
    objs, found, referents = scene.objects, list(NP.finditer(text)), []
    for m in found:
        det, size, colour, noun = m.groups()
        idx = [i for i, o in enumerate(objs) if SIZE.get(size, o.size) == o.size
               and (colour or o.colour) == o.colour and (NOUN[noun] or o.shape) == o.shape]
        if det in NUMBER:
            assert len(idx) == NUMBER[det] and noun in PLURAL, text
        else:
            assert len(idx) == 1 and noun not in PLURAL, text
        referents.append(idx)
    for k, m in enumerate(found):  # what follows a phrase: a location, a relation or a joiner
        gap = text[m.end():found[k + 1].start() if k + 1 < len(found) else len(text)].strip(" ,")
        gap = re.sub(r"(^|,? )(and|including)$", "", gap)
        if gap.startswith(("on the", "at the", "in the")):
            o = objs[referents[k][0]]
            for word in re.findall(r"left|right|top|bottom", gap):
                band = {"left": o.cx, "right": 64 - o.cx, "top": o.cy, "bottom": 64 - o.cy}[word]
                assert band <= 0.35 * 64, text
        elif gap in RELATION:
            a, b = objs[referents[k][0]], objs[referents[k + 1][0]]
            if RELATION[gap] == "near":
                assert np.hypot(a.cx - b.cx, a.cy - b.cy) <= 1.5 * (a.width + b.width) / 2, text
            else:
                assert _offset(a, b, RELATION[gap]) > 1, text
        else:
            assert gap == "", (gap, text)
    return sorted({i for idx in referents for i in idx})


# ---------------------------------------------------------------- tests
def test_deterministic_and_independent_of_other_streams(scenes, examples):
    head = build_caption_examples(scenes[:50], seed=9)
    assert len(head) == 250 and head == examples[:250]  # scene i's captions do not depend on the others
    assert build_caption_examples(scenes[:50], seed=10) != build_caption_examples(scenes[:50], seed=9)
    assert len({CAPTION_STREAM, QUESTION_STREAM, SCENE_STREAM}) == 3
    rng = np.random.default_rng([9, 3, CAPTION_STREAM])
    assert [c.text for c in scene_captions(scenes[3], rng)] == [e["caption"] for e in examples if e["image_index"] == 3]


def test_captions_do_not_depend_on_hash_seed():
    code = ("import json; from alignbench.data.generator.scenes import generate_scenes; "
            "from alignbench.data.generator.captions import build_caption_examples; "
            "print(json.dumps(build_caption_examples(generate_scenes(100, 0), 0)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2")}
    assert len(outs) == 1


def test_five_distinct_captions_per_image(scenes, examples):
    per_image = Counter(e["image_index"] for e in examples)
    assert set(per_image) == set(range(N_SCENES)) and set(per_image.values()) == {5}
    texts: dict[int, set[str]] = {}
    for e in examples:
        texts.setdefault(e["image_index"], set()).add(e["caption"])
    assert all(len(t) == 5 for t in texts.values())


def test_every_caption_is_true_and_grounded(scenes, examples):
    for e in examples:
        scene = scenes[e["image_index"]]
        assert caption_is_true(scene, e["caption"]), e
        assert ground_caption(scene, e["caption"]) == e["mentioned"], e


def test_mentioned_recomputed_independently(scenes, examples):
    for e in examples:
        assert reread(scenes[e["image_index"]], e["caption"]) == e["mentioned"], e


def test_captions_mention_subsets(scenes, examples):
    counts = Counter(len(e["mentioned"]) for e in examples)
    assert {1, 2, 3} <= set(counts) and all(counts[k] > 0.05 * len(examples) for k in (1, 2, 3))
    n_objects = [len(scenes[e["image_index"]].objects) for e in examples]
    share_all = np.mean([len(e["mentioned"]) == n for e, n in zip(examples, n_objects)])
    assert 0.1 < share_all < 0.6  # mostly a strict subset, sometimes every object
    big = [len(e["mentioned"]) for e, n in zip(examples, n_objects) if n == 5]
    assert max(big) == 5 and np.mean([k < 5 for k in big]) > 0.8  # "five objects, including ..." is rare


def test_phrase_rates_and_synonyms(examples):
    texts = [e["caption"] for e in examples]

    def rate(pattern: str) -> float:
        return float(np.mean([re.search(pattern, t) is not None for t in texts]))

    relations = r" (left of|right of|above|over|below|under|next to|beside|near) "
    assert 0.15 < rate(relations) < 0.5
    assert 0.1 < rate(r"\b(two|three|four|five) ") < 0.4
    assert 0.1 < rate(r" (on the|at the|in the) (left|right|top|bottom)") < 0.5
    assert 0.2 < rate(r"background$") < 0.6
    assert all(rate(rf"\b{w}\b") > 0.01 for w in ("disc", "box", "pyramid", "little", "big", "beside"))
    frames = Counter(t.split(" ")[0] for t in texts)
    assert len(frames) >= 4 and max(frames.values()) < 0.5 * len(texts)


def test_knobs(scenes):
    plain = CaptionConfig(relation_prob=0, count_prob=0, location_prob=0, background_prob=0, synonyms=False,
                          max_mentioned=1)
    ex = build_caption_examples(scenes[:300], seed=1, config=plain)
    texts = " ".join(e["caption"] for e in ex)
    assert all(len(e["mentioned"]) == 1 for e in ex)
    for word in ("disc", "box", "pyramid", "little", "big", "left", "two", "background", " and "):
        assert word not in texts
    assert caption_ambiguity(scenes[:1000], ex, sample=100) > 3 * caption_ambiguity(
        scenes[:1000], build_caption_examples(scenes[:300], seed=1), sample=100)
    with pytest.raises(ValueError):
        CaptionConfig(min_mentioned=3, max_mentioned=2)
    with pytest.raises(ValueError):
        CaptionConfig(relation_prob=1.5)


def test_full_location_names_both_bands_of_a_corner(scenes):
    config = CaptionConfig(location_prob=1.0, relation_prob=0, count_prob=0, full_location=True,
                           min_mentioned=5, max_mentioned=5, mention_prob=1.0)
    ex = build_caption_examples(scenes[:300], seed=2, config=config)
    corners = 0
    for e in ex:
        scene = scenes[e["image_index"]]
        for first, _, _ in parse_caption(e["caption"])[0]:
            # every phrase's object: its location is the most specific band set that holds
            objs = [o for o in scene.objects if (o.colour, o.shape) == first.desc[1:]
                    and (first.desc[0] is None or o.size == first.desc[0])]
            if len(objs) != 1:
                continue
            o, lo, hi = objs[0], 0.35 * scene.image_size, 0.65 * scene.image_size
            expected = " ".join([w for w, ok in (("top", o.cy < lo), ("bottom", o.cy > hi)) if ok]
                                + [w for w, ok in (("left", o.cx < lo), ("right", o.cx > hi)) if ok]) or None
            assert first.loc == expected
            corners += expected is not None and " " in expected
    assert corners > 50


def test_validator_on_a_hand_made_scene():
    def obj(colour: str, shape: str, size: str, cx: float, cy: float) -> SceneObject:
        h = 9.0 if size == "large" else 5.5
        return SceneObject(colour, shape, size, cx, cy, (cx - h, cy - h, cx + h, cy + h))

    scene = Scene([obj("red", "circle", "large", 12, 12), obj("blue", "square", "small", 50, 50),
                   obj("blue", "triangle", "small", 50, 34)], image_size=64, background=48)
    true = ["a red circle left of a blue square", "there are three objects, including a big red disc",
            "the blue square below a blue pyramid", "an image with two blue shapes on a dark background",
            "a red circle in the top left corner", "a blue square next to the blue triangle",
            "a picture of a little box at the bottom and a red thing"]
    false = ["a red circle right of a blue square", "a blue circle", "two circles", "a blue box at the top",
             "a red circle on a light background", "a red disc next to a blue box", "four objects",
             "the blue object left of a red circle"]
    for text in true:
        assert caption_is_true(scene, text), text
    for text in false:
        assert not caption_is_true(scene, text), text
    assert ground_caption(scene, "two blue shapes and a circle") == [0, 1, 2]
    with pytest.raises(ValueError):
        ground_caption(scene, "a blue shape")  # true, but names no single object
    for bad in ("a red ball", "two red circle", "a red circle left of two squares", "hello"):
        with pytest.raises(ValueError):
            parse_caption(bad)
    assert caption_is_true(scene, Caption("a red circle", [0]))


def test_ambiguity_estimate_is_in_a_sane_band(scenes, examples):
    first = [e for e in examples if e["image_index"] < 1000]
    counts = caption_ambiguity_counts(scenes[:1000], first, sample=150, seed=0)
    assert len(counts) == 150 and min(counts) == 0
    assert 0.2 < np.mean([c == 0 for c in counts]) < 0.7  # many captions fit only their own image
    assert 3 < caption_ambiguity(scenes[:1000], first, sample=150, seed=0) < 40
    grouped = [[e["caption"] for e in first if e["image_index"] == i] for i in range(1000)]
    assert caption_ambiguity(scenes[:1000], grouped, sample=20, seed=1) == caption_ambiguity(
        scenes[:1000], first, sample=20, seed=1)
