"""Tests of the synthetic scene model (alignbench.data.generator.scenes) and its VQA view
(alignbench.data.generator.questions). Answers are re-derived here with a separate
keyword parser and plain centre comparisons, not with the module's own solver."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from alignbench.data.generator.questions import (
    ANSWER_TYPES, AmbiguousQuestionError, Question, answer_prior_accuracy, answer_question,
    build_vqa_examples, vqa_questions,
)
from alignbench.data.generator.scenes import (
    COLOUR_NAMES, COLOURS, SHAPES, SIZES, Scene, SceneConfig, SceneObject, generate_scenes, relation,
    render_scenes,
)

CONFIG = SceneConfig()


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return generate_scenes(2000, seed=7, config=CONFIG)


@pytest.fixture(scope="module")
def examples(scenes) -> list[dict]:
    return build_vqa_examples(scenes, seed=11)


@pytest.fixture(scope="module")
def rendered(scenes):
    return render_scenes(scenes[:300], CONFIG)


# ---------------------------------------------------------------- scenes and rendering
def test_generation_is_deterministic_by_seed():
    a, b = generate_scenes(40, seed=3), generate_scenes(40, seed=3)
    assert a == b
    assert a != generate_scenes(40, seed=4)
    assert generate_scenes(10, seed=3) == a[:10]  # scene i does not depend on n
    img_a, mask_a = render_scenes(a)
    img_b, mask_b = render_scenes(b)
    assert np.array_equal(img_a, img_b) and np.array_equal(mask_a, mask_b)
    assert build_vqa_examples(a, seed=1) == build_vqa_examples(b, seed=1)


def test_questions_do_not_depend_on_hash_seed():
    code = ("import json; from alignbench.data.generator.scenes import generate_scenes; "
            "from alignbench.data.generator.questions import build_vqa_examples; "
            "print(json.dumps(build_vqa_examples(generate_scenes(150, 0), 0)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2")}
    assert len(outs) == 1


def test_objects_inside_image_and_not_overlapping(scenes):
    size = CONFIG.image_size
    counts = Counter(len(s.objects) for s in scenes)
    assert set(counts) == set(range(CONFIG.min_objects, CONFIG.max_objects + 1))
    for scene in scenes:
        assert scene.image_size == size and scene.background in CONFIG.backgrounds
        for k, o in enumerate(scene.objects):
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
            assert math.isclose(x2 - x1, y2 - y1) and math.isclose((x1 + x2) / 2, o.cx)
            lo, hi = CONFIG.size_range(o.size)
            assert lo - 1e-6 <= o.width <= hi + 1e-6
            assert o.colour in COLOURS and o.shape in SHAPES and o.size in SIZES
            for p in scene.objects[:k]:  # boxes may touch but never overlap (min_gap=0)
                reach = (o.width + p.width) / 2
                assert abs(o.cx - p.cx) >= reach - 1e-6 or abs(o.cy - p.cy) >= reach - 1e-6


def test_grid_layout_one_object_per_cell_near_its_centre():
    config = SceneConfig(image_size=32, min_objects=1, max_objects=3, layout="grid", jitter=0.1)
    grid_scenes = generate_scenes(500, seed=3, config=config)
    cell = 32 / 3
    for scene in grid_scenes:
        cells = [(int(o.cx // cell), int(o.cy // cell)) for o in scene.objects]
        assert len(set(cells)) == len(cells)  # never two objects in one cell
        for o, (i, j) in zip(scene.objects, cells):
            w = o.box[2] - o.box[0]
            # jittered about the cell centre (or pushed in by the image border only)
            for c, k in ((o.cx, i), (o.cy, j)):
                off = abs(c - (k + 0.5) * cell)
                assert off <= 0.1 * cell + 1e-6 or abs(c - (w / 2 + 1)) < 1e-6 or abs(c - (32 - w / 2 - 1)) < 1e-6
            assert 0 <= o.box[0] and o.box[2] <= 32 and 0 <= o.box[1] and o.box[3] <= 32
        for a, b in ((a, b) for a in scene.objects for b in scene.objects if a is not b):
            assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] or b.box[3] <= a.box[1]
    used = Counter((int(o.cx // cell), int(o.cy // cell)) for s in grid_scenes for o in s.objects)
    assert len(used) == 9 and min(used.values()) > 40  # every cell gets objects
    assert generate_scenes(20, seed=3, config=config) == grid_scenes[:20]


def test_free_layout_draws_the_scenes_of_the_sampler_before_layouts():
    """Regression: the free layout draws exactly what the sampler drew before the grid layout
    was added (digest of 40 scenes, computed with that earlier sampler), so every VQA and
    retrieval cache and result stays valid."""
    import hashlib
    import json

    scenes = generate_scenes(40, seed=5, config=SceneConfig(image_size=32, min_objects=1, max_objects=3))
    digest = hashlib.sha256(json.dumps([x.to_dict() for x in scenes]).encode()).hexdigest()[:16]
    assert digest == "0c7ee9e3793d33b5"
    assert round(scenes[0].objects[0].cx, 4) == 6.3062 and round(scenes[0].objects[0].cy, 4) == 14.7799


def test_layout_settings_are_checked():
    with pytest.raises(ValueError, match="layout must be one of free, grid, got 'spiral'"):
        SceneConfig(layout="spiral")
    with pytest.raises(ValueError, match="at most 9"):
        SceneConfig(layout="grid", max_objects=10)
    with pytest.raises(ValueError, match="jitter"):
        SceneConfig(jitter=0.6)
    with pytest.raises(ValueError, match="jitter on the grid layout must be <= 0.45"):
        SceneConfig(layout="grid", max_objects=3, jitter=0.48)


def test_sizes_scale_with_image_size():
    cfg = SceneConfig(image_size=128)
    for scene in generate_scenes(30, seed=0, config=cfg):
        for o in scene.objects:
            lo, hi = cfg.size_range(o.size)
            assert lo - 1e-6 <= o.width <= hi + 1e-6 and lo >= 20


def test_render_shapes_and_masks(scenes, rendered):
    images, masks = rendered
    n, size, k_max = 300, CONFIG.image_size, CONFIG.max_objects
    assert images.shape == (n, 3, size, size) and images.dtype == np.uint8
    assert masks.shape == (n, k_max, size, size) and masks.dtype == bool
    assert masks.sum(axis=1).max() <= 1  # each pixel belongs to at most one object
    centres = np.arange(size) + 0.5
    for i, scene in enumerate(scenes[:n]):
        assert not masks[i, len(scene.objects):].any()
        background = ~masks[i].any(axis=0)
        assert (images[i][:, background] == scene.background).all()
        for k, o in enumerate(scene.objects):
            ys, xs = np.nonzero(masks[i, k])
            x1, y1, x2, y2 = o.box
            assert ((centres[xs] >= x1) & (centres[xs] <= x2) & (centres[ys] >= y1) & (centres[ys] <= y2)).all()
            area = {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}[o.shape] * o.width ** 2
            assert len(xs) >= 0.6 * area, (i, k, o.shape, len(xs), area)
            assert (images[i][:, ys, xs] == np.array(COLOURS[o.colour])[:, None]).all()


def test_centre_pixel_has_object_colour(scenes, rendered):
    images, masks = rendered
    checked = 0
    for i, scene in enumerate(scenes[:300]):
        for k, o in enumerate(scene.objects):
            x, y = int(o.cx), int(o.cy)
            if masks[i, k, y, x]:  # the object is on top at its centre
                assert tuple(images[i, :, y, x]) == COLOURS[o.colour]
                checked += 1
    assert checked >= 0.95 * sum(len(s.objects) for s in scenes[:300])


def test_shapes_are_told_apart_by_area(scenes, rendered):
    _, masks = rendered
    fill = {s: [] for s in SHAPES}
    for i, scene in enumerate(scenes[:300]):
        for k, o in enumerate(scene.objects):
            fill[o.shape].append(masks[i, k].sum() / o.width ** 2)
    assert np.mean(fill["triangle"]) < np.mean(fill["circle"]) < np.mean(fill["square"])


def test_noise_is_optional_and_seeded(scenes):
    cfg = SceneConfig(noise=0.05)
    clean, _ = render_scenes(scenes[:20], CONFIG)
    noisy, _ = render_scenes(scenes[:20], cfg, seed=1)
    assert not np.array_equal(clean, noisy)
    assert np.array_equal(noisy, render_scenes(scenes[:20], cfg, seed=1)[0])
    assert abs(noisy.astype(float).mean() - clean.astype(float).mean()) < 2.0


def test_relation_margin():
    def obj(cx: float, cy: float) -> SceneObject:
        return SceneObject("red", "square", "small", cx, cy, (cx - 5, cy - 5, cx + 5, cy + 5))

    assert relation(obj(10, 10), obj(40, 40)) == {"left of", "above"}
    assert relation(obj(40, 10), obj(38, 40)) == {"above"}  # nearly level in x: no x relation
    assert relation(obj(40, 10), obj(38, 40), margin=1.0) == {"right of", "above"}


def test_scene_dict_round_trip(scenes):
    assert Scene.from_dict(scenes[0].to_dict()) == scenes[0]


# ---------------------------------------------------------------- independent re-solver
REL_WORDS = {"to the left of": "left", "left of": "left", "to the right of": "right", "right of": "right",
             "above": "above", "over": "above", "below": "below", "beneath": "below"}


def _words(text: str) -> tuple[str | None, str | None, str | None]:
    toks = [t.rstrip("s") if t.rstrip("s") in SHAPES else t for t in text.replace("?", "").split()]
    pick = lambda vocab: next((t for t in toks if t in vocab), None)  # noqa: E731
    return pick(SIZES), pick(COLOUR_NAMES), pick(SHAPES)


def _find(scene: Scene, size, colour, shape) -> list[int]:
    return [i for i, o in enumerate(scene.objects) if (size in (None, o.size)) and (colour in (None, o.colour))
            and (shape in (None, o.shape))]


def _offset(a: SceneObject, b: SceneObject, rel: str) -> float:
    """How far ``a`` lies in direction ``rel`` from ``b``, beyond the level margin."""
    m = (a.width + b.width) / 4
    d = {"left": b.cx - a.cx, "right": a.cx - b.cx, "above": b.cy - a.cy, "below": a.cy - b.cy}[rel]
    return d / m


def resolve(scene: Scene, text: str) -> tuple[str, str, list[int]]:
    """(answer_type, answer, mentioned) recomputed from keywords and object centres."""
    t = " " + text.replace("?", "") + " "
    phrase = next((p for p in REL_WORDS if f" {p} " in t), None)
    if "how many" in t or "number of" in t:
        idx = _find(scene, *_words(text))
        return "counting", str(len(idx)), idx
    if phrase is not None:
        before, after = t.split(f" {phrase} ")
        rel = REL_WORDS[phrase]
        refs = _find(scene, *_words(after))
        assert len(refs) == 1, text
        r = refs[0]
        if before.startswith((" is the", " does the")):
            tgt = _find(scene, *_words(before))
            assert len(tgt) == 1 and tgt[0] != r, text
            off = _offset(scene.objects[tgt[0]], scene.objects[r], rel)
            assert abs(off) > 1, text  # clear-cut either way
            return "relation", "yes" if off > 1 else "no", [tgt[0], r]
        asked = "colour" if "colour" in before else "shape"
        desc = _words(before.replace("colour", ""))
        cands = [j for j in _find(scene, *desc) if j != r]
        hits = [j for j in cands if _offset(scene.objects[j], scene.objects[r], rel) > 1]
        assert len(hits) == 1, text
        others = [j for j in cands if j != hits[0]]
        assert all(_offset(scene.objects[j], scene.objects[r], rel) < -1 for j in others), text
        return "relation", getattr(scene.objects[hits[0]], asked), [hits[0], r]
    if t.startswith((" is there", " does the image contain", " can you see")):
        idx = _find(scene, *_words(text))
        return "existence", "yes" if idx else "no", idx
    asked = next(w for w in t.split() if w in ("colour", "shape", "size"))
    idx = _find(scene, *_words(text))
    assert len(idx) == 1, text
    return "attribute", getattr(scene.objects[idx[0]], asked), idx


def test_every_answer_recomputes(scenes, examples):
    assert len(examples) == 3 * len(scenes)
    for ex in examples:
        scene = scenes[ex["image_index"]]
        kind, answer, mentioned = resolve(scene, ex["question"])
        assert (kind, answer, mentioned) == (ex["answer_type"], ex["answer"], ex["mentioned"]), ex
        assert answer_question(scene, ex["question"]) == (ex["answer"], ex["mentioned"])
        assert ex["answer"].isalnum() and ex["answer"] == ex["answer"].lower()


def test_questions_are_distinct_per_scene(examples):
    per_image = Counter((e["image_index"], e["question"]) for e in examples)
    assert max(per_image.values()) == 1


def test_all_answer_types_and_templates_present(examples):
    kinds = Counter(e["answer_type"] for e in examples)
    assert set(kinds) == set(ANSWER_TYPES)
    assert min(kinds.values()) > 0.15 * len(examples)
    attribute_answers = {e["answer"] for e in examples if e["answer_type"] == "attribute"}
    assert set(COLOUR_NAMES) | set(SHAPES) | set(SIZES) <= attribute_answers
    relation_answers = {e["answer"] for e in examples if e["answer_type"] == "relation"}
    assert set(COLOUR_NAMES) | set(SHAPES) | {"yes", "no"} <= relation_answers


def test_yes_no_balance(examples):
    for kind in ("existence", "relation"):
        yn = Counter(e["answer"] for e in examples if e["answer_type"] == kind and e["answer"] in ("yes", "no"))
        assert abs(yn["yes"] / (yn["yes"] + yn["no"]) - 0.5) < 0.05, (kind, yn)


def test_counting_distribution_is_spread(examples):
    counts = Counter(e["answer"] for e in examples if e["answer_type"] == "counting")
    total = sum(counts.values())
    assert set(counts) == {str(c) for c in range(6)}
    assert max(counts.values()) / total < 0.35
    assert counts["0"] / total > 0.1


def test_question_text_predicts_little(scenes, examples):
    other = build_vqa_examples(generate_scenes(2000, seed=8), seed=12)
    held_out = answer_prior_accuracy(other, fit_on=examples)
    assert held_out["existence"] < 0.56
    assert held_out["attribute"] < 0.45 and held_out["relation"] < 0.45 and held_out["counting"] < 0.45
    loo = answer_prior_accuracy(examples, leave_one_out=True)
    assert loo["existence"] < 0.56
    assert answer_prior_accuracy(examples)["all"] >= loo["all"]  # in-sample is the optimistic bound


def test_prior_accuracy_on_toy_list():
    qs = [Question("q1", "a", "t", []), Question("q1", "a", "t", []), Question("q1", "b", "t", []),
          Question("q2", "c", "u", [])]
    acc = answer_prior_accuracy(qs)
    assert acc["t"] == pytest.approx(2 / 3) and acc["u"] == 1.0 and acc["all"] == 0.75


def test_type_weights_select_types(scenes):
    ex = build_vqa_examples(scenes[:200], seed=0, per_scene=2, type_weights={"counting": 1.0})
    assert {e["answer_type"] for e in ex} == {"counting"} and len(ex) == 400
    with pytest.raises(ValueError):
        vqa_questions(scenes[0], np.random.default_rng(0), type_weights={"colour": 1.0})


def test_solver_rejects_ambiguous_questions():
    def obj(colour: str, shape: str, cx: float, cy: float) -> SceneObject:
        return SceneObject(colour, shape, "small", cx, cy, (cx - 5, cy - 5, cx + 5, cy + 5))

    scene = Scene([obj("red", "circle", 10, 10), obj("red", "circle", 50, 50), obj("blue", "square", 12, 50),
                   obj("green", "triangle", 14, 30)], 64)
    for text in ("what size is the red circle?",  # two red circles
                 "is the blue square left of the green triangle?",  # level in x
                 "what shape is right of the blue object?",  # first red circle is nearly level in x
                 "what shape is below the green object?"):  # two objects below
        with pytest.raises(AmbiguousQuestionError):
            answer_question(scene, text)
    assert answer_question(scene, "how many red objects are there?") == ("2", [0, 1])
    assert answer_question(scene, "what colour is the square below the green triangle?") == ("blue", [2, 3])
    assert answer_question(scene, "is the blue square below the green triangle?") == ("yes", [2, 3])
