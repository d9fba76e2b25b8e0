"""Sampling config, the rollout batch layout and tensors, and where a completion ends."""

from __future__ import annotations

import pytest

from mgs.dataclass_config import from_dict
from mgs.errors import ConfigError
from mgs.rl.hf_generate import completion_end
from mgs.rl.rollout import Completion, RolloutBatch, SamplingConfig


def test_sampling_defaults_are_the_papers() -> None:
    cfg = SamplingConfig()
    assert (cfg.n, cfg.temperature, cfg.top_p, cfg.top_k) == (8, 0.7, 1.0, 0)
    assert cfg.stop == ["</response>"]
    assert SamplingConfig().stop is not cfg.stop  # no shared mutable default
    assert cfg.step_seed(3) != cfg.step_seed(4)
    assert SamplingConfig(seed=1).step_seed(0) != SamplingConfig(seed=0).step_seed(1)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("n", 0, "n must be a positive integer"),
        ("temperature", -0.1, "0 = greedy"),
        ("top_p", 0.0, r"in \(0, 1\]"),
        ("top_k", -1, "top_k must be an integer >= 0"),
        ("max_new_tokens", 0, "max_new_tokens must be a positive integer"),
        ("stop", [""], "non-empty strings"),
    ],
)
def test_sampling_validation(field: str, value, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        SamplingConfig(**{field: value})


def test_sampling_from_yaml_mapping() -> None:
    cfg = from_dict(SamplingConfig, {"n": 4, "stop": [], "temperature": 1}, "rollout")
    assert (cfg.n, cfg.stop, cfg.temperature) == (4, [], 1.0)
    with pytest.raises(ConfigError, match=r"^rollout: top_p"):
        from_dict(SamplingConfig, {"top_p": 2}, "rollout")


def _c(prompt_index: int, prompt: list[int], completion: list[int]) -> Completion:
    return Completion(prompt_index, prompt, completion, "", "stop")


def test_to_tensors_hand_built() -> None:
    batch = RolloutBatch([_c(0, [1, 2, 3], [5, 6]), _c(1, [4], [7, 8, 9])], n=1)
    t = batch.to_tensors(pad_token_id=0)
    # P = 3 (longest prompt), R = 3 (longest completion); responses start at column 3
    assert t["input_ids"].tolist() == [[1, 2, 3, 5, 6, 0], [0, 0, 4, 7, 8, 9]]
    assert t["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert t["response_mask"].tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]]
    assert batch.prompt_index == [0, 1] and batch.num_prompts == 2 and len(batch) == 2
    # a selection of rows is padded to its own widths (P = 1, R = 3), in the order given
    sub = batch.to_tensors(pad_token_id=0, rows=[1])
    assert sub["input_ids"].tolist() == [[4, 7, 8, 9]]
    assert sub["response_mask"].tolist() == [[0, 1, 1, 1]]
    swapped = batch.to_tensors(pad_token_id=0, rows=[1, 0])
    assert swapped["input_ids"].tolist() == [[0, 0, 4, 7, 8, 9], [1, 2, 3, 5, 6, 0]]
    with pytest.raises(ValueError, match="at least one"):
        batch.to_tensors(pad_token_id=0, rows=[])


def test_layout_must_be_group_contiguous() -> None:
    ok = RolloutBatch([_c(0, [1], [2]), _c(0, [1], [3]), _c(1, [4], [5]), _c(1, [4], [6])], n=2)
    assert ok.prompt_index == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="must belong to prompt 0"):
        RolloutBatch([_c(0, [1], [2]), _c(1, [4], [5]), _c(0, [1], [3]), _c(1, [4], [6])], n=2)
    with pytest.raises(ValueError, match="groups of n=2"):
        RolloutBatch([_c(0, [1], [2])], n=2)


# completion_end on a toy vocabulary: ids index into TOKENS; id 0 is EOS ("<e>").
TOKENS = ["<e>", "a", "b", "</r", "esp>", "x</resp>y", "</resp>"]


def _decode(ids) -> str:
    return "".join(TOKENS[i] for i in ids)


@pytest.mark.parametrize(
    ("ids", "stop", "expected"),
    [
        ([1, 2, 0, 1, 1], [], (3, "stop")),  # EOS kept, nothing after it
        ([1, 2, 1, 1], [], (4, "length")),  # ran out of tokens
        ([1, 2, 1, 0], ["</resp>"], (4, "stop")),  # EOS as the very last token
        (
            [1, 3, 4, 2, 0],
            ["</resp>"],
            (3, "stop"),
        ),  # stop string across two tokens: "</r" + "esp>"
        ([1, 5, 2, 2], ["</resp>"], (2, "stop")),  # inside one token: that whole token is kept
        ([1, 0, 6, 2], ["</resp>"], (2, "stop")),  # EOS before the stop string
        ([1, 6, 0], ["</resp>"], (2, "stop")),  # stop string before EOS
        ([2, 1, 2, 6], ["</resp>", "ab"], (3, "stop")),  # "bab</resp>": "ab" ends first
        ([6, 2, 6], ["</resp>"], (1, "stop")),  # its first occurrence
    ],
)
def test_completion_end(ids: list[int], stop: list[str], expected: tuple[int, str]) -> None:
    assert completion_end(ids, [0], stop, _decode) == expected
