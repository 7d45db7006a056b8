"""Caption view of the synthetic scenes, for image-text retrieval and text-to-image.

A caption describes a SUBSET of a scene's objects, like a human caption: attribute phrases
("a large red circle", "a little box", "a red disc on the left"), counts ("two green shapes",
"four objects, including ..."), relations ("a red circle left of the blue box", "a small
square next to a yellow disc"), joined by "and" in a frame ("there is ...", "a picture
showing ...", "... on a dark background"). Truth is checked on the re-parsed text:

* a singular phrase ("a"/"an") holds when some object matches it; "the" needs exactly one;
* a count phrase ("two green shapes") holds when exactly that many objects match;
* a relation holds when some matching pair of distinct objects is in it: the directional ones
  by :func:`~alignbench.data.generator.scenes.relation` (clear-cut only), "next to" by :func:`near`;
* a location holds when the centre lies in that band of the image (:func:`in_location`).

In its own scene each singular phrase also picks out exactly one object, so the objects a
caption mentions (:func:`ground_caption`) are well defined. Other images may fit a caption
too, since it mentions only some objects; :func:`caption_ambiguity` measures how many.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alignbench.data.generator.scenes import COLOUR_NAMES, Scene, SceneObject, matching, relation

CAPTION_STREAM = 0xCA97  # seed tag, distinct from the scene and question streams
NEAR, NEAR_FACTOR = "next to", 1.5  # "next to": centre distance <= 1.5 mean widths
EDGE = 0.35  # "on the left": centre in the left 35% of the image (likewise right, top, bottom)
DARK_BELOW = 96  # background grey levels below this are "dark", the others "light"
NUMBERS: tuple[str, ...] = ("two", "three", "four", "five")  # NUMBERS[k - 2] means k
# Surface words by canonical meaning; only the first of each is used when synonyms are off.
SHAPE_WORDS: dict[str | None, tuple[str, ...]] = {
    "circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle", "pyramid"),
    None: ("object", "shape", "thing")}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}
REL_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of"), "right of": ("right of", "to the right of"),
    "above": ("above", "over"), "below": ("below", "under"), NEAR: ("next to", "beside", "near")}
LOC_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side"), "right": ("on the right", "on the right side"),
    "top": ("at the top",), "bottom": ("at the bottom",),
    **{f"{v} {h}": (f"in the {v} {h} corner", f"in the {v} {h}")
       for v in ("top", "bottom") for h in ("left", "right")}}
PREFIXES: tuple[str, ...] = ("", "there is ", "an image with ", "an image of ", "a picture showing ",
                             "a picture of ", "this image shows ")
SUFFIXES: dict[str, tuple[str, ...]] = {"dark": (" on a dark background", " on a black background"),
                                        "light": (" on a light background", " on a light grey background")}
Desc = tuple  # (size, colour, shape), each a canonical word or None


@dataclass
class Caption:
    """A caption and the sorted indices of the objects it describes (for grounding)."""

    text: str
    mentioned: list[int]


@dataclass
class CaptionConfig:
    """Difficulty knobs. Each object is described with ``mention_prob``, the number then
    clipped to ``[min_mentioned, max_mentioned]`` (a total count "four objects" mentions all
    of them regardless). ``relation_prob``, ``count_prob``, ``location_prob`` and
    ``background_prob`` are the chances of a relation, a count, a location per described
    object and the background shade; ``drop_prob`` is the chance of leaving out each
    attribute of a phrase while it stays unique in the scene (vaguer, less discriminative
    captions); ``synonyms`` varies shape, size, relation and location words;
    ``full_location`` names the most specific location of an object ("in the top left
    corner" rather than "at the top" or "on the left" for an object in a corner)."""

    min_mentioned: int = 1
    max_mentioned: int = 3
    mention_prob: float = 0.8
    relation_prob: float = 0.4
    count_prob: float = 0.3
    location_prob: float = 0.4
    background_prob: float = 0.4
    drop_prob: float = 0.1
    full_location: bool = False
    synonyms: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_mentioned <= self.max_mentioned:
            raise ValueError(f"need 1 <= min_mentioned <= max_mentioned, got {self.min_mentioned}, "
                             f"{self.max_mentioned}")
        if bad := [k for k, v in vars(self).items() if k.endswith("_prob") and not 0.0 <= v <= 1.0]:
            raise ValueError(f"probabilities must be in [0, 1]: {bad}")


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: ``det`` is "a", "the" or a number word, ``desc`` what it matches and
    ``loc`` an optional location key of :data:`LOC_WORDS`."""

    det: str
    desc: Desc
    loc: str | None = None


Part = tuple  # (Phrase, relation or None, second Phrase or None)


def near(a: SceneObject, b: SceneObject) -> bool:
    """"Next to": centre distance at most ``NEAR_FACTOR`` times the two objects' mean width."""
    return float(np.hypot(a.cx - b.cx, a.cy - b.cy)) <= NEAR_FACTOR * (a.width + b.width) / 2.0


def in_location(o: SceneObject, loc: str, image_size: int) -> bool:
    """Whether the centre of ``o`` lies in every band named by ``loc`` (e.g. "top left")."""
    lo, hi = EDGE * image_size, (1.0 - EDGE) * image_size
    bands = {"left": o.cx <= lo, "right": o.cx >= hi, "top": o.cy <= lo, "bottom": o.cy >= hi}
    return all(bands[w] for w in loc.split())


def _in_relation(a: SceneObject, b: SceneObject, rel: str) -> bool:
    return near(a, b) if rel == NEAR else rel in relation(a, b)


def _matches(scene: Scene, ph: Phrase) -> list[int]:
    size, colour, shape = ph.desc
    idx = matching(scene, colour=colour, shape=shape, size=size)
    return [i for i in idx if ph.loc is None or in_location(scene.objects[i], ph.loc, scene.image_size)]


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith("x") else "s")


# ---------------------------------------------------------------- parsing and validation
def _alt(words) -> str:  # regex alternation, longest first
    return "|".join(sorted(set(words), key=len, reverse=True))


_SIZE_OF, _REL_OF, _LOC_OF, _SHAPE_OF, _SHADE_OF = ({w: key for key, ws in table.items() for w in ws} for table in
                                                    (SIZE_WORDS, REL_WORDS, LOC_WORDS, SHAPE_WORDS, SUFFIXES))
_SHAPE_OF.update({_plural(w): s for w, s in list(_SHAPE_OF.items())})
_NP = (r"(?P<det{t}>" + _alt(("a", "an", "the") + NUMBERS) + r") (?:(?P<size{t}>" + _alt(_SIZE_OF) + r") )?"
       r"(?:(?P<colour{t}>" + _alt(COLOUR_NAMES) + r") )?(?P<noun{t}>" + _alt(_SHAPE_OF) + ")")
_PART = re.compile(_NP.format(t=1) + rf"(?: (?P<loc>{_alt(_LOC_OF)})| (?P<rel>{_alt(_REL_OF)}) "
                   + _NP.format(t=2) + r")?\Z")


def _phrase(m: re.Match, t: int, text: str, loc: str | None = None) -> Phrase:
    det, noun, size = m[f"det{t}"], m[f"noun{t}"], m[f"size{t}"]
    if (det in NUMBERS) != (noun not in SHAPE_WORDS[_SHAPE_OF[noun]]):
        raise ValueError(f"number disagreement in {text!r}")
    return Phrase("a" if det == "an" else det, (_SIZE_OF.get(size), m[f"colour{t}"], _SHAPE_OF[noun]), loc)


def parse_caption(text: str) -> tuple[list[Part], str | None]:
    """Parts ``(phrase, rel, phrase2)`` of a caption (``rel, phrase2`` None for a bare
    phrase) and the background shade it states ("dark", "light" or None). Raises
    ValueError on text outside the caption grammar."""
    body = next((text[len(p):] for p in sorted(PREFIXES + ("there are ",), key=len, reverse=True)
                 if p and text.startswith(p)), text)
    suffix = next((s for s in sorted(_SHADE_OF, key=len, reverse=True) if body.endswith(s)), "")
    body, parts = body[:len(body) - len(suffix)], []
    for chunk in re.split(r", including |, | and ", body):
        if not (m := _PART.match(chunk)):
            raise ValueError(f"cannot parse {chunk!r} in {text!r}")
        first, rel = _phrase(m, 1, text, _LOC_OF.get(m["loc"])), m["rel"]
        second = _phrase(m, 2, text) if rel else None
        if (rel or first.loc) and (first.det in NUMBERS or (second and second.det in NUMBERS)):
            raise ValueError(f"count phrase with a relation or location in {text!r}")
        parts.append((first, _REL_OF[rel] if rel else None, second))
    return parts, _SHADE_OF.get(suffix)


def _holds(scene: Scene, ph: Phrase) -> list[int]:
    """Objects ``ph`` may refer to; empty when the phrase is false of the scene."""
    idx = _matches(scene, ph)
    want = NUMBERS.index(ph.det) + 2 if ph.det in NUMBERS else (1 if ph.det == "the" else 0)
    return idx if (len(idx) == want if want else idx) else []


def _part_true(scene: Scene, part: Part) -> bool:
    first, rel, second = part
    a = _holds(scene, first)
    if rel is None or not a:
        return bool(a)
    objs = scene.objects
    return any(i != j and _in_relation(objs[i], objs[j], rel) for i in a for j in _holds(scene, second))


def _shade(scene: Scene) -> str:
    return "dark" if scene.background < DARK_BELOW else "light"


def _true(scene: Scene, parsed: tuple[list[Part], str | None]) -> bool:
    return parsed[1] in (None, _shade(scene)) and all(_part_true(scene, p) for p in parsed[0])


def caption_is_true(scene: Scene, text: str | Caption) -> bool:
    """Whether every phrase, count, relation, location and the background of the caption hold."""
    return _true(scene, parse_caption(getattr(text, "text", text)))


def ground_caption(scene: Scene, text: str | Caption) -> list[int]:
    """Sorted indices of the objects the caption describes in its own scene. Raises
    ValueError when it is false or a singular phrase does not pick out one object."""
    text = getattr(text, "text", text)
    if not _true(scene, parsed := parse_caption(text)):
        raise ValueError(f"{text!r} is false of the scene")
    out: set[int] = set()
    for ph in (ph for first, _, second in parsed[0] for ph in (first, second) if ph is not None):
        if ph.det in ("a", "the") and len(idx := _matches(scene, ph)) != 1:
            raise ValueError(f"a phrase of {text!r} matches {len(idx)} objects")
        out.update(_matches(scene, ph))
    return sorted(out)


# ---------------------------------------------------------------- sampling
def _describe(scene: Scene, i: int, rng: np.random.Generator, config: CaptionConfig) -> Phrase | None:
    """A phrase unique to object ``i`` (None if its twin is in the scene): each attribute is
    dropped with ``drop_prob`` while the description stays unique and non-empty."""
    o = scene.objects[i]
    desc = [o.size, o.colour, o.shape]
    if _matches(scene, Phrase("a", tuple(desc))) != [i]:
        return None
    for k in rng.permutation(3):
        trial = desc[:k] + [None] + desc[k + 1:]
        if rng.random() < config.drop_prob and any(trial) and _matches(scene, Phrase("a", tuple(trial))) == [i]:
            desc = trial
    return Phrase("a", tuple(desc))


def _sample_parts(scene: Scene, rng: np.random.Generator, config: CaptionConfig) -> tuple[list[Part], set[int]]:
    objs, n = scene.objects, len(scene.objects)
    hi = min(config.max_mentioned, n)
    budget = int(np.clip(rng.binomial(n, config.mention_prob), min(config.min_mentioned, hi), hi))
    parts: list[Part] = []
    used: set[int] = set()  # objects described so far, against the budget
    total = False  # "four objects" mentions every object but leaves them free to be described
    if rng.random() < config.count_prob:
        descs = sorted({(z, c, s) for o in objs for z in (None, o.size) for c in (None, o.colour)
                        for s in (None, o.shape)}, key=str)
        options = [(d, idx) for d in descs if 2 <= len(idx := _matches(scene, Phrase("a", d)))
                   and (len(idx) < budget or d == (None, None, None))]
        if options:
            desc, idx = options[int(rng.integers(len(options)))]
            parts.append((Phrase(NUMBERS[len(idx) - 2], desc), None, None))
            total = desc == (None, None, None)
            used.update([] if total else idx)
    free = [int(i) for i in rng.permutation(n) if int(i) not in used]
    phrases = {i: _describe(scene, i, rng, config) for i in free}
    free = [i for i in free if phrases[i] is not None]
    if budget - len(used) >= 2 and rng.random() < config.relation_prob:
        pairs = [(a, b, r) for a in free for b in free if a != b
                 for r in REL_WORDS if _in_relation(objs[a], objs[b], r)]
        if pairs:
            a, b, r = pairs[int(rng.integers(len(pairs)))]
            det = "the" if rng.random() < 0.3 else "a"
            parts.append((phrases[a], r, Phrase(det, phrases[b].desc)))
            used.update((a, b))
    for i in (i for i in free if i not in used and len(used) < budget):
        locs = [loc for loc in LOC_WORDS if in_location(objs[i], loc, scene.image_size)]
        if config.full_location and locs:  # the most specific: a corner names both bands
            locs = [max(locs, key=lambda key: len(key.split()))]
        loc = locs[int(rng.integers(len(locs)))] if locs and rng.random() < config.location_prob else None
        parts.append((Phrase("a", phrases[i].desc, loc), None, None))
        used.add(i)
    return parts, set(range(n)) if total else used


def _render(parts: list[Part], shade: str | None, rng: np.random.Generator, config: CaptionConfig) -> str:
    pick = (lambda ws: ws[int(rng.integers(len(ws)))]) if config.synonyms else (lambda ws: ws[0])

    def phrase(ph: Phrase) -> str:
        size, colour, shape = ph.desc
        noun = pick(SHAPE_WORDS[shape])
        words = (pick(SIZE_WORDS[size]) if size else None, colour, _plural(noun) if ph.det in NUMBERS else noun,
                 pick(LOC_WORDS[ph.loc]) if ph.loc else None)
        body = " ".join(w for w in words if w)
        return ("an" if ph.det == "a" and body[0] in "aeiou" else ph.det) + " " + body

    texts = [phrase(a) + (f" {pick(REL_WORDS[r])} {phrase(b)}" if r else "") for a, r, b in parts]
    total = len(texts) > 1 and parts[0][0].desc == (None, None, None)  # "three objects, including ..."
    head = texts.pop(0) + ", including " if total else ""
    order = [texts[int(k)] for k in rng.permutation(len(texts))]
    body = head + (", ".join(order[:-1]) + " and " + order[-1] if len(order) > 1 else order[0])
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    prefix = "there are " if prefix == "there is " and body.split()[0] in NUMBERS else prefix
    return prefix + body + (pick(SUFFIXES[shade]) if shade else "")


def scene_captions(scene: Scene, rng: np.random.Generator, n: int = 5,
                   config: CaptionConfig | None = None) -> list[Caption]:
    """Up to ``n`` distinct captions of ``scene`` (fewer only for scenes too small to be
    described ``n`` ways). Each is checked with :func:`ground_caption`; a mismatch between
    the text and its ``mentioned`` raises RuntimeError."""
    config = config or CaptionConfig()
    out: list[Caption] = []
    for _ in range(30 * n):
        if len(out) == n:
            break
        parts, used = _sample_parts(scene, rng, config)
        shade = _shade(scene) if rng.random() < config.background_prob else None
        text = _render(parts, shade, rng, config) if parts else ""
        if not text or any(c.text == text for c in out):
            continue
        if (found := ground_caption(scene, text)) != sorted(used):
            raise RuntimeError(f"validator disagrees on {text!r}: {found} vs {sorted(used)}")
        out.append(Caption(text, sorted(used)))
    return out


def build_caption_examples(scenes: list[Scene], seed: int, per_image: int = 5,
                           config: CaptionConfig | None = None) -> list[dict]:
    """Flat caption examples: dicts with ``image_index, caption, mentioned``. Scene ``i``
    uses its own generator seeded by ``(seed, i, CAPTION_STREAM)``, independent of the
    scenes and questions even when they share the seed."""
    return [{"image_index": i, "caption": c.text, "mentioned": c.mentioned}
            for i, scene in enumerate(scenes)
            for c in scene_captions(scene, np.random.default_rng([seed, i, CAPTION_STREAM]), per_image, config)]


def caption_ambiguity_counts(scenes: list[Scene], captions_per_image: Sequence, sample: int = 200,
                             seed: int = 0) -> list[int]:
    """For ``sample`` captions drawn at random, how many OTHER scenes each is true of.
    ``captions_per_image`` is a list (per scene) of lists of captions (:class:`Caption` or
    str), or the flat dicts of :func:`build_caption_examples`."""
    if captions_per_image and isinstance(captions_per_image[0], dict):
        pool = [(int(e["image_index"]), e["caption"]) for e in captions_per_image]
    else:
        pool = [(i, getattr(c, "text", c)) for i, cs in enumerate(captions_per_image) for c in cs]
    counts = []
    for k in np.random.default_rng(seed).choice(len(pool), size=min(sample, len(pool)), replace=False):
        i, text = pool[int(k)]
        parsed = parse_caption(text)
        counts.append(sum(_true(s, parsed) for j, s in enumerate(scenes) if j != i))
    return counts


def caption_ambiguity(scenes: list[Scene], captions_per_image: Sequence, sample: int = 200, seed: int = 0) -> float:
    """Mean number of OTHER scenes a sampled caption is also true of (0: every caption
    fits only its own image); see :func:`caption_ambiguity_counts`."""
    return float(np.mean(caption_ambiguity_counts(scenes, captions_per_image, sample, seed)))


__all__ = ["CAPTION_STREAM", "Caption", "CaptionConfig", "Phrase", "near", "in_location", "parse_caption",
           "caption_is_true", "ground_caption", "scene_captions", "build_caption_examples",
           "caption_ambiguity", "caption_ambiguity_counts"]
