"""Reward-model reward: a Hugging Face sequence-classification model scores (prompt, response).

Any ``AutoModelForSequenceClassification`` directory works (Skywork-Reward-V2 for real runs, the
tiny one from ``mgs rm-train`` by default): the conversation is rendered with the reward model's
own chat template (a user turn and an assistant turn), scored in batches in eval mode under
``torch.inference_mode``, and the scalar is ``logits[:, 0]``. The model is loaded once, on first
use, and reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgs.errors import ConfigError
from mgs.rewards.config import RewardModelConfig
from mgs.rewards.registry import Scores


def render_conversations(tokenizer: Any, prompts: list[str], responses: list[str]) -> list[str]:
    """``(prompt, response)`` pairs as chat text through ``tokenizer``'s own template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "the reward model's tokenizer has no chat template, so (prompt, response) cannot be "
            "rendered the way the model was trained; use a reward model directory whose "
            "tokenizer_config.json (or chat_template.jinja) defines one"
        )
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
            tokenize=False,
        )
        for p, r in zip(prompts, responses)
    ]


def _resolve(device: str, dtype: str) -> tuple[Any, Any]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype == "auto":
        dtype = "bfloat16" if dev.type == "cuda" else "float32"
    return dev, getattr(torch, dtype)


class RewardModelScorer:
    """Scores (prompt, response) pairs with one reward model; loads it on the first call."""

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_length: int = 4096,
    ) -> None:
        self.path = str(path)
        self.device_name, self.dtype_name = device, dtype
        self.batch_size, self.max_length = batch_size, max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._max_length = max_length

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification

        from mgs.models.loading import load_errors, load_tokenizer, model_dir_problem

        device, dtype = _resolve(self.device_name, self.dtype_name)
        fix = (
            "set rewards.reward_model.path to a directory holding a sequence-classification "
            "model (config.json, weights, tokenizer), e.g. one written by `mgs rm-train`"
        )
        problem = model_dir_problem(self.path) if Path(self.path).is_dir() else None
        if problem:
            raise ConfigError(f"cannot load the reward model from {self.path!r}: {problem}; {fix}")
        try:
            tokenizer = load_tokenizer(self.path)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                self.path, dtype=dtype, output_loading_info=True
            )
        except load_errors() as exc:
            raise ConfigError(
                f"cannot load the reward model from {self.path!r} ({exc}); {fix}"
            ) from None
        untrained = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("model."))
        if untrained:  # e.g. a policy (a causal LM): its score head would be random
            kinds = ", ".join(getattr(model.config, "architectures", None) or ["?"])
            raise ConfigError(
                f"the reward model {self.path!r} ({kinds}) has no trained score head "
                f"({', '.join(untrained)} missing: transformers would initialise it at random, "
                f"so its scores would mean nothing); {fix}"
            )
        tokenizer.truncation_side = "left"  # a long conversation keeps its end (the response)
        self._tokenizer, self._model = tokenizer, model.to(device).eval()
        # Never feed more positions than the model has (the tiny RM has 512).
        limit = getattr(model.config, "max_position_embeddings", None)
        self._max_length = min(self.max_length, limit) if limit else self.max_length

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        self._load()
        return self._model

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One scalar per pair, in order."""
        import torch

        self._load()
        texts = render_conversations(self._tokenizer, prompts, responses)
        # Without a pad token a batch cannot be padded (the model finds each sequence's last
        # token through it): score one sequence at a time then.
        step = self.batch_size if self._tokenizer.pad_token_id is not None else 1
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
        out = [0.0] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), step):
                idx = order[start : start + step]
                enc = self._tokenizer(
                    [texts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self._max_length,
                    add_special_tokens=False,  # the chat template already wrote BOS and friends
                ).to(self._model.device)
                logits = self._model(**enc).logits  # [B, num_labels]
                for i, value in zip(idx, logits[:, 0].float().tolist()):
                    out[i] = value
        return out


class RewardModelReward:
    """``reward(prompts, completions) -> scores`` from :class:`RewardModelScorer`."""

    config_class = RewardModelConfig

    def __init__(self, cfg: RewardModelConfig | None = None) -> None:
        self.cfg = cfg or RewardModelConfig()
        if not self.cfg.path:
            raise ConfigError(
                "the reward_model reward needs a model: set rewards.reward_model.path to a Hugging "
                "Face sequence-classification directory (train the tiny one with `mgs rm-train`)"
            )
        self.scorer = RewardModelScorer(
            self.cfg.path, self.cfg.device, self.cfg.dtype, self.cfg.batch_size, self.cfg.max_length
        )

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[float | None]:
        return list(self.scorer.score(prompts, completions))

    def score(self, prompts: list[str], completions: list[str], **columns: list[Any]) -> Scores:
        values = self(prompts, completions, **columns)
        return Scores(values=values, timed_out=[False] * len(values))

    def close(self) -> None:
        self.scorer._model = None  # free the weights
