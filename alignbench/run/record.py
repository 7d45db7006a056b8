"""Run records: one ``run.json`` per run, written atomically.

The results layer reads these records and nothing else. Fields: ``task``, ``data``,
``score`` (config choice, or the class name when ``score._target_`` was overridden),
``seed``, ``status``, ``error``, ``metrics`` (flat dict of final test metrics),
``history`` (validation metrics per epoch), ``params``, ``score_params``, ``wall_seconds``,
``train_seconds``, ``config`` (resolved), ``config_hash``, ``versions`` and
``started``/``finished`` (UTC, ISO 8601).

``status`` is ``running`` (rewritten after every epoch), ``completed`` (tested and
analysed), ``failed`` (``error`` and ``traceback`` say why) or ``interrupted`` (stopped by
Ctrl-C or SIGTERM; like a ``running`` record left by a killed process, the same command
resumes it from ``checkpoints/last.ckpt``). A record holds no absolute path: the files of a
run (checkpoints, attention examples, samples) are found beside it, so a results folder can
be moved, shared or committed.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from ..files import RECORD_NAME, write_json_atomic

__all__ = ["RECORD_NAME", "config_hash", "library_versions", "read_record", "recorded_config", "write_json_atomic"]

# keys that change how a run is shown, not what it computes
HASH_EXCLUDE = {("trainer", "enable_progress_bar"), ("trainer", "enable_model_summary"), ("output_root",),
                ("skip_completed",), ("analysis",),
                ("data", "entities_path"), ("data", "karpathy_json")}  # grounding truth: read by the analysis only


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


def config_hash(config: dict) -> str:
    """SHA-256 (first 16 hex digits) of the resolved config, without display-only keys."""
    text = json.dumps(_strip(config), sort_keys=True, default=str)
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
