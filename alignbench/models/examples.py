"""Attention examples saved beside a run's record, for the report's side-by-side heatmaps.

Every score's run saves the same test examples (the first of the test split, whose
order does not depend on the score), so their maps can be compared picture by picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..attention import to_joint
from ..record import ATTENTION_FILE


def region_mass(weights: torch.Tensor, normalization: str, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention mass per region ``[B, Lk]`` from maps ``[B, H, Lq, Lk]``: each map made a
    distribution over (query, key) pairs (:func:`~alignbench.attention.to_joint`), summed
    over queries, averaged over maps. The same marginal for every normalisation."""
    return to_joint(weights.float(), normalization, query_mask).sum(2).mean(1)


def save_attention_examples(run_dir: str | Path, images: torch.Tensor, texts: list[str], mass: torch.Tensor,
                            predictions: list[str] | None = None, truth: torch.Tensor | None = None) -> Path:
    """Write ``images [K, 3, H, W]`` (in [0, 1]), their ``texts``, the region ``mass [K, R]``
    (R = g×g grid cells, row-major), optional ``predictions`` and ground-truth masks
    ``truth [K, H, W]`` to ``attention_examples.npz`` (atomically)."""
    k, regions = mass.shape
    grid = int(round(regions ** 0.5))
    if grid * grid != regions:
        raise ValueError(f"save_attention_examples: {regions} regions are not a square grid")
    arrays = {
        "image": (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
        "text": np.array(texts, dtype=str),
        "attention": mass.detach().float().reshape(k, grid, grid).cpu().numpy(),
    }
    if predictions is not None:
        arrays["prediction"] = np.array(predictions, dtype=str)
    if truth is not None:  # bool [K, H, W]: what each example is about
        arrays["truth"] = truth.detach().cpu().numpy().astype(bool)
    path = Path(run_dir) / ATTENTION_FILE
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path
