"""Matplotlib figures of the report (PNG, no display: ``Figure`` objects, never pyplot).

The data arrive ready to draw (:class:`Panel` curves, a :class:`ConflictMap`); the choices of what
to draw live in :mod:`mgs.report.build`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from mgs.report.heatmap import OTHER, ConflictMap

# Fixed colours for the four strategies of the paper, so every report reads the same way.
STRATEGY_COLORS = {
    "sequential": "tab:gray",
    "mixed": "tab:blue",
    "pcgrad": "tab:orange",
    "mgs": "tab:green",
}
_PALETTE = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
_DASHES = ["-", "--", ":", "-."]
_TAB10 = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
_TAB10 += ["tab:gray", "tab:olive", "tab:cyan"]


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str = "-"


def run_styles(labels: Sequence[str], strategies: Sequence[str]) -> dict[str, Style]:
    """One colour per strategy (dash pattern per seed); one colour per run when all share one."""
    if len(set(strategies)) <= 1:  # colours need not encode the strategy: one per run
        first = STRATEGY_COLORS.get(strategies[0], "tab:blue") if strategies else "tab:blue"
        palette = [first, *(c for c in _TAB10 if c != first)]
        return {lab: Style(palette[i % len(palette)]) for i, lab in enumerate(labels)}
    colors: dict[str, str] = {}
    spare = iter(c for c in _PALETTE * 4)
    styles: dict[str, Style] = {}
    seen: dict[str, int] = {}
    for label, strategy in zip(labels, strategies):
        if strategy not in colors:
            colors[strategy] = STRATEGY_COLORS.get(strategy) or next(spare)
        k = seen.get(strategy, 0)
        seen[strategy] = k + 1
        styles[label] = Style(colors[strategy], _DASHES[k % len(_DASHES)])
    return styles


@dataclass
class Line:
    label: str
    steps: np.ndarray  # [S]
    values: np.ndarray  # [S]


@dataclass
class Panel:
    title: str
    lines: list[Line] = field(default_factory=list)


def plot_panels(
    panels: Sequence[Panel],
    path: Path,
    *,
    title: str,
    ylabel: str,
    styles: dict[str, Style],
    zero_line: bool = False,
    ylim: tuple[float, float] | None = None,
    dpi: int = 120,
) -> Path:
    """A grid of panels (up to 3 per row) sharing one legend below them."""
    ncols = 2 if len(panels) == 4 else min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    n_labels = len({line.label for p in panels for line in p.lines})
    legend_rows = math.ceil(n_labels / 4)
    fig = Figure(
        figsize=(4.6 * ncols, 3.3 * nrows + 0.35 * legend_rows + 0.5), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        for line in panel.lines:
            style = styles[line.label]
            (handle,) = ax.plot(
                line.steps,
                line.values,
                color=style.color,
                linestyle=style.linestyle,
                linewidth=1.6,
                marker="o" if line.steps.size == 1 else None,
            )
            handles.setdefault(line.label, handle)
        if zero_line:
            ax.axhline(0.0, color="black", linewidth=0.8, alpha=0.6)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=min(len(handles), 4),
            frameon=False,
        )
    fig.savefig(path, dpi=dpi)
    return path


def plot_conflict_map(cmap: ConflictMap, path: Path, *, title: str, dpi: int = 120) -> Path:
    """Heatmap of conflict frequency, rows = layers (then ``other``), columns = module types."""
    n_rows, n_cols = cmap.frequency.shape
    fig = Figure(
        figsize=(max(5.5, 1.8 + 0.72 * n_cols), max(4.0, 2.2 + 0.42 * n_rows)),
        layout="constrained",
    )
    ax = fig.subplots()
    masked = np.ma.masked_invalid(cmap.frequency)
    colors = matplotlib.colormaps["Reds"].with_extremes(bad="#e6e6e6")  # grey: no group
    image = ax.imshow(masked, cmap=colors, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(n_cols), cmap.columns, rotation=40, ha="right")
    ax.set_yticks(range(n_rows), cmap.rows)
    ax.set_xlabel("module type")
    ax.set_ylabel("layer (transformer block)")
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.tick_params(which="both", length=0)
    ax.grid(which="minor", color="white", linewidth=1.0)
    if OTHER in cmap.rows and n_rows > 1:
        ax.axhline(n_rows - 1.5, color="black", linewidth=1.2)
    if n_rows * n_cols <= 400:
        for r in range(n_rows):
            for c in range(n_cols):
                value = cmap.frequency[r, c]
                if np.isfinite(value):
                    ax.text(
                        c,
                        r,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7 if n_cols > 10 else 8,
                        color="white" if value > 0.6 else "black",
                    )
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("fraction of saved steps\nin conflict")
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
    return path
