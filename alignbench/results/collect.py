"""Collect run records (``run.json``) into one table; the results layer reads nothing else.

:func:`collect_runs` walks the given folders for ``run.json`` files, keeps every
``completed`` record and lists everything else (failed, still running, unreadable,
missing test metrics) as *skipped* with the reason, so a report never crashes on a bad
record. Rows are sorted by (task, data, score, seed, run directory): the same records
always give the same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import RECORD_NAME

ID_COLUMNS = ("task", "data", "score", "seed")
INFO_COLUMNS = ("baseline", "params", "score_params", "train_seconds", "wall_seconds", "analysis_seconds",
                "epochs", "config_hash", "code_version", "run_dir")


@dataclass
class RunSet:
    """Completed runs (``runs``: one row per run, test metrics as ``test/...`` columns),
    their full ``records`` keyed by run directory, and the ``skipped`` ones as
    ``(path, reason)`` pairs."""

    runs: pd.DataFrame
    records: dict[str, dict] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_records(dirs: list[str | Path]) -> list[Path]:
    """Every ``run.json`` under ``dirs`` (a record file may be given directly), sorted."""
    found: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.name == RECORD_NAME:
            found.add(d.resolve())
        elif d.is_dir():
            found.update(p.resolve() for p in d.rglob(RECORD_NAME))
        else:
            raise FileNotFoundError(f"no such results folder: {d}")
    return sorted(found)


def _problem(record: Any) -> str | None:
    """Why ``record`` cannot be reported, or None."""
    if not isinstance(record, dict) or "status" not in record:
        return "not a run record (no 'status')"
    status = record["status"]
    if status != "completed":
        error = record.get("error")
        return f"status {status!r}" + (f": {error}" if error else "")
    missing = [k for k in ID_COLUMNS if record.get(k) is None]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not any(str(k).startswith("test/") for k in metrics):
        return "no test metrics"
    return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def collect_runs(dirs: list[str | Path]) -> RunSet:
    """Read every record under ``dirs``; see the module docstring."""
    rows, records, skipped = [], {}, []
    for path in find_records(dirs):
        shown = str(path.parent)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            skipped.append((shown, f"unreadable record ({type(err).__name__}: {err})"))
            continue
        problem = _problem(record)
        if problem:
            skipped.append((shown, problem))
            continue
        row: dict[str, Any] = {k: record[k] for k in ID_COLUMNS}
        row["seed"] = int(_number(row["seed"]))
        for key in INFO_COLUMNS:
            row[key] = record.get(key)
        row["baseline"] = bool(record.get("baseline", False))  # e.g. VQA's question-only model
        row["run_dir"] = shown
        row.update({str(k): _number(v) for k, v in record["metrics"].items() if str(k).startswith("test/")})
        rows.append(row)
        records[shown] = record
    columns = list(ID_COLUMNS) + list(INFO_COLUMNS)
    runs = pd.DataFrame(rows, columns=None if rows else columns)
    if rows:
        metric_cols = sorted(c for c in runs.columns if c not in columns)
        runs = runs[columns + metric_cols].sort_values(["task", "data", "score", "seed", "run_dir"], kind="stable")
        runs = runs.reset_index(drop=True)
    return RunSet(runs=runs, records=records, skipped=sorted(skipped))
