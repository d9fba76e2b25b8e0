"""Jacobians for the torchjd oracle tests: random ones and the degenerate cases that break solvers.

Each case is ``(name, J [K, N] float64, active [K] bool)``. Rows of inactive domains hold large
garbage: an aggregator must ignore them entirely (torchjd sees only ``J[active]``).
"""

from __future__ import annotations

import torch


def _random(seed: int, k: int, n: int, conflicting: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scales = 10 ** torch.empty(k, 1, dtype=torch.float64).uniform_(-1.5, 1.0, generator=gen)
    rows = torch.randn(k, n, dtype=torch.float64, generator=gen)
    if conflicting:  # a shared direction with a random sign per domain: many negative cosines
        shared = 2 * torch.randn(1, n, dtype=torch.float64, generator=gen)
        signs = torch.randint(0, 2, (k, 1), generator=gen).to(torch.float64) * 2 - 1
        rows = 0.6 * rows + signs * shared
    return rows * scales


def _all_active(j: torch.Tensor) -> torch.Tensor:
    return torch.ones(j.shape[0], dtype=torch.bool)


def oracle_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    cases = []
    for seed in range(16):
        k, n = 1 + seed % 4, 3 + (seed * 7) % 9
        j = _random(seed, k, n, conflicting=seed % 2 == 1)
        cases.append((f"random{seed}-K{k}", j, _all_active(j)))
    base = _random(100, 3, 6, conflicting=True)
    zero_row = base.clone()
    zero_row[1] = 0
    cases.append(("zero-gradient", zero_row, _all_active(zero_row)))
    cases.append(("all-zero", torch.zeros(2, 5, dtype=torch.float64), torch.ones(2, dtype=bool)))
    identical = base.clone()
    identical[1] = identical[0]
    cases.append(("identical", identical, _all_active(identical)))
    cases.append(("identical-K2", base[:1].repeat(2, 1), torch.ones(2, dtype=torch.bool)))
    scaled = base.clone()
    scaled[2] = 2.5 * scaled[0]
    cases.append(("scaled-copy", scaled, _all_active(scaled)))
    opposite = base[:2].clone()
    opposite[1] = -0.5 * opposite[0]
    cases.append(("opposite", opposite, torch.ones(2, dtype=torch.bool)))
    # Gram trace far below 1e-4, every pair of domains in conflict
    tiny = torch.tensor([[1.0, 0.0, 0.2], [-1.0, 1.0, 0.0], [-0.3, -1.2, 0.5]], dtype=torch.float64)
    tiny = 1e-3 * (tiny + 0.05 * _random(101, 3, 3, conflicting=False))
    cases.append(("tiny-scale", tiny, _all_active(tiny)))
    for seed, pattern in ((102, [True, False, True, True]), (103, [False, True, True, False])):
        j = _random(seed, 4, 7, conflicting=True)
        active = torch.tensor(pattern)
        j[~active] = 1e3 * torch.randn(int((~active).sum()), 7, dtype=torch.float64)
        cases.append((f"inactive{seed}", j, active))
    return cases


def case_ids() -> list[str]:
    return [name for name, _, _ in oracle_cases()]
