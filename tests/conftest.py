"""Shared fixtures: the real benchmark files in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MGS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the real benchmark files; skips the test when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real benchmark data not found at {SHARED_DATA} (a fresh clone has no ../shared); "
            "set MGS_SHARED_DATA to the folder holding math500.json, ifeval.json, ..."
        )
    return SHARED_DATA


def shared_file(name: str) -> Path:
    """Path of one shared data file, or skip with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(
            f"{name} not found under {SHARED_DATA}; it ships in ../shared/data beside the repo"
        )
    return path


# ----------------------------------------------------------------------------- the tiny model
# One place that builds the in-process test models: the built-in demo's character tokenizer and
# tiny Qwen2 policies of whatever size a test needs (small by default: seconds, not minutes).

SMALL_SIZES = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 64,
}


def tiny_model_config(**sizes):
    """A :class:`~mgs.tiny.config.TinyModelConfig`: :data:`SMALL_SIZES` with ``sizes`` on top."""
    from mgs.tiny.config import TinyModelConfig

    return TinyModelConfig(**{**SMALL_SIZES, **sizes})


@pytest.fixture(scope="session")
def tokenizer():
    """The tiny character-level tokenizer (left padding, pad token), shared by every test."""
    from mgs.tiny.model import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_policy(tokenizer):
    """Factory of freshly initialised tiny policies: ``tiny_policy(hidden_size=64, seed=1)``."""
    from mgs.tiny.model import build_tiny_policy

    def make(**sizes):
        return build_tiny_policy(tokenizer, tiny_model_config(**sizes))

    return make


# ----------------------------------------------------------------------------- tiny trainer configs


def _register_test_rewards() -> None:
    from mgs.rewards import register_reward

    @register_reward("test_letter_a")
    def letter_a_reward(prompts, completions, **columns):
        """Fraction of the letter 'a' in the response: cheap, dense and deterministic."""
        return [c.count("a") / max(1, len(c)) for c in completions]

    @register_reward("test_length")
    def length_reward(prompts, completions, **columns):
        """Shorter responses score higher: pulls against test_letter_a's wish for more 'a's."""
        return [1.0 / (1.0 + len(c)) for c in completions]


_register_test_rewards()


def tiny_overrides(**extra: object) -> list[str]:
    """`key=value` overrides of the demo config that make a trainer of seconds: small model,
    short rollouts, cheap in-process rewards, no warm start; `extra` changes keys
    (`strategy__name="mixed"` for `strategy.name=mixed`)."""
    base = {
        "steps": 3,
        "num_threads": 1,
        "model.tiny.hidden_size": 32,
        "model.tiny.num_layers": 2,
        "model.tiny.intermediate_size": 64,
        "data.sources": "[{domain: math, synthetic: tiny_math, size: 64}, {domain: chat, synthetic: tiny_chat, size: 64}]",
        "data.mixture.batch_size": 4,
        "data.mixture.proportions": "{math: 1, chat: 1}",
        "rewards.routes": "{math: test_letter_a, chat: test_length}",
        "rewards.reward_model.path": "unused",
        "rewards.extraction.on_missing_response": "after_think",
        "rollout.sampling.n": 2,
        "rollout.sampling.max_new_tokens": 12,
        "rollout.sampling.temperature": 1.0,
        "grpo.micro_batch_size": 3,
        "optim.lr": 1e-2,
        "warmstart.sft.steps": 0,
        "eval.prompts_per_domain": 0,
        "logging.progress": False,
        "logging.save_model": False,
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def overrides():
    return tiny_overrides


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """The Hugging Face hub unreachable at once, as on a machine without internet: the offline
    flags are read when huggingface_hub / datasets are imported, so the imported constants are
    patched too (an earlier test may have imported them)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "no-hub-cache"))
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(
        datasets.config, "HF_DATASETS_CACHE", tmp_path / "no-hub-cache", raising=False
    )
