"""Where gradients conflict: a layer x module-type map of conflict frequency (pure functions).

Each surgery group is placed by its name (:func:`parse_group_name`):

- ``model.layers.3.self_attn.q_proj.weight`` (tensor granularity) -> layer 3, ``q_proj``;
- ``model.layers.3.mlp.down_proj`` (module granularity) -> layer 3, ``down_proj``;
- ``model.layers.3`` (layer granularity) -> layer 3, ``block`` (the whole block);
- names outside the blocks (``model.embed_tokens.weight``, ``model.norm``, ``lm_head.weight``,
  ``global``) -> the ``other`` row, one column each.

A group is *in conflict* at a saved step when the cosine of any pair of domains' gradients in it is
negative (the same test as ``surgery/conflict_frac``; a zero gradient has cosine 0, no conflict).
A cell's value is the fraction of (group, saved step) pairs of that cell in conflict: for a cell
holding one group (module / layer granularity) the fraction of saved steps in conflict; for a cell
holding several tensors (``q_proj.weight`` and ``q_proj.bias``) their mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mgs.report.rundir import Snapshot

PARAM_LEAVES = ("weight", "bias")
BLOCK = "block"  # module type of a whole-block group (layer granularity)
OTHER = "other"  # row label of the groups outside the transformer blocks
_NUMERIC = re.compile(r"^\d+$")
# Column order of the usual transformer modules (attention, MLP, norms); others follow, sorted.
_MODULE_ORDER = (
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "q_norm",
    "k_norm",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
    "input_layernorm",
    "post_attention_layernorm",
    BLOCK,
    "embed_tokens",
    "norm",
    "lm_head",
)


@dataclass(frozen=True)
class GroupLocation:
    """Where a group sits: its block index (None: outside the blocks) and module type."""

    layer: int | None
    module: str  # "q_proj", "down_proj", "block", "embed_tokens", "global"...
    path: str  # module path used to tell modules apart: "self_attn.q_proj", "model.embed_tokens"


def parse_group_name(name: str) -> GroupLocation:
    """Place a group key (a parameter, module or layer name) in the layer x module-type grid.

    The block index is the first numeric component (``model.layers.3`` -> 3); the module type is
    the last component once a trailing ``weight`` / ``bias`` is dropped. Further numeric components
    (experts, ``h.3.mlp.experts.7.w1``) are folded into ``*`` so that all experts share a column.
    """
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] in PARAM_LEAVES:
        parts = parts[:-1]
    for i, part in enumerate(parts):
        if _NUMERIC.match(part):
            rest = ["*" if _NUMERIC.match(p) else p for p in parts[i + 1 :]]
            if not rest:
                return GroupLocation(int(part), BLOCK, BLOCK)
            module = next((p for p in reversed(rest) if p != "*"), BLOCK)
            return GroupLocation(int(part), module, ".".join(rest))
    return GroupLocation(None, parts[-1], ".".join(parts))


def column_labels(paths: Iterable[str]) -> dict[str, str]:
    """Short, distinct column labels: the module type, or a longer suffix of the path where two
    paths share one (GPT-2's ``attn.c_proj`` and ``mlp.c_proj``)."""
    paths = list(dict.fromkeys(paths))
    labels: dict[str, str] = {}
    depth = 1
    pending = paths
    while pending:
        suffix = {p: ".".join(p.split(".")[-depth:]) for p in pending}
        counts: dict[str, int] = {}
        for s in suffix.values():
            counts[s] = counts.get(s, 0) + 1
        longest = max(len(p.split(".")) for p in pending)
        for p in pending:
            if counts[suffix[p]] == 1 or depth >= longest:
                labels[p] = suffix[p]
        pending = [p for p in pending if p not in labels]
        depth += 1
    return labels


@dataclass
class ConflictMap:
    """A layer x module-type matrix of conflict frequency.

    ``rows``: block indices as strings, then ``"other"`` when some group is outside the blocks;
    ``columns``: module-type labels; ``frequency[r, c]``: fraction of (group, saved step) pairs in
    conflict, NaN where no group falls in the cell; ``groups[r, c]``: how many groups it holds.
    """

    rows: list[str]
    columns: list[str]
    frequency: np.ndarray  # [R, C] float
    groups: np.ndarray  # [R, C] int
    snapshots: int  # saved steps used
    pairs: list[str]  # domain pairs tested, "a__b"


def _column_key(loc: GroupLocation) -> tuple[int, str]:
    order = _MODULE_ORDER.index(loc.module) if loc.module in _MODULE_ORDER else len(_MODULE_ORDER)
    return order, loc.path


def group_conflicts(snapshot: Snapshot, pair: tuple[str, str] | None = None) -> np.ndarray:
    """``[M]`` bool: groups whose cosine is negative for any domain pair (or for ``pair``)."""
    k = len(snapshot.domains)
    if pair is not None:
        a, b = (snapshot.domains.index(d) for d in pair)
        return snapshot.cosine[:, a, b] < 0
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # [K, K] each pair once
    with np.errstate(invalid="ignore"):
        negative = snapshot.cosine < 0  # [M, K, K]; NaN compares False
    return (negative & upper[None]).any(axis=(1, 2))


def conflict_map(snapshots: list[Snapshot], pair: tuple[str, str] | None = None) -> ConflictMap:
    """Conflict frequency per (layer, module type) over the saved steps ``snapshots``.

    Snapshots may come from several runs (seeds of one strategy): counts are pooled per group name.
    ``pair=("math", "chat")`` restricts the test to one pair of domains.
    """
    hits: dict[str, int] = {}
    seen: dict[str, int] = {}
    pairs: set[str] = set()
    used = 0
    for snap in snapshots:
        if pair is not None and not set(pair) <= set(snap.domains):
            continue
        used += 1
        doms = snap.domains
        pairs |= (
            {f"{pair[0]}__{pair[1]}"}
            if pair
            else {f"{a}__{b}" for i, a in enumerate(doms) for b in doms[i + 1 :]}
        )
        for name, conflict in zip(snap.group_names, group_conflicts(snap, pair)):
            hits[name] = hits.get(name, 0) + int(conflict)
            seen[name] = seen.get(name, 0) + 1
    locs = {name: parse_group_name(name) for name in seen}
    layers = sorted({loc.layer for loc in locs.values() if loc.layer is not None})
    rows = [str(layer) for layer in layers]
    if any(loc.layer is None for loc in locs.values()):
        rows.append(OTHER)
    # block modules first, then the modules outside the blocks
    col_locs = sorted({(loc.layer is None, _column_key(loc)) for loc in locs.values()})
    paths = [key[1] for _, key in col_locs]
    labels = column_labels(paths)
    col_index = {path: j for j, path in enumerate(paths)}
    row_index = {r: i for i, r in enumerate(rows)}
    num = np.zeros((len(rows), len(paths)))
    den = np.zeros((len(rows), len(paths)))
    groups = np.zeros((len(rows), len(paths)), dtype=np.int64)
    for name, loc in locs.items():
        r = row_index[OTHER if loc.layer is None else str(loc.layer)]
        c = col_index[loc.path]
        num[r, c] += hits[name]
        den[r, c] += seen[name]
        groups[r, c] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        frequency = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return ConflictMap(
        rows=rows,
        columns=[labels[p] for p in paths],
        frequency=frequency,
        groups=groups,
        snapshots=used,
        pairs=sorted(pairs),
    )
