"""The new aggregators inside GradientSurgeon on a real model: per-group results against torchjd
on the explicit gradients, and the surgeon's state: a resumed surgeon continues exactly."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_model_config
from mgs.errors import ConfigError
from mgs.surgery import GradientSurgeon, NashMTL, partition
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

tj = pytest.importorskip("torchjd.aggregation", reason="torchjd (the dev extra) is the oracle")
DOMAINS = ["math", "chat", "if"]


def _tiny_qwen() -> nn.Module:
    return build_tiny_policy(build_tiny_tokenizer(), tiny_model_config())  # conftest's small sizes


def _loss(model: nn.Module, d: int, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 * step + d)
    ids = torch.randint(5, 100, (2, 10), generator=gen)
    return model(input_ids=ids, labels=ids).loss * (1.0 if d % 2 == 0 else -0.7)


def _step(surgeon: GradientSurgeon, model: nn.Module, step: int):
    surgeon.zero_grad()
    for d, name in enumerate(surgeon.domains):
        with surgeon.domain(name):
            _loss(model, d, step).backward()
    return surgeon.apply(max_norm=1.0)


def _torchjd(name: str):
    if name in ("upgrad", "dualproj"):
        pytest.importorskip("quadprog", reason="torchjd's projector needs quadprog (dev extra)")
        from torchjd.linalg import QuadprogProjector

        cls = tj.UPGrad if name == "upgrad" else tj.DualProj
        return cls(projector=QuadprogProjector(norm_eps=0.0))
    if name == "cagrad":
        pytest.importorskip("cvxpy", reason="torchjd's CAGrad needs cvxpy (dev extra)")
        return tj.CAGrad(c=0.4)
    return {"mgda": tj.MGDA, "aligned_mtl": tj.AlignedMTL, "imtl_g": tj.IMTLG, "config": tj.ConFIG}[name]()  # fmt: skip


@pytest.mark.parametrize(
    "name", ["upgrad", "dualproj", "mgda", "cagrad", "aligned_mtl", "imtl_g", "config"]
)
def test_surgeon_applies_torchjds_method_in_every_module(name: str) -> None:
    model = _tiny_qwen()
    per_domain = []
    for d in range(3):
        model.zero_grad(set_to_none=True)
        _loss(model, d, 0).backward()
        per_domain.append(
            {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}
        )
    model.zero_grad(set_to_none=True)
    surgeon = GradientSurgeon(model, DOMAINS, aggregator=name, granularity="module")
    surgeon.zero_grad()
    for d, domain in enumerate(DOMAINS):
        with surgeon.domain(domain):
            _loss(model, d, 0).backward()
    stats = surgeon.apply()
    reference = _torchjd(name)
    for group in partition(model, "module")[0]:
        names = list(group.param_names)
        j = torch.stack([torch.cat([g[n].flatten() for n in names]) for g in per_domain])
        scale = j.pow(2).sum().sqrt()  # every method here is positively homogeneous in J
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = reference(j / scale) * scale
        got = torch.cat([model.get_parameter(n).grad.flatten().double() for n in names])
        rtol = 3e-3 if name == "cagrad" else 1e-4  # CLARABEL's tolerance; float32 gradients
        torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol * float(j.norm(dim=1).max()))
    assert torch.isfinite(stats.coef).all()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3)
    )


def _mlp_step(surgeon: GradientSurgeon, model: nn.Module, step: int):
    surgeon.zero_grad()
    for d, name in enumerate(surgeon.domains):
        gen = torch.Generator().manual_seed(100 * step + d)
        x, target = torch.randn(5, 6, generator=gen), torch.randn(5, 3, generator=gen)
        with surgeon.domain(name):
            ((model(x) - target) ** 2).mean().backward()
    return surgeon.apply(max_norm=1.0)


def _surgeon(model: nn.Module, aggregator) -> GradientSurgeon:
    return GradientSurgeon(model, DOMAINS, aggregator=aggregator, granularity="module", seed=3)


@pytest.mark.parametrize(
    "aggregator", ["gradvac", "nash_mtl", "pcgrad", NashMTL(update_weights_every=2)]
)
def test_resumed_surgeon_continues_exactly(tmp_path: Path, aggregator) -> None:
    """A runs 6 steps; B runs 3 and saves its state; a fresh C loads it (weights_only) and runs
    the last 3: C's coefficients and logged stats equal A's."""
    model = _mlp()
    fresh = (lambda: NashMTL(update_weights_every=2)) if not isinstance(aggregator, str) else (lambda: aggregator)  # fmt: skip
    a = _surgeon(model, fresh())
    full = [_mlp_step(a, model, t) for t in range(8)]
    b = _surgeon(model, fresh())
    for t in range(3):
        _mlp_step(b, model, t)
    torch.save(b.state_dict(), tmp_path / "surgeon.pt")
    c = _surgeon(model, fresh())
    c.load_state_dict(torch.load(tmp_path / "surgeon.pt", weights_only=True))
    for t in range(3, 8):
        stats = _mlp_step(c, model, t)
        torch.testing.assert_close(stats.coef, full[t].coef, rtol=0, atol=0)
        assert stats.summary() == full[t].summary()
    if aggregator in ("pcgrad", "nash_mtl"):
        return  # state = the step (orders) / a warm start that changes no result beyond rounding
    # The state matters: without it the same steps give other coefficients.
    d = _surgeon(model, fresh())
    d.step = 3
    assert any(
        not torch.allclose(_mlp_step(d, model, t).coef, full[t].coef, rtol=1e-3)
        for t in range(3, 8)
    )


def test_state_of_another_run_is_refused() -> None:
    model = _tiny_qwen()
    gradvac = _surgeon(model, "gradvac")
    _step(gradvac, model, 0)
    state = gradvac.state_dict()
    with pytest.raises(ConfigError, match="NashMTL's state has unknown entries"):
        _surgeon(model, "nash_mtl").load_state_dict(state)
    with pytest.raises(ConfigError, match="stateless function"):
        _surgeon(model, "imtl_g").load_state_dict(state)
    other = GradientSurgeon(model, ["math", "if", "chat"], aggregator="gradvac")
    with pytest.raises(ConfigError, match="same order"):
        other.load_state_dict(state)
    layered = GradientSurgeon(model, DOMAINS, aggregator="gradvac", granularity="layer")
    with pytest.raises(ConfigError, match="same model and granularity"):
        layered.load_state_dict(state)
