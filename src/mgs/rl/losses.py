"""The GRPO loss: clipped PPO surrogate with dual-clip, a KL loss to the reference, an entropy bonus.

Pure functions on tensors; shapes in comments (``B`` sequences, ``T`` token positions). Every
per-token input is aligned with the token it scores (``logp[b, t]`` = log-prob of token ``t`` of
row ``b``), and ``mask [B, T]`` is 1 on response tokens. All terms are reduced with
:func:`mgs.rl.aggregation.aggregate` using one mini-batch-wide normaliser, so that the losses (and
the additive stats) of per-domain micro-batches sum exactly to those of the whole mini-batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from mgs.dataclass_config import option
from mgs.errors import ConfigError, unknown_name
from mgs.rl.aggregation import AGGREGATION_MODES, aggregate

__all__ = [
    "KL_PENALTIES",
    "MAX_STATS",
    "GRPOLossConfig",
    "entropy_from_logits",
    "grpo_loss",
    "kl_penalty",
    "policy_loss",
    "sum_micro_batch_stats",
]


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    dual_clip: float | None = 3.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped PPO loss with dual-clip (verl's ``compute_policy_loss`` semantics).

    ``loss = max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high))`` with ``r = exp(logp - old_logp)``;
    for ``A < 0`` it is further capped at ``-A * dual_clip`` (so a token whose ratio exploded cannot
    produce an unbounded loss; capped tokens get no gradient). ``advantages`` is ``[B]`` (one per
    sequence, broadcast over tokens) or ``[B, T]``.

    Returns ``(loss [B, T], stats)`` with detached per-token stats: ``ratio`` and the boolean
    indicators ``clipped_low`` (A < 0 and r < 1 - eps_low: the clipped branch is active),
    ``clipped_high`` (A > 0 and r > 1 + eps_high), ``dual_clipped`` (A < 0 and the cap is active).
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable it), got {dual_clip}")
    adv = advantages.unsqueeze(-1) if advantages.ndim == 1 else advantages  # [B, 1] or [B, T]
    # Clamp the log-ratio as verl does: keeps exp() finite for wildly off-policy tokens.
    ratio = torch.exp((logp - old_logp).clamp(min=-20.0, max=20.0))  # [B, T]
    unclipped = -adv * ratio  # [B, T]
    clipped = -adv * ratio.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)  # [B, T]
    loss = torch.maximum(unclipped, clipped)  # [B, T]: the pessimistic bound
    clip_active = clipped > unclipped  # [B, T]
    negative = adv < 0  # [B, 1] or [B, T]
    if dual_clip is not None:
        cap = -adv * dual_clip  # [B, 1] or [B, T]; positive where A < 0
        dual_clipped = negative & (loss > cap)  # [B, T]
        loss = torch.where(dual_clipped, cap.expand_as(loss), loss)
    else:
        dual_clipped = torch.zeros_like(clip_active)
    stats = {
        "ratio": ratio.detach(),
        "clipped_low": (clip_active & negative).detach(),
        "clipped_high": (clip_active & (adv > 0)).detach(),
        "dual_clipped": dual_clipped.detach(),
    }
    return loss, stats


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio  # log pi - log pi_ref: unbiased, high variance, can be negative


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()  # biased, low variance, >= 0


def _low_var_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    # k3 (Schulman): with x = log pi_ref - log pi, exp(x) - x - 1 >= 0, unbiased for KL(pi || pi_ref).
    # Clamped as verl does: x to [-20, 20] (finite exp), the estimate to [-10, 10].
    x = (-log_ratio).clamp(min=-20.0, max=20.0)
    return (torch.exp(x) - x - 1.0).clamp(min=-10.0, max=10.0)


KL_PENALTIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": _k1,
    "k2": _k2,
    "mse": _k2,  # verl's name for k2
    "low_var_kl": _low_var_kl,
}


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate ``[B, T]`` of KL(pi || pi_ref) from the sampled tokens' log-probs.

    ``kind``: ``k1`` (``logp - ref_logp``), ``k2``/``mse`` (``0.5 * (logp - ref_logp)^2``),
    ``low_var_kl`` (k3: ``exp(ref - logp) - (ref - logp) - 1``, clamped to [-10, 10]).
    """
    if kind not in KL_PENALTIES:
        raise unknown_name("KL penalty", kind, list(KL_PENALTIES))
    return KL_PENALTIES[kind](logp - ref_logp)  # [B, T]


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` over the last dim: ``[..., V] -> [...]`` (in float32 or wider).

    ``H = logsumexp(z) - sum(softmax(z) * z)``, which never forms ``log(0)``.
    """
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    return torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1)


@dataclass
class GRPOLossConfig:
    """The GRPO loss; defaults are the paper's (docs/method.md)."""

    clip_eps_low: float = option(
        0.2, help="PPO clip range below 1: the ratio is clipped at 1 - clip_eps_low."
    )
    clip_eps_high: float = option(
        0.2, help="PPO clip range above 1: the ratio is clipped at 1 + clip_eps_high (DAPO: 0.28)."
    )
    dual_clip: float | None = option(
        3.0,
        help="Dual-clip constant c > 1: for negative advantages the per-token loss is capped at "
        "-A * c. null disables it.",
    )
    kl_coef: float = option(
        0.001, help="Weight of the KL loss to the reference policy; 0 turns it off."
    )
    kl_kind: str = option(
        "low_var_kl",
        help="KL estimator: k1 (logp - ref), k2 / mse (squared), low_var_kl (k3, clamped).",
    )
    entropy_coef: float = option(
        0.001, help="Weight of the entropy bonus (subtracted from the loss); 0 turns it off."
    )
    loss_agg: str = option(
        "token-mean",
        help="How per-token losses become one number: token-mean (every response token of the "
        "mini-batch weighs the same), seq-mean-token-mean (every sequence weighs the same), "
        "seq-mean-token-sum.",
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.clip_eps_low < 1.0:
            raise ConfigError(
                f"clip_eps_low must be in (0, 1), got {self.clip_eps_low}; write e.g. clip_eps_low: 0.2"
            )
        if not 0.0 < self.clip_eps_high < math.inf:
            raise ConfigError(
                f"clip_eps_high must be a positive number, got {self.clip_eps_high}; "
                "write e.g. clip_eps_high: 0.2"
            )
        if self.dual_clip is not None and not 1.0 < self.dual_clip < math.inf:
            raise ConfigError(
                f"dual_clip must be a number > 1, got {self.dual_clip}; write e.g. dual_clip: 3.0, "
                "or dual_clip: null to disable dual-clip"
            )
        for name in ("kl_coef", "entropy_coef"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise ConfigError(
                    f"{name} must be a number >= 0, got {value}; write e.g. {name}: 0.001 (0 = off)"
                )
        if self.kl_kind not in KL_PENALTIES:
            raise ConfigError(
                f"kl_kind {self.kl_kind!r} is not a KL estimator; write one of: "
                f"{', '.join(KL_PENALTIES)}"
            )
        if self.loss_agg not in AGGREGATION_MODES:
            raise ConfigError(
                f"loss_agg {self.loss_agg!r} is not an aggregation mode; write one of: "
                f"{', '.join(AGGREGATION_MODES)}"
            )


# Stats of grpo_loss that combine over micro-batches by max; every other key combines by sum.
MAX_STATS = ("ratio_max",)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    cfg: GRPOLossConfig,
    normalizer: float | torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``pg_loss + kl_coef * kl - entropy_coef * entropy``, each aggregated with ``cfg.loss_agg``.

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``entropy``, ``mask`` are ``[B, T]``;
    ``advantages`` is ``[B]`` or ``[B, T]``. ``normalizer`` is the *mini-batch-wide* count from
    :func:`mgs.rl.aggregation.loss_normalizer`. ``ref_logp`` is required when ``kl_coef > 0`` and
    ``entropy`` when ``entropy_coef > 0`` (a configured term is never dropped silently); when given
    with a zero coefficient they are still reported in the stats.

    Stats (detached 0-d tensors, no host sync): ``loss``, ``pg_loss``, ``kl``, ``entropy`` (when
    given), ``clip_frac_low``, ``clip_frac_high``, ``dual_clip_frac``, ``ratio_mean`` — aggregated
    like the loss, hence *additive* over micro-batches — and ``ratio_max`` (combine by max; see
    :func:`sum_micro_batch_stats`).
    """
    if ref_logp is None and cfg.kl_coef > 0:
        raise ValueError(
            f"kl_coef is {cfg.kl_coef} but no ref_logp was given; pass the reference policy's "
            "log-probs or set kl_coef to 0"
        )
    if entropy is None and cfg.entropy_coef > 0:
        raise ValueError(
            f"entropy_coef is {cfg.entropy_coef} but no entropy was given; compute it with "
            "response_logprobs(..., with_entropy=True) or set entropy_coef to 0"
        )

    def agg(x: torch.Tensor) -> torch.Tensor:
        return aggregate(x, mask, cfg.loss_agg, normalizer=normalizer)

    pg, parts = policy_loss(
        logp,
        old_logp,
        advantages,
        clip_eps_low=cfg.clip_eps_low,
        clip_eps_high=cfg.clip_eps_high,
        dual_clip=cfg.dual_clip,
    )  # [B, T]
    pg_loss = agg(pg)
    loss = pg_loss
    stats: dict[str, torch.Tensor] = {"pg_loss": pg_loss.detach()}
    if ref_logp is not None:
        kl = agg(kl_penalty(logp, ref_logp, cfg.kl_kind))
        if cfg.kl_coef > 0:
            loss = loss + cfg.kl_coef * kl
        stats["kl"] = kl.detach()
    if entropy is not None:
        ent = agg(entropy)
        if cfg.entropy_coef > 0:
            loss = loss - cfg.entropy_coef * ent
        stats["entropy"] = ent.detach()
    with torch.no_grad():
        stats["clip_frac_low"] = agg(parts["clipped_low"])
        stats["clip_frac_high"] = agg(parts["clipped_high"])
        stats["dual_clip_frac"] = agg(parts["dual_clipped"])
        stats["ratio_mean"] = agg(parts["ratio"])
        ratio_max = torch.where(mask.bool(), parts["ratio"], 0.0).amax()
        stats["ratio_max"] = ratio_max
    stats["loss"] = loss.detach()
    return loss, stats


def sum_micro_batch_stats(
    stats: Iterable[dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Combine the stats of one mini-batch's micro-batches: keys in :data:`MAX_STATS` by max,
    the rest by sum (they were divided by the mini-batch-wide normaliser, so the sum is the
    mini-batch value). Keys missing from some micro-batches are combined over those that have them.
    """
    out: dict[str, torch.Tensor] = {}
    for one in stats:
        for key, value in one.items():
            if key not in out:
                out[key] = value
            elif key in MAX_STATS:
                out[key] = torch.maximum(out[key], value)
            else:
                out[key] = out[key] + value
    return out
