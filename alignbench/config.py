"""Where the Hydra configs live and what each config group offers."""

from __future__ import annotations

from pathlib import Path

import alignbench.conf as _conf_pkg

CONF_DIR = Path(_conf_pkg.__file__).resolve().parent
GROUPS = ("task", "data", "score", "trainer", "preset")


def group_options(group: str, search_path: list[str | Path] | None = None) -> list[str]:
    """Config names available in ``group`` (built-in plus extra search dirs), sorted."""
    dirs = [Path(p) / group for p in (search_path or [])] + [CONF_DIR / group]
    return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})


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
