"""VQA view of the synthetic scenes: templated questions with one-word lower-case answers.

Answer types: ``attribute``, ``existence`` (yes/no), ``counting`` ("0".."5") and ``relation``.
:func:`answer_question` parses a question back and re-solves it from the scene; every emitted
question passes it, so none is ambiguous. Within a question family the answer is drawn
uniformly among those the scene allows, so the text alone predicts little
(:func:`answer_prior_accuracy` measures it).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from alignbench.data.generator.scenes import (
    COLOUR_NAMES, OPPOSITE, RELATIONS, SHAPES, SIZES, Scene, matching, possible_relations, relation,
)

QUESTION_STREAM = 0x9A51  # seed tag, distinct from the scene sampler's
ANSWER_TYPES: tuple[str, ...] = ("attribute", "existence", "counting", "relation")

# Placeholders: {d}/{d2} a singular description ("small circle", "red object"), {p} a plural
# one ("red objects", "circles"), {rel} a relation phrase.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "attr_colour": ("what colour is the {d}?", "what is the colour of the {d}?",
                    "which colour does the {d} have?", "what colour is the {d} in the image?"),
    "attr_shape": ("what shape is the {d}?", "what is the shape of the {d}?",
                   "which shape does the {d} have?", "what shape is the {d} in the picture?"),
    "attr_size": ("what size is the {d}?", "what is the size of the {d}?",
                  "what size does the {d} have?", "what size is the {d} in the image?"),
    "exist": ("is there a {d}?", "is there a {d} in the image?", "does the image contain a {d}?",
              "can you see a {d}?"),
    "count": ("how many {p} are there?", "how many {p} are in the image?", "how many {p} can you see?",
              "what is the number of {p} in the picture?"),
    "rel_colour": ("what colour is the {d} {rel} the {d2}?", "what is the colour of the {d} {rel} the {d2}?",
                   "which colour does the {d} {rel} the {d2} have?"),
    "rel_shape": ("what shape is {rel} the {d2}?", "what is the shape of the object {rel} the {d2}?",
                  "which shape is {rel} the {d2}?"),
    "rel_yesno": ("is the {d} {rel} the {d2}?", "is the {d} located {rel} the {d2}?",
                  "is the {d} positioned {rel} the {d2}?", "does the {d} appear {rel} the {d2}?"),
}
REL_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of"), "right of": ("right of", "to the right of"),
    "above": ("above", "over"), "below": ("below", "beneath"),
}
Desc = tuple  # (size, colour, shape), each a word or None


@dataclass
class Question:
    """A question, its one-word lower-case answer, its answer type and the indices of the
    objects whose regions the answer depends on (empty for a "no" existence answer)."""

    text: str
    answer: str
    answer_type: str
    mentioned: list[int]


class AmbiguousQuestionError(ValueError):
    """The question does not pick out a unique answer in the scene."""


@dataclass
class _Spec:  # a candidate question before phrasing; ``group`` is what _pick balances over
    template: str
    group: str
    answer: str
    mentioned: list[int]
    slots: dict


def _spec(template: str, answer: str, mentioned: list[int], group: str = "", **slots) -> _Spec:
    return _Spec(template, group or template, answer, mentioned, slots)


def _desc_text(desc: Desc, plural: bool = False) -> str:
    size, colour, shape = desc
    noun = (shape or "object") + ("s" if plural else "")
    return " ".join(w for w in (size, colour, noun) if w)


# ---------------------------------------------------------------- candidate enumeration
def _attribute_specs(scene: Scene) -> list[_Spec]:
    out = []
    for i, o in enumerate(scene.objects):
        if len(matching(scene, shape=o.shape)) == 1:
            out.append(_spec("attr_colour", o.colour, [i], d=(None, None, o.shape)))
        elif len(matching(scene, shape=o.shape, size=o.size)) == 1:
            out.append(_spec("attr_colour", o.colour, [i], d=(o.size, None, o.shape)))
        if len(matching(scene, colour=o.colour)) == 1:
            out.append(_spec("attr_shape", o.shape, [i], d=(None, o.colour, None)))
        if len(matching(scene, colour=o.colour, shape=o.shape)) == 1:
            out.append(_spec("attr_size", o.size, [i], d=(None, o.colour, o.shape)))
    return out


def _existence_specs(scene: Scene) -> list[_Spec]:
    present = {(o.colour, o.shape) for o in scene.objects}
    colours, shapes = {c for c, _ in present}, {s for _, s in present}
    absent = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in present]
    # Negatives share a colour or a shape with some object, so answering needs binding.
    plausible = [(c, s) for c, s in absent if c in colours or s in shapes] or absent
    out = [_spec("exist", "yes", matching(scene, colour=c, shape=s), d=(None, c, s)) for c, s in sorted(present)]
    return out + [_spec("exist", "no", [], d=(None, c, s)) for c, s in plausible]


def _counting_specs(scene: Scene) -> list[_Spec]:
    """Four families: by colour, by shape, by size and all objects."""
    queries = ([("colour", (None, c, None)) for c in COLOUR_NAMES] + [("shape", (None, None, s)) for s in SHAPES]
               + [("size", (z, None, None)) for z in SIZES] + [("all", (None, None, None))])
    out = []
    for family, (z, c, s) in queries:
        m = matching(scene, colour=c, shape=s, size=z)
        out.append(_spec("count", str(len(m)), m, group=f"count_{family}", p=(z, c, s)))
    return out


def _relation_specs(scene: Scene) -> list[_Spec]:
    objs, out = scene.objects, []
    uniq_cs = [i for i, o in enumerate(objs) if len(matching(scene, colour=o.colour, shape=o.shape)) == 1]
    for r in uniq_cs:
        ref, d2 = objs[r], (None, objs[r].colour, objs[r].shape)
        for rel in RELATIONS:
            for shape in SHAPES:
                near = [j for j in matching(scene, shape=shape) if j != r and rel in possible_relations(objs[j], ref)]
                if len(near) == 1 and rel in relation(objs[near[0]], ref):
                    out.append(_spec("rel_colour", objs[near[0]].colour, [near[0], r],
                                     d=(None, None, shape), rel=rel, d2=d2))
        for t in uniq_cs:
            if t == r:
                continue
            d = (None, objs[t].colour, objs[t].shape)
            for rel in (x for x in RELATIONS if x in relation(objs[t], ref)):
                out.append(_spec("rel_yesno", "yes", [t, r], d=d, rel=rel, d2=d2))
                out.append(_spec("rel_yesno", "no", [t, r], d=d, rel=OPPOSITE[rel], d2=d2))
    for r, ref in enumerate(objs):
        if len(matching(scene, colour=ref.colour)) != 1:
            continue
        for rel in RELATIONS:
            near = [j for j in range(len(objs)) if j != r and rel in possible_relations(objs[j], ref)]
            if len(near) == 1 and rel in relation(objs[near[0]], ref):
                out.append(_spec("rel_shape", objs[near[0]].shape, [near[0], r], rel=rel, d2=(None, ref.colour, None)))
    return out


_ENUMERATORS = {"attribute": _attribute_specs, "existence": _existence_specs,
                "counting": _counting_specs, "relation": _relation_specs}


# ---------------------------------------------------------------- solver (validator)
def _compile() -> list[tuple[str, re.Pattern]]:
    colour, size = "|".join(COLOUR_NAMES), "|".join(SIZES)
    shape = "|".join(SHAPES + ("object",))
    rel = "|".join(sorted({p for ps in REL_PHRASES.values() for p in ps}, key=len, reverse=True))
    desc = rf"(?:(?:{size}) )?(?:(?:{colour}) )?(?:{shape})"
    parts = {"d": rf"(?P<d>{desc})", "d2": rf"(?P<d2>{desc})", "p": rf"(?P<p>{desc}s)", "rel": rf"(?P<rel>{rel})"}
    pieces = [(t, re.split(r"\{(\w+)\}", ph)) for t, phs in PHRASINGS.items() for ph in phs]
    return [(t, re.compile("".join(parts[x] if k % 2 else re.escape(x) for k, x in enumerate(ps)) + r"\Z"))
            for t, ps in pieces]


_PATTERNS = _compile()
_REL_OF_PHRASE = {p: rel for rel, ps in REL_PHRASES.items() for p in ps}


def _parse_desc(text: str) -> Desc:
    words = text.split()
    noun = words[-1].removesuffix("s") if words[-1] not in SHAPES else words[-1]
    size = next((w for w in words if w in SIZES), None)
    colour = next((w for w in words if w in COLOUR_NAMES), None)
    return size, colour, (noun if noun in SHAPES else None)


def parse_question(text: str) -> tuple[str, dict]:
    """Template name and slots (descriptions as ``(size, colour, shape)``, ``rel``) of a question."""
    hits = [(t, m) for t, p in _PATTERNS if (m := p.match(text))]
    if len(hits) != 1:
        raise ValueError(f"question matches {len(hits)} templates: {text!r}")
    template, m = hits[0]
    slots = {k: (_REL_OF_PHRASE[v] if k == "rel" else _parse_desc(v)) for k, v in m.groupdict().items()}
    return template, slots


def _unique(scene: Scene, desc: Desc) -> int:
    size, colour, shape = desc
    idx = matching(scene, colour=colour, shape=shape, size=size)
    if len(idx) != 1:
        raise AmbiguousQuestionError(f"{_desc_text(desc)!r} matches {len(idx)} objects")
    return idx[0]


def answer_question(scene: Scene, text: str) -> tuple[str, list[int]]:
    """Recompute ``(answer, mentioned)`` of a question from the scene alone.

    Raises :class:`AmbiguousQuestionError` when a description is not unique or a relation
    is not clear-cut (another candidate might be read as being in the relation).
    """
    template, s = parse_question(text)
    objs = scene.objects
    if template.startswith("attr_"):
        i = _unique(scene, s["d"])
        return getattr(objs[i], template.removeprefix("attr_")), [i]
    if template in ("exist", "count"):
        size, colour, shape = s.get("d") or s["p"]
        idx = matching(scene, colour=colour, shape=shape, size=size)
        return (("yes" if idx else "no") if template == "exist" else str(len(idx))), idx
    r, rel = _unique(scene, s["d2"]), s["rel"]
    if template == "rel_yesno":
        t = _unique(scene, s["d"])
        rels = relation(objs[t], objs[r]) if t != r else set()
        if rel not in rels and OPPOSITE[rel] not in rels:
            raise AmbiguousQuestionError(f"{rel!r} is not clear-cut in {text!r}")
        return ("yes" if rel in rels else "no"), [t, r]
    size, colour, shape = s.get("d", (None, None, None))
    near = [j for j in matching(scene, colour=colour, shape=shape, size=size)
            if j != r and rel in possible_relations(objs[j], objs[r])]
    if len(near) != 1 or rel not in relation(objs[near[0]], objs[r]):
        raise AmbiguousQuestionError(f"no unique clear-cut target for {text!r}")
    return getattr(objs[near[0]], template.removeprefix("rel_")), [near[0], r]


# ---------------------------------------------------------------- sampling
def _pick(specs: list[_Spec], rng: np.random.Generator) -> _Spec:
    """Group uniformly, then answer uniformly among the group's answers, then a spec."""
    groups = sorted({s.group for s in specs})
    group = groups[rng.integers(len(groups))]
    answers = sorted({s.answer for s in specs if s.group == group})
    answer = answers[rng.integers(len(answers))]
    pool = [s for s in specs if s.group == group and s.answer == answer]
    return pool[rng.integers(len(pool))]


def _phrase(spec: _Spec, rng: np.random.Generator) -> str:
    phrasings = PHRASINGS[spec.template]
    fills = {k: _desc_text(v, plural=(k == "p")) for k, v in spec.slots.items() if k != "rel"}
    if "rel" in spec.slots:
        options = REL_PHRASES[spec.slots["rel"]]
        fills["rel"] = options[rng.integers(len(options))]
    return phrasings[rng.integers(len(phrasings))].format(**fills)


def vqa_questions(
    scene: Scene, rng: np.random.Generator, per_scene: int = 3, type_weights: dict[str, float] | None = None
) -> list[Question]:
    """Up to ``per_scene`` distinct questions about ``scene``.

    The answer type of each is drawn with ``type_weights`` (default: equal) among the
    types the scene supports; fewer questions come back only when the scene runs out.
    Each question is re-solved by :func:`answer_question`; a mismatch raises RuntimeError.
    """
    weights = {t: 1.0 for t in ANSWER_TYPES} if type_weights is None else dict(type_weights)
    if unknown := set(weights) - set(ANSWER_TYPES):
        raise ValueError(f"unknown answer types {sorted(unknown)}; expected {ANSWER_TYPES}")
    pools = {t: _ENUMERATORS[t](scene) for t, w in weights.items() if w > 0}
    out: list[Question] = []
    while len(out) < per_scene:
        types = [t for t in ANSWER_TYPES if pools.get(t)]
        if not types:
            break
        p = np.array([weights[t] for t in types], dtype=float)
        kind = types[rng.choice(len(types), p=p / p.sum())]
        spec = _pick(pools[kind], rng)
        pools[kind].remove(spec)
        q = Question(_phrase(spec, rng), spec.answer, kind, list(spec.mentioned))
        solved = answer_question(scene, q.text)
        if solved != (q.answer, q.mentioned):
            raise RuntimeError(f"validator disagrees on {q.text!r}: {solved} vs {(q.answer, q.mentioned)}")
        out.append(q)
    return out


def build_vqa_examples(
    scenes: list[Scene], seed: int, per_scene: int = 3, type_weights: dict[str, float] | None = None
) -> list[dict]:
    """Flat VQA examples: dicts with ``image_index, question, answer, answer_type, mentioned``.
    Scene ``i`` uses its own generator seeded by ``(seed, i, QUESTION_STREAM)``, so the
    questions stay independent of the scenes even when both use the same seed."""
    return [{"image_index": i, "question": q.text, "answer": q.answer, "answer_type": q.answer_type,
             "mentioned": q.mentioned}
            for i, scene in enumerate(scenes)
            for q in vqa_questions(scene, np.random.default_rng([seed, i, QUESTION_STREAM]), per_scene, type_weights)]


def _triples(questions: list) -> list[tuple[str, str, str]]:
    return [(q["question"], q["answer"], q["answer_type"]) if isinstance(q, dict)
            else (q.text, q.answer, q.answer_type) for q in questions]


def answer_prior_accuracy(questions: list, fit_on: list | None = None, leave_one_out: bool = False) -> dict[str, float]:
    """Accuracy per answer type (and ``"all"``) of the best question-text-only predictor:
    the majority answer for each exact question string (object words kept).

    By default the majority is taken on ``questions`` themselves, an optimistic bound
    that rewards memorising rare strings. ``leave_one_out`` excludes each question from
    its own vote; ``fit_on`` fits the table on another list instead. In both cases a
    string without votes falls back to the majority answer of its answer type.
    Accepts :class:`Question` objects or example dicts.
    """
    fit = _triples(fit_on if fit_on is not None else questions)
    per_text: dict[str, Counter] = defaultdict(Counter)
    per_type: dict[str, Counter] = defaultdict(Counter)
    for text, answer, kind in fit:
        per_text[text][answer] += 1
        per_type[kind][answer] += 1
    hits: dict[str, list[bool]] = defaultdict(list)
    for text, answer, kind in _triples(questions):
        own = Counter({answer: 1}) if leave_one_out and fit_on is None else Counter()
        table = (per_text.get(text, Counter()) - own) or (per_type.get(kind, Counter()) - own)
        hit = bool(table) and table.most_common(1)[0][0] == answer
        hits[kind].append(hit)
        hits["all"].append(hit)
    return {k: float(np.mean(v)) for k, v in hits.items()}


__all__ = ["ANSWER_TYPES", "PHRASINGS", "Question", "AmbiguousQuestionError", "vqa_questions",
           "build_vqa_examples", "answer_question", "parse_question", "answer_prior_accuracy"]
