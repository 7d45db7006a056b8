"""Attention alignment score functions.

The config group ``conf/score/`` is the registry: one YAML per score with a
``_target_`` class. :func:`build_score` composes such a file and instantiates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from torch import nn

from .additive import AdditiveScore
from .ban import BANScore, BilinearPooling
from .base import NORMALIZATIONS, AlignmentScore, LearnedTemperature, cross_logits
from .coattention import CoAttentionMaxPoolScore, CoAttentionScore
from .cosine import CosineScore
from .dot import DotScore, ScaledDotScore
from .general import ActivatedGeneralScore, BiasedGeneralScore, GeneralScore
from .uniform import UniformScore

__all__ = [
    "AlignmentScore", "NORMALIZATIONS", "DotScore", "ScaledDotScore", "GeneralScore",
    "BiasedGeneralScore", "ActivatedGeneralScore", "AdditiveScore", "CosineScore",
    "CoAttentionScore", "CoAttentionMaxPoolScore", "UniformScore", "BANScore", "BilinearPooling",
    "LearnedTemperature", "build_score", "list_scores", "score_config_path", "cross_logits",
]


def _score_dirs(search_path: Iterable[str | Path] = ()) -> list[Path]:
    from ..config import CONF_DIR

    return [Path(p) / "score" for p in search_path] + [CONF_DIR / "score"]


def list_scores(search_path: Iterable[str | Path] = ()) -> list[str]:
    """Names of every score config in ``conf/score/`` (and ``<dir>/score/`` for each extra dir)."""
    names = {p.stem for d in _score_dirs(search_path) if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def score_config_path(name: str, search_path: Iterable[str | Path] = ()) -> Path:
    """Path of the YAML for score ``name``; earlier search dirs shadow the built-in group."""
    for directory in _score_dirs(search_path):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise ValueError(f"unknown score {name!r}; available: {', '.join(list_scores(search_path))}")


def build_score(name: str, q_dim: int, k_dim: int, search_path: Iterable[str | Path] = (), **overrides) -> nn.Module:
    """Compose ``conf/score/<name>.yaml`` with ``overrides`` and instantiate it.

    ``search_path`` adds config dirs (each holding a ``score/`` folder) searched before
    the built-in one, like Hydra's ``hydra.searchpath``. Raises ``ValueError`` naming the
    available scores when ``name`` is unknown.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    search_path = list(search_path)
    cfg = OmegaConf.load(score_config_path(name, search_path))
    cfg.pop("defaults", None)
    cfg = OmegaConf.merge(cfg, OmegaConf.create(overrides))
    try:
        return instantiate(cfg, q_dim=q_dim, k_dim=k_dim, _convert_="all")
    except InstantiationException as err:  # surface the score's own message
        if isinstance(err.__cause__, (ValueError, TypeError)):
            raise ValueError(f"score {name!r}: {err.__cause__}") from err.__cause__
        raise
