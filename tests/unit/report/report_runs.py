"""Synthetic run directories in the exact layout ``mgs train`` writes (for the report tests)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import yaml

QWEN_BLOCK = [
    "input_layernorm.weight",
    "mlp.down_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "post_attention_layernorm.weight",
    "self_attn.k_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.o_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.q_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.v_proj.weight",
]


def qwen_tensor_names(layers: int) -> list[str]:
    """Tensor-granularity group names of a Qwen2 model, sorted as the surgeon sorts them."""
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    names += [f"model.layers.{i}.{leaf}" for i in range(layers) for leaf in QWEN_BLOCK]
    return sorted(names)


def cosine_stack(pair_cos: np.ndarray, k: int) -> np.ndarray:
    """``[M, K, K]`` symmetric cosines with a unit diagonal from ``[M, n_pairs]`` pair values."""
    m = pair_cos.shape[0]
    out = np.tile(np.eye(k), (m, 1, 1))
    for p, (a, b) in enumerate(combinations(range(k), 2)):
        out[:, a, b] = out[:, b, a] = pair_cos[:, p]
    return out


def write_snapshot(
    run_dir: Path, step: int, domains: list[str], names: list[str], cosine: np.ndarray
) -> Path:
    """One ``surgery/step_XXXXXX.npz`` with the arrays of ``SurgeryStats.arrays()``."""
    folder = run_dir / "surgery"
    folder.mkdir(parents=True, exist_ok=True)
    m, k = len(names), len(domains)
    path = folder / f"step_{step:06d}.npz"
    np.savez_compressed(
        path,
        domains=np.array(domains),
        group_names=np.array(names),
        cosine=cosine.astype(np.float32),
        norm=np.ones((m, k), dtype=np.float32),
        fired=(cosine < 0).any(axis=2),
        coef=np.ones((m, k), dtype=np.float32),
    )
    return path


def write_run(
    run_dir: Path,
    *,
    strategy: str = "mgs",
    seed: int = 0,
    records: list[dict] | None = None,
    heldout_before: dict | None = None,
    heldout_after: dict | None = None,
    config_extra: dict | None = None,
) -> Path:
    """config.yaml + metrics.jsonl (``records`` as given) + summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"steps": len(records or []), "seed": seed, "strategy": {"name": strategy}}
    config.update(config_extra or {})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with (run_dir / "metrics.jsonl").open("w", encoding="utf-8") as f:
        for record in records or []:
            f.write(json.dumps(record) + "\n")
    summary = {
        "strategy": strategy,
        "steps": len(records or []),
        "heldout_before": heldout_before or {},
        "heldout_after": heldout_after or {},
        "seconds": {"total": 1.0},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def realistic_run(
    run_dir: Path,
    *,
    strategy: str,
    seed: int,
    steps: int = 60,
    layers: int = 4,
    domains: tuple[str, ...] = ("math", "if", "chat"),
    surgery: bool = True,
    granularity_names: list[str] | None = None,
    every: int = 10,
) -> Path:
    """A plausible run: rising noisy rewards, drifting lengths, conflict telemetry and snapshots
    whose conflicts concentrate in the later layers' MLPs and in lm_head (to look at figures)."""
    rng = np.random.default_rng(seed * 31 + len(strategy))
    bonus = {"mixed": 0.0, "sequential": -0.05, "pcgrad": 0.04, "mgs": 0.06}.get(strategy, 0.0)
    pairs = [f"{a}__{b}" for a, b in combinations(domains, 2)]
    names = granularity_names or qwen_tensor_names(layers)
    if strategy in ("mixed", "pcgrad", "sequential"):
        names = ["global"]
    records = []
    for step in range(steps):
        t = step / max(1, steps - 1)
        rec: dict = {"step": step, "phase": 0.0}
        for i, d in enumerate(domains):
            base = 0.2 + 0.1 * i + (0.4 + bonus) * (1 - np.exp(-3 * t))
            rec[f"reward/{d}/mean"] = float(np.clip(base + rng.normal(0, 0.05), 0, 1))
            rec[f"response_length/{d}/mean"] = float(40 + 20 * i - 15 * t + rng.normal(0, 3))
        if surgery:
            for p in pairs:
                rec[f"surgery/cos/{p}"] = float(-0.05 + 0.15 * rng.normal())
                rec[f"surgery/conflict_frac/{p}"] = float(np.clip(0.3 + 0.1 * rng.normal(), 0, 1))
            rec["surgery/conflict_frac"] = float(np.clip(0.5 + 0.1 * rng.normal(), 0, 1))
            rec["surgery/projected_frac"] = float(np.clip(0.3 + 0.1 * rng.normal(), 0, 1))
            rec["surgery/num_groups"] = float(len(names))
        rec["time/surgery"] = 0.01
        rec["time/step"] = 2.0
        records.append(rec)
    records[steps // 2]["loss/policy"] = "nan"
    after = {
        d: {"reward": 0.5 + 0.1 * i + bonus + rng.normal(0, 0.02), "length": 40.0, "n": 48}
        for i, d in enumerate(domains)
    }
    before = {d: {"reward": 0.3 + 0.1 * i, "length": 50.0, "n": 48} for i, d in enumerate(domains)}
    write_run(
        run_dir,
        strategy=strategy,
        seed=seed,
        records=records,
        heldout_before=before,
        heldout_after=after,
    )
    if surgery:
        for step in [*range(0, steps, every), steps - 1]:
            depth = np.array([_depth(n, layers) for n in names])  # [M] in [0, 1]
            mlp = np.array([("mlp" in n) or ("lm_head" in n) for n in names], dtype=float)
            centre = 0.25 - 0.35 * depth - 0.2 * mlp  # later layers and MLPs conflict more
            pair_cos = centre[:, None] + 0.25 * rng.normal(size=(len(names), len(pairs)))
            cos = cosine_stack(np.clip(pair_cos, -1, 1), len(domains))
            write_snapshot(run_dir, step, list(domains), names, cos)
    return run_dir


def _depth(name: str, layers: int) -> float:
    parts = name.split(".")
    for part in parts:
        if part.isdigit():
            return int(part) / max(1, layers - 1)
    return 1.0 if "lm_head" in name or name == "model.norm.weight" else 0.0
