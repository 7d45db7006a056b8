"""The files of a run folder and the one way alignbench writes a file: atomically.

Every file written beside a run's record (the record itself, attention examples, sample
grids), every cache entry and every report file goes through :func:`write_atomic`: the
content is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash or Ctrl-C mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

RECORD_NAME = "run.json"  # the run record (see alignbench.run.record)
ATTENTION_FILE = "attention_examples.npz"  # the first test examples' attention (see alignbench.analysis.examples)
SAMPLES_FILE = "samples.png"  # text-to-image runs: caption, real and generated image of the first test captions


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then move it to ``path``.

    The temporary name keeps ``path``'s suffix (``np.savez`` and Pillow choose the format by
    it). On any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` (atomically, synced to disk);
    non-finite floats are written as strings."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(_jsonable(data), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())

    return write_atomic(path, write)
