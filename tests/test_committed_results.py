"""The committed experiment folders can move: no record or report names a path of the machine that made it.
And a committed report is what the committed code makes of the committed records, not a stale one."""

import json
from pathlib import Path

import pandas as pd
import pytest

from alignbench.results import build_report, collect_runs

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


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_reports_are_what_the_committed_code_makes_of_their_records(report, tmp_path):
    """Rebuilding a committed report from its own run folder gives the same tables, claims and
    statistics (the bootstrap is seeded): a change to the results layer that alters a figure
    fails here until the report is made again."""
    runs_dir = report.parent / "runs"
    build_report(collect_runs([runs_dir]), [str(runs_dir)], tmp_path, report)
    for name in ("report.md", "summary.csv", "runs.csv"):
        assert (tmp_path / name).read_text(encoding="utf-8") == (report / name).read_text(encoding="utf-8"), name
