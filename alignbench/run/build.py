"""Turning a resolved run config into its parts: data module, task model, trainer settings."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate

DATA_KEYS = ("name", "tasks")  # what the config says about a data set, not arguments of its data module


def data_config(data: dict) -> dict:
    """The data-module config: the composed ``data`` node (with the task's view, see
    ``conf/data_view/``) without the keys that describe the data set."""
    return {k: v for k, v in data.items() if k not in DATA_KEYS}


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
    datamodule = instantiate(data_config(resolved["data"]), seed=int(resolved["seed"]),
                             _convert_="all")
    score = instantiate(resolved["score"], _partial_=True, _convert_="all")  # the models take a score factory
    model = instantiate(resolved["model"], score=score, **datamodule.metadata(), _convert_="all", _recursive_=False)
    return datamodule, model
