"""Shared fixtures: the real benchmark files in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MGS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the real benchmark files; skips the test when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real benchmark data not found at {SHARED_DATA} (a fresh clone has no ../shared); "
            "set MGS_SHARED_DATA to the folder holding math500.json, ifeval.json, ..."
        )
    return SHARED_DATA


def shared_file(name: str) -> Path:
    """Path of one shared data file, or skip with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(
            f"{name} not found under {SHARED_DATA}; it ships in ../shared/data beside the repo"
        )
    return path


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """The Hugging Face hub unreachable at once, as on a machine without internet: the offline
    flags are read when huggingface_hub / datasets are imported, so the imported constants are
    patched too (an earlier test may have imported them)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "no-hub-cache"))
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(
        datasets.config, "HF_DATASETS_CACHE", tmp_path / "no-hub-cache", raising=False
    )
