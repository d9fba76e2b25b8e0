"""Markdown tables of runs: held-out results per run and per strategy, gradient telemetry."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mgs.report.rundir import Run
from mgs.report.series import (
    finite_mean,
    has_surgery,
    mean_std,
    strategy_groups,
    surgery_time_share,
    union,
)

DASH = "–"
_DIGITS = {"reward": 3, "length": 1}


def fmt(value: float, digits: int = 3, sign: bool = False) -> str:
    """``0.512`` / ``+0.103``; a dash for NaN or missing."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:{'+' if sign else ''}.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def eval_domains(runs: Sequence[Run]) -> list[str]:
    """Domains of the held-out results: training order first, then any others sorted."""
    held = union([sorted({*r.heldout("before"), *r.heldout("after")}) for r in runs])
    trained = [d for d in union([r.domains() for r in runs]) if d in held]
    return trained + sorted(set(held) - set(trained))


def heldout_value(run: Run, domain: str, when: str, metric: str = "reward") -> float:
    """One held-out number of ``summary.json`` (NaN when absent or not a number)."""
    value = run.heldout(when).get(domain, {})
    value = value.get(metric) if isinstance(value, dict) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def run_scores(run: Run, domains: Sequence[str], metric: str = "reward") -> dict[str, float]:
    """``{domain: after, domain + ":change": after - before, "mean": ..., "mean:change": ...}``.

    ``mean`` averages the domains that have an after value; ``mean:change`` the domains that have
    both (NaN when none).
    """
    out: dict[str, float] = {}
    afters, changes = [], []
    for d in domains:
        after = heldout_value(run, d, "after", metric)
        change = after - heldout_value(run, d, "before", metric)
        out[d], out[f"{d}:change"] = after, change
        if math.isfinite(after):
            afters.append(after)
        if math.isfinite(change):
            changes.append(change)
    out["mean"] = sum(afters) / len(afters) if afters else math.nan
    out["mean:change"] = sum(changes) / len(changes) if changes else math.nan
    return out


def eval_table(runs: Sequence[Run], metric: str = "reward") -> str | None:
    """Held-out ``metric`` after RL per run and domain, with the change from before RL in
    parentheses; None when no run has held-out results."""
    domains = eval_domains(runs)
    if not domains:
        return None
    digits = _DIGITS.get(metric, 3)
    rows = []
    for run in runs:
        scores = run_scores(run, domains, metric)
        cells = []
        for key in [*domains, "mean"]:
            after, change = scores[key], scores[f"{key}:change"]
            cell = fmt(after, digits)
            if math.isfinite(after) and math.isfinite(change):
                cell += f" ({fmt(change, digits, sign=True)})"
            cells.append(cell)
        seed = DASH if run.seed is None else str(run.seed)
        rows.append([run.label, run.strategy, seed, *cells])
    return _table(["run", "strategy", "seed", *domains, "mean"], rows, numeric_from=2)


def strategy_table(runs: Sequence[Run], metric: str = "reward", change: bool = False) -> str | None:
    """Mean ± sample std over the runs (seeds) of each strategy of the held-out ``metric`` after
    RL (``change``: of its change from before RL); None without held-out results."""
    domains = eval_domains(runs)
    if not domains:
        return None
    digits = _DIGITS.get(metric, 3)
    rows = []
    for strategy, members in strategy_groups(runs).items():
        scores = [run_scores(r, domains, metric) for r in members]
        cells = []
        for key in [*domains, "mean"]:
            key = f"{key}:change" if change else key
            mean, std, n = mean_std([s[key] for s in scores])
            cell = fmt(mean, digits, sign=change)
            if n > 1:
                cell += f" ± {fmt(std, digits)}"
            cells.append(cell)
        seeds = ", ".join(DASH if r.seed is None else str(r.seed) for r in members)
        rows.append([strategy, str(len(members)), seeds, *cells])
    return _table(["strategy", "runs", "seeds", *domains, "mean"], rows, numeric_from=3)


def paired_differences(
    values: dict[int, float], baseline: dict[int, float]
) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of ``values[seed] - baseline[seed]`` over the seeds both have:
    the mean paired difference and its 95% confidence interval (Student's t with n - 1 degrees
    of freedom); NaN bounds with fewer than two pairs."""
    diffs = [
        values[s] - baseline[s]
        for s in sorted(set(values) & set(baseline))
        if math.isfinite(values[s]) and math.isfinite(baseline[s])
    ]
    mean, std, n = mean_std(diffs)
    if n < 2:
        return mean, math.nan, math.nan, n
    from scipy.stats import t  # the t quantile; a well-kept implementation, not a hand table

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, mean - half, mean + half, n


def paired_table(runs: Sequence[Run], baseline: str = "mixed") -> str | None:
    """Per strategy and domain, the held-out reward after RL minus ``baseline``'s on the same
    seed: mean and 95% interval over the seeds; ``*`` marks an interval that excludes 0. None when
    ``baseline`` or a second strategy with a common seed is missing."""
    domains = eval_domains(runs)
    groups = strategy_groups(runs)
    if not domains or baseline not in groups:
        return None

    def by_seed(members: Sequence[Run]) -> dict[str, dict[int, float]]:
        return {
            d: {r.seed: heldout_value(r, d, "after") for r in members if r.seed is not None}
            for d in domains
        }

    base = by_seed(groups[baseline])
    rows = []
    for strategy, members in groups.items():
        if strategy == baseline:
            continue
        values = by_seed(members)
        cells, count = [], 0
        for d in domains:
            mean, low, high, n = paired_differences(values[d], base[d])
            count = max(count, n)
            cell = fmt(mean, 3, sign=True)
            if math.isfinite(low):
                star = "*" if low > 0 or high < 0 else ""
                cell += f" [{fmt(low, 3, sign=True)}, {fmt(high, 3, sign=True)}]{star}"
            cells.append(cell)
        if count:
            rows.append([f"{strategy} − {baseline}", str(count), *cells])
    if not rows:
        return None
    return _table(["difference", "paired seeds", *domains], rows, numeric_from=2)


def surgery_table(runs: Sequence[Run]) -> str | None:
    """Gradient telemetry averaged over the logged steps of each run; None when no run has any."""
    tracked = [r for r in runs if has_surgery(r)]
    if not tracked:
        return None
    pairs = union([r.pairs() for r in tracked])
    rows = []
    for run in tracked:
        m = run.metrics
        groups = finite_mean(m.get("surgery/num_groups"))
        cells = [
            run.label,
            run.strategy,
            run.granularity or DASH,
            fmt(groups, 0),
            fmt(finite_mean(m.get("surgery/conflict_frac"))),
            fmt(finite_mean(m.get("surgery/projected_frac"))),
            *(fmt(finite_mean(m.get(f"surgery/cos/{p}"))) for p in pairs),
            fmt(100 * surgery_time_share(run), 2),
        ]
        rows.append(cells)
    header = [
        "run",
        "strategy",
        "granularity",
        "groups",
        "groups in conflict",
        "projected",
        *(f"cos {p.replace('__', ' vs ')}" for p in pairs),
        "surgery time %",
    ]
    return _table(header, rows, numeric_from=3)


def runs_table(runs: Sequence[Run]) -> str:
    """What was loaded: label, strategy, seed, logged steps, snapshots, directory."""
    rows = []
    for run in runs:
        steps = run.metrics.steps
        span = f"{int(steps[0])}–{int(steps[-1])}" if steps.size else DASH
        rows.append(
            [
                run.label,
                run.strategy,
                f"`{run.path}`",
                DASH if run.seed is None else str(run.seed),
                span,
                str(len(run.snapshots)),
            ]
        )
    return _table(
        ["run", "strategy", "directory", "seed", "steps", "surgery snapshots"], rows, numeric_from=3
    )
