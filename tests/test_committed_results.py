"""The committed experiment folders can move: no record or report names a path of the machine that made it."""

import json
from pathlib import Path

import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
RECORDS = sorted(EXPERIMENTS.glob("*/runs/**/run.json"))
REPORTS = sorted(EXPERIMENTS.glob("*/report"))


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_records_hold_no_absolute_path(path):
    record = json.loads(path.read_text(encoding="utf-8"))
    absolute = [s for s in _strings(record) if s.startswith("/") or s[1:3] == ":\\"]
    assert not absolute, absolute[:3]


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_reports_name_run_folders_relative_to_themselves(report):
    runs = pd.read_csv(report / "runs.csv")
    for run_dir in runs["run_dir"]:
        assert not run_dir.startswith("/") and (report / run_dir / "run.json").is_file(), run_dir
