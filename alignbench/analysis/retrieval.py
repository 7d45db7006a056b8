"""Interpretability of a trained retrieval model's attention (captions attending over
their own image's regions): grounding and faithfulness.

On a gallery of the first ``examples`` test images and all their captions, each
caption's attention on its own image is reduced to mass per region as for VQA
(:func:`~alignbench.metrics.grounding.region_mass`). Grounding: pointing game and mass on
what the caption mentions, from the data module's ``grounding_masks``: pixel masks
``[N, H, W]`` (the synthetic objects' boxes) become each grid cell's covered fraction
(:func:`~alignbench.metrics.grounding.region_cover`); region-level truth ``[N, R]`` (e.g.
Flickr30k Entities boxes matched to region features) is the cover as it is. Captions
about nothing in view are left out. Faithfulness, with the caption's own image losing
regions (hidden from the attention) while every other image stays whole: text-to-image
R@1 at the deletion fractions in attention and in random order (``aopc_gain``), the flip
rate of the top-1 image when the single most-attended region is hidden, and on
``costly_examples`` captions Kendall τ between attention and the integrated-gradients /
leave-one-out importance of each region for the caption-image similarity (magnitudes).
"""

from __future__ import annotations

import time

import torch

from ..metrics.grounding import DELETION_FRACTIONS, aopc, kendall_tau, region_cover, region_mass
from ..models.matching import chunked_similarity
from .protocol import deletion_curves, deletion_orders, grounding_measures, hide_top


def _own_similarity(matcher, words, word_mask, regions, region_mask, chunk: int = 25) -> torch.Tensor:
    """Similarity of each caption ``j`` with its own image ``regions[j]`` (one row per
    caption), region mask ``[Nc, R]`` applied; ``[Nc]``."""
    out = []
    for i in range(0, len(words), chunk):
        sl = slice(i, i + chunk)
        sims, _ = matcher(words[sl], word_mask[sl], regions[sl], None if region_mask is None else region_mask[sl])
        out.append(sims.diagonal())  # [images, captions] of the chunk: its diagonal pairs each caption with its image
    return torch.cat(out)


def grounding_cover(truth: torch.Tensor | None, regions: int) -> torch.Tensor | None:
    """Ground-truth cover ``[N, R]`` of ``grounding_masks`` output: region-level truth
    ``[N, R]`` as floats; pixel masks ``[N, H, W]`` pooled onto the cells of a square grid
    of R regions; None without truth or for pixel masks when R is not a square."""
    if truth is None:
        return None
    if truth.dim() == 2:
        if truth.shape[1] != regions:
            raise ValueError(f"grounding_masks gave region-level truth for {truth.shape[1]} regions, "
                             f"but the images have {regions}")
        return truth.float()
    grid = int(round(regions ** 0.5))
    return region_cover(truth, grid) if grid * grid == regions else None


def _t2i_hits(own: torch.Tensor, others_best: torch.Tensor) -> torch.Tensor:
    return (own > others_best).float()  # a tie counts against the caption


@torch.no_grad()
def _encode(model, datamodule, split: str, images: int):
    data = datamodule.splits[split]
    batch = data.eval_batch(list(range(min(images, data.n_images))))
    regions, region_mask = model.encode_images(batch)
    words = model.text(batch["caption"])
    return regions, region_mask, words, batch["caption_mask"], batch["caption_image"]


def analyze_retrieval(model, datamodule, split: str = "test", examples: int = 200, costly_examples: int = 32,
                      ig_steps: int = 16, seed: int = 0) -> dict:
    """The interpretability measures of a :class:`RetrievalModule` on ``split`` (see the
    module docstring); the gallery is the first images whose captions number about
    ``examples``."""
    from captum.attr import IntegratedGradients

    start = time.perf_counter()
    model.eval()
    matcher = model.matcher
    data = datamodule.splits[split]
    images = max(2, round(examples * data.n_images / len(data.captions)))
    regions, region_mask, words, word_mask, caption_image = _encode(model, datamodule, split, images)
    with torch.no_grad():
        sims = chunked_similarity(matcher, words, word_mask, regions, region_mask)  # [Ni, Nc]
        own_regions = regions[caption_image]
        own_mask = None if region_mask is None else region_mask[caption_image]
        weights = matcher.pair_attention(words, word_mask, own_regions, own_mask)
    mass = region_mass(weights, matcher.normalization, word_mask).float()
    cols = torch.arange(sims.shape[1])
    others = sims.clone()
    others[caption_image, cols] = float("-inf")
    others_best = others.max(0).values  # each caption's best other image (stays whole)
    metrics: dict[str, float] = {}
    truth = datamodule.grounding_masks(split, list(range(len(caption_image)))) \
        if hasattr(datamodule, "grounding_masks") else None
    cover = grounding_cover(truth, mass.shape[1])
    about = None if cover is None else cover.sum(1) > 0
    if about is not None and about.any():
        for name, values in grounding_measures(mass[about], cover[about]).items():
            metrics[f"test/{name}"] = float(values.mean())
    # padded regions come last in both orders and are never counted (see analysis.vqa)
    orders = deletion_orders(mass, torch.Generator().manual_seed(seed), own_mask)

    def r1(keep: torch.Tensor, _) -> float:
        own = _own_similarity(matcher, words, word_mask, own_regions, keep)
        return float(_t2i_hits(own, others_best).mean() * 100)

    with torch.no_grad():
        curves = deletion_curves(orders, own_mask, r1)
        top = sims.argmax(0)
        keep = hide_top(orders["attention"], own_mask)  # the most-attended real region hidden
        own = _own_similarity(matcher, words, word_mask, own_regions, keep)
        # the top-1 image changes when the own image was top-1 and now falls below the best other, or vice versa
        was_own = top == caption_image
        now_own = own > others_best
        metrics["test/flip_rate"] = float((was_own != now_own).float().mean() * 100)
    metrics["test/aopc_gain"] = aopc(curves["attention"]) - aopc(curves["random"])

    k = min(costly_examples, len(caption_image))
    if k:
        sub = slice(0, k)
        w, wm, v = words[sub].detach(), word_mask[sub], own_regions[sub].detach()

        def pair_similarity(regions_in, words_in, mask_in):
            return _own_similarity(matcher, words_in, mask_in, regions_in, None, chunk=1)

        attr = IntegratedGradients(pair_similarity).attribute(
            v, baselines=torch.zeros_like(v), additional_forward_args=(w, wm), n_steps=ig_steps)
        ig = attr.sum(-1).detach().abs()
        with torch.no_grad():
            full = _own_similarity(matcher, w, wm, v, None)
            loo = torch.empty(k, v.shape[1])
            for r in range(v.shape[1]):
                keep = torch.ones(k, v.shape[1], dtype=torch.bool)
                keep[:, r] = False
                loo[:, r] = (full - _own_similarity(matcher, w, wm, v, keep)).abs()
        for name, importance in (("tau_ig", ig), ("tau_loo", loo)):
            tau = kendall_tau(mass[sub], importance)
            tau = tau[~torch.isnan(tau)]
            if len(tau):
                metrics[f"test/{name}"] = float(tau.mean())
    return {"metrics": metrics, "deletion": {"fractions": list(DELETION_FRACTIONS), **curves,
                                             "metric": "t2i_r1", "examples": int(len(caption_image)),
                                             "images": int(len(regions)),
                                             "costly_examples": k},
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def attention_examples(model, datamodule, k: int = 8, split: str = "test"):
    """The first ``k`` test captions' attention on their own image, from the first test
    batch, for the report's side-by-side maps: images, captions, attention mass per region,
    no predictions, ground-truth masks (None without truth); None without images or vocab."""
    batch = next(iter(datamodule.test_dataloader()))
    if "image" not in batch or not hasattr(datamodule, "vocab"):
        return None
    k = min(k, len(batch["caption"]))
    rows = batch["caption_image"][:k] - batch["image_index"][0]  # eval batches hold consecutive images
    if (rows < 0).any() or (rows >= len(batch["image_index"])).any():
        return None
    regions, region_mask = model.encode_images(batch)
    words, mask = model.text(batch["caption"][:k]), batch["caption_mask"][:k]
    weights = model.matcher.pair_attention(words, mask, regions[rows],
                                           None if region_mask is None else region_mask[rows])
    texts = [" ".join(datamodule.vocab.itos[t] for t in batch["caption"][i][mask[i]].tolist()) for i in range(k)]
    truth = None
    if hasattr(datamodule, "grounding_masks"):
        data = datamodule.splits[split]
        captions = torch.cat([data.captions_of(int(i)) for i in batch["image_index"]])[:k]
        truth = datamodule.grounding_masks(split, captions.tolist())
    return batch["image"][rows], texts, region_mass(weights, model.matcher.normalization, mask), None, truth
