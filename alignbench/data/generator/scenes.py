"""Synthetic scenes: the shared scene model behind alignbench's built-in data.

A :class:`Scene` is a small set of coloured shapes on a grey background. The same scenes
feed every task view: VQA questions (:mod:`alignbench.data.generator.questions`), captions for
image-text retrieval and captions for text-to-image. This module therefore knows nothing
about questions or captions: it samples scenes, renders them and answers geometric facts
about them (which objects match a description, how two objects are placed).

Everything is numpy only and deterministic given a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 215, 220),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

# Tag mixed into scene seeds; each view (questions, captions) uses its own tag.
SCENE_STREAM = 0x5CE7E

# Object widths in pixels at a 64-pixel image; they scale linearly with the image size.
_SIZE_RANGE_64: dict[str, tuple[float, float]] = {"small": (10.0, 12.0), "large": (16.0, 20.0)}
LAYOUTS: tuple[str, ...] = ("free", "grid")
GRID = 3  # cells per side of the grid layout
# the centre cell's objects stay inside the middle band (captions' location bands start at 35%)
MAX_GRID_JITTER = (0.5 - 0.35) * GRID


@dataclass
class SceneObject:
    """One shape. ``cx, cy`` is the box centre and ``box = (x1, y1, x2, y2)`` its bounding
    box, in pixels (x to the right, y downwards, the image spans ``[0, image_size]``)."""

    colour: str
    shape: str
    size: str
    cx: float
    cy: float
    box: tuple[float, float, float, float]

    @property
    def width(self) -> float:
        """Side of the (square) bounding box in pixels."""
        return self.box[2] - self.box[0]


@dataclass
class Scene:
    """Objects in drawing order (later ones on top) on a ``background`` grey level."""

    objects: list[SceneObject]
    image_size: int
    background: int = 48

    def to_dict(self) -> dict:
        """Plain-Python form (JSON-serialisable) of the scene."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        """Inverse of :meth:`to_dict`."""
        objects = [SceneObject(**{**o, "box": tuple(o["box"])}) for o in data["objects"]]
        return cls(objects=objects, image_size=int(data["image_size"]), background=int(data["background"]))


@dataclass
class SceneConfig:
    """How scenes are sampled and rendered.

    ``noise`` is the standard deviation of per-pixel Gaussian noise as a fraction of 255
    (0 disables it). ``min_gap`` is the least gap in pixels between two bounding boxes
    along at least one axis: 0 lets boxes touch, a negative value allows that much overlap.
    ``backgrounds`` are the grey levels a scene's background is drawn from. ``layout``:
    ``free`` places centres uniformly (rejection sampling); ``grid`` puts each object in its
    own cell of a 3×3 grid, its centre at most ``jitter`` × the cell width from the cell's
    centre (a layout a caption's location phrases pin down).
    """

    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 5
    noise: float = 0.0
    min_gap: float = 0.0
    border: float = 1.0
    backgrounds: tuple[int, ...] = (48, 144)
    max_tries: int = 200
    layout: str = "free"
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout == "grid" and self.max_objects > GRID * GRID:
            raise ValueError(f"layout 'grid' holds at most {GRID * GRID} objects, got max_objects={self.max_objects}")
        if not 0 <= self.jitter < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {self.jitter}")
        if self.layout == "grid" and self.jitter > MAX_GRID_JITTER:  # the centre cell must stay out of the edge bands
            raise ValueError(f"jitter on the grid layout must be <= {MAX_GRID_JITTER:.2f} (centre-cell objects would "
                             f"reach the location bands), got {self.jitter}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")

    def size_range(self, size: str) -> tuple[float, float]:
        """Range of object widths (pixels) for ``size`` at this image size."""
        lo, hi = _SIZE_RANGE_64[size]
        scale = self.image_size / 64.0
        return lo * scale, hi * scale


def _boxes_clear(cx: float, cy: float, w: float, placed: list[tuple[float, float, float]], gap: float) -> bool:
    """True when the box of width ``w`` at ``(cx, cy)`` keeps ``gap`` from every placed box
    along at least one axis (axis-aligned boxes are disjoint iff separated on one axis)."""
    for px, py, pw in placed:
        reach = (w + pw) / 2.0 + gap
        if abs(cx - px) < reach and abs(cy - py) < reach:
            return False
    return True


def _layout(rng: np.random.Generator, widths: list[float],
            config: SceneConfig) -> list[tuple[float, float, float]] | None:
    """``(cx, cy, w)`` per object by rejection sampling, inside the image border and clear of
    the others; the layout restarts when an object does not fit. ``free``: centres uniform;
    ``grid``: each object in its own cell of the 3×3 grid, jittered about the cell's centre."""
    s, cell, grid = float(config.image_size), config.image_size / GRID, config.layout == "grid"
    for _ in range(config.max_tries):
        cells = rng.permutation(GRID * GRID) if grid else None
        placed: list[tuple[float, float, float]] = []
        for i, w in enumerate(widths):
            lo, hi = w / 2.0 + config.border, s - w / 2.0 - config.border
            for _ in range(16 if grid else 64):
                if grid:
                    centre = ((cells[i] % GRID) + 0.5) * cell, ((cells[i] // GRID) + 0.5) * cell
                    cx, cy = (float(np.clip(c + rng.uniform(-1, 1) * config.jitter * cell, lo, hi)) for c in centre)
                else:
                    cx, cy = (float(c) for c in rng.uniform(lo, hi, size=2))
                if _boxes_clear(cx, cy, w, placed, config.min_gap):
                    placed.append((cx, cy, w))
                    break
            else:
                break
        if len(placed) == len(widths):
            return placed
    return None


def _sample_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """One scene: attributes i.i.d. uniform, positions by the configured layout."""
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    colours = rng.integers(len(COLOUR_NAMES), size=n)
    shapes = rng.integers(len(SHAPES), size=n)
    sizes = rng.integers(len(SIZES), size=n)
    widths = [float(rng.uniform(*config.size_range(SIZES[s]))) for s in sizes]
    background = int(config.backgrounds[int(rng.integers(len(config.backgrounds)))])
    placed = _layout(rng, widths, config)
    if placed is None:
        raise RuntimeError(f"could not place {n} objects ({config.layout} layout, image_size {config.image_size}, "
                           f"min_gap {config.min_gap}, jitter {config.jitter}); lower max_objects, the object sizes "
                           "or the jitter")
    objects = [
        SceneObject(
            colour=COLOUR_NAMES[c], shape=SHAPES[sh], size=SIZES[sz], cx=cx, cy=cy,
            box=(cx - w / 2.0, cy - w / 2.0, cx + w / 2.0, cy + w / 2.0),
        )
        for (cx, cy, w), c, sh, sz in zip(placed, colours, shapes, sizes)
    ]
    return Scene(objects=objects, image_size=config.image_size, background=background)


def generate_scenes(n: int, seed: int, config: SceneConfig | None = None) -> list[Scene]:
    """Sample ``n`` scenes; the same ``(n, seed, config)`` always gives the same scenes and
    scene ``i`` does not depend on ``n``. Scene ``i`` draws from the stream
    ``(seed, i, SCENE_STREAM)`` so that views reusing the same seed stay independent."""
    config = config or SceneConfig()
    return [_sample_scene(np.random.default_rng([seed, i, SCENE_STREAM]), config) for i in range(n)]


def render_scenes(
    scenes: list[Scene], config: SceneConfig | None = None, seed: int = 0, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Draw scenes into images and per-object visibility masks.

    Returns ``images`` uint8 ``[N, 3, H, W]`` and ``masks`` bool ``[N, max_objects, H, W]``
    where ``masks[i, k]`` marks the pixels of object ``k`` of scene ``i`` that are visible
    (not covered by a later object); unused slots are all False. ``seed`` drives the
    optional pixel noise. Work is vectorised over ``chunk`` scenes at a time.
    """
    config = config or SceneConfig()
    size, k_max, n = config.image_size, config.max_objects, len(scenes)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.empty((n, k_max, size, size), dtype=bool)
    palette_rgb = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.uint8)
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    xs, ys = grid[None, None, :], grid[None, :, None]
    slots = np.arange(k_max, dtype=np.int8)[None, :, None, None]
    noise_rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        batch = scenes[start:start + chunk]
        b = len(batch)
        params = np.zeros((4, b, k_max), dtype=np.float32)  # cx, cy, half width, shape id
        valid = np.zeros((b, k_max), dtype=bool)
        palette = np.empty((b, k_max + 1, 3), dtype=np.uint8)  # last entry: background
        for i, scene in enumerate(batch):
            if scene.image_size != size or len(scene.objects) > k_max:
                raise ValueError(f"scene {start + i} does not fit config (size {size}, <= {k_max} objects)")
            palette[i, :] = scene.background
            for k, obj in enumerate(scene.objects):
                params[:, i, k] = (obj.cx, obj.cy, obj.width / 2.0, SHAPES.index(obj.shape))
                palette[i, k] = palette_rgb[COLOUR_NAMES.index(obj.colour)]
                valid[i, k] = True
        inside = np.zeros((b, k_max, size, size), dtype=bool)
        for shape_id in range(len(SHAPES)):  # draw each shape kind for all its objects at once
            sel = valid & (params[3] == shape_id)
            cx, cy, half = (p[sel][:, None, None] for p in params[:3])
            dx, dy = np.abs(xs - cx), ys - cy  # [M, 1, W] and [M, H, 1]
            if SHAPES[shape_id] == "circle":
                inside[sel] = dx * dx + dy * dy <= half * half
            elif SHAPES[shape_id] == "square":
                inside[sel] = (dx <= half) & (np.abs(dy) <= half)
            else:  # triangle: apex at the top centre, base along the bottom edge
                inside[sel] = (np.abs(dy) <= half) & (dx <= (dy + half) * 0.5)
        label = np.full((b, size, size), k_max, dtype=np.int8)
        for k in range(k_max):  # later objects overwrite earlier ones
            label[inside[:, k]] = k
        masks[start:start + b] = label[:, None] == slots
        flat = label.astype(np.int64) + (k_max + 1) * np.arange(b)[:, None, None]
        images[start:start + b] = palette.reshape(-1, 3)[flat].transpose(0, 3, 1, 2)
    if config.noise > 0:
        for start in range(0, n, chunk):
            block = images[start:start + chunk].astype(np.float32)
            block += noise_rng.standard_normal(block.shape, dtype=np.float32) * (config.noise * 255.0)
            images[start:start + chunk] = np.clip(block, 0, 255).round().astype(np.uint8)
    return images, masks


def matching(scene: Scene, colour: str | None = None, shape: str | None = None, size: str | None = None) -> list[int]:
    """Indices of the objects that have every given attribute (``None`` matches anything)."""
    return [
        i for i, o in enumerate(scene.objects)
        if (colour is None or o.colour == colour) and (shape is None or o.shape == shape)
        and (size is None or o.size == size)
    ]


def default_margin(a: SceneObject, b: SceneObject) -> float:
    """Centre offset (pixels) below which two objects count as level on an axis: a quarter
    of the two widths summed, i.e. half the mean width."""
    return (a.width + b.width) / 4.0


def relation(a: SceneObject, b: SceneObject, margin: float | None = None) -> set[str]:
    """Spatial relations of ``a`` relative to ``b`` by centre comparison.

    ``'left of'`` when ``a.cx < b.cx - margin``, ``'above'`` when ``a.cy < b.cy - margin``
    (y grows downwards), and symmetrically ``'right of'`` / ``'below'``. Pairs whose centres
    differ by at most ``margin`` on an axis have no relation on that axis.
    ``margin`` defaults to :func:`default_margin`.
    """
    m = default_margin(a, b) if margin is None else margin
    out: set[str] = set()
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if dx < -m:
        out.add("left of")
    if dx > m:
        out.add("right of")
    if dy < -m:
        out.add("above")
    if dy > m:
        out.add("below")
    return out


def possible_relations(a: SceneObject, b: SceneObject, margin: float | None = None) -> set[str]:
    """Relations a viewer could plausibly read into the pair: :func:`relation` with the
    margin negated, so a nearly level pair has both relations of that axis. An object is
    *clearly not* ``r`` of another when ``r`` is missing here."""
    m = default_margin(a, b) if margin is None else margin
    return relation(a, b, -m)


__all__ = [
    "COLOURS", "COLOUR_NAMES", "SHAPES", "SIZES", "RELATIONS", "OPPOSITE",
    "SceneObject", "Scene", "SceneConfig", "generate_scenes", "render_scenes",
    "matching", "relation", "possible_relations", "default_margin",
]
