"""Reward routing for TRL: ``{domain: reward}`` -> TRL reward functions, one per domain.

TRL's multi-task recipe is one dataset with a task column and one reward function per task that
returns ``None`` for the other tasks' samples (TRL then ignores that function for the sample).
:func:`domain_rewards` builds exactly those functions from a mapping whose values are either

- an ``mgs`` reward name (``"math"``, ``"ifeval"``, ``"reward_model"`` or one registered with
  :func:`mgs.rewards.register_reward`), called with the contract ``(prompts, completions,
  **columns) -> list[float | None]``: ``prompts`` are the plain user requests, ``completions``
  the response parts (see ``extraction``), ``columns`` the dataset's columns of those samples; or
- a plain TRL reward function (sync or async), called as TRL would call it, on its domain's
  samples only (every per-sample argument restricted to them).

Each returned function is named after its domain, so TRL logs ``rewards/<domain>/mean``. No TRL
import: the functions only follow TRL's calling convention (``trl.GRPOTrainer._calculate_rewards``).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from mgs.errors import ConfigError, DataError, unknown_name
from mgs.rewards.extraction import ExtractionConfig, split_completion
from mgs.rewards.registry import get_reward, reward_names

# Keyword arguments TRL adds to the dataset's columns; never passed on to an mgs reward.
_TRL_EXTRAS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def domain_rewards(
    routes: Mapping[str, str | Callable[..., Any]],
    *,
    domain_column: str = "domain",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    extraction: ExtractionConfig | None = None,
) -> list[Callable[..., Any]]:
    """TRL reward functions, one per domain of ``routes``, returning None outside their domain.

    Args:
        routes: domain -> mgs reward name or TRL reward function, e.g.
            ``{"math": "math", "if": "ifeval", "chat": my_chat_reward}``.
        domain_column: the dataset column that holds each sample's domain.
        options: options of the mgs rewards, by reward name, e.g.
            ``{"math": {"timeout_s": 2.0}, "reward_model": {"path": "my-rm"}}``.
        extraction: where the response is inside a completion, for the mgs rewards. None: the
            whole completion is the response (a model with its own chat template);
            ``ExtractionConfig()``: the zero-think tags ``<response> ... </response>``.

    Pass the list as ``reward_funcs`` (to ``MGSGRPOTrainer`` or plain ``trl.GRPOTrainer``).
    A sample whose domain has no route raises a ``ConfigError`` naming it. Call ``close()`` on
    any of the functions to stop the mgs rewards' worker processes.
    """
    if not isinstance(routes, Mapping) or not routes:
        raise ConfigError(
            "domain_rewards needs a non-empty mapping of domain -> reward, e.g. "
            "{'math': 'math', 'chat': my_reward_function}"
        )
    extraction = extraction or ExtractionConfig(template="chat")
    pool = _MgsRewards(dict(options or {}))
    out: list[Callable[..., Any]] = []
    for domain, reward in routes.items():
        if not isinstance(domain, str) or not domain:
            raise ConfigError(f"domain_rewards: domain names must be strings, got {domain!r}")
        if isinstance(reward, str):
            if reward not in reward_names():
                raise unknown_name("reward", reward, reward_names())
            impl: Callable[..., Any] = _MgsCall(pool, reward, extraction)
        elif _is_model(reward):
            raise ConfigError(
                f"domain_rewards: the reward of {domain!r} is a model; route it through mgs's "
                "'reward_model' reward (options={'reward_model': {'path': ...}}) or wrap it in a "
                "function"
            )
        elif callable(reward):
            impl = reward
        else:
            raise ConfigError(
                f"domain_rewards: the reward of {domain!r} must be an mgs reward name "
                f"({', '.join(reward_names())}) or a function, got {type(reward).__name__}"
            )
        cls = AsyncDomainReward if _is_async(impl) else DomainReward
        out.append(cls(domain, impl, list(routes), domain_column, pool))
    return out


class DomainReward:
    """One domain's TRL reward function: ``impl`` on that domain's samples, None elsewhere."""

    def __init__(
        self,
        domain: str,
        impl: Callable[..., Any],
        routed: list[str],
        domain_column: str,
        pool: _MgsRewards,
    ) -> None:
        self.__name__ = domain  # TRL names the reward (and its logged metrics) after this
        self.domain = domain
        self.impl = impl
        self.routed = routed
        self.domain_column = domain_column
        self._pool = pool

    def _select(self, n: int, kwargs: dict[str, Any]) -> list[int]:
        domains = kwargs.get(self.domain_column)
        if domains is None:
            raise DataError(
                f"the reward of domain {self.domain!r} got no {self.domain_column!r} column "
                f"(columns: {', '.join(sorted(kwargs)) or 'none'}); give every row a domain, or "
                "pass domain_column= the column that holds it"
            )
        unrouted = sorted({str(d) for d in domains if d not in self.routed})
        if unrouted:
            raise ConfigError(
                f"domain {unrouted[0]!r} has no reward; add it to domain_rewards' routes "
                f"(routed now: {', '.join(self.routed)})"
            )
        return [i for i in range(n) if domains[i] == self.domain]

    def _call_args(self, idx: list[int], prompts, completions, kwargs) -> tuple[tuple, dict]:
        n = len(prompts)
        sub: dict[str, Any] = {}
        for key, value in kwargs.items():
            if isinstance(value, list) and len(value) == n:
                sub[key] = [value[i] for i in idx]
            elif key == "log_extra" and callable(value):
                sub[key] = _scatter_log(value, idx, n)
            else:
                sub[key] = value  # trainer_state, log_metric: not per sample
        return ([prompts[i] for i in idx], [completions[i] for i in idx]), sub

    def __call__(self, prompts, completions, **kwargs: Any) -> list[float | None]:
        idx = self._select(len(prompts), kwargs)
        out: list[float | None] = [None] * len(prompts)
        if idx:
            args, sub = self._call_args(idx, prompts, completions, kwargs)
            _scatter(out, idx, self.impl(*args, **sub), self.domain)
        return out

    def close(self) -> None:
        """Stop the mgs rewards' worker processes (shared by all functions of one call)."""
        self._pool.close()


class AsyncDomainReward(DomainReward):
    """:class:`DomainReward` for an async TRL reward function (TRL awaits it)."""

    async def __call__(self, prompts, completions, **kwargs: Any) -> list[float | None]:
        idx = self._select(len(prompts), kwargs)
        out: list[float | None] = [None] * len(prompts)
        if idx:
            args, sub = self._call_args(idx, prompts, completions, kwargs)
            _scatter(out, idx, await self.impl(*args, **sub), self.domain)
        return out


class _MgsRewards:
    """The mgs rewards of one :func:`domain_rewards` call, built on first use, by name."""

    def __init__(self, options: dict[str, Mapping[str, Any]]) -> None:
        self.options = options
        self.built: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self.built:
            self.built[name] = get_reward(name, **dict(self.options.get(name, {})))
        return self.built[name]

    def close(self) -> None:
        for reward in self.built.values():
            close = getattr(reward, "close", None)
            if callable(close):
                close()
        self.built.clear()


class _MgsCall:
    """Call an mgs reward the mgs way: plain prompts, response parts, dataset columns only."""

    def __init__(self, pool: _MgsRewards, name: str, extraction: ExtractionConfig) -> None:
        self.pool, self.name, self.extraction = pool, name, extraction

    def __call__(self, prompts, completions, **kwargs: Any) -> list[float | None]:
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_EXTRAS and isinstance(v, list)}
        values: list[float | None] = [0.0] * len(completions)  # no response part: scores 0
        keep = []
        responses = []
        for i, completion in enumerate(completions):
            response = split_completion(_text(completion), self.extraction).response
            if response is not None:
                keep.append(i)
                responses.append(response)
        if keep:
            scores = self.pool.get(self.name)(
                [_user_text(prompts[i]) for i in keep],
                responses,
                **{k: [v[i] for i in keep] for k, v in columns.items()},
            )
            _scatter(values, keep, scores, self.name)
        return [_finite(v) for v in values]


def _scatter(out: list, idx: list[int], values: Any, who: str) -> None:
    values = list(values)
    if len(values) != len(idx):
        raise ValueError(f"the reward {who!r} returned {len(values)} values for {len(idx)} samples")
    for i, value in zip(idx, values):
        out[i] = value


def _scatter_log(log_extra: Callable[[str, list], None], idx: list[int], n: int):
    """TRL's ``log_extra(column, values)`` for a subset: values placed at their rows, None elsewhere."""

    def log(column: str, values: list) -> None:
        full: list[Any] = [None] * n
        _scatter(full, idx, values, f"log_extra({column!r})")
        log_extra(column, full)

    return log


def _text(value: Any) -> str:
    """A completion as text: a string, or the last message of a conversational completion."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], Mapping):
        return _content(value[-1].get("content", ""))
    raise DataError(f"a completion must be a string or a list of messages, got {value!r:.80}")


def _user_text(prompt: Any) -> str:
    """The plain user request: the prompt itself, or its last user message's text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        if users:
            return _content(users[-1].get("content", ""))
    raise DataError(f"a prompt must be a string or a list of messages, got {prompt!r:.80}")


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return str(content)


def _finite(value: Any) -> float | None:
    """A reward value as a finite float, or None (None, NaN, inf, not a number)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (as TRL's ``is_async_callable`` decides)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


def _is_model(value: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency of mgs
        return False
    return isinstance(value, nn.Module)
