"""Text-to-image view of the synthetic scenes: captions that determine what to draw.

Small scenes (1-3 objects at 32×32 by default), each object in its own cell of a 3×3 grid
with a little jitter (``SceneConfig.layout="grid"``), with captions that describe every
object by size, colour and shape, with its most specific location ("a large red circle in
the top left corner", "a small blue square on the left"; none for the centre cell), and the
background shade (scenes with two identical objects, which no caption can tell apart, are
left out). The caption then fixes what an image shows and where, up to a pixel or two of
position and the exact size, so a generator can be judged on following the words and the
render is a fair target for the pixel term. ``scene={"layout": "free"}`` gives free
placement (only coarse location bands), a much harder and more ambiguous task.
"""

from __future__ import annotations

import torch

from .generator.captions import CaptionConfig, build_caption_examples, parse_caption
from .generator.scenes import COLOUR_NAMES, SHAPES, SceneConfig
from .synthetic import caption_view, configure_caption_view, render_split, scene_counts
from .datasets.t2i import T2IDataModule, T2ITensors
from ..ranges import PositiveInt

# every object described, with its location when it lies in an edge band; no counts or relations
T2I_CAPTIONS = {"min_mentioned": 5, "max_mentioned": 5, "mention_prob": 1.0, "relation_prob": 0.0,
                "count_prob": 0.0, "location_prob": 1.0, "background_prob": 1.0, "drop_prob": 0.0,
                "full_location": True}
# each object in its own cell of a 3×3 grid (small jitter): with full locations the caption pins the layout down
T2I_SCENES = {"image_size": 32, "min_objects": 1, "max_objects": 3, "layout": "grid", "jitter": 0.1}


def described_objects(text: str) -> list[tuple[int, int, str | None]]:
    """``(colour, shape, location)`` of each single object a caption describes with both a
    colour and a shape (indices into COLOUR_NAMES and SHAPES; location key or None)."""
    out = []
    for first, _, second in parse_caption(text)[0]:
        for ph in (first, second):
            if ph is not None and ph.det in ("a", "an", "the") and ph.desc[1] and ph.desc[2]:
                out.append((COLOUR_NAMES.index(ph.desc[1]), SHAPES.index(ph.desc[2]), ph.loc))
    return out


class SyntheticT2IDataModule(T2IDataModule):
    """Synthetic text-to-image: ``captions_per_image`` captions per scene.

    ``scene`` holds :class:`~alignbench.data.generator.scenes.SceneConfig` fields, ``caption``
    :class:`~alignbench.data.generator.captions.CaptionConfig` fields over :data:`T2I_CAPTIONS`.
    """

    name = "synthetic"
    rendered = True

    def __init__(self, train_scenes: PositiveInt = 4000, val_scenes: PositiveInt = 500, test_scenes: PositiveInt = 1000,
                 captions_per_image: PositiveInt = 5, scene: dict | None = None, caption: dict | None = None,
                 data_seed: int = 1234, limit: PositiveInt | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        configure_caption_view(
            self, SceneConfig(**{**T2I_SCENES, **(scene or {})}),
            CaptionConfig(**{**T2I_CAPTIONS, **(caption or {})}), scene_counts(train_scenes, val_scenes, test_scenes),
            captions_per_image, data_seed, limit)

    def _make_split(self, split: str) -> dict:
        scenes, images, seed = render_split(split, self.counts, self.limit, self.data_seed, self.scene_config)
        examples = build_caption_examples(scenes, seed, self.captions_per_image, self.caption_config)
        # keep captions that describe every object; scenes with identical twins have none (dropped)
        examples = [e for e in examples if len(e["mentioned"]) == len(scenes[e["image_index"]].objects)]
        keep = sorted({e["image_index"] for e in examples})
        new_index = {old: new for new, old in enumerate(keep)}
        scenes, images = [scenes[i] for i in keep], images[keep]
        examples = [{**e, "image_index": new_index[e["image_index"]]} for e in examples]
        k = self.scene_config.max_objects
        centre, boxes = torch.zeros(len(scenes), k, 2), torch.zeros(len(scenes), k, 4)
        colour = torch.full((len(scenes), k), -1, dtype=torch.long)
        shape = torch.full((len(scenes), k), -1, dtype=torch.long)
        for i, s in enumerate(scenes):
            for j, o in enumerate(s.objects):
                centre[i, j], boxes[i, j] = torch.tensor([o.cx, o.cy]), torch.tensor(o.box)
                colour[i, j], shape[i, j] = COLOUR_NAMES.index(o.colour), SHAPES.index(o.shape)
        return {"images": images, "examples": examples,
                "objects": {"centre": centre, "boxes": boxes, "colour": colour, "shape": shape}}

    def build(self) -> dict[str, T2ITensors]:
        raw, self.vocab, encoded = caption_view(self, "synthetic-t2i")
        return {split: T2ITensors(tokens, mask, caption_image, images=raw[split]["images"], texts=texts,
                                  objects=raw[split]["objects"], described=[described_objects(t) for t in texts])
                for split, (texts, tokens, mask, caption_image) in encoded.items()}
