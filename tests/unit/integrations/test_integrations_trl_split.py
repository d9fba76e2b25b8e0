"""Splitting a TRL micro-batch by domain: rows taken, shared entries kept, hand-worked shares."""

from __future__ import annotations

import pytest
import torch

from mgs.errors import ConfigError
from mgs.integrations.trl_split import (
    DOMAIN_KEY,
    batch_rows,
    domain_rows,
    loss_share,
    select_rows,
)


def _batch() -> dict:
    # 4 completions; row i has i + 1 loss tokens (of 4), except that the tool masks row 3's last.
    completion_mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    tool_mask = torch.ones(4, 4, dtype=torch.long)
    tool_mask[3, 3] = 0
    return {
        "prompt_ids": torch.arange(8).view(4, 2),
        "completion_ids": torch.arange(16).view(4, 4),
        "completion_mask": completion_mask,
        "tool_mask": tool_mask,
        "advantages": torch.tensor([0.5, -0.5, 1.0, -1.0]),
        "num_items_in_batch": torch.tensor(40),
        "old_per_token_logps": None,
        "names": ["a", "b", "c", "d"],
        DOMAIN_KEY: torch.tensor([1, 0, 1, 0]),
    }


def test_select_rows_takes_rows_and_shares_the_rest() -> None:
    inputs = _batch()
    rows = select_rows(inputs, torch.tensor([1, 3]))
    assert batch_rows(rows) == 2
    assert torch.equal(rows["completion_ids"], inputs["completion_ids"][[1, 3]])
    assert torch.equal(rows["advantages"], torch.tensor([-0.5, -1.0]))
    assert rows["names"] == ["b", "d"]
    assert rows["num_items_in_batch"] is inputs["num_items_in_batch"]  # 0-dim: whole batch
    assert rows["old_per_token_logps"] is None
    assert DOMAIN_KEY not in rows


def test_an_entry_that_is_not_per_row_is_refused() -> None:
    inputs = _batch()
    inputs["pixel_values"] = torch.zeros(7, 3)  # indexed by image patch, not by completion
    with pytest.raises(ConfigError, match=r"'pixel_values'.*text-only"):
        select_rows(inputs, torch.tensor([0]))


def test_domain_rows_are_padded_with_rows_that_add_nothing() -> None:
    inputs = _batch()
    rows = domain_rows(inputs, torch.tensor([2]), 3)
    assert batch_rows(rows) == 3
    assert torch.equal(rows["completion_ids"][0], inputs["completion_ids"][2])
    assert torch.equal(rows["completion_ids"][1:], inputs["completion_ids"][[0, 0]])  # copies
    assert torch.equal(rows["completion_mask"][0], inputs["completion_mask"][2])
    assert int(rows["completion_mask"][1:].sum()) == 0 and int(rows["tool_mask"][1:].sum()) == 0
    assert rows["advantages"].tolist() == [1.0, 0.0, 0.0]
    assert rows["names"] == ["c", "a", "a"]
    only_padding = domain_rows(inputs, torch.tensor([], dtype=torch.long), 1)
    assert int(only_padding["completion_mask"].sum()) == 0
    assert domain_rows(inputs, torch.tensor([1, 3]), 2)["names"] == ["b", "d"]  # no padding
    with pytest.raises(ValueError, match=r"cannot fit 2 rows into 1"):
        domain_rows(inputs, torch.tensor([1, 3]), 1)


def test_shares_of_each_normaliser_are_hand_worked() -> None:
    inputs = _batch()
    odd, even = torch.tensor([1, 3]), torch.tensor([0, 2])
    # rows: 2 of 4 rows each; TRL divided by 3 rows when one padding row was added
    assert loss_share("rows", inputs, odd) == pytest.approx(0.5)
    assert loss_share("rows", inputs, odd, 3) == pytest.approx(0.75)
    # tokens (completion x tool mask): rows 1 and 3 hold 2 + 3 = 5 of 1 + 2 + 3 + 3 = 9 tokens
    assert float(loss_share("tokens", inputs, odd)) == pytest.approx(5 / 9)
    assert float(loss_share("tokens", inputs, even)) == pytest.approx(4 / 9)
    assert float(loss_share("tokens", inputs, even, 3)) == pytest.approx(4 / 9)  # padding: 0
    # global: the normaliser is already the whole batch's
    assert loss_share("global", inputs, odd) == 1.0


def test_token_shares_with_no_loss_token_stay_finite() -> None:
    inputs = _batch()
    inputs["completion_mask"] = torch.zeros_like(inputs["completion_mask"])
    assert float(loss_share("tokens", inputs, torch.tensor([0]))) == 1.0  # TRL clamps at 1


def test_unknown_normaliser_is_a_bug() -> None:
    with pytest.raises(ValueError, match=r"unknown loss normaliser"):
        loss_share("median", _batch(), torch.tensor([0]))
