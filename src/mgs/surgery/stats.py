"""Telemetry of one surgery step: per-group cosines, norms, projections; scalar summaries.

Everything stays on the device as tensors until :meth:`SurgeryStats.summary` or
:meth:`SurgeryStats.arrays` is called (one host transfer), so collecting stats costs no sync in
the step itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch


@dataclass
class SurgeryStats:
    """What :meth:`GradientSurgeon.apply` did, per group and in total.

    Attributes (tensors, on the device of the gradients):
        domains:     domain names, in buffer order (``K``).
        group_names: group keys in layout order (``M``).
        gram:        ``[M, K, K]`` per-group Gram matrices of the domain gradients.
        coef:        ``[M, K]`` combination coefficients (before clipping).
        fired:       ``[M, K]`` whether the aggregator modified domain k in group m (PCGrad:
                     projected; each method's definition is in docs/aggregators.md).
        active:      ``[K]`` domains that had a backward pass and finite gradients.
        nonfinite:   ``[K]`` domains whose gradient had a NaN/inf (excluded from the step).
        grad_norm:   scalar, norm of the combined gradient before clipping.
        clip_coef:   scalar, factor applied for ``max_norm`` (1.0 when not clipping).
    """

    domains: list[str]
    group_names: list[str]
    gram: torch.Tensor
    coef: torch.Tensor
    fired: torch.Tensor
    active: torch.Tensor
    nonfinite: torch.Tensor
    grad_norm: torch.Tensor
    clip_coef: torch.Tensor

    @property
    def all_finite(self) -> bool:
        """True when no domain had a non-finite gradient (one host sync)."""
        return not bool(self.nonfinite.any())

    def cosines(self) -> torch.Tensor:
        """``[M, K, K]`` cosine between every pair of domain gradients in every group (0 if a norm is 0)."""
        diag = torch.diagonal(self.gram, dim1=1, dim2=2).clamp(min=0).sqrt()  # [M, K]
        denom = diag[:, :, None] * diag[:, None, :]
        return torch.where(denom > 0, self.gram / torch.where(denom > 0, denom, 1.0), 0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """Full per-group arrays for a compact file (``np.savez_compressed(path, **stats.arrays())``)."""
        return {
            "domains": np.array(self.domains),
            "group_names": np.array(self.group_names),
            "cosine": self.cosines().float().cpu().numpy(),  # [M, K, K]
            "norm": torch.diagonal(self.gram, dim1=1, dim2=2)
            .clamp(min=0)
            .sqrt()
            .float()
            .cpu()
            .numpy(),
            "fired": self.fired.cpu().numpy(),  # [M, K]
            "coef": self.coef.float().cpu().numpy(),  # [M, K]
        }

    def summary(self, prefix: str = "surgery/") -> dict[str, float]:
        """Scalars for the metrics stream: global cosine per pair, conflict fractions, norms."""
        gram = self.gram.double().cpu()
        total = gram.sum(0)  # [K, K]: Gram of the whole-model gradients
        sq = torch.diagonal(gram, dim1=1, dim2=2)  # [M, K]
        active = self.active.cpu()
        fired = self.fired.cpu()
        cos = self.cosines().double().cpu()
        out: dict[str, float] = {
            f"{prefix}grad_norm": float(self.grad_norm),
            f"{prefix}clip_coef": float(self.clip_coef),
            f"{prefix}num_groups": float(len(self.group_names)),
        }
        in_conflict = torch.zeros(len(self.group_names), dtype=torch.bool)
        for a, b in combinations(range(len(self.domains)), 2):
            name = f"{self.domains[a]}__{self.domains[b]}"
            both = (sq[:, a] > 0) & (sq[:, b] > 0)
            denom = float(total[a, a].clamp(min=0).sqrt() * total[b, b].clamp(min=0).sqrt())
            out[f"{prefix}cos/{name}"] = float(total[a, b]) / denom if denom > 0 else 0.0
            conflict = both & (cos[:, a, b] < 0)
            in_conflict |= conflict
            n_both = int(both.sum())
            out[f"{prefix}conflict_frac/{name}"] = float(conflict.sum()) / n_both if n_both else 0.0
        out[f"{prefix}conflict_frac"] = (
            float(in_conflict.float().mean()) if len(in_conflict) else 0.0
        )
        n_active = int(active.sum())
        out[f"{prefix}projected_frac"] = (
            float(fired[:, active].float().mean()) if n_active and fired.numel() else 0.0
        )
        for k, domain in enumerate(self.domains):
            out[f"{prefix}norm/{domain}"] = float(total[k, k].clamp(min=0).sqrt())
            if bool(self.nonfinite[k]):
                out[f"{prefix}nonfinite/{domain}"] = 1.0
        return out
