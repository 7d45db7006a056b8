"""Interpretability of a trained text-to-image model's attention: each generated region
attends over the caption's words, so the evidence is words and the ground truth is where
each described object lies.

On the first ``examples`` evaluation captions of the test split (each image's first
caption), generated with the run's fixed evaluation noise (so every score draws from the
same noise):

* grounding (data with object truth: the synthetic scenes): for each object a caption
  describes with a colour and a shape, its colour word's and shape word's attention
  columns (positions found from the caption grammar, :func:`phrase_words`, synonyms
  included) each become a distribution over a stage's regions, are sum-pooled onto the
  coarsest stage's grid and averaged over stages and the two words
  (:func:`word_region_maps`); per stage too, each on its own grid (``pointing_acc_<res>px``,
  ``pointing_chance_<res>px``, ``attn_mass_gt_<res>px``: the stages can do opposite
  things). Pointing game (the most-attended cell touches the object's box)
  and attention mass inside the box, against the box in the *real render*: the generated
  image need not draw the object exactly there, but the synthetic T2I scenes are laid out
  so that the caption pins the layout down (``SceneConfig.layout="grid"``: a 3×3 grid with
  small jitter; with ``"free"`` placement only the location bands do), so the render's box
  is where the words should be drawn. Chance: a random cell
  (``pointing_chance``), uniform attention (the box's area share). Boxes are the data's
  ``objects["boxes"]``. Counts are per described object.
* faithfulness over words: the attention mass of each word (:func:`word_mass`: each
  stage's map made a distribution over (region, word) pairs, summed over regions,
  averaged over stages). Words are hidden *from the attention* (the attention's word
  mask; the sentence feature stays that of the whole caption, so the curves measure what
  flows through the attention) in attention order and in random order at the deletion
  fractions of each caption's valid words (at least one stays), and the image is
  generated again. The metric is per example: the matching evaluator's cosine similarity
  (× 100) between the generated image and its true caption (``metric``:
  ``caption_similarity``; per-example values average better on few examples than
  R-precision). ``aopc_gain``: AOPC of attention order minus random order. ``flip_rate``:
  the percent of examples whose evaluator top-1 caption, among the analysed examples'
  evaluation captions (own caption included), changes when the single most-attended word
  is hidden.
* on the first ``costly_examples``: Kendall τ-b over each caption's valid words between
  attention mass and the importance of each word for that similarity (the evaluator's
  caption embedding fixed): integrated gradients (captum) on the word features the
  attention reads (zero baseline, sentence feature fixed; |Σ over the feature
  dimensions|, as for VQA and retrieval), and leave-one-out (|change| when the word is
  hidden from the attention). A word's feature also carries its left context (the
  caption GRU is forward only).

Cost: 12 generations per example (one, 2 × 5 deletion fractions, one flip), batched by
caption length (less padding), plus ``ig_steps`` forward and backward passes and one
generation per word on the costly ones. Measured for the defaults (500/64/16) with the
default generator on one CPU thread: about 17 s with ``scaled_dot``, 22 s with ``ban``,
43 s with ``additive`` (measured before the additive score was computed in cache-sized
blocks, which made its text-to-image training step about 3× faster); nothing is subsampled.
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from ..data.datasets.text import tokenize
from ..models.t2i_evaluators import eval_noise_table, load_evaluators
from ..metrics.grounding import DELETION_FRACTIONS, aopc, kendall_tau, region_cover, region_mass
from ..models.generation import masked_mean
from .protocol import deletion_curves, deletion_orders, grounding_measures, hide_top
from .t2i_truth import grounding_targets

BATCH = 100  # captions generated at once
COSTLY_CHUNK = 16  # captions per integrated-gradients batch (× ig_steps images)


def word_mass(maps: list[torch.Tensor], normalization: str) -> torch.Tensor:
    """Attention mass per word ``[B, L]`` from the stage maps ``[B, heads, H·W, L]`` in their
    declared ``normalization``: each map as a distribution over (region, word) pairs, summed
    over regions, averaged over heads, then over stages."""
    return torch.stack([region_mass(m, normalization, None) for m in maps]).mean(0)


def stage_word_maps(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Where each word is drawn at each stage, ``[B, L, H·W]`` per stage: the word's column
    (mean over heads) normalised over the stage's regions. Padded words give zero rows."""
    out = []
    for m in maps:
        col = m.float().mean(1).transpose(1, 2)  # [B, L, HW]
        out.append(col / col.sum(-1, keepdim=True).clamp_min(1e-12))
    return out


def word_region_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Where each word is drawn over all stages, ``[B, L, G·G]``: each stage's
    :func:`stage_word_maps` sum-pooled onto the coarsest stage's G×G grid (row-major) and
    averaged over stages."""
    per_stage = stage_word_maps(maps)
    sizes = [int(round(m.shape[-1] ** 0.5)) for m in per_stage]
    grid = min(sizes)
    out = []
    for col, side in zip(per_stage, sizes):
        b, length = col.shape[:2]
        pooled = F.adaptive_avg_pool2d(col.reshape(b * length, 1, side, side), grid).reshape(b, length, -1)
        out.append(pooled / pooled.sum(-1, keepdim=True).clamp_min(1e-12))
    return torch.stack(out).mean(0)


def object_grounding(where: torch.Tensor,
                     targets: list[list[tuple[int, int, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """Grounding per described object, in percent: ``where [B, L, G·G]`` (:func:`word_region_maps`)
    and per example the ``(colour position, shape position, box mask [S, S])`` of its
    objects (:func:`~alignbench.analysis.t2i_truth.grounding_targets`). The object's
    distribution is the mean of its two words' distributions; returns ``pointing_acc``,
    ``pointing_chance``, ``attn_mass_gt`` and ``attn_mass_chance``, each ``[objects]``."""
    grid = int(round(where.shape[-1] ** 0.5))
    dists, covers = [], []
    for i, objects in enumerate(targets):
        for c_pos, s_pos, box in objects:
            dists.append((where[i, c_pos] + where[i, s_pos]) / 2)
            covers.append(region_cover(box[None], grid)[0])
    if not dists:
        return {}
    return grounding_measures(torch.stack(dists), torch.stack(covers))


class _Judge:
    """The evaluator's reading of generated images: similarity (× 100) with each example's
    true caption and the top-1 among the analysed examples' captions."""

    def __init__(self, matcher, split, caption_ids: torch.Tensor) -> None:
        self.matcher = matcher
        with torch.no_grad():
            self.captions = matcher.embed_caption(split.captions[caption_ids], split.caption_mask[caption_ids])

    def __call__(self, images: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.matcher.embed_image(images)
        return 100 * (feats * self.captions[rows]).sum(-1), (feats @ self.captions.T).argmax(1)


def _costly(model, judge, words, sentence, mask, noise, rows, mass, ig_steps: int) -> dict[str, list[float]]:
    """Kendall τ per example between word mass and IG / leave-one-out importance."""
    from captum.attr import IntegratedGradients

    def similarity(w, s, m, z, r):
        return judge(model.generator(s, w, m, z)[0], r)[0]

    with torch.enable_grad():
        attr = IntegratedGradients(similarity).attribute(
            words, baselines=torch.zeros_like(words), additional_forward_args=(sentence, mask, noise, rows),
            n_steps=ig_steps)
    ig = attr.sum(-1).detach().abs()
    with torch.no_grad():
        full = similarity(words, sentence, mask, noise, rows)
        loo = torch.zeros_like(ig)
        for p in range(words.shape[1]):
            has = mask[:, p].nonzero().squeeze(1)  # only the captions that have a word there
            keep = mask[has].clone()
            keep[:, p] = False
            loo[has, p] = (full[has] - similarity(words[has], sentence[has], keep, noise[has], rows[has])).abs()
    taus: dict[str, list[float]] = {"tau_ig": [], "tau_loo": []}
    for i in range(len(words)):
        valid = mask[i]
        for name, importance in (("tau_ig", ig), ("tau_loo", loo)):
            tau = float(kendall_tau(mass[i][valid][None], importance[i][valid][None])[0])
            if tau == tau:  # NaN: constant attention or importance
                taus[name].append(tau)
    return taus


def _by_length(data, ids: torch.Tensor, rows: list[int], size: int):
    """Batches of at most ``size`` analysed examples (positions ``rows`` into ``ids``), of
    similar caption length (less padding to attend over), as ``(rows [b], batch)``."""
    rows = sorted(rows, key=lambda r: (int(data.caption_mask[ids[r]].sum()), r))
    for i in range(0, len(rows), size):
        chunk = torch.tensor(rows[i:i + size])
        yield chunk, data.batch(ids[chunk].tolist())


def analyze_t2i(model, datamodule, split: str = "test", examples: int = 500, costly_examples: int = 64,
                ig_steps: int = 16, seed: int = 0, batch_size: int = BATCH) -> dict:
    """The interpretability measures of a :class:`~alignbench.models.t2i.T2IModule` on
    ``split`` (see the module docstring); ``model.evaluators`` must be loaded.

    Returns ``{"metrics": {...}, "deletion": {...}, "seconds": float}``; percentages
    except τ (in [-1, 1]) and the similarity curves and ``aopc_gain`` (cosine × 100).
    """
    start = time.perf_counter()
    model.eval()
    data = datamodule.splits[split]
    ids = datamodule.eval_captions(split)[:examples]
    if not len(ids):
        return {"metrics": {}, "deletion": {}, "seconds": 0.0}
    noise_table = eval_noise_table(len(data.captions), model.hparams.noise_dim, split)
    judge = _Judge(model.evaluators["matcher"], data, ids)
    truth = grounding_targets(data, ids.tolist())
    generator = torch.Generator().manual_seed(seed)
    curves = {"attention": [0.0] * len(DELETION_FRACTIONS), "random": [0.0] * len(DELETION_FRACTIONS)}
    values: dict[str, list[torch.Tensor]] = {k: [] for k in ("pointing_acc", "pointing_chance", "attn_mass_gt",
                                                             "attn_mass_chance", "flip_rate")}

    def encode(batch, rows):
        mask, noise = batch["caption_mask"], noise_table[ids[rows]]
        words = model.text(batch["caption"])
        sentence = masked_mean(words, mask)
        image, maps = model.generator(sentence, words, mask, noise)
        return words, sentence, mask, noise, image, maps

    for rows, batch in _by_length(data, ids, list(range(len(ids))), batch_size):
        with torch.no_grad():
            words, sentence, mask, noise, image, maps = encode(batch, rows)
            mass = word_mass(maps, model.generator.normalization)
            base, top = judge(image, rows)
            orders = deletion_orders(mass, generator, mask)

            def similarity(keep: torch.Tensor, fraction: float) -> float:
                value = base if fraction == 0 else judge(model.generator(sentence, words, keep, noise)[0], rows)[0]
                return float(value.sum())

            for name, points in deletion_curves(orders, mask, similarity).items():
                curves[name] = [a + b for a, b in zip(curves[name], points)]
            keep = hide_top(orders["attention"], mask)  # the most-attended word hidden
            flipped = judge(model.generator(sentence, words, keep, noise)[0], rows)[1] != top
            values["flip_rate"].append(flipped.float() * 100)
            where = word_region_maps(maps)
            per_stage = stage_word_maps(maps)
        targets = [truth[r] for r in rows.tolist()]
        for name, value in object_grounding(where, targets).items():
            values[name].append(value)
        for stage_map in per_stage:  # each stage on its own grid: the stages can disagree
            side = int(round(stage_map.shape[-1] ** 0.5))
            for name, value in object_grounding(stage_map, targets).items():
                if name in ("pointing_acc", "pointing_chance", "attn_mass_gt"):
                    values.setdefault(f"{name}_{side}px", []).append(value)
    taus: dict[str, list[float]] = {"tau_ig": [], "tau_loo": []}
    costly = min(costly_examples, len(ids))
    for rows, batch in _by_length(data, ids, list(range(costly)), COSTLY_CHUNK):
        with torch.no_grad():
            words, sentence, mask, noise, _, maps = encode(batch, rows)
        mass = word_mass(maps, model.generator.normalization)
        for name, tau in _costly(model, judge, words, sentence, mask, noise, rows, mass, ig_steps).items():
            taus[name] += tau
    n = len(ids)
    curves = {name: [v / n for v in points] for name, points in curves.items()}
    metrics = {f"test/{k}": float(torch.cat(v).mean()) for k, v in values.items() if v}
    metrics["test/aopc_gain"] = aopc(curves["attention"]) - aopc(curves["random"])
    metrics.update({f"test/{k}": sum(v) / len(v) for k, v in taus.items() if v})
    return {"metrics": metrics, "deletion": {"fractions": list(DELETION_FRACTIONS), **curves,
                                             "metric": "caption_similarity", "deleted": "words", "examples": n,
                                             "objects": sum(len(t) for t in truth), "costly_examples": costly},
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def attention_examples(model, datamodule, k: int = 8, split: str = "test"):
    """The first ``k`` evaluation captions for the report's side-by-side maps: the real
    renders ``[k, 3, S, S]`` (the same for every score), the captions (with the words
    shown), where those words are drawn ``[k, G·G]`` (:func:`word_region_maps`) — the
    first described object's colour and shape words, or without object truth every valid
    word on average — and that object's box masks ``[k, S, S]`` (None without truth)."""
    data = datamodule.splits[split]
    ids = datamodule.eval_captions(split)[:k]
    batch = data.batch(ids.tolist())
    noise = eval_noise_table(len(data.captions), model.hparams.noise_dim, split)[ids].to(model.device)
    mask = batch["caption_mask"].to(model.device)
    words = model.text(batch["caption"].to(model.device))
    _, maps = model.generator(masked_mean(words, mask), words, mask, noise)
    where, mask = word_region_maps(maps).cpu(), mask.cpu()
    texts, mass, truth = [], [], []
    for i, objects in enumerate(grounding_targets(data, ids.tolist())):
        text = data.texts[int(ids[i])]
        if objects:
            c_pos, s_pos, box = objects[0]
            tokens = tokenize(text)
            texts.append(f"{text} [{tokens[c_pos]} {tokens[s_pos]}]")
            mass.append((where[i, c_pos] + where[i, s_pos]) / 2)
            truth.append(box)
        else:
            texts.append(text)
            mass.append(where[i][mask[i]].mean(0))
            truth.append(torch.zeros(data.image_size, data.image_size, dtype=torch.bool))
    truth_masks = torch.stack(truth)
    return batch["image"], texts, torch.stack(mass), None, truth_masks if truth_masks.any() else None


def load_model_evaluators(model, datamodule) -> None:
    """Give a model rebuilt from a checkpoint the data set's offline evaluators (cached)."""
    if not model.evaluators:
        model.evaluators = load_evaluators(datamodule, model.hparams.evaluator_epochs)
