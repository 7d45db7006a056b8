"""Built-in synthetic scenes as LightningDataModules: the VQA, caption and phrase-grounding views.

Scenes are sampled from a fixed ``data_seed`` (the same data for every run seed and
every score), rendered once and cached as tensors. Each split uses its own stream of
scenes. Answer types: ``attribute``, ``existence``, ``counting``, ``relation``.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from .datasets.grounding import GroundingDataModule, GroundingSplit, crop_features
from .datasets.retrieval import RetrievalDataModule, RetrievalSplit
from .generator.captions import CaptionConfig, build_caption_examples
from .generator.phrases import GroundingConfig, grounding_captions, region_proposals
from .generator.questions import ANSWER_TYPES, build_vqa_examples
from .generator.scenes import COLOUR_NAMES, SHAPES, SIZES, SceneConfig, generate_scenes, render_scenes
from .datasets.text import Vocab
from .datasets.vqa import VQATensors, single_answer_targets
from .base import cached
from .datasets.vqa_module import VQADataModule
from ..ranges import PositiveInt

SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}
PHRASE_STREAM = 0x9A0D  # seed tag of the grounding captions and proposals, distinct from the other streams


def scene_counts(train: int, val: int, test: int) -> dict[str, int]:
    """Scenes per split, each required to be positive."""
    counts = {"train": train, "val": val, "test": test}
    for split, n in counts.items():
        if n <= 0:
            raise ValueError(f"synthetic: {split}_scenes must be > 0, got {n}")
    return counts


def render_split(split: str, counts: dict[str, int], limit: int | None, data_seed: int,
                 config: SceneConfig) -> tuple[list, torch.Tensor, int]:
    """Scenes of ``split`` (capped at ``limit``), their images ``uint8 [N, 3, H, W]`` and the split's seed."""
    n = counts[split] if limit is None else min(counts[split], limit)
    seed = data_seed * 10 + SPLIT_OFFSET[split]
    scenes = generate_scenes(n, seed, config)
    images, _ = render_scenes(scenes, config, seed=seed)
    return scenes, torch.from_numpy(images), seed


class SyntheticVQADataModule(VQADataModule):
    """Synthetic VQA: ``{train,val,test}_scenes`` scenes with ``questions_per_scene`` each.

    ``scene`` holds :class:`~alignbench.data.generator.scenes.SceneConfig` fields (image size,
    object counts, noise); ``type_weights`` sets the mix of answer types; ``limit`` caps
    the questions per split (for tiny runs).
    """

    name = "synthetic"

    def __init__(
        self,
        train_scenes: PositiveInt = 6000,
        val_scenes: PositiveInt = 1000,
        test_scenes: PositiveInt = 1000,
        questions_per_scene: PositiveInt = 4,
        scene: dict | None = None,
        type_weights: dict[str, float] | None = None,
        data_seed: int = 1234,
        limit: PositiveInt | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.scene_config = SceneConfig(**(scene or {}))
        self.counts = scene_counts(train_scenes, val_scenes, test_scenes)
        self.questions_per_scene, self.type_weights = questions_per_scene, type_weights
        self.data_seed, self.limit = data_seed, limit
        self.image_size = self.scene_config.image_size

    def _make_split(self, split: str) -> dict:
        scenes, images, seed = render_split(split, self.counts, self.limit, self.data_seed, self.scene_config)
        examples = build_vqa_examples(scenes, seed, self.questions_per_scene, self.type_weights)
        return {"images": images, "examples": examples, "object_boxes": object_boxes(scenes, self.scene_config),
                "object_count": torch.tensor([len(s.objects) for s in scenes])}

    def build(self) -> dict[str, VQATensors]:
        self.answers = sorted(set(COLOUR_NAMES) | set(SHAPES) | set(SIZES) | {"yes", "no"}) + [str(i) for i in range(6)]
        self.answer_types = list(ANSWER_TYPES)
        key = {"v": 1, "scene": asdict(self.scene_config), "counts": self.counts, "limit": self.limit,
               "qps": self.questions_per_scene, "weights": self.type_weights, "seed": self.data_seed}
        raw = {s: cached(f"synthetic-vqa-{s}", {**key, "split": s}, lambda s=s: self._make_split(s)) for s in SPLIT_OFFSET}
        self.vocab = Vocab.build(e["question"] for e in raw["train"]["examples"])
        splits = {}
        for split, data in raw.items():
            examples = data["examples"]
            if self.limit is not None:
                examples = examples[: self.limit]
            tokens, mask = self.vocab.encode_batch([e["question"] for e in examples])
            tidx, tscore = single_answer_targets([e["answer"] for e in examples], self.answers)
            splits[split] = VQATensors(
                question=tokens, question_mask=mask,
                image_index=torch.tensor([e["image_index"] for e in examples], dtype=torch.long),
                target_index=tidx, target_score=tscore,
                answers=[[e["answer"]] * 10 for e in examples], answer_type=[e["answer_type"] for e in examples],
                num_answers=len(self.answers), images=data["images"],
                extras={"mentioned": [e["mentioned"] for e in examples], "object_boxes": data["object_boxes"],
                        "object_count": data["object_count"]},
            )
        return splits

    def grounding_masks(self, split: str, questions: list[int]) -> torch.Tensor:
        """The bounding boxes of the objects each question mentions (all False for a
        question about no object, e.g. a "no" existence answer)."""
        self.setup()
        data = self.splits[split]
        return mentioned_masks(data.extras, data.image_index, questions, self.image_size)


def object_boxes(scenes: list, config: SceneConfig) -> torch.Tensor:
    """Pixel boxes ``[N, max_objects, 4]`` of every scene's objects (zeros past the last)."""
    boxes = torch.zeros(len(scenes), config.max_objects, 4)
    for i, s in enumerate(scenes):
        for k, obj in enumerate(s.objects):
            boxes[i, k] = torch.tensor(obj.box)
    return boxes


def mentioned_masks(extras: dict, image_of: torch.Tensor, items: list[int], size: int) -> torch.Tensor:
    """Bool ``[N, size, size]``: the boxes of the objects that each of ``items`` (questions
    or captions; ``image_of[item]`` is its image) mentions, from ``extras["mentioned"]`` and
    ``extras["object_boxes"]``."""
    out = torch.zeros(len(items), size, size, dtype=torch.bool)
    for row, item in enumerate(items):
        mentioned = extras["mentioned"][item]
        if mentioned:
            out[row] = boxes_mask(extras["object_boxes"][int(image_of[item])][list(mentioned)], size)
    return out


def boxes_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bool ``[size, size]``: the union of the pixel boxes ``[K, 4]`` (x1, y1, x2, y2); a
    pixel belongs to a box when its centre lies inside it."""
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    mask = torch.zeros(size, size, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes.tolist():
        inside_y = (centres >= y1) & (centres < y2)
        inside_x = (centres >= x1) & (centres < x2)
        mask |= inside_y[:, None] & inside_x[None, :]
    return mask


class SyntheticRetrievalDataModule(RetrievalDataModule):
    """Synthetic image-text retrieval: ``captions_per_image`` (5) captions per scene.

    Captions mention a subset of the objects, so some other images also fit a caption.
    ``caption`` holds :class:`~alignbench.data.generator.captions.CaptionConfig` fields.
    """

    name = "synthetic"

    def __init__(self, train_scenes: PositiveInt = 6000, val_scenes: PositiveInt = 1000, test_scenes: PositiveInt = 1000,
                 captions_per_image: PositiveInt = 5, scene: dict | None = None, caption: dict | None = None,
                 data_seed: int = 1234, limit: PositiveInt | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        configure_caption_view(self, SceneConfig(**(scene or {})), CaptionConfig(**(caption or {})),
                               scene_counts(train_scenes, val_scenes, test_scenes), captions_per_image, data_seed,
                               limit)

    def _make_split(self, split: str) -> dict:
        scenes, images, seed = render_split(split, self.counts, self.limit, self.data_seed, self.scene_config)
        examples = build_caption_examples(scenes, seed, self.captions_per_image, self.caption_config)
        return {"images": images, "examples": examples, "object_boxes": object_boxes(scenes, self.scene_config)}

    def build(self) -> dict[str, RetrievalSplit]:
        raw, self.vocab, encoded = caption_view(self, "synthetic-captions")
        return {split: RetrievalSplit(tokens, mask, caption_image, images=raw[split]["images"],
                                      extras={"mentioned": [e["mentioned"] for e in raw[split]["examples"]],
                                              "object_boxes": raw[split]["object_boxes"]})
                for split, (_, tokens, mask, caption_image) in encoded.items()}

    def grounding_masks(self, split: str, captions: list[int]) -> torch.Tensor:
        """The bounding boxes of the objects each caption mentions."""
        self.setup()
        data = self.splits[split]
        return mentioned_masks(data.extras, data.caption_image, captions, self.image_size)


def configure_caption_view(module, scene_config: SceneConfig, caption_config: CaptionConfig,
                           counts: dict[str, int], captions_per_image: int, data_seed: int, limit: int | None) -> None:
    """Set the settings a caption view's build reads (see :func:`caption_view`)."""
    module.scene_config, module.caption_config, module.counts = scene_config, caption_config, counts
    module.captions_per_image, module.data_seed, module.limit = captions_per_image, data_seed, limit
    module.image_size = scene_config.image_size


def caption_view(module, name: str) -> tuple[dict, Vocab, dict]:
    """The cached raw splits of a caption view (``module._make_split``), the vocabulary of
    its train captions and per split ``(texts, tokens, mask, caption_image)``. ``module``
    holds the view's settings: ``scene_config``, ``caption_config``, ``counts``, ``limit``,
    ``captions_per_image`` and ``data_seed``."""
    key = {"v": 2, "scene": asdict(module.scene_config), "caption": asdict(module.caption_config),
           "counts": module.counts, "limit": module.limit, "cpi": module.captions_per_image, "seed": module.data_seed}
    raw = {s: cached(f"{name}-{s}", {**key, "split": s}, lambda s=s: module._make_split(s)) for s in SPLIT_OFFSET}
    vocab = Vocab.build(e["caption"] for e in raw["train"]["examples"])
    encoded = {}
    for split, data in raw.items():
        texts = [e["caption"] for e in data["examples"]]
        tokens, mask = vocab.encode_batch(texts)
        encoded[split] = (texts, tokens, mask, torch.tensor([e["image_index"] for e in data["examples"]],
                                                             dtype=torch.long))
    return raw, vocab, encoded


class SyntheticGroundingDataModule(GroundingDataModule):
    """Synthetic phrase grounding: ``captions_per_image`` captions per scene whose phrases name
    objects with exact boxes; the regions are proposals (jittered boxes around every object
    and distractors, :mod:`~alignbench.data.generator.phrases`) with features cropped from
    the pixels (:func:`~alignbench.data.datasets.grounding.crop_features`). ``grounding``
    holds :class:`~alignbench.data.generator.phrases.GroundingConfig` fields."""

    name = "synthetic"

    def __init__(self, train_scenes: PositiveInt = 3000, val_scenes: PositiveInt = 300, test_scenes: PositiveInt = 1000,
                 captions_per_image: PositiveInt = 2, scene: dict | None = None, grounding: dict | None = None,
                 crop: PositiveInt = 8, data_seed: int = 1234, limit: PositiveInt | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scene_config, self.grounding = SceneConfig(**(scene or {})), GroundingConfig(**(grounding or {}))
        self.counts = scene_counts(train_scenes, val_scenes, test_scenes)
        self.captions_per_image, self.crop, self.data_seed, self.limit = captions_per_image, crop, data_seed, limit
        self.image_size = self.scene_config.image_size
        self.visual_dim = 3 * crop * crop

    def _make_split(self, split: str) -> dict:
        scenes, images, seed = render_split(split, self.counts, self.limit, self.data_seed, self.scene_config)
        rng = np.random.default_rng([seed, PHRASE_STREAM])
        examples, proposals = [], []
        for i, scene in enumerate(scenes):
            for c in grounding_captions(scene, rng, self.captions_per_image, self.grounding):
                examples.append({"caption": c["caption"], "image_index": i,
                                 "phrases": [(a, b, scene.objects[o].box) for a, b, o in c["phrases"]]})
            proposals.append(region_proposals(scene, rng, self.image_size, self.grounding))
        boxes = torch.from_numpy(np.stack(proposals))
        return {"images": images, "examples": examples, "boxes": boxes,
                "regions": crop_features(images, boxes, self.crop)}

    def build(self) -> dict[str, GroundingSplit]:
        key = {"v": 1, "scene": asdict(self.scene_config), "grounding": asdict(self.grounding), "counts": self.counts,
               "limit": self.limit, "cpi": self.captions_per_image, "crop": self.crop, "seed": self.data_seed}
        raw = {s: cached(f"synthetic-grounding-{s}", {**key, "split": s}, lambda s=s: self._make_split(s))
               for s in SPLIT_OFFSET}
        self.vocab = Vocab.build(e["caption"] for e in raw["train"]["examples"])
        return {split: grounding_split(data, self.vocab) for split, data in raw.items()}


def grounding_split(raw: dict, vocab: Vocab) -> GroundingSplit:
    """A :class:`GroundingSplit` of a synthetic split's raw examples (one box per phrase)."""
    examples = raw["examples"]
    tokens, mask = vocab.encode_batch([e["caption"] for e in examples])
    phrase_caption, spans, boxes = [], [], []
    for c, e in enumerate(examples):
        for start, end, box in e["phrases"]:
            phrase_caption.append(c), spans.append((start, end)), boxes.append(box)
    words = torch.zeros(len(spans), tokens.shape[1], dtype=torch.bool)
    for p, (start, end) in enumerate(spans):
        words[p, start:end] = True
    n_images, size = raw["images"].shape[0], raw["images"].shape[-1]
    return GroundingSplit(tokens, mask, torch.tensor([e["image_index"] for e in examples], dtype=torch.long),
                          torch.tensor(phrase_caption, dtype=torch.long), words,
                          torch.tensor(boxes, dtype=torch.float32)[:, None, :], torch.ones(len(spans), dtype=torch.long),
                          raw["regions"], raw["boxes"], torch.ones(raw["boxes"].shape[:2], dtype=torch.bool),
                          torch.tensor([[size, size]] * n_images), images=raw["images"])
