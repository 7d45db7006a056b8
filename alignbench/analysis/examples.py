"""Attention examples saved beside a run's record, for the report's side-by-side heatmaps.

Every score's run saves the same test examples (the first of the test split, whose
order does not depend on the score), so their maps can be compared picture by picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..files import ATTENTION_FILE, write_atomic


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
    return write_atomic(Path(run_dir) / ATTENTION_FILE, lambda tmp: np.savez_compressed(tmp, **arrays))
