"""``write_report``: run directories -> PNG figures + ``report.md`` (what ``mgs report`` runs).

Python use (``mgs compare`` calls this)::

    from mgs.report import ReportOptions, write_report

    result = write_report([Path("runs/mixed-s0"), Path("runs/mgs-s0")], Path("reports/x"),
                          labels=["mixed", "mgs"], options=ReportOptions(smooth=5))
    result.markdown            # Path of report.md
    result.figures             # {"reward": Path(...png), ..., "conflict_map_mgs": ...}
    result.tables              # {"eval_reward": "| run | ...", "strategy_reward": ...}
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mgs.dataclass_config import option
from mgs.errors import ConfigError
from mgs.report import plots
from mgs.report.heatmap import conflict_map
from mgs.report.markdown import FigureRef, Section, render
from mgs.report.rundir import Run, RunDirError, Snapshot, load_runs, load_snapshot
from mgs.report.series import curve, has_surgery, strategy_groups, union
from mgs.report.tables import eval_table, paired_table, runs_table, strategy_table, surgery_table
from mgs.run_dir import RunDir


@dataclass
class ReportOptions:
    """How the report is drawn."""

    smooth: int = option(
        1, help="Moving-average window over logged steps for every curve (1: raw values)."
    )
    dpi: int = option(120, help="Resolution of the PNG figures.")

    def __post_init__(self) -> None:
        if self.smooth < 1:
            raise ConfigError(f"smooth must be a window of >= 1 steps, got {self.smooth}; e.g. 5")
        if not 30 <= self.dpi <= 600:
            raise ConfigError(f"dpi must be between 30 and 600, got {self.dpi}; e.g. 120")


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    markdown: Path  # report.md
    figures: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG
    tables: dict[str, str] = field(default_factory=dict)  # table name -> markdown
    notes: list[str] = field(default_factory=list)  # what was skipped and why


def default_out_dir(run_dirs: Sequence[str | Path]) -> Path:
    """``<run>/report`` for one run; ``reports/<UTC time>`` for several."""
    if len(run_dirs) == 1:
        return RunDir(run_dirs[0]).report
    return Path("reports") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    options: ReportOptions | None = None,
) -> ReportResult:
    """Load the run directories, draw the figures and write ``out_dir/report.md``.

    Raises :class:`~mgs.report.rundir.RunDirError` (an :class:`~mgs.errors.MgsError`) when a path
    is not a run directory or the labels do not match the runs.
    """
    from mgs.output_paths import check_output_dir

    if out_dir is not None:
        check_output_dir(out_dir, "--out")  # a file there: one error, before the runs load
    runs = load_runs(list(run_dirs), list(labels) if labels is not None else None)
    out = Path(out_dir) if out_dir is not None else default_out_dir(run_dirs)
    return build_report(runs, out, options or ReportOptions())


def build_report(runs: list[Run], out_dir: Path, options: ReportOptions) -> ReportResult:
    """Figures + tables + markdown for already loaded runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportResult(markdown=out_dir / "report.md")
    styles = plots.run_styles([r.label for r in runs], [r.strategy for r in runs])
    smooth = options.smooth
    avg = f" (moving average over {smooth} steps)" if smooth > 1 else ""

    def draw(section: Section, name: str, panels: list[plots.Panel], title: str, **kw) -> None:
        path = out_dir / f"{name}.png"
        plots.plot_panels(panels, path, title=title + avg, styles=styles, dpi=options.dpi, **kw)
        result.figures[name] = path
        caption = _CAPTIONS[name] + (
            f" Curves: moving average over {smooth} logged steps." if smooth > 1 else ""
        )
        section.figures.append(FigureRef(title, caption, path.name))

    overview = Section("Runs")
    overview.table("runs", "", runs_table(runs))

    evaluation = Section("Held-out evaluation")
    evaluation.table("eval_reward", _CAPTIONS["eval_reward"], eval_table(runs, "reward"))
    evaluation.table("eval_length", _CAPTIONS["eval_length"], eval_table(runs, "length"))
    if any(len(members) > 1 for members in strategy_groups(runs).values()):
        evaluation.table(
            "strategy_reward", _CAPTIONS["strategy_reward"], strategy_table(runs, "reward")
        )
        evaluation.table(
            "strategy_reward_change",
            _CAPTIONS["strategy_change"],
            strategy_table(runs, "reward", change=True),
        )
        evaluation.table("paired_reward", _CAPTIONS["paired_reward"], paired_table(runs))
    if not evaluation.tables:
        evaluation.skip("no run has held-out results (summary.json heldout_after)")

    training = Section("Training curves")
    domains = union([r.domains() for r in runs])
    for key, ylabel, title in (
        ("reward", "mean reward", "Training reward per domain"),
        ("response_length", "tokens", "Mean response length per domain"),
    ):
        if not domains:
            training.skip(f"{title}: no run logged {key}/<domain>/mean")
            continue
        panels = [
            plots.Panel(d, [_line(r, f"{key}/{d}/mean", smooth) for r in runs if d in r.domains()])
            for d in domains
        ]
        draw(training, key, panels, title, ylabel=ylabel)

    conflicts = Section("Gradient conflicts")
    conflicts.table("surgery", _CAPTIONS["surgery"], surgery_table(runs))
    tracked = [r for r in runs if has_surgery(r)]
    untracked = [r.label for r in runs if not has_surgery(r)]
    if untracked:
        conflicts.skip(
            f"no gradient telemetry (surgery/*) in: {', '.join(untracked)}; a mixed or sequential "
            "run with strategy.track_conflicts: false keeps no per-domain gradients"
        )
    pairs = union([r.pairs() for r in tracked])
    if pairs:
        panels = [
            plots.Panel(
                p.replace("__", " vs "),
                [_line(r, f"surgery/cos/{p}", smooth) for r in tracked if p in r.pairs()],
            )
            for p in pairs
        ]
        title = "Cosine between domains' whole-model gradients"
        draw(conflicts, "gradient_cosine", panels, title, ylabel="cosine", zero_line=True)
    elif tracked:
        conflicts.skip("gradient cosine: the runs have a single domain (no pair to compare)")
    keys = [("any pair", "surgery/conflict_frac")]
    keys += [(p.replace("__", " vs "), f"surgery/conflict_frac/{p}") for p in pairs]
    panels = [
        plots.Panel(name, [_line(r, key, smooth) for r in tracked if r.metrics.has(key)])
        for name, key in keys
    ]
    panels = [p for p in panels if p.lines]
    if panels:
        draw(
            conflicts,
            "conflict_fraction",
            panels,
            "Fraction of groups in conflict",
            ylabel="fraction with cosine < 0",
            ylim=(-0.03, 1.03),
        )
    for strategy, members in strategy_groups(runs).items():
        _conflict_map_figure(strategy, members, out_dir, options, result, conflicts)

    sections = [overview, evaluation, training, conflicts]
    result.tables = {name: table for s in sections for name, _, table in s.tables}
    run_notes = [f"{run.label}: {note}" for run in runs for note in run.notes]
    result.notes = run_notes + [note for s in sections for note in s.notes]
    result.markdown.write_text(render(runs, sections, run_notes), encoding="utf-8")
    return result


def _line(run: Run, key: str, smooth: int) -> plots.Line:
    steps, values = curve(run, key, smooth)
    return plots.Line(run.label, steps, values)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "runs"


def _conflict_map_figure(
    strategy: str,
    members: list[Run],
    out_dir: Path,
    options: ReportOptions,
    result: ReportResult,
    section: Section,
) -> None:
    """One layer x module map per strategy, pooling its runs' saved steps (seeds)."""
    paths = [p for r in members for p in r.snapshots]
    if not paths:
        if any(has_surgery(r) for r in members):
            section.skip(
                f"conflict map of {strategy}: no surgery/step_*.npz saved "
                "(logging.surgery_stats_every: 0)"
            )
        return
    snapshots: list[Snapshot] = []
    for path in paths:
        try:
            snapshots.append(load_snapshot(path))
        except RunDirError as exc:
            section.skip(f"skipped an unreadable snapshot: {exc}")
    cmap = conflict_map(snapshots)
    if int(cmap.groups.sum()) <= 1:
        hint = (
            "; for a map of this update, train with strategy.name=custom "
            "strategy.aggregator=sum strategy.granularity=tensor (same update, per-tensor "
            "telemetry)"
            if strategy == "mixed"
            else ""
        )
        section.skip(
            f"conflict map of {strategy}: its surgery has a single group (global granularity), "
            f"so there is no layer x module map; the conflict fraction above is that group's{hint}"
        )
        return
    runs_text = f"{len(members)} runs, " if len(members) > 1 else ""
    title = (
        f"{strategy}: gradient conflict frequency by layer x module\n"
        f"(any domain pair with negative cosine; {runs_text}{cmap.snapshots} saved steps)"
    )
    name = f"conflict_map_{_slug(strategy)}"
    path = plots.plot_conflict_map(cmap, out_dir / f"{name}.png", title=title, dpi=options.dpi)
    result.figures[name] = path
    section.figures.append(
        FigureRef(f"Conflict map: {strategy}", _CAPTIONS["conflict_map"], path.name)
    )


_CAPTIONS = {
    "eval_reward": (
        "Held-out reward per domain after RL (summary.json `heldout_after`; greedy unless "
        "eval.temperature > 0); in parentheses the change from before RL. mean: over domains."
    ),
    "eval_length": "Held-out mean response length (tokens) after RL, change from before RL.",
    "strategy_reward": (
        "Held-out reward after RL per strategy: mean ± sample standard deviation over its runs "
        "(seeds)."
    ),
    "strategy_change": "Change of held-out reward from before to after RL per strategy: mean ± std.",
    "paired_reward": (
        "Held-out reward after RL minus mixed's on the same seed (same warm start, same data): "
        "mean over the seeds and its 95% confidence interval (Student's t, n - 1 degrees of "
        "freedom). * marks an interval that excludes 0: a difference the seeds cannot explain. "
        "Domains are on their rewards' own scales (chat: reward-model score)."
    ),
    "surgery": (
        "Gradient telemetry averaged over the logged steps: fraction of groups with a negative "
        "cosine for some domain pair, fraction of (group, domain) gradients PCGrad projected, "
        "whole-model cosine per pair, and the share of step time spent in the surgery."
    ),
    "reward": "Mean training reward of each domain's rollouts at each step, one line per run.",
    "response_length": "Mean length (tokens) of each domain's training responses.",
    "gradient_cosine": (
        "Cosine between two domains' gradients over the whole model at each step (before "
        "surgery). Below 0 the domains pull the shared weights in opposite directions."
    ),
    "conflict_fraction": (
        "Fraction of surgery groups in which some pair of domains (first panel) or the named "
        "pair has a negative gradient cosine. The groups depend on the granularity: with one "
        "global group (mixed, pcgrad) each step is 0 or 1, and smoothing turns it into a rate."
    ),
    "conflict_map": (
        "Each cell: fraction of saved steps (surgery/step_*.npz) in which the group of that layer "
        "and module type had a negative gradient cosine for some pair of domains. Tensors sharing "
        "a cell (a weight and its bias) are averaged; grey: no such group; the row below the line "
        "holds groups outside the blocks (embeddings, final norm, head). Seeds of a strategy are "
        "pooled."
    ),
}
