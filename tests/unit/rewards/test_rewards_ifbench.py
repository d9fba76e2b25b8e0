"""IFBench's checkers through the instruction-following rewards: hand-made responses per
constraint family, both reward names on both id families, and the offline NLTK data."""

from __future__ import annotations

import pytest

from mgs.errors import UnknownNameError
from mgs.rewards import get_reward
from mgs.rewards.ifbench import IFBENCH_PREFIXES, ifbench_ids
from mgs.rewards.ifeval import ifeval_check
from mgs.rewards.nltk_offline import ensure_ifbench_data, stopwords_list


def strict(response: str, instruction: str, **kwargs) -> bool:
    return ifeval_check(response, [instruction], [kwargs], loose=False)[0]


def test_there_are_58_ifbench_ids_in_the_expected_families():
    ids = ifbench_ids()
    assert len(ids) == 58
    assert {i.split(":")[0] for i in ids} == set(IFBENCH_PREFIXES)
    assert {"count:keywords_multiple", "ratio:sentence_type", "words:alphabet"} <= set(ids)


@pytest.mark.parametrize(
    ("instruction", "kwargs", "passes", "fails"),
    [
        # count: keyword1 once, keyword2 twice, ... keyword5 seven times
        (
            "count:keywords_multiple",
            {
                "keyword1": "a1",
                "keyword2": "b2",
                "keyword3": "c3",
                "keyword4": "d4",
                "keyword5": "e5",
            },
            "a1 b2 b2 c3 c3 c3 d4 d4 d4 d4 d4 e5 e5 e5 e5 e5 e5 e5",
            "a1 b2 c3 d4 e5",
        ),
        (
            "count:word_count_range",
            {"min_words": 3, "max_words": 5},
            "one two three four",
            "one two",
        ),
        # ratio: twice as many declarative as interrogative sentences
        ("ratio:sentence_type", {}, "It rains. It pours. Why?", "It rains. Why? How?"),
        # ratio: stop words (NLTK's English list) at most 40% of the words: 'the' and 'of' are
        (
            "ratio:stop_words",
            {"percentage": 40},
            "the cat of Rome sat quietly",
            "the of and to a cat",
        ),
        # words: each word starts with the next letter of the alphabet
        ("words:alphabet", {}, "Apples bake cleanly, dear Eve.", "Apples bake slowly."),
        # words: the response starts with a verb (NLTK's POS tagger)
        ("words:start_verb", {}, "Write the poem slowly.", "The poem is written."),
        # words: at least 10 palindromes of 5+ letters
        (
            "words:palindrome",
            {},
            "civic radar level kayak refer civic radar level kayak refer",
            "civic radar level kayak refer and nine more words",
        ),
        # sentence: the 2nd sentence contains the keyword
        (
            "sentence:keyword",
            {"word": "moon", "N": 2},
            "Hello. The moon rises.",
            "The moon. Hello.",
        ),
        ("format:title_case", {}, "The Quick Brown Fox", "The quick brown fox"),
        ("format:no_whitespace", {}, "no-spaces-at-all", "two words"),
    ],
)
def test_ifbench_families_on_hand_made_responses(instruction, kwargs, passes, fails):
    assert strict(passes, instruction, **kwargs)
    assert not strict(fails, instruction, **kwargs)


def test_loose_forgives_a_chatty_first_line_as_in_ifeval():
    response = "Sure, here it is:\nno-spaces-at-all"
    assert ifeval_check(response, ["format:no_whitespace"], [{}], loose=False) == [False]
    assert ifeval_check(response, ["format:no_whitespace"], [{}], loose=True) == [True]


@pytest.mark.parametrize("name", ["ifeval", "ifbench"])
def test_both_rewards_check_both_id_families_in_one_row(name):
    reward = get_reward(name)
    ids = ["punctuation:no_comma", "format:no_whitespace"]  # IFEval's, then IFBench's
    rows = reward.details(
        ["p", "p"],
        ["no-comma-no-space", "a, b"],
        instruction_id_list=[ids, ids],
        kwargs=[[{}, {}]] * 2,
    )
    assert [r["strict"] for r in rows] == [[True, True], [False, False]]
    assert [r["reward"] for r in rows] == [1.0, 0.0]
    assert reward(["p"], ["x y"], instruction_id_list=[ids], kwargs=["[{}, {}]"]) == [0.5]


def test_all_mode_and_unknown_ids():
    reward = get_reward("ifbench", mode="all")
    assert reward(
        ["p"],
        ["x y"],
        instruction_id_list=[["punctuation:no_comma", "format:no_whitespace"]],
        kwargs=[[{}, {}]],
    ) == [0.0]
    with pytest.raises(UnknownNameError, match="words:alphabet"):
        ifeval_check("x", ["words:alphabett"], [{}], loose=False)


def test_offline_nltk_data_sources_and_stopword_list():
    sources = ensure_ifbench_data()
    assert set(sources) == {"punkt_tab", "stopwords", "averaged_perceptron_tagger_eng"}
    words = stopwords_list()
    assert len(words) == len(set(words)) == 198
    assert {"i", "ourselves", "don't", "should've", "mightn't", "i'm", "they've"} <= set(words)
    # NLTK's own code lists the Snowball stop words its English list lacks: none may be in ours,
    # and the 'english-extended' list NLTK builds on ours must add exactly those.
    from nltk.corpus import stopwords
    from nltk.corpus.reader.stopwords_extended import StopwordsEnglishExtended

    assert not (StopwordsEnglishExtended.additions & set(words))
    assert set(stopwords.words("english")) == set(words) or sources["stopwords"] == "nltk_data"


def test_offline_tagger_on_nltk_documented_tags():
    """NLTK documents two taggings with its own model; the offline model (an earlier training run
    of the same tagger) gives 18 of the 19 tags: it reads 'jumps' as a plural noun."""
    if ensure_ifbench_data()["averaged_perceptron_tagger_eng"] == "nltk_data":
        pytest.skip("NLTK's own tagger is installed: the offline model is not used")
    import nltk

    # the examples of NLTK's own docs (nltk.tag.pos_tag, PerceptronTagger)
    assert nltk.pos_tag(nltk.word_tokenize("John's big idea isn't all that bad.")) == [
        ("John", "NNP"), ("'s", "POS"), ("big", "JJ"), ("idea", "NN"), ("is", "VBZ"),
        ("n't", "RB"), ("all", "PDT"), ("that", "DT"), ("bad", "JJ"), (".", "."),
    ]  # fmt: skip
    assert nltk.pos_tag(
        ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    ) == [
        ("The", "DT"),
        ("quick", "JJ"),
        ("brown", "NN"),
        ("fox", "NN"),
        ("jumps", "NNS"),
        ("over", "IN"),
        ("the", "DT"),
        ("lazy", "JJ"),
        ("dog", "NN"),
    ]  # fmt: skip  (NLTK's model: ('jumps', 'VBZ'))
