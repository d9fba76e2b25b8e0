"""IFBench's 58 out-of-distribution instruction checkers (AllenAI), as packaged by ``if-verifiable``.

IFBench (Pyatkin et al. 2025, ``allenai/IFBench_test``) keeps IFEval's row layout (``key,
prompt, instruction_id_list, kwargs``) and its strict / loose checking, with new instruction ids
such as ``count:keywords_multiple``, ``ratio:sentence_type`` or ``words:alphabet``. The checkers
are AllenAI's own code (Apache-2.0) from the ``if-verifiable`` package, used as a library; nothing
is copied. :func:`mgs.rewards.ifeval.ifeval_check` looks an id up here when it is not IFEval's, so
the ``ifeval`` and ``ifbench`` rewards both check both families.

Offline use: the checkers need NLTK's punkt, English stop words and English POS tagger, which
:mod:`mgs.rewards.nltk_offline` provides without a download; ``if-verifiable`` also calls
``nltk.download`` when it is imported (for these and for the old ``punkt`` pickle, which no
checker loads), so that call is kept from the network while it is imported.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mgs.errors import ConfigError
from mgs.rewards.config import IFEvalRewardConfig
from mgs.rewards.ifeval import IFEvalReward, instruction_registry

# The id prefixes IFBench uses (IFEval's are different: keywords, length_constraints, ...).
IFBENCH_PREFIXES = ("count", "ratio", "words", "sentence", "format", "custom", "repeat")


def looks_like_ifbench(instruction_id: str) -> bool:
    """Whether an id not known to IFEval should be looked up among IFBench's checkers."""
    return instruction_id.split(":", 1)[0] in IFBENCH_PREFIXES


@lru_cache(maxsize=1)
def ifbench_registry() -> dict[str, Any]:
    """IFBench instruction id -> checker class (imports ``if-verifiable`` on first use)."""
    from mgs.rewards.nltk_offline import ensure_ifbench_data

    ensure_ifbench_data()  # before the import: it downloads what it does not find
    import langdetect
    import nltk

    langdetect.DetectorFactory.seed = 0
    real_download = nltk.download
    nltk.download = _no_download  # only its import-time call; restored below
    try:
        from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT
    except ImportError as exc:
        raise ConfigError(
            f"IFBench instructions need the checkers from if-verifiable ({exc}); "
            "run `pip install if-verifiable==0.1.2` (Python >= 3.11)"
        ) from None
    finally:
        nltk.download = real_download
    return dict(INSTRUCTION_DICT)


def _no_download(*args: Any, **kwargs: Any) -> bool:
    return False


def ifbench_ids() -> list[str]:
    """Every IFBench instruction id."""
    return sorted(ifbench_registry())


class IFBenchReward(IFEvalReward):
    """The instruction-following reward under the name ``ifbench``: the same checks and options
    as ``ifeval`` (both families of ids), with IFBench's checkers loaded at construction."""

    config_class = IFEvalRewardConfig
    name = "ifbench"

    def __init__(self, cfg: IFEvalRewardConfig | None = None) -> None:
        super().__init__(cfg)
        ifbench_registry()
        instruction_registry()
