"""How far torchjd's Nash-MTL (a sequence of convex programs) is from the bargaining solution.

Run from the repository root (needs the dev extra: torchjd with cvxpy and ecos)::

    .venv/bin/python benchmarks/nash_mtl_vs_torchjd.py            # 30 Jacobians, ~1 minute

For random Jacobians (K = 2..4 rows of 10 standard normals, each row scaled by 10^U(-1, 1)) it
prints the relative residual ``|G a - 1/a| / |1/a|`` of torchjd 0.18's ``NashMTL`` weights (its 20
cvxpy/ECOS programs, from all-ones weights) and of mgs's (damped Newton), and how much the combined
vectors differ. docs/aggregators.md quotes the figures.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from mgs.surgery.aggregators.nash_mtl import nash_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    from torchjd.aggregation import NashMTL

    warnings.filterwarnings("ignore")  # cvxpy's DPP notice
    torch.manual_seed(args.seed)
    theirs, ours, differ = [], [], []
    for case in range(args.cases):
        k = 2 + case % 3
        j = torch.randn(k, 10, dtype=torch.float64)
        j = j * 10 ** torch.empty(k, 1, dtype=torch.float64).uniform_(-1, 1)
        reference = NashMTL(n_tasks=k, max_norm=0.0)
        vector = reference(j)
        a_ref = torch.from_numpy(reference.weighting.prvs_alpha).to(torch.float64)
        gram = j @ j.T
        ones = torch.ones(1, k, dtype=torch.float64)
        a = nash_weights(gram[None], ones.bool(), ones, max_iters=50)[0]
        theirs.append(float((gram @ a_ref - 1 / a_ref).norm() / (1 / a_ref).norm()))
        ours.append(float((gram @ a - 1 / a).norm() / (1 / a).norm()))
        differ.append(float((a @ j - vector).norm() / vector.norm()))
    theirs_t, differ_t = torch.tensor(theirs), torch.tensor(differ)
    print(f"{args.cases} Jacobians, K = 2..4, 10 columns, rows scaled by 10^U(-1, 1)")
    for bound in (1e-6, 1e-5, 1e-2):
        print(f"torchjd residual > {bound:g}: {int((theirs_t > bound).sum())}")
    print(f"torchjd residual max: {max(theirs):.2e}; mgs residual max: {max(ours):.2e}")
    far = differ_t[theirs_t > 1e-2].tolist()
    print(f"vector difference where torchjd's residual > 1e-2: {[round(x, 3) for x in far]}")
    print(f"vector difference where it is <= 1e-5: max {differ_t[theirs_t <= 1e-5].max():.1e}")


if __name__ == "__main__":
    main()
