"""Finding earlier runs by their records: completed ones (a sweep skips them) and
unfinished ones with a checkpoint (a re-run resumes them)."""

from __future__ import annotations

from pathlib import Path

from .record import RECORD_NAME, read_record


RESUMABLE = ("running", "interrupted")  # a run that stopped without finishing (killed, Ctrl-C)


def resumable_record(run_dir: Path, wanted_hash: str) -> dict | None:
    """The record in ``run_dir`` if it is an unfinished run of the same config with a last
    checkpoint to resume from."""
    try:
        record = read_record(run_dir)
    except (OSError, ValueError):
        return None
    if (record.get("status") in RESUMABLE and record.get("config_hash") == wanted_hash
            and (run_dir / "checkpoints" / "last.ckpt").is_file()):
        return record
    return None


def find_resumable(root: str | Path, wanted_hash: str) -> Path | None:
    """A run folder under ``root`` holding an unfinished run of the same config (see
    :func:`resumable_record`)."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.rglob(RECORD_NAME)):
        if resumable_record(path.parent, wanted_hash) is not None:
            return path.parent
    return None


def find_completed(root: str | Path, wanted_hash: str) -> Path | None:
    """A ``run.json`` under ``root`` that is ``completed`` with config hash ``wanted_hash``."""
    root = Path(root)
    if not root.is_dir():
        return None
    for path in sorted(root.rglob(RECORD_NAME)):
        try:
            record = read_record(path.parent)
        except (OSError, ValueError):
            continue
        if record.get("status") == "completed" and record.get("config_hash") == wanted_hash:
            return path
    return None
