"""Where the Hydra configs live, what each config group offers, and the score registry
(``conf/score/``: :func:`list_scores`, :func:`build_score`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import alignbench.conf as _conf_pkg

if TYPE_CHECKING:
    from torch import nn

CONF_DIR = Path(_conf_pkg.__file__).resolve().parent
GROUPS = ("task", "data", "score", "trainer", "preset")


def group_options(group: str, search_path: list[str | Path] | None = None) -> list[str]:
    """Config names available in ``group`` (built-in plus extra search dirs), sorted; a config
    in a subfolder is named by its path (``preset=compare/default/vqa``)."""
    dirs = [Path(p) / group for p in (search_path or [])] + [CONF_DIR / group]
    return sorted({p.relative_to(d).with_suffix("").as_posix() for d in dirs if d.is_dir() for p in d.rglob("*.yaml")})


def score_label(choice: str | None, target: str) -> str:
    """The score's config choice, or its class name when ``score._target_`` points elsewhere."""
    if choice:
        path = CONF_DIR / "score" / f"{choice}.yaml"
        if not path.is_file():  # a choice from a user's search path
            return choice
        from omegaconf import OmegaConf

        if str(OmegaConf.load(path).get("_target_", "")) == target:
            return choice
    return target.rsplit(".", 1)[-1] or "unknown"


def run_label(choice: str | None, target: str, model: dict) -> tuple[str, bool]:
    """The row a run belongs to in a report, and whether it is a baseline: the score's label
    (:func:`score_label`); ``question_only`` for a VQA model that never sees the image
    (``model.use_image=false``, a baseline); ``<score>+scan`` for retrieval with SCAN's
    raw-score treatment (``model.scan_treatment=on``, an ablation)."""
    if model.get("use_image", True) is False:
        return "question_only", True
    label = score_label(choice, target)
    if model.get("scan_treatment", "off") == "on":
        label += "+scan"
    return label, False


def register_resolvers() -> None:
    """``${score_label:<choice>,<target>}`` for run directory names."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("score_label"):
        OmegaConf.register_new_resolver("score_label", lambda choice, target: score_label(choice, str(target)))


register_resolvers()


def _score_dirs(search_path: Iterable[str | Path] = ()) -> list[Path]:
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


DATA_KEYS = ("name", "tasks", "views")  # what the config says about a data set, not arguments of its data module


def _overlay(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict):
            out[key] = _overlay(out[key] if isinstance(out.get(key), dict) else {}, value)
        elif value is not None:
            out[key] = value
    return out


def data_config(data: dict, task: str) -> dict:
    """The data-module config of a resolved ``data`` node: the node Hydra composed (with the
    task's view from ``conf/data_view/``) without the keys that describe the data set.

    Records made before views were composed hold ``data.views.<task>`` plus shared keys that
    override the view when not null; that layout is read too, so ``alignbench analyze`` and
    ``evaluate`` still rebuild those runs exactly."""
    shared = {k: v for k, v in data.items() if k not in DATA_KEYS}
    if "views" not in data:
        return shared
    return _overlay(data["views"][task], shared)
