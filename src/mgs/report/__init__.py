"""Reports of training runs: PNG figures and a markdown summary (``mgs report``).

Python use (what ``mgs compare`` calls)::

    from mgs.report import ReportOptions, write_report

    result = write_report(["runs/mixed-s0", "runs/mgs-s0"], "reports/demo",
                          labels=["mixed", "mgs"], options=ReportOptions(smooth=5))
    result.markdown   # Path of report.md; result.figures: {name: PNG path}; result.tables

Names are imported lazily so that ``mgs --help`` (which imports the command module) does not load
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ReportOptions": "mgs.report.build",
    "ReportResult": "mgs.report.build",
    "build_report": "mgs.report.build",
    "default_out_dir": "mgs.report.build",
    "write_report": "mgs.report.build",
    "ConflictMap": "mgs.report.heatmap",
    "GroupLocation": "mgs.report.heatmap",
    "conflict_map": "mgs.report.heatmap",
    "parse_group_name": "mgs.report.heatmap",
    "Run": "mgs.report.rundir",
    "RunDirError": "mgs.report.rundir",
    "load_run": "mgs.report.rundir",
    "load_runs": "mgs.report.rundir",
    "load_snapshot": "mgs.report.rundir",
    "eval_table": "mgs.report.tables",
    "strategy_table": "mgs.report.tables",
    "surgery_table": "mgs.report.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mgs.report' has no attribute {name!r}")
