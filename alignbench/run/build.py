"""Turning a resolved run config into its parts: data module, task model, trainer settings."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate

from ..config import data_config

__all__ = ["build_parts", "data_config", "rank_zero", "trainer_config"]


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
