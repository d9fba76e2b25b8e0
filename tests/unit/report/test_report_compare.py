"""mgs compare: strategy configs derived from one base config, and the comparison loop."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

import mgs.train.run as train_run
from cli_errors import one_line_error
from mgs.dataclass_config import to_dict
from mgs.errors import ConfigError
from mgs.report.compare import run_comparison
from mgs.strategy import Variant, sequential_phases, variant_config
from mgs.train.config import LoggingConfig, load_config
from mgs.train.config_diff import config_differences


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


def _fake_trainer(trained: list):
    """A train callable that records its calls and writes what a finished run leaves: the config
    (with the built-in reward model resolved to a directory, as `mgs train` saves it) and a
    summary."""

    def fake_train(cfg, run_dir: Path, resume: bool = False) -> None:
        trained.append(
            (cfg.strategy.name, cfg.seed, resume) if resume else (cfg.strategy.name, cfg.seed)
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = to_dict(cfg)
        if saved["rewards"]["reward_model"]["path"].startswith("builtin:"):
            saved["rewards"]["reward_model"]["path"] = str(
                run_dir.parent / ".mgs_cache" / "tiny-rm"
            )
        (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
        (run_dir / "metrics.jsonl").write_text('{"step": 0}\n')
        (run_dir / "summary.json").write_text(json.dumps({"strategy": cfg.strategy.name}))

    return fake_train


def _compare(tmp_path: Path, trained: list, base=None, **kw) -> list[Path]:
    options = {"seeds": [0, 1], "strategies": ["mixed", "mgs"], **kw}
    train = _fake_trainer(trained)
    return run_comparison(base or _base(), tmp_path, train=train, echo=lambda _: None, **options)


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_comparison_trains_every_pair_once_and_keeps_finished_runs(tmp_path: Path) -> None:
    trained: list[tuple] = []
    dirs = _compare(tmp_path, trained)
    assert [d.name for d in dirs] == ["mixed-s0", "mgs-s0", "mixed-s1", "mgs-s1"]
    assert trained == [("mixed", 0), ("mgs", 0), ("mixed", 1), ("mgs", 1)]
    (dirs[-1] / "summary.json").unlink()  # as if interrupted during the last run
    shutil.rmtree(dirs[1])  # as if never started
    trained.clear()
    _compare(tmp_path, trained)
    # The unfinished run is continued (from its latest intact checkpoint), the missing one
    # trained; the finished runs, saved with the same config, are kept.
    assert trained == [("mgs", 0), ("mgs", 1, True)]
    assert json.loads((tmp_path / "compare.json").read_text())["seeds"] == [0, 1]


def test_a_run_trained_with_another_config_stops_the_comparison(tmp_path: Path) -> None:
    trained: list[tuple] = []
    _compare(tmp_path, trained, seeds=[0])
    before = _files(tmp_path)
    trained.clear()
    # Used to report the 10-step runs beside new 40-step ones without a word.
    with pytest.raises(ConfigError) as caught:
        _compare(tmp_path, trained, base=_base(steps=40, rollout__sampling__n=4))
    message = str(caught.value)
    assert "holds runs trained with another config than this comparison's" in message
    assert "mixed-s0 (steps: 10 there, 40 now; rollout.sampling.n: 8 there, 4 now)" in message
    assert "mgs-s0 (steps: 10 there, 40 now;" in message
    assert "pass another --out, or --overwrite to retrain those runs" in message
    assert trained == [] and _files(tmp_path) == before  # nothing trained, nothing lost
    _compare(tmp_path, trained, base=_base(steps=40), overwrite=True)
    assert trained == [("mixed", 0), ("mgs", 0), ("mixed", 1), ("mgs", 1)]
    assert yaml.safe_load((tmp_path / "mixed-s0" / "config.yaml").read_text())["steps"] == 40


def test_keys_added_since_a_run_was_saved_do_not_count_as_differences(tmp_path: Path) -> None:
    cfg = variant_config(_base(), "mgs", 0)
    saved = to_dict(cfg)
    assert saved["logging"].pop("keep_checkpoints") == LoggingConfig().keep_checkpoints
    saved["rewards"]["reward_model"]["path"] = "/cache/tiny-rm-0123"  # builtin:tiny, resolved
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(saved))
    assert config_differences(file, cfg) == []
    # A reward model of the user's own is compared like every other key.
    rm = dataclasses.replace(cfg.rewards.reward_model, path="/rm/b")
    own = dataclasses.replace(cfg, rewards=dataclasses.replace(cfg.rewards, reward_model=rm))
    assert config_differences(file, own) == [
        "rewards.reward_model.path: '/cache/tiny-rm-0123' there, '/rm/b' now"
    ]
    file.write_text(yaml.safe_dump({**saved, "stepz": 3}))
    (problem,) = config_differences(file, cfg)
    assert problem.startswith("its config.yaml does not load as a run config: unknown config key")


def test_a_folder_that_is_not_a_run_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "mgs-s0").mkdir()
    (tmp_path / "mgs-s0" / "notes.md").write_text("mine")
    (tmp_path / "mixed-s1").write_text("a file")
    trained: list[tuple] = []
    with pytest.raises(ConfigError) as caught:
        _compare(tmp_path, trained, overwrite=True)
    assert "mgs-s0 (it holds notes.md); mixed-s1 (a file, not a run directory)" in str(caught.value)
    assert "are left alone: move them away or pass another --out" in str(caught.value)
    assert trained == [] and (tmp_path / "mgs-s0" / "notes.md").read_text() == "mine"


def _error(capsys, argv: list[str]) -> str:
    return one_line_error(capsys, argv)


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if `mgs compare` trains anything."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("trained despite bad input")

    monkeypatch.setattr(train_run, "run_training", forbidden)


def test_every_variant_is_validated_before_any_trains(capsys, tmp_path, no_training) -> None:
    out = tmp_path / "cmp"
    # Used to train `mixed` for minutes before rejecting `bogus`.
    err = _error(capsys, ["compare", "--strategies", "mixed", "bogus", "--out", str(out)])
    assert "strategy variant 'bogus': strategy.name 'bogus' is unknown; write one of" in err
    err = _error(capsys, ["compare", "--strategies", "mixed", "mgs", "mixed", "--out", str(out)])
    assert "--strategies names mixed more than once" in err
    err = _error(capsys, ["compare", "--seeds", "0", "0", "--out", str(out)])
    assert "--seeds names 0 more than once" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("seed=3", "--seeds"),
        ("strategy.name=mgs", "--strategies"),
        ("strategy.aggregator=upgrad", "--strategies (NAME:AGGREGATOR)"),
        ("strategy.granularity=module", "--strategies (NAME:AGGREGATOR@GRANULARITY)"),
    ],
)
def test_overrides_the_variants_replace_are_refused(
    capsys, tmp_path, no_training, override, option
) -> None:
    # Were dropped without a word: `seed=3` ran (or kept) seed 0.
    argv = ["compare", "--strategies", "mixed", "--seeds", "0", "--out", str(tmp_path / "c")]
    err = _error(capsys, [*argv, override])
    key = override.partition("=")[0]
    assert f"override {override!r}: mgs compare sets {key} for each run from {option}" in err


def test_out_must_be_a_directory_for_a_comparison(capsys, tmp_path, no_training) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    err = _error(capsys, ["compare", "--strategies", "mixed", "--out", str(a_file)])
    assert f"--out '{a_file}' is a file, not a directory" in err
    assert a_file.read_text() == "keep me"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    err = _error(capsys, ["compare", "--strategies", "mixed", "--out", str(run)])
    assert f"--out '{run}' is a run directory of `mgs train`" in err
