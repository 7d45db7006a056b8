"""Turning a resolved run config into its parts: data module, task model, trainer settings."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from ..config import data_config

__all__ = ["PairedScoreFactory", "build_parts", "data_config", "rank_zero", "trainer_config"]

SCORE_STREAM = 0x5C0E  # seed tag of the score parameters' own random stream


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


class PairedScoreFactory:
    """A score factory whose every call draws from a random stream of its own.

    The task models build their score modules among their shared layers (text-to-image
    builds one per generator stage), so without this a score with parameters would shift
    the global random stream and every shared layer built after it would start from other
    weights than under a parameter-free score. Call ``i`` of the factory runs under
    ``fork_rng`` seeded from ``(seed, SCORE_STREAM, i)``: the shared layers of one seed
    start from the same weights whatever the score, and the training data order (seeded
    in the data modules by the run seed) is the same too, so per-seed differences between
    scores are paired.
    """

    def __init__(self, factory: Callable[..., Any], seed: int) -> None:
        self.factory, self.seed, self.calls = factory, int(seed), 0

    def __call__(self, *args, **kwargs):
        state = np.random.SeedSequence([self.seed, SCORE_STREAM, self.calls]).generate_state(2, dtype=np.uint32)
        self.calls += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
            return self.factory(*args, **kwargs)


def build_parts(resolved: dict) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The data module and task model of a resolved run config (seeded by its ``seed``)."""
    pl.seed_everything(int(resolved["seed"]), workers=True, verbose=False)
    datamodule = instantiate(data_config(resolved["data"], resolved["task"]["name"]), seed=int(resolved["seed"]),
                             _convert_="all")
    # the models take a score factory; it builds every score module on a stream of its own
    score = PairedScoreFactory(instantiate(resolved["score"], _partial_=True, _convert_="all"), int(resolved["seed"]))
    model = instantiate(resolved["model"], score=score, **datamodule.metadata(), _convert_="all", _recursive_=False)
    return datamodule, model
