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
import math
import os
import platform
from pathlib import Path
from typing import Any

RECORD_NAME = "run.json"
# saved beside run.json by the task models: the first test examples' attention (see alignbench.models.examples)
ATTENTION_FILE = "attention_examples.npz"
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace``.

    A crash mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(data), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
