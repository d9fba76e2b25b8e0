"""docs/config.md documents every config key: it must match the generator."""

from __future__ import annotations

from pathlib import Path

from mgs.dataclass_config import describe
from mgs.train.command import config_markdown
from mgs.train.config import TrainConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_every_config_key_has_a_help_string() -> None:
    missing = [key for key, _, text in describe(TrainConfig) if not text.strip()]
    assert not missing, f"config keys without help: {missing}"


def test_config_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == config_markdown(), (
        "docs/config.md is stale: regenerate it with "
        "`mgs train --help-config --markdown > docs/config.md`"
    )
