"""Math reward: math-verify on the last box, hard deadlines, real MATH-500 agreement."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from conftest import shared_file
from mgs.errors import ConfigError
from mgs.rewards import MathRewardConfig, get_reward
from mgs.rewards.deadline_pool import DeadlinePool
from mgs.rewards.math_reward import MathReward


@pytest.fixture(scope="module")
def math_reward():
    with MathReward(MathRewardConfig(timeout_s=10.0, num_workers=2)) as reward:
        yield reward


def score(reward, completions, answers):
    return reward([""] * len(completions), completions, answer=answers)


def test_hand_worked_cases(math_reward):
    completions = [
        r"so it is \boxed{\frac{1}{2}}",  # equal
        r"\boxed{0.5}",  # numerically equal
        r"\boxed{3} no wait \boxed{4}",  # the last box counts
        r"I think 4, \boxed{3}",  # the last box is wrong
        "4",  # no box: 0
        r"\boxed{}",  # empty box: 0
        r"\boxed{x^2+2x+1}",
        r"\boxed{(1,2)}",
    ]
    answers = [r"\frac{1}{2}", r"\frac12", "4", "4", "4", "4", "(x+1)^2", r"(1, 2)"]
    assert score(math_reward, completions, answers) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_missing_gold_is_not_applicable_and_unreadable_gold_fails_the_sample(math_reward):
    values = score(math_reward, [r"\boxed{1}", r"\boxed{1}"], [None, "$"])  # "$" parses to nothing
    assert values == [None, None]


def test_missing_answer_column_names_it():
    reward = MathReward()  # workers start lazily: never started here
    with pytest.raises(ConfigError, match="'answer' column"):
        reward([""], [r"\boxed{1}"], gold=["1"])


def test_overlong_answer_scores_zero_without_parsing(math_reward):
    long = "1" * 2000
    assert score(math_reward, [rf"\boxed{{{long}}}"], [long]) == [0.0]


def test_get_reward_builds_math_with_options_and_rejects_unknown_ones():
    reward = get_reward("math", timeout_s=1.5)
    assert isinstance(reward, MathReward) and reward.cfg.timeout_s == 1.5
    with pytest.raises(ConfigError, match=r"no option 'timeout'.*timeout_s"):
        get_reward("math", timeout=1.5)


@pytest.mark.parametrize("bad", [{"timeout_s": 0.0}, {"timeout_s": math.inf}, {"num_workers": 0}])
def test_config_validation(bad):
    with pytest.raises(ConfigError, match=r"rewards\.math"):
        MathRewardConfig(**bad)


def test_math500_reference_answers_score_one_and_other_answers_zero(math_reward):
    rows = json.loads(shared_file("math500.json").read_text(encoding="utf-8"))
    n = len(rows)

    def other(i):  # the next problem whose answer is written differently
        j = (i + 1) % n
        while rows[j]["answer"].replace(" ", "") == rows[i]["answer"].replace(" ", ""):
            j = (j + 1) % n
        return rows[j]["answer"]

    completions = (
        [rf"\boxed{{{r['answer']}}}" for r in rows]
        + [r["solution"] for r in rows]
        + [rf"The answer is \boxed{{{other(i)}}}." for i in range(n)]
    )
    values = score(math_reward, completions, [r["answer"] for r in rows] * 3)
    own, solution, wrong = values[:n], values[n : 2 * n], values[2 * n :]
    assert own == [1.0] * n
    assert solution == [1.0] * n
    # The one known equivalence: math-verify reads the prediction "x=5" as 5 (an assignment).
    accepted = [(rows[i]["answer"], other(i)) for i in range(n) if wrong[i] != 0.0]
    assert accepted == [("5", "x=5")]


def test_adversarial_inputs_finish_within_the_deadline():
    junk = bytes(random.Random(0).randrange(256) for _ in range(100_000)).decode("latin-1")
    cases = [
        r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        r"\boxed{10^{10^{10^{10}}}}",
        r"\boxed{(10^{100})!}",
        r"\boxed{" + "1+" * 500_000 + "1}",  # a megabyte inside the box
        r"\boxed{" * 150_000,  # a megabyte of unclosed boxes
        r"\boxed{" + junk + "}",
        "x" * 1_000_000 + r"\boxed{2}",  # a megabyte before a correct box
    ]
    timeout = 2.0
    cfg = MathRewardConfig(timeout_s=timeout, num_workers=2, max_answer_chars=10**7)
    with MathReward(cfg) as reward:
        score(reward, [r"\boxed{1}"], ["1"])  # workers up before timing
        start = time.perf_counter()
        result = reward.score([""] * len(cases), cases, answer=["2"] * len(cases))
        elapsed = time.perf_counter() - start
        assert result.values == [0.0] * (len(cases) - 1) + [1.0]
        # two workers, at most every case timing out: ceil(7 / 2) rounds of the deadline, plus
        # the respawns of killed workers (each imports sympy: seconds on a loaded 2-core machine,
        # where a 6 s margin failed once). Without the deadline `(10^{100})!` alone never ends.
        assert elapsed < 4 * timeout + 30.0
        # the pool still answers after its workers were killed and replaced
        assert score(reward, [r"\boxed{7}"], ["7"]) == [1.0]
    assert sum(result.timed_out) >= 1


def test_pool_kills_a_hung_worker_and_replaces_a_dead_one():
    with_pool = DeadlinePool("time:sleep", num_workers=1, timeout_s=0.5)
    try:
        start = time.perf_counter()
        outcomes = with_pool.map([(30.0,), (0.0,)])
        assert [o.status for o in outcomes] == ["timeout", "ok"]
        assert time.perf_counter() - start < 10.0
        assert with_pool.killed == 1
    finally:
        with_pool.close()
    crash = DeadlinePool("os:_exit", num_workers=1, timeout_s=5.0)
    try:
        outcomes = crash.map([(3,)])
        assert outcomes[0].status == "error" and "died" in outcomes[0].error
    finally:
        crash.close()
