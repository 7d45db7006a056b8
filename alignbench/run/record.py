"""Run records: one ``run.json`` per run, written atomically.

The results layer reads these records and nothing else. Fields: ``task``, ``data``,
``score`` (config choice, or the class name when ``score._target_`` was overridden),
``seed``, ``status``, ``error``, ``metrics`` (flat dict of final test metrics),
``history`` (validation metrics per epoch), ``params``, ``score_params``, ``wall_seconds``,
``train_seconds``, ``epochs`` (trained, fewer than ``trainer.max_epochs`` when early
stopping ended the run: then ``stopped_early``), ``config`` (resolved), ``config_hash``,
``versions``, ``code_version`` (:func:`code_version`) and ``started``/``finished`` (UTC,
ISO 8601). A run with an interpretability analysis adds ``analysis`` (deletion curves),
``analysis_seconds`` and ``analysis_metrics`` (which of ``metrics`` the analysis gave); one
analysed again from its checkpoint adds ``analysis_code_version``.

``status`` is ``running`` (rewritten after every epoch), ``completed`` (tested and
analysed), ``failed`` (``error`` and ``traceback`` say why) or ``interrupted`` (stopped by
Ctrl-C or SIGTERM; like a ``running`` record left by a killed process, the same command
resumes it from ``checkpoints/last.ckpt``). A record holds no absolute path: the files of a
run (checkpoints, attention examples, samples) are found beside it, so a results folder can
be moved, shared or committed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from ..files import RECORD_NAME, write_json_atomic

__all__ = ["RECORD_NAME", "BUILD_INFO", "code_version", "config_hash", "git_state", "library_versions", "read_record",
           "recorded_config", "write_json_atomic"]

BUILD_INFO = "BUILD_INFO.json"  # written into the package by a wheel build (setup.py): the commit it was built from
# what makes up the code of a run, relative to the repository (records and reports under experiments/ do not)
CODE_PATHS = ("alignbench", "conf", ":(glob)experiments/*.yaml", "pyproject.toml", "setup.py")

# data settings read by the interpretability analysis only (grounding truth), not by training
ANALYSIS_DATA = ("entities_path", "karpathy_json")
# keys that change how a run is shown or analysed, not what its training computes
HASH_EXCLUDE = {("trainer", "enable_progress_bar"), ("trainer", "enable_model_summary"), ("output_root",),
                ("skip_completed",), ("analysis",), *(("data", key) for key in ANALYSIS_DATA)}


def recorded_config(resolved: dict) -> dict:
    """The resolved config as a record keeps it: without ``output_root`` (where runs go on
    the machine that made it; the record's own folder says where it is)."""
    return {k: v for k, v in resolved.items() if k != "output_root"}


def _strip(config: Any, prefix: tuple = ()) -> Any:
    if isinstance(config, dict):
        return {k: _strip(v, prefix + (k,)) for k, v in config.items() if prefix + (k,) not in HASH_EXCLUDE}
    if isinstance(config, list):
        return [_strip(v, prefix) for v in config]
    return config


def _inert(config: dict) -> dict:
    """``config`` without settings that change nothing when off (early stopping without a
    patience, no epoch floor), so adding such an option keeps earlier runs' hashes."""
    out = dict(config)
    if (out.get("early_stopping") or {}).get("patience") is None:
        out.pop("early_stopping", None)
    if isinstance(out.get("trainer"), dict) and out["trainer"].get("min_epochs") is None:
        out["trainer"] = {k: v for k, v in out["trainer"].items() if k != "min_epochs"}
    return out


def config_hash(config: dict) -> str:
    """SHA-256 (first 16 hex digits) of the resolved config, without display-only keys and
    without options that are off (:func:`_inert`)."""
    text = json.dumps(_strip(_inert(config)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(run_dir: str | Path) -> dict:
    """Load ``run_dir/run.json``; raises ``ValueError`` naming the file if it is not a record."""
    path = Path(run_dir) / RECORD_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict) or "status" not in record:
        raise ValueError(f"{path}: not a run record (no 'status')")
    return record


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("alignbench", "torch", "pytorch-lightning", "hydra-core", "torchmetrics", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(root: str | Path) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout at ``root`` (dirty: a file of the
    code, :data:`CODE_PATHS`, differs from the commit or is new and not ignored), or None when ``root`` is
    not a checkout or git is missing."""
    root = Path(root)
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=20).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=normal", "--",
                                  *CODE_PATHS], capture_output=True, text=True, check=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed.strip())} if commit else None


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code that makes a run: the package version, and where known the git commit it
    comes from with ``.dirty`` when the code differs from that commit, as a PEP 440 local
    version (``0.1.0+g1893ff1c2a4e`` or ``0.1.0+g1893ff1c2a4e.dirty``). The commit is read from
    the checkout of an editable install, or from ``BUILD_INFO.json`` that a wheel build
    writes into the package; otherwise the package version alone."""
    from importlib import metadata

    import alignbench

    try:
        version = metadata.version("alignbench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    package = Path(alignbench.__file__).resolve().parent
    state = git_state(package.parent)
    if state is None and (package / BUILD_INFO).is_file():
        try:
            state = json.loads((package / BUILD_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
    if not state or not state.get("commit"):
        return version
    return f"{version}+g{state['commit'][:12]}" + (".dirty" if state.get("dirty") else "")
