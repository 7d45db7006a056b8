"""Results layer: run records → tables → figures → comparison report.

It reads ``run.json`` records (and the files a run saves beside them) and nothing else.
"""

from . import claims, stats
from .collect import RunSet, collect_runs, find_records
from .report import build_report, write_report
from .tables import aggregate, ranking_table, task_table

__all__ = ["claims", "stats", "RunSet", "collect_runs", "find_records", "aggregate", "task_table", "ranking_table", "build_report",
           "write_report"]
