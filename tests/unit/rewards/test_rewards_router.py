"""The router: each domain to its reward only, batched once; failures counted, never crashing."""

from __future__ import annotations

import logging
import math

import pytest

from mgs.dataclass_config import from_dict
from mgs.errors import ConfigError, UnknownNameError
from mgs.rewards import RewardsConfig, Scores, get_reward, register_reward, unregister_reward
from mgs.rewards.router import RewardRouter

CALLS: list[dict] = []


@pytest.fixture(autouse=True)
def fake_rewards():
    """Test rewards: 'echo' returns the response length, 'picky' raises on 'boom'."""
    CALLS.clear()

    @register_reward("echo")
    def echo(prompts, completions, **columns):
        CALLS.append({"reward": "echo", "prompts": prompts, "completions": completions, **columns})
        return [float(len(c)) for c in completions]

    @register_reward("picky")
    class Picky:
        def __init__(self, none_on: str = "skip"):
            self.none_on = none_on
            self.closed = False

        def __call__(self, prompts, completions, **columns):
            CALLS.append({"reward": "picky", "completions": completions})
            if any(c == "boom" for c in completions):
                raise RuntimeError("cannot score boom")
            out = []
            for c in completions:
                odd = {
                    "nan": math.nan,
                    "huge": 1e39,
                    "text": "1.0",
                }  # values a buggy reward returns
                out.append(None if c == self.none_on else odd.get(c, 1.0))
            return out

        def close(self):
            self.closed = True

    yield
    for name in ("echo", "picky"):
        unregister_reward(name)


def wrap(text):
    return f"<think>thinking 123</think><response>{text}</response>"


def router_for(**routes):
    return RewardRouter(RewardsConfig(routes=routes, fallback=-1.0))


def test_each_domain_goes_to_its_reward_once_batched_with_its_columns_only():
    router = router_for(a="echo", b="picky")
    result = router(
        ["a", "b", "a", "b"],
        ["p0", "p1", "p2", "p3"],
        [wrap("xx"), wrap("y"), wrap("zzz"), wrap("w")],
        [{"answer": "1"}, {"other": 5}, {"answer": "2"}, {"other": 6}],
    )
    assert result.rewards == [2.0, 1.0, 3.0, 1.0]
    echo_calls = [c for c in CALLS if c["reward"] == "echo"]
    assert echo_calls == [
        {
            "reward": "echo",
            "prompts": ["p0", "p2"],
            "completions": ["xx", "zzz"],
            "answer": ["1", "2"],
        }
    ]  # one call, only domain a, only the response (never the thought), its columns
    assert len([c for c in CALLS if c["reward"] == "picky"]) == 1
    assert result.stats["reward/a/mean"] == 2.5
    assert result.stats["reward/a/std"] == 0.5
    assert result.stats["reward/b/count"] == 2.0


def test_an_exception_is_isolated_to_its_sample_and_warned_once(caplog):
    router = router_for(b="picky")
    with caplog.at_level(logging.WARNING, logger="mgs.rewards.router"):
        result = router(["b"] * 3, ["", "", ""], [wrap("ok"), wrap("boom"), wrap("fine")], [{}] * 3)
    assert result.rewards == [1.0, -1.0, 1.0]
    assert result.stats["reward/b/fallback_frac"] == pytest.approx(1 / 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot score boom" in warnings[0].getMessage()
    # the batch failed, then each sample was retried alone: 1 + 3 calls
    assert len(CALLS) == 4


def test_none_and_non_finite_values_get_the_fallback():
    router = router_for(b="picky")
    result = router(["b"] * 3, [""] * 3, [wrap("skip"), wrap("nan"), wrap("x")], [{}] * 3)
    assert result.rewards == [-1.0, -1.0, 1.0]
    assert all(math.isfinite(r) for r in result.rewards)
    assert result.stats["reward/b/fallback_frac"] == pytest.approx(2 / 3)


def test_values_that_are_no_usable_number_are_warned_every_step(caplog):
    # Were silent (NaN: only fallback_frac in metrics.jsonl; "1.0" accepted as 1.0), or crashed
    # the step: 1e39 became inf in the float32 advantages, 1e300 overflowed the group statistics.
    router = router_for(b="picky")
    completions = [wrap("nan"), wrap("huge"), wrap("text"), wrap("skip"), wrap("x")]
    with caplog.at_level(logging.WARNING, logger="mgs.rewards.router"):
        result = router(["b"] * 5, [""] * 5, completions, [{}] * 5)
    assert result.rewards == [-1.0, -1.0, -1.0, -1.0, 1.0]
    assert result.stats["reward/b/fallback_frac"] == pytest.approx(4 / 5)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        "rewards: 3 sample(s) of reward 'picky' returned nan, not a finite number of at most "
        "1e+15 in size, and got the fallback -1"
    )  # None is the contract's "no score": counted in fallback_frac, not warned


def test_missing_response_tag_scores_zero_without_calling_the_reward():
    router = router_for(a="echo")
    result = router(["a", "a"], ["", ""], ["<think>long thought</think> 42", wrap("abc")], [{}, {}])
    assert result.rewards == [0.0, 3.0]
    assert CALLS[0]["completions"] == ["abc"]
    assert result.stats["reward/a/missing_tag_frac"] == 0.5
    assert result.stats["reward/a/fallback_frac"] == 0.0


def test_after_think_extraction_switch():
    cfg = from_dict(
        RewardsConfig,
        {"routes": {"a": "echo"}, "extraction": {"on_missing_response": "after_think"}},
    )
    result = RewardRouter(cfg)(["a"], [""], ["<think>t</think>abcd"], [{}])
    assert result.rewards == [4.0]
    assert result.stats["reward/a/missing_tag_frac"] == 1.0


def test_timeouts_reported_by_score_are_counted():
    class Timer:
        def score(self, prompts, completions, **columns):
            return Scores(values=[0.0, 1.0], timed_out=[True, False])

    router = router_for(a="echo")
    router.rewards["echo"] = Timer()
    result = router(["a", "a"], ["", ""], [wrap("x"), wrap("y")], [{}, {}])
    assert result.rewards == [0.0, 1.0]
    assert result.stats["reward/a/timeout_frac"] == 0.5


def test_a_wrong_number_of_values_is_a_per_sample_failure():
    @register_reward("short")
    def short(prompts, completions, **columns):
        return [1.0]  # always one value

    try:
        result = router_for(a="short")(["a", "a"], ["", ""], [wrap("x"), wrap("y")], [{}, {}])
        assert result.rewards == [1.0, 1.0]  # the per-sample retry gets one value each
    finally:
        unregister_reward("short")


def test_unrouted_domain_is_an_error_naming_it_and_the_fix():
    with pytest.raises(ConfigError, match=r"domain 'chat' has no reward.*rewards.routes.chat="):
        RewardRouter(RewardsConfig(routes={"a": "echo"}), domains=["a", "chat"])
    router = router_for(a="echo")
    with pytest.raises(ConfigError, match="domain 'b' has no reward"):
        router(["b"], [""], [wrap("x")], [{}])


def test_config_errors_propagate_instead_of_becoming_fallbacks():
    router = RewardRouter(RewardsConfig(routes={"m": "math"}))
    with router, pytest.raises(ConfigError, match="'answer' column"):
        router(["m"], [""], [wrap(r"\boxed{1}")], [{"gold": "1"}])


def test_unknown_reward_and_reward_model_without_path_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown reward 'maths'; valid names: .*echo.*math"):
        RewardsConfig(routes={"m": "maths"})
    with pytest.raises(ConfigError, match=r"set rewards.reward_model.path"):
        RewardsConfig(routes={"chat": "reward_model"})


def test_registry_lookup_options_and_close():
    with pytest.raises(
        UnknownNameError,
        match="valid names: echo, ifbench, ifeval, math, multiple_choice, picky, popqa",
    ):
        get_reward("nope")
    assert get_reward("picky", none_on="zz").none_on == "zz"
    with pytest.raises(ConfigError, match="does not accept options"):
        get_reward("picky", colour="red")
    with pytest.raises(ConfigError, match="is a built-in"):
        register_reward("math")
    router = router_for(b="picky")
    with router:
        pass
    assert router.rewards["picky"].closed


def test_real_rewards_side_by_side():
    cfg = RewardsConfig(routes={"math": "math", "if": "ifeval"})
    with RewardRouter(cfg, domains=["math", "if"]) as router:
        result = router(
            ["math", "if", "math"],
            ["What is 2+2?", "Write without commas.", "What is 1/2?"],
            [
                wrap(r"It is \boxed{4}"),
                "<think>I must avoid commas, like this, </think><response>no commas here</response>",
                r"<think>\boxed{0.5}</think><response>\boxed{1/3}</response>",  # the thought's box is ignored
            ],
            [
                {"answer": "4"},
                {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
                {"answer": r"\frac{1}{2}"},
            ],
        )
    assert result.rewards == [1.0, 1.0, 0.0]
    assert result.stats["reward/math/mean"] == 0.5
    assert "reward/time/math_s" in result.stats
