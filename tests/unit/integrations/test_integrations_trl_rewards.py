"""Reward routing for TRL: one function per domain, None outside it, called as TRL calls them
(keyword arguments of ``trl.GRPOTrainer._calculate_rewards``). No TRL needed."""

from __future__ import annotations

import asyncio

import pytest

from mgs.errors import ConfigError, DataError, UnknownNameError
from mgs.integrations.trl_rewards import AsyncDomainReward, domain_rewards
from mgs.rewards import ExtractionConfig, register_reward, unregister_reward

PROMPTS = ["What is 2 + 2?", "Hi!", "What is 3 + 4?", "Write about tea."]
COMPLETIONS = ["\\boxed{4}", "Hello there", "\\boxed{8}", "Tea is warm."]
DOMAINS = ["math", "chat", "math", "if"]


def _trl_call(func, prompts=PROMPTS, completions=COMPLETIONS, **columns):
    """Call ``func`` with TRL's keyword arguments."""
    logged: dict[str, list] = {}
    kwargs = {
        "domain": DOMAINS,
        "answer": ["4", None, "7", None],
        "completion_ids": [[1], [2, 3], [4], [5, 6, 7]],
        "trainer_state": object(),
        "log_extra": lambda column, values: logged.setdefault(column, []).extend(values),
        "log_metric": lambda name, value: None,
        **columns,
    }
    out = func(prompts=prompts, completions=completions, **kwargs)
    if asyncio.iscoroutine(out):
        out = asyncio.run(out)
    return out, logged


def test_each_function_scores_its_domain_and_returns_none_elsewhere() -> None:
    seen = {}

    def chat_reward(prompts, completions, completion_ids, answer, **kwargs):
        seen.update(prompts=prompts, completion_ids=completion_ids, answer=answer, **kwargs)
        return [float(len(c)) for c in completions]

    funcs = domain_rewards(
        {
            "math": lambda p, c, **k: [1.0] * len(c),
            "chat": chat_reward,
            "if": lambda p, c, **k: [0.5] * len(c),
        }
    )
    assert [f.__name__ for f in funcs] == ["math", "chat", "if"]  # TRL logs rewards/<name>/mean
    math_out, _ = _trl_call(funcs[0])
    chat_out, _ = _trl_call(funcs[1])
    if_out, _ = _trl_call(funcs[2])
    assert math_out == [1.0, None, 1.0, None]
    assert chat_out == [None, 11.0, None, None]
    assert if_out == [None, None, None, 0.5]
    # The chat reward saw only its sample's per-sample arguments; the rest passed as they are.
    assert seen["prompts"] == ["Hi!"]
    assert seen["completion_ids"] == [[2, 3]]
    assert seen["answer"] == [None]
    assert seen["domain"] == ["chat"]
    assert "trainer_state" in seen and "log_metric" in seen


def test_log_extra_of_a_domain_is_placed_at_its_rows() -> None:
    def chat_reward(prompts, completions, log_extra, **kwargs):
        log_extra("note", ["chatty"])
        return [1.0]

    funcs = domain_rewards(
        {
            "chat": chat_reward,
            "math": lambda p, c, **k: [0.0] * len(c),
            "if": lambda p, c, **k: [0.0] * len(c),
        }
    )
    _, logged = _trl_call(funcs[0])
    assert logged == {"note": [None, "chatty", None, None]}


def test_async_trl_reward_stays_async() -> None:
    async def chat_reward(prompts, completions, **kwargs):
        await asyncio.sleep(0)
        return [2.0] * len(completions)

    funcs = domain_rewards(
        {
            "chat": chat_reward,
            "math": lambda p, c, **k: [0.0] * len(c),
            "if": lambda p, c, **k: [0.0] * len(c),
        }
    )
    assert isinstance(funcs[0], AsyncDomainReward)
    out, _ = _trl_call(funcs[0])
    assert out == [None, 2.0, None, None]


def test_mgs_reward_by_name_gets_user_text_response_and_columns() -> None:
    seen = {}

    @register_reward("test_trl_echo")
    def echo(prompts, completions, **columns):
        seen.update(prompts=prompts, completions=completions, columns=columns)
        return [float(len(c)) for c in completions]

    try:
        funcs = domain_rewards(
            {"chat": "test_trl_echo", "math": "test_trl_echo", "if": "test_trl_echo"},
            extraction=ExtractionConfig(),  # zero-think tags
        )
        prompts = [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}]
            for p in PROMPTS
        ]
        completions = [
            [{"role": "assistant", "content": "<think>x</think> <response>4</response>"}],
            [{"role": "assistant", "content": "<think>hm</think> <response>Hello!</response>"}],
            [{"role": "assistant", "content": "no tags at all"}],
            [{"role": "assistant", "content": "<response>Tea.</response>"}],
        ]
        out, _ = _trl_call(funcs[0], prompts=prompts, completions=completions)
        assert out == [None, 6.0, None, None]
        assert seen["prompts"] == ["Hi!"]  # the user's request, not the system prompt
        assert seen["completions"] == ["Hello!"]  # the response part only
        # Dataset columns only: TRL's extras are not an mgs reward's columns.
        assert sorted(seen["columns"]) == ["answer", "domain"]
        # A completion without a response block scores 0 without a call (mgs' default).
        seen.clear()
        out, _ = _trl_call(funcs[1], prompts=prompts, completions=completions)
        assert out == [1.0, None, 0.0, None]
        assert seen["completions"] == ["4"]
    finally:
        unregister_reward("test_trl_echo")


def test_builtin_math_reward_through_trl_routing() -> None:
    funcs = domain_rewards(
        {
            "math": "math",
            "chat": lambda p, c, **k: [0.0] * len(c),
            "if": lambda p, c, **k: [0.0] * len(c),
        },
        options={"math": {"num_workers": 1}},
    )
    try:
        out, _ = _trl_call(funcs[0])
        assert out == [1.0, None, 0.0, None]  # 4 is right, 8 is not 7
    finally:
        funcs[0].close()


def test_a_sample_of_an_unrouted_domain_is_an_error() -> None:
    funcs = domain_rewards({"math": lambda p, c, **k: [0.0] * len(c)})
    with pytest.raises(ConfigError, match=r"domain 'chat' has no reward"):
        _trl_call(funcs[0])


def test_missing_domain_column_names_the_option() -> None:
    funcs = domain_rewards({"math": lambda p, c, **k: [0.0] * len(c)}, domain_column="task")
    with pytest.raises(DataError, match=r"no 'task' column.*domain_column="):
        _trl_call(funcs[0])


def test_bad_routes_are_refused() -> None:
    with pytest.raises(UnknownNameError, match=r"valid names: .*math"):
        domain_rewards({"math": "maths"})
    with pytest.raises(ConfigError, match=r"non-empty mapping"):
        domain_rewards({})
    with pytest.raises(ConfigError, match=r"mgs reward name"):
        domain_rewards({"math": 3})
    torch = pytest.importorskip("torch")
    with pytest.raises(ConfigError, match=r"'reward_model' reward"):
        domain_rewards({"chat": torch.nn.Linear(2, 1)})


def test_wrong_number_of_values_is_reported() -> None:
    funcs = domain_rewards(
        {
            "math": lambda p, c, **k: [1.0],
            "chat": lambda p, c, **k: [0.0],
            "if": lambda p, c, **k: [0.0],
        }
    )
    with pytest.raises(ValueError, match=r"returned 1 values for 2 samples"):
        _trl_call(funcs[0])
