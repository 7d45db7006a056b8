"""Turning a resolved run config into its parts: data module, task model, trainer settings."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate

DATA_KEYS = ("name", "tasks", "views")


def _overlay(base: dict, top: dict) -> dict:
    """``base`` with every non-null value of ``top``; nested dicts are overlaid key by key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict):
            out[key] = _overlay(out[key] if isinstance(out.get(key), dict) else {}, value)
        elif value is not None:
            out[key] = value
    return out


def data_config(data: dict, task: str) -> dict:
    """The data-module config of ``task``: the task's view, overridden by the non-null
    shared keys (nested ones too: ``data.scene.max_objects=3`` changes every view)."""
    shared = {k: v for k, v in data.items() if k not in DATA_KEYS}
    if "views" not in data:
        return shared
    return _overlay(data["views"][task], shared)


def rank_zero() -> bool:
    """Whether this is the process that writes records (global rank 0 under DDP)."""
    from pytorch_lightning.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def trainer_config(trainer: dict, model: pl.LightningModule) -> dict:
    """The trainer settings for ``model``: a manually optimised model (a GAN's two
    optimisers) clips its own gradients, and under DDP leaves each step's other network
    unused, so DDP must look for unused parameters."""
    out = dict(trainer)
    if not model.automatic_optimization:
        out["gradient_clip_val"] = None
        if out.get("strategy") == "ddp":
            out["strategy"] = "ddp_find_unused_parameters_true"
    return out


def build_parts(resolved: dict) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The data module and task model of a resolved run config (seeded by its ``seed``)."""
    pl.seed_everything(int(resolved["seed"]), workers=True, verbose=False)
    datamodule = instantiate(data_config(resolved["data"], resolved["task"]["name"]), seed=int(resolved["seed"]),
                             _convert_="all")
    score = instantiate(resolved["score"], _partial_=True, _convert_="all")  # the models take a score factory
    model = instantiate(resolved["model"], score=score, **datamodule.metadata(), _convert_="all", _recursive_=False)
    return datamodule, model
