"""Judging generated images with the offline evaluators, and the sample grid of a run."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from itertools import permutations
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw

from ..data.generator.captions import in_location
from ..data.datasets.t2i import T2ITensors
from .t2i_evaluators import location_cells
from ..files import write_atomic
from ..metrics.entropy import map_entropy
from ..metrics.generation import attribute_accuracy, frechet_distance, r_precision


def merge_parts(parts: list[dict]) -> list[dict]:
    """The evaluation parts of every process as one part, each caption once, in caption order
    (a distributed sampler may give a caption to two processes)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, [{k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in p.items()}
                                          for p in parts])
        parts = [p for shard in gathered for p in shard]
    index = torch.cat([p["caption_index"].cpu() for p in parts])
    order = torch.argsort(index, stable=True)
    keep = order[torch.cat([torch.tensor([True]), index[order][1:] != index[order][:-1]])]
    merged = {k: torch.cat([p[k].cpu() for p in parts])[keep] for k in ("fake", "caption_index", "entropy")}
    return [{**merged, "stages": parts[0]["stages"]}]


def stage_entropy(maps: list[torch.Tensor], word_mask: torch.Tensor, normalization: str) -> torch.Tensor:
    """Normalised entropy ``[B, stages]`` of each stage's region-over-word attention (mean
    over heads), read in the maps' declared ``normalization``."""
    return torch.stack([map_entropy(w, normalization, key_mask=word_mask).mean(1) for w in maps], 1)


def excluded_distractors(split: T2ITensors, caption_index: torch.Tensor) -> torch.Tensor:
    """Pairs ``[2, E]`` (query row, caption) that may not be R-precision distractors: other
    images' captions with the query caption's exact text and, on synthetic scenes, other
    images' captions that are also true of the query's scene (the same objects by colour
    and shape, each in its named location band; sizes are not checked, so this errs on the
    side of leaving a caption out)."""
    by_text: dict[str, list[int]] = defaultdict(list)
    for j, text in enumerate(split.texts):
        by_text[text].append(j)
    pairs = [(n, j) for n, q in enumerate(caption_index.tolist()) for j in by_text[split.texts[q]]]
    if split.objects is not None and split.described is not None:
        by_signature: dict[tuple, list[int]] = defaultdict(list)
        for j, described in enumerate(split.described):
            by_signature[tuple(sorted((c, s) for c, s, _ in described))].append(j)
        colour, shape, centre = split.objects["colour"], split.objects["shape"], split.objects["centre"]
        for n, q in enumerate(caption_index.tolist()):
            row = int(split.caption_image[q])
            objs = [(int(c), int(s), SimpleNamespace(cx=float(x), cy=float(y)))
                    for c, s, (x, y) in zip(colour[row], shape[row], centre[row]) if c >= 0]
            for j in by_signature[tuple(sorted((c, s) for c, s, _ in objs))]:
                if any(all(c == oc and s == os_ and (loc is None or in_location(o, loc, split.image_size))
                           for (c, s, loc), (oc, os_, o) in zip(split.described[j], perm))
                       for perm in permutations(objs)):
                    pairs.append((n, j))
    return torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)


@torch.no_grad()
def _read(images: torch.Tensor, split: T2ITensors, caption_index: torch.Tensor, evaluators: dict,
          caption_feats: torch.Tensor, excluded: torch.Tensor) -> dict[str, float]:
    """R-precision and (with a detector) attribute accuracy of ``images [N, 3, S, S]``."""
    feats = torch.cat([evaluators["matcher"].embed_image(x) for x in images.split(500)])
    candidates = min(100, int(split.caption_image.max()) + 1)  # fewer on tiny splits
    out = {}
    if candidates >= 2:
        try:
            out["r_precision"] = r_precision(feats, caption_feats, split.caption_image, caption_index, candidates,
                                             excluded=excluded)
        except ValueError:  # a tiny split without enough distinct distractors
            out["r_precision"] = float("nan")
    if "detector" in evaluators and split.described is not None:
        obj, col, shp = (torch.cat(t) for t in zip(*(evaluators["detector"](x) for x in images.split(500))))
        grid, size = obj.shape[-1], split.image_size
        objects = [[(c, s, location_cells(loc, grid, size)) for c, s, loc in split.described[int(j)]]
                   for j in caption_index]
        acc = attribute_accuracy(obj.sigmoid(), col, shp, objects)
        out.update({"attribute_acc": acc["attribute_acc"], "object_acc": acc["object_acc"]})
    return out


@torch.no_grad()
def judge(parts: list[dict], split: T2ITensors, evaluators: dict, real_ceiling: bool = False,
          with_fid: bool = False, cache: dict | None = None) -> dict[str, float]:
    """Metrics of the generated images in ``parts`` (dicts with ``fake``, ``entropy``,
    ``caption_index``): ``r_precision``, ``attribute_acc``/``object_acc`` (synthetic),
    ``pixel_l1`` (synthetic), ``attn_entropy`` (percent, and per stage), and with
    ``real_ceiling`` the same evaluators' reading of the real images (``real_*``);
    with ``with_fid`` ``fid_feat`` (Fréchet distance on the matching evaluator's image
    features, not comparable with Inception FID). ``cache`` (one dict per split) keeps the
    caption features and the excluded distractors between calls."""
    fake = torch.cat([p["fake"] for p in parts]).float().cpu()
    caption_index = torch.cat([p["caption_index"] for p in parts]).cpu()
    real = split.images[split.caption_image[caption_index]].float() / 255
    matcher = evaluators["matcher"]
    cache = {} if cache is None else cache  # per split: the evaluators and captions do not change
    if "caption_feats" not in cache:
        cache["caption_feats"] = torch.cat([matcher.embed_caption(t, m) for t, m in
                                            zip(split.captions.split(1000), split.caption_mask.split(1000))])
    if not torch.equal(cache.get("caption_index", torch.empty(0)), caption_index):
        cache["caption_index"], cache["excluded"] = caption_index, excluded_distractors(split, caption_index)
    caption_feats, excluded = cache["caption_feats"], cache["excluded"]
    values = _read(fake, split, caption_index, evaluators, caption_feats, excluded)
    entropy = torch.cat([p["entropy"] for p in parts]).cpu() * 100  # [N, stages]
    values["attn_entropy"] = float(entropy.mean())
    for k, res in enumerate(parts[0]["stages"]):
        values[f"attn_entropy_{res}px"] = float(entropy[:, k].mean())
    if split.objects is not None:
        values["pixel_l1"] = float((fake - real).abs().mean())
    if real_ceiling:
        values.update({f"real_{k}": v for k, v in _read(real, split, caption_index, evaluators, caption_feats,
                                                                  excluded).items()})
    if with_fid:
        values["fid_feat"] = frechet_distance(real, fake, matcher.image_features, chunk=500)
    return values


def save_sample_grid(parts: list[dict], split: T2ITensors, path: Path, examples: int = 12, scale: int = 4) -> None:
    """PNG of the first ``examples`` evaluation captions: caption text, real image, generated image."""
    fake = torch.cat([p["fake"] for p in parts])[:examples].float().cpu()
    caption_index = torch.cat([p["caption_index"] for p in parts])[:examples].cpu()
    size = split.image_size * scale
    text_w, row_h = 360, max(size, 64) + 8
    canvas = Image.new("RGB", (text_w + 2 * (size + 8), 20 + row_h * len(fake)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "caption", fill="black")
    draw.text((text_w, 4), "real", fill="black")
    draw.text((text_w + size + 8, 4), "generated", fill="black")

    def tile(x: torch.Tensor) -> Image.Image:
        arr = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(np.ascontiguousarray(arr)).resize((size, size), Image.NEAREST)

    for r, (img, j) in enumerate(zip(fake, caption_index)):
        y = 20 + r * row_h
        text = "\n".join(textwrap.wrap(split.texts[int(j)], 56)[:5])
        draw.multiline_text((4, y), text, fill="black", spacing=2)
        canvas.paste(tile(split.images[split.caption_image[j]].float() / 255), (text_w, y))
        canvas.paste(tile(img), (text_w + size + 8, y))
    write_atomic(path, canvas.save)


__all__ = ["judge", "save_sample_grid", "stage_entropy"]
