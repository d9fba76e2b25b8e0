"""mgs compare: strategy configs derived from one base config, and the comparison loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mgs.dataclass_config import to_dict
from mgs.errors import ConfigError
from mgs.report.compare import run_comparison
from mgs.strategy import Variant, sequential_phases, variant_config
from mgs.train.config import load_config


def _base(**over: object):
    overrides = [f"{k.replace('__', '.')}={v}" for k, v in {"steps": 10, **over}.items()]
    return load_config(None, overrides)


def test_sequential_phases_split_the_steps_over_the_domains_in_order() -> None:
    phases = sequential_phases(_base())  # tiny default: math, if, chat; 10 steps
    assert [p.proportions for p in phases] == [{"math": 1.0}, {"if": 1.0}, {"chat": 1.0}]
    assert [p.steps for p in phases] == [3, 3, None]


def test_strategy_configs_differ_only_in_strategy_schedule_and_seed() -> None:
    base = _base()
    mgs = variant_config(base, "mgs", 2)
    mixed = variant_config(base, "mixed", 2)
    seq = variant_config(base, "sequential", 2)
    assert (mgs.strategy.resolved(), mixed.strategy.resolved()) == (
        ("pcgrad", "tensor"),
        ("sum", "global"),
    )
    assert variant_config(base, "pcgrad", 2).strategy.resolved() == ("pcgrad", "global")
    assert mgs.seed == mixed.seed == seq.seed == 2
    assert seq.data.mixture.phases and not seq.data.mixture.proportions
    a, b = to_dict(mgs), to_dict(mixed)
    a.pop("strategy"), b.pop("strategy")
    assert a == b
    with pytest.raises(ConfigError, match=r"variant .custom.*needs strategy\.aggregator"):
        variant_config(base, "custom", 0)
    upgrad = variant_config(base, "custom:mean@layer", 1)
    assert upgrad.strategy.resolved() == ("mean", "layer") and upgrad.seed == 1
    assert Variant.parse("mgs:pcgrad@module").label == "mgs-pcgrad-module"


def test_comparison_trains_every_pair_once_and_keeps_finished_runs(tmp_path: Path) -> None:
    trained: list[tuple[str, int]] = []

    def fake_train(cfg, run_dir: Path) -> None:
        trained.append((cfg.strategy.name, cfg.seed))
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
        (run_dir / "summary.json").write_text(json.dumps({"strategy": cfg.strategy.name}))

    dirs = run_comparison(
        _base(),
        tmp_path,
        seeds=[0, 1],
        strategies=["mixed", "mgs"],
        train=fake_train,
        echo=lambda _: None,
    )
    assert [d.name for d in dirs] == ["mixed-s0", "mgs-s0", "mixed-s1", "mgs-s1"]
    assert trained == [("mixed", 0), ("mgs", 0), ("mixed", 1), ("mgs", 1)]
    (dirs[-1] / "summary.json").unlink()  # as if interrupted during the last run
    trained.clear()
    import shutil

    shutil.rmtree(dirs[-1])
    run_comparison(
        _base(),
        tmp_path,
        seeds=[0, 1],
        strategies=["mixed", "mgs"],
        train=fake_train,
        echo=lambda _: None,
    )
    assert trained == [("mgs", 1)]
    assert json.loads((tmp_path / "compare.json").read_text())["seeds"] == [0, 1]
