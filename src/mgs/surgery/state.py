"""The surgeon's resumable state: its step and its aggregator's state, checked on load.

Kept as tensors and plain Python values (no pickled objects), so a trainer can put it in its
checkpoint and read it back with ``torch.load(path, weights_only=True)``. A run resumed from it logs
the same surgery, step for step, as an uninterrupted one: the random orders derive from
``(seed, step)`` and stateful aggregators (GradVac, Nash-MTL) restore their per-group state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mgs.errors import ConfigError
from mgs.surgery.aggregators import Aggregator

if TYPE_CHECKING:
    from mgs.surgery.surgeon import GradientSurgeon


def state_of(surgeon: GradientSurgeon) -> dict[str, Any]:
    """``{"step", "domains", "num_groups", "aggregator"}`` of ``surgeon``."""
    aggregator = surgeon.aggregator
    return {
        "step": surgeon.step,
        "domains": list(surgeon.domains),
        "num_groups": len(surgeon.groups),
        "aggregator": aggregator.state_dict() if isinstance(aggregator, Aggregator) else {},
    }


def restore(surgeon: GradientSurgeon, state: Mapping[str, Any]) -> None:
    """Load :func:`state_of`'s output into ``surgeon``; a state of another run is refused."""
    if list(state.get("domains", surgeon.domains)) != surgeon.domains:
        raise ConfigError(
            f"the surgeon state is for domains {list(state['domains'])}, this surgeon has "
            f"{surgeon.domains}: resume with the run's own domains, in the same order"
        )
    if int(state.get("num_groups", len(surgeon.groups))) != len(surgeon.groups):
        raise ConfigError(
            f"the surgeon state is for {state['num_groups']} groups, this surgeon has "
            f"{len(surgeon.groups)}: resume with the same model and granularity"
        )
    aggregator_state = state.get("aggregator", {})
    if isinstance(surgeon.aggregator, Aggregator):
        surgeon.aggregator.load_state_dict(aggregator_state)
    elif aggregator_state:
        raise ConfigError(
            "the surgeon state holds aggregator state but this surgeon's aggregator is a "
            "stateless function: resume with the aggregator the run was started with"
        )
    surgeon.step = int(state["step"])
