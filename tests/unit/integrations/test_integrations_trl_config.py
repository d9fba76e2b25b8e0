"""SurgeryConfig, strategy names and the refusal of TRL settings that cannot be split by domain
(no TRL needed: the checks read a GRPOConfig's values by attribute)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from mgs.errors import ConfigError, UnknownNameError
from mgs.integrations.trl_config import (
    LOSS_NORMALISERS,
    STRATEGIES,
    SurgeryConfig,
    check_supported,
    resolve_surgery,
)


def _args(**overrides):
    values = {
        "loss_type": "dapo",
        "entropy_coef": 0.0,
        "use_adaptive_entropy": False,
        "top_entropy_quantile": 1.0,
        "fp16": False,
        "remove_unused_columns": False,
        "optim": "adamw_torch",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_default_surgery_is_the_mgs_strategy() -> None:
    cfg = resolve_surgery(None)
    assert (cfg.aggregator, cfg.granularity, cfg.seed, cfg.buffer_dtype) == (
        "pcgrad",
        "tensor",
        0,
        "auto",
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mgs", ("pcgrad", "tensor")), ("pcgrad", ("pcgrad", "global")), ("mixed", ("sum", "global"))],
)
def test_strategy_names(name, expected) -> None:
    cfg = resolve_surgery(name)
    assert (cfg.aggregator, cfg.granularity) == expected


def test_strategies_match_mgs_train() -> None:
    from mgs.strategy import StrategyConfig

    for name, pair in STRATEGIES.items():
        assert StrategyConfig(name=name).resolved() == pair


def test_dict_and_config_forms() -> None:
    cfg = resolve_surgery({"aggregator": "sum", "granularity": "layer", "seed": 3})
    assert (cfg.aggregator, cfg.granularity, cfg.seed) == ("sum", "layer", 3)
    same = SurgeryConfig(granularity="module")
    assert resolve_surgery(same) is same
    assert SurgeryConfig.from_strategy("mgs", granularity="layer").granularity == "layer"


@pytest.mark.parametrize(
    ("surgery", "needle"),
    [
        ("sequential", "surgery='mixed'"),
        ("custom", "SurgeryConfig"),
        ({"aggregatr": "sum"}, "valid options: aggregator"),
        ({"aggregator": "pcgrd"}, "write one of: .*pcgrad"),
        ({"granularity": "row"}, "write one of: tensor, module, layer, global"),
        ({"buffer_dtype": "float16"}, "auto, float32, bfloat16"),
        ({"domains": ["a", "a"]}, "distinct names"),
        ({"domains": []}, "non-empty"),
        (3, "strategy name"),
    ],
)
def test_bad_surgery_values_name_the_fix(surgery, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        resolve_surgery(surgery)


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"mgs, mixed, pcgrad"):
        resolve_surgery("mgss")


def test_callables_are_accepted_as_aggregator_and_granularity() -> None:
    cfg = SurgeryConfig(aggregator=lambda g, a, o: None, granularity=lambda n, p: n[:3])
    assert callable(cfg.aggregator) and callable(cfg.granularity)


def test_every_supported_loss_type_passes() -> None:
    for loss_type in LOSS_NORMALISERS:
        check_supported(_args(loss_type=loss_type), distributed_type="NO", aux_loss=False)
    check_supported(_args(), distributed_type="MULTI_CPU", aux_loss=False)
    check_supported(_args(), distributed_type="MULTI_GPU", aux_loss=False)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"loss_type": "token_mean"}, r"loss_type='token_mean'.*use one of: grpo"),
        ({"entropy_coef": 0.01}, "entropy_coef=0.0"),
        ({"use_adaptive_entropy": True}, "use_adaptive_entropy=False"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile=1.0"),
        ({"fp16": True}, "bf16=True"),
        ({"remove_unused_columns": True}, "remove_unused_columns=False"),
        ({"optim": "adalomo"}, "adamw_torch"),
    ],
)
def test_unsplittable_settings_are_refused(overrides, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_supported(_args(**overrides), distributed_type="NO", aux_loss=False)


@pytest.mark.parametrize("kind", ["DEEPSPEED", "FSDP"])
def test_deepspeed_and_fsdp_are_refused(kind) -> None:
    with pytest.raises(ConfigError, match=f"not {kind}"):
        check_supported(_args(), distributed_type=kind, aux_loss=False)


def test_router_aux_loss_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"router_aux_loss_coef=0.0"):
        check_supported(_args(), distributed_type="NO", aux_loss=True)


def test_import_mgs_and_integrations_do_not_import_trl() -> None:
    code = (
        "import sys, mgs, mgs.integrations, mgs.integrations.trl_rewards, "
        "mgs.integrations.trl_config, mgs.integrations.trl_split\n"
        "assert 'trl' not in sys.modules, 'trl imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_trl_the_import_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['trl'] = None  # as if TRL were not installed\n"
        "try:\n"
        "    import mgs.integrations.trl\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'mgs[trl]'" in out.stdout
