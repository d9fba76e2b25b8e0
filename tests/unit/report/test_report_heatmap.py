"""Group names -> (layer, module type), and the conflict map against hand-computed frequencies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_runs import cosine_stack

from mgs.report.heatmap import (
    BLOCK,
    OTHER,
    GroupLocation,
    column_labels,
    conflict_map,
    parse_group_name,
)
from mgs.report.rundir import Snapshot


@pytest.mark.parametrize(
    ("name", "layer", "module"),
    [
        # Qwen2 / Llama tensor granularity (parameter names)
        ("model.layers.3.self_attn.q_proj.weight", 3, "q_proj"),
        ("model.layers.3.self_attn.q_proj.bias", 3, "q_proj"),
        ("model.layers.12.mlp.down_proj.weight", 12, "down_proj"),
        ("model.layers.0.input_layernorm.weight", 0, "input_layernorm"),
        ("model.layers.27.post_attention_layernorm.weight", 27, "post_attention_layernorm"),
        ("model.embed_tokens.weight", None, "embed_tokens"),
        ("model.norm.weight", None, "norm"),
        ("lm_head.weight", None, "lm_head"),
        # module granularity (module names)
        ("model.layers.3.mlp.down_proj", 3, "down_proj"),
        ("model.layers.1.self_attn.o_proj", 1, "o_proj"),
        ("model.embed_tokens", None, "embed_tokens"),
        ("lm_head", None, "lm_head"),
        # layer and global granularity
        ("model.layers.3", 3, BLOCK),
        ("global", None, "global"),
        # other families: GPT-2, a mixture of experts
        ("transformer.h.5.attn.c_attn.weight", 5, "c_attn"),
        ("model.layers.2.block_sparse_moe.experts.7.w1.weight", 2, "w1"),
    ],
)
def test_parse_group_name(name, layer, module):
    loc = parse_group_name(name)
    assert (loc.layer, loc.module) == (layer, module)


def test_parse_group_name_paths_tell_modules_apart():
    assert parse_group_name("model.layers.3.self_attn.q_proj.weight").path == "self_attn.q_proj"
    assert parse_group_name("model.layers.3.mlp.down_proj").path == "mlp.down_proj"
    # all experts of a layer share one column
    a = parse_group_name("model.layers.2.block_sparse_moe.experts.7.w1.weight")
    b = parse_group_name("model.layers.2.block_sparse_moe.experts.0.w1.weight")
    assert a == b == GroupLocation(2, "w1", "block_sparse_moe.experts.*.w1")


def test_column_labels_lengthen_only_where_ambiguous():
    labels = column_labels(["attn.c_proj", "mlp.c_proj", "attn.c_attn", "mlp.c_fc"])
    assert labels == {
        "attn.c_proj": "attn.c_proj",
        "mlp.c_proj": "mlp.c_proj",
        "attn.c_attn": "c_attn",
        "mlp.c_fc": "c_fc",
    }
    assert column_labels(["self_attn.q_proj", "model.embed_tokens"]) == {
        "self_attn.q_proj": "q_proj",
        "model.embed_tokens": "embed_tokens",
    }


NAMES = [
    "lm_head.weight",
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
]
NAN3 = [math.nan] * 3
# cosines of the pairs (a, b), (a, c), (b, c) per group, for three saved steps
STEPS = [
    # lm_head            embed              q.bias            q.weight          down
    [[0.1, 0.1, -0.9], [0.0, 0.0, 0.0], [0.5, 0.1, 0.2], [0.5, -0.1, 0.2], [-0.3, -0.2, 0.1]],
    [[0.3, 0.3, 0.3], [0.2, 0.2, -0.01], NAN3, [0.1, 0.1, 0.1], [-0.1, 0.3, 0.3]],
    [[0.3, -0.3, 0.3], [0.1, 0.1, 0.1], [0.2, 0.2, -0.2], [-0.5, 0.1, 0.1], [0.4, 0.4, 0.4]],
]


def _snapshots() -> list[Snapshot]:
    return [
        Snapshot(10 * i, ["a", "b", "c"], NAMES, cosine_stack(np.array(pairs), 3))
        for i, pairs in enumerate(STEPS)
    ]


def test_conflict_map_matches_hand_computed_frequencies():
    cmap = conflict_map(_snapshots())
    assert cmap.rows == ["0", "1", OTHER]
    assert cmap.columns == ["q_proj", "down_proj", "embed_tokens", "lm_head"]
    nan = np.nan
    # q_proj: weight in conflict at steps 0 and 2, bias at step 2 (NaN is no conflict): 3 / 6;
    # down_proj: steps 0, 1; embed: step 1 only (cosine 0 is not a conflict); lm_head: 0, 2.
    expected = np.array(
        [
            [3 / 6, nan, nan, nan],
            [nan, 2 / 3, nan, nan],
            [nan, nan, 1 / 3, 2 / 3],
        ]
    )
    np.testing.assert_allclose(cmap.frequency, expected, equal_nan=True)
    np.testing.assert_array_equal(cmap.groups, [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]])
    assert cmap.snapshots == 3
    assert cmap.pairs == ["a__b", "a__c", "b__c"]


def test_conflict_map_of_one_pair():
    cmap = conflict_map(_snapshots(), pair=("a", "b"))
    # (a, b) negative: q.weight at step 2, down at steps 0 and 1, nothing else
    np.testing.assert_allclose(
        cmap.frequency,
        [[1 / 6, np.nan, np.nan, np.nan], [np.nan, 2 / 3, np.nan, np.nan], [np.nan, np.nan, 0, 0]],
        equal_nan=True,
    )
    assert cmap.pairs == ["a__b"]


def test_conflict_map_pools_runs_with_the_same_groups():
    snaps = _snapshots()
    pooled = conflict_map(snaps + snaps[:1])  # step 0 counted twice: 4 saved steps
    assert pooled.snapshots == 4
    assert pooled.frequency[0, 0] == pytest.approx((3 + 1) / 8)
    assert pooled.frequency[2, 3] == pytest.approx((2 + 1) / 4)


def test_conflict_map_at_module_and_layer_granularity():
    modules = [
        "model.embed_tokens",
        "model.layers.0.mlp.up_proj",
        "model.layers.0.self_attn.k_proj",
    ]
    cos = cosine_stack(np.array([[0.3], [-0.2], [0.1]]), 2)
    cmap = conflict_map([Snapshot(0, ["math", "chat"], modules, cos)])
    assert cmap.columns == ["k_proj", "up_proj", "embed_tokens"]
    np.testing.assert_allclose(
        cmap.frequency, [[0, 1, np.nan], [np.nan, np.nan, 0]], equal_nan=True
    )

    layers = ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm"]
    cos = cosine_stack(np.array([[0.3], [-0.2], [0.1], [-0.5]]), 2)
    cmap = conflict_map([Snapshot(0, ["math", "chat"], layers, cos)])
    assert (cmap.rows, cmap.columns) == (["0", "1", OTHER], [BLOCK, "embed_tokens", "norm"])
    np.testing.assert_allclose(
        cmap.frequency,
        [[1, np.nan, np.nan], [0, np.nan, np.nan], [np.nan, 0, 1]],
        equal_nan=True,
    )


def test_conflict_map_of_global_granularity_is_one_cell():
    snaps = [
        Snapshot(s, ["a", "b"], ["global"], cosine_stack(np.array([[c]]), 2))
        for s, c in enumerate([-0.1, 0.2, -0.3, 0.4])
    ]
    cmap = conflict_map(snaps)
    assert (cmap.rows, cmap.columns) == ([OTHER], ["global"])
    assert cmap.frequency[0, 0] == pytest.approx(0.5)
    assert int(cmap.groups.sum()) == 1


def test_conflict_map_with_one_domain_has_no_conflicts():
    snap = Snapshot(0, ["math"], ["model.layers.0.mlp.up_proj"], np.ones((1, 1, 1)))
    cmap = conflict_map([snap])
    assert cmap.frequency[0, 0] == 0.0 and cmap.pairs == []
