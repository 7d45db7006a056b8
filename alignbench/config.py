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
