"""Finding earlier runs by their records: one rule for "this run is done" (a sweep and
``alignbench compare`` skip it), for "this run can resume" (an unfinished run of the same
config with a last checkpoint), for "its analysis is current" (analysed with the settings
asked for now; if not, the analysis is redone from the checkpoint without retraining) and
for what is left of a stale run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from .record import ANALYSIS_DATA, RECORD_NAME, read_record

RESUMABLE = ("running", "interrupted")  # a run that stopped without finishing (killed, Ctrl-C)
# what a training run writes into its folder (Hydra's .hydra/ and the caller's stdout.log are left alone)
RUN_OUTPUTS = ("checkpoints", "logs", RECORD_NAME)


def _record(run_dir: Path) -> dict | None:
    try:
        return read_record(run_dir)
    except (OSError, ValueError):
        return None


def completed_record(run_dir: str | Path, wanted_hash: str) -> dict | None:
    """The record in ``run_dir`` if it is ``completed`` with config hash ``wanted_hash``:
    the one rule for "this run is done"."""
    record = _record(Path(run_dir))
    if record is not None and record.get("status") == "completed" and record.get("config_hash") == wanted_hash:
        return record
    return None


def analysis_settings(resolved: dict) -> dict:
    """The interpretability settings of a resolved run config (without ``enabled``)."""
    return {k: v for k, v in (resolved.get("analysis") or {}).items() if k != "enabled"}


def analysis_data(resolved: dict) -> dict:
    """The data settings of a resolved run config that only the analysis reads (the grounding
    truth's ``entities_path`` and ``karpathy_json``; None where the data module has none)."""
    data = resolved.get("data") or {}
    return {key: data.get(key) for key in ANALYSIS_DATA}


def analysis_current(record: dict, resolved: dict) -> bool:
    """Whether a completed ``record`` was analysed as the resolved config ``resolved`` asks:
    with the same analysis settings and the same analysis-only data settings (the grounding
    truth), or the config asks for no analysis. (Neither is part of the config hash: a change
    re-runs the analysis from the checkpoint, not the training.)"""
    wanted = resolved.get("analysis") or {}
    if not wanted.get("enabled", False):
        return True
    done = record.get("config") or {}
    return (bool((done.get("analysis") or {}).get("enabled", False))
            and analysis_settings(done) == analysis_settings(resolved)
            and analysis_data(done) == analysis_data(resolved))


def resumable_record(run_dir: str | Path, wanted_hash: str) -> dict | None:
    """The record in ``run_dir`` if it is an unfinished run of the same config with a last
    checkpoint to resume from."""
    run_dir = Path(run_dir)
    record = _record(run_dir)
    if (record is not None and record.get("status") in RESUMABLE and record.get("config_hash") == wanted_hash
            and (run_dir / "checkpoints" / "last.ckpt").is_file()):
        return record
    return None


def clear_stale(run_dir: str | Path) -> None:
    """Remove what an earlier run (failed, or of another config) left in ``run_dir``, so a
    new run never writes ``best-v1.ckpt`` beside an old checkpoint nor mixes logs."""
    run_dir = Path(run_dir)
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _records_under(roots: Iterable[str | Path]) -> list[Path]:
    seen: set[Path] = set()
    found = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(RECORD_NAME)):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path.parent)
    return found


def find_completed(roots: Iterable[str | Path], wanted_hash: str) -> Path | None:
    """A run folder under any of ``roots`` whose run is done (:func:`completed_record`)."""
    for run_dir in _records_under(roots):
        if completed_record(run_dir, wanted_hash) is not None:
            return run_dir
    return None


def find_resumable(roots: Iterable[str | Path], wanted_hash: str) -> Path | None:
    """A run folder under any of ``roots`` holding an unfinished run of the same config
    (see :func:`resumable_record`)."""
    for run_dir in _records_under(roots):
        if resumable_record(run_dir, wanted_hash) is not None:
            return run_dir
    return None
