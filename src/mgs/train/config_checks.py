"""Cross-section checks of the run config: settings each valid alone that do not work together.

Called from :meth:`mgs.train.config.TrainConfig.__post_init__`, so ``mgs train --print-config``
and every loader reject them before anything is built. Checks that need the number of ranks run
at start-up (:func:`mgs.train.update.check_mini_batches`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mgs.errors import ConfigError

if TYPE_CHECKING:
    from mgs.train.config import TrainConfig

_NOTHING = "every advantage (reward - group mean) is 0 and RL learns nothing"


def check_rollouts(cfg: TrainConfig) -> None:
    """Sampling under which GRPO cannot learn, and mini-batches a step cannot fill (1 rank).

    Skipped when ``steps`` is 0 (no rollout is trained on: only the evaluation runs).
    """
    if cfg.steps == 0:
        return
    sampling = cfg.rollout.sampling
    if sampling.n < 2:
        raise ConfigError(
            f"rollout.sampling.n is {sampling.n}: with one rollout per prompt {_NOTHING}; set "
            "rollout.sampling.n to at least 2 (the paper: 8)"
        )
    if sampling.temperature == 0 or sampling.top_k == 1:
        which = "temperature is 0" if sampling.temperature == 0 else "top_k is 1"
        raise ConfigError(
            f"rollout.sampling.{which} (greedy decoding): the {sampling.n} rollouts of a prompt "
            f"are identical, so {_NOTHING}; sample instead, e.g. rollout.sampling.temperature=0.7 "
            "rollout.sampling.top_k=0"
        )
    rows = cfg.data.mixture.batch_size * sampling.n  # the rollouts of a step, on one rank
    if cfg.grpo.mini_batches > rows:
        raise ConfigError(
            f"grpo.mini_batches ({cfg.grpo.mini_batches}) is more than the rollouts of a step "
            f"(data.mixture.batch_size {cfg.data.mixture.batch_size} x rollout.sampling.n "
            f"{sampling.n} = {rows}), so some mini-batches would be empty; set grpo.mini_batches "
            f"to at most {rows} (the paper: 1)"
        )


def check_positions(cfg: TrainConfig) -> None:
    """The tiny model's positions must hold the longest prompt plus the longest response.

    A Hugging Face model's length is only known once it is loaded; the tiny one's is in the config.
    """
    if cfg.model.name != "tiny":
        return
    positions = cfg.model.tiny.max_positions
    prompt, response = cfg.data.max_prompt_tokens, cfg.rollout.sampling.max_new_tokens
    if prompt is not None and prompt + response <= positions:
        return
    if response >= positions:
        raise ConfigError(
            f"rollout.sampling.max_new_tokens ({response}) leaves no room for a prompt in "
            f"model.tiny.max_positions ({positions}); raise model.tiny.max_positions to at least "
            f"{response + (prompt or 1)} or lower rollout.sampling.max_new_tokens"
        )
    if prompt is None:
        raise ConfigError(
            f"data.max_prompt_tokens is null, so a prompt could fill all model.tiny.max_positions "
            f"({positions}) and leave no room for the response; set data.max_prompt_tokens to at "
            f"most {positions - response} (max_positions minus rollout.sampling.max_new_tokens)"
        )
    raise ConfigError(
        f"model.tiny.max_positions ({positions}) is smaller than the longest prompt plus response: "
        f"data.max_prompt_tokens ({prompt}) + rollout.sampling.max_new_tokens ({response}) = "
        f"{prompt + response}; raise model.tiny.max_positions to at least {prompt + response} or "
        "lower the other two"
    )


def check_lora(cfg: TrainConfig) -> None:
    """LoRA settings the rollout backend cannot serve: vLLM applies adapters to linear layers only
    (the embeddings and the output head are not), so say so before anything loads."""
    lora = cfg.model.lora
    if lora is None or cfg.rollout.backend != "vllm":
        return
    refused = [t for t in lora.target_modules if t in ("embed_tokens", "lm_head")]
    if refused:
        raise ConfigError(
            f"model.lora.target_modules has {', '.join(refused)}, but rollout.backend: vllm "
            "serves LoRA adapters on linear layers only; drop them, or use rollout.backend: hf"
        )
