"""The ``report.md`` document: sections of tables, figures and notes on what was skipped."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mgs.report.rundir import Run


@dataclass
class FigureRef:
    """A figure in the document: heading, how to read it, file name relative to report.md."""

    title: str
    caption: str
    path: str = ""


@dataclass
class Section:
    """A ``##`` section: captioned tables, then figures, then what was skipped and why."""

    title: str
    tables: list[tuple[str, str, str]] = field(default_factory=list)  # (name, caption, table)
    figures: list[FigureRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, name: str, caption: str, table: str | None) -> None:
        """Add a markdown table (nothing when ``table`` is None: no data for it)."""
        if table is not None:
            self.tables.append((name, caption, table))

    def skip(self, note: str) -> None:
        self.notes.append(note)


def render(runs: list[Run], sections: list[Section], run_notes: list[str]) -> str:
    """The whole document."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        "# Training report",
        "",
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}, written by `mgs report` on {stamp}.",
        "",
    ]
    for section in sections:
        out += [f"## {section.title}", ""]
        for _name, caption, table in section.tables:
            out += [caption, "", table, ""] if caption else [table, ""]
        for fig in section.figures:
            out += [f"### {fig.title}", "", f"![{fig.title}]({fig.path})", "", fig.caption, ""]
        for note in section.notes:
            out += [f"> Skipped: {note}", ""]
    if run_notes:
        out += ["## Notes on the run directories", ""]
        out += [f"- {note}" for note in run_notes]
        out.append("")
    return "\n".join(out)
