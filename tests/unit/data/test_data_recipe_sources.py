"""The paper configs' training data by hub id: each dataset's column mapping on a fixture written in
that dataset's exact column layout (as a local copy and through a fake ``datasets`` hub), the IFEval
reward on the instruction-following layout, and one clear error when the hub is out of reach."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mgs.cli import main
from mgs.data.presets import BOXED_INSTRUCTION
from mgs.data.readers import is_hub_id, read_records
from mgs.data.sources import SourceConfig, load_source
from mgs.errors import DataError
from mgs.rewards.ifeval import ifeval_check

REPO = Path(__file__).resolve().parents[3]
SHARED_WILDCHAT = REPO.parent / "shared" / "data" / "wildchat-if_train.parquet"
CONFIG = "configs/qwen2.5-7b_math-chat-if_mgs.yaml"
# datasets 5.2.0's load_dataset parameters (recorded; the fake below takes the same ones).
LOAD_DATASET_PARAMS = [
    "path",
    "name",
    "data_dir",
    "data_files",
    "split",
    "cache_dir",
    "features",
    "download_config",
    "download_mode",
    "verification_mode",
    "keep_in_memory",
    "save_infos",
    "revision",
    "token",
    "streaming",
    "num_proc",
    "storage_options",
    "config_kwargs",
]

# --------------------------------------------------------------- fixtures in each exact layout

MESSAGES = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))


def simplerl_table() -> pa.Table:
    """hkust-nlp/SimpleRL-Zoo-Data, simplelr_qwen_level3to5/train.parquet: verl columns plus the
    raw question and its answer (the prompt column carries Qwen's chat template)."""
    questions = ["What is $1+1$?", "Solve $x^2=4$ for $x>0$."]
    answers = ["2", "2"]
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    qwen = (
        "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n"
    )
    return pa.table(
        {
            "question": questions,
            "gt_answer": answers,
            "target": answers,
            "subject": ["Prealgebra", "Algebra"],
            "data_source": ["simplelr_math_35"] * 2,
            "prompt": pa.array(
                [[{"content": qwen % (system, q), "role": "user"}] for q in questions], MESSAGES
            ),
            "ability": ["math"] * 2,
            "reward_model": [{"ground_truth": a, "style": "rule"} for a in answers],
            "extra_info": [{"index": i, "split": "train"} for i in range(2)],
        }
    )


WILDCHAT_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", MESSAGES),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string())])),
        ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string())])),
    ]
)


def wildchat_table() -> pa.Table:
    """WildChat-IF as RLMT releases it (../shared/data/wildchat-if_*.parquet, verl chat layout)."""
    rows = {
        "data_source": ["wildchat-if"] * 2,
        "prompt": [
            [{"content": "Write a haiku about rain.", "role": "user"}],
            [
                {"content": "Hi!", "role": "user"},
                {"content": "Hello, how can I help?", "role": "assistant"},
                {"content": "Plan a picnic.", "role": "user"},
            ],
        ],
        "ability": ["chat"] * 2,
        "reward_model": [{"style": "model"}] * 2,
        "extra_info": [{"index": 7, "split": "train"}, {"index": 9, "split": "train"}],
    }
    return pa.table(rows, schema=WILDCHAT_SCHEMA)


IFEVAL_KWARGS = pa.struct(
    [(name, pa.int64()) for name in ("capital_frequency", "frequency", "let_frequency")]
    + [(name, pa.string()) for name in ("capital_relation", "end_phrase", "first_word")]
    + [(name, pa.list_(pa.string())) for name in ("forbidden_words", "keywords")]
    + [(name, pa.string()) for name in ("keyword", "language", "let_relation", "letter")]
    + [(name, pa.int64()) for name in ("nth_paragraph", "num_bullets", "num_highlights")]
    + [(name, pa.int64()) for name in ("num_paragraphs", "num_placeholders", "num_sections")]
    + [(name, pa.int64()) for name in ("num_sentences", "num_words")]
    + [(name, pa.string()) for name in ("postscript_marker", "prompt_to_repeat", "relation")]
    + [("section_spliter", pa.string())]
)


def _kwargs(**used) -> dict:
    """One instruction's kwargs as the struct column stores them: every field, null if unused."""
    return {field.name: used.get(field.name) for field in IFEVAL_KWARGS}


def ifeval_like_table() -> pa.Table:
    """argilla/ifeval-like-data, configuration filtered: IFEval's own layout (key, prompt,
    instruction_id_list, kwargs as a list of structs holding every argument name)."""
    return pa.table(
        {
            "key": pa.array([101, 102], pa.int64()),
            "prompt": [
                "Describe a cat without commas in at least 5 words.",
                "Say hi in lowercase.",
            ],
            "instruction_id_list": [
                ["punctuation:no_comma", "length_constraints:number_words"],
                ["change_case:english_lowercase"],
            ],
            "kwargs": pa.array(
                [
                    [_kwargs(), _kwargs(relation="at least", num_words=5)],
                    [_kwargs()],
                ],
                pa.list_(IFEVAL_KWARGS),
            ),
        }
    )


TABLES = {
    "hkust-nlp/SimpleRL-Zoo-Data": simplerl_table,
    "princeton-nlp/rl_tulu3_wildchat-if_prompts": wildchat_table,
    "argilla/ifeval-like-data": ifeval_like_table,
}


def _parquet(tmp_path: Path, table: pa.Table, name: str) -> str:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    return str(path)


# ------------------------------------------------------------------- the mappings, local copy


def test_simplerl_math_reads_the_raw_question_and_its_answer(tmp_path) -> None:
    path = _parquet(tmp_path, simplerl_table(), "train")
    examples = load_source(SourceConfig(domain="math", path=path, preset="simplerl_math"))
    assert [ex.uid for ex in examples] == ["train/0", "train/1"]  # rows numbered
    first = examples[0]
    assert first.messages == (
        {"role": "user", "content": "What is $1+1$?" + BOXED_INSTRUCTION},
    )  # the raw problem, not the Qwen-templated prompt column
    assert first.reference == {"answer": "2"} and first.metadata["subject"] == "Prealgebra"


def test_wildchat_layout_and_its_id(tmp_path) -> None:
    path = _parquet(tmp_path, wildchat_table(), "wildchat")
    examples = load_source(SourceConfig(domain="chat", path=path, preset="wildchat"))
    assert [ex.uid for ex in examples] == ["wildchat/7", "wildchat/9"]  # extra_info.index
    assert examples[1].messages[-1] == {"role": "user", "content": "Plan a picnic."}
    assert len(examples[1].messages) == 3 and examples[0].reference == {}


@pytest.mark.skipif(not SHARED_WILDCHAT.is_file(), reason=f"{SHARED_WILDCHAT} is absent")
def test_the_wildchat_fixture_has_the_released_files_schema() -> None:
    released = pq.read_schema(SHARED_WILDCHAT).remove_metadata()
    assert released.equals(WILDCHAT_SCHEMA), released


def test_ifeval_like_rows_feed_the_ifeval_checkers(tmp_path) -> None:
    path = _parquet(tmp_path, ifeval_like_table(), "ifeval_like")
    examples = load_source(SourceConfig(domain="if", path=path, preset="ifeval"))
    assert [ex.uid for ex in examples] == ["ifeval_like/101", "ifeval_like/102"]
    ref = examples[0].reference
    assert ref["instruction_id_list"] == ["punctuation:no_comma", "length_constraints:number_words"]
    assert ref["kwargs"][1]["num_words"] == 5 and ref["kwargs"][1]["keyword"] is None
    # The null-filled structs reach IFEval's checkers as just the arguments each one uses.
    check = lambda text, i: ifeval_check(text, **examples[i].reference, loose=False)  # noqa: E731
    assert check("A small cat naps in the sun.", 0) == [True, True]
    assert check("A cat, small.", 0) == [False, False]  # a comma, and 3 words < 5
    assert check("hi there", 1) == [True] and check("Hi there", 1) == [False]


# ------------------------------------------------------------------------ the hub, faked


class FakeDataset:
    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def to_list(self) -> list[dict]:
        return self.table.to_pylist()


class FakeDatasetDict(dict):
    pass


def fake_datasets(monkeypatch, *, reachable: bool) -> list[tuple]:
    """``import datasets`` -> a hub holding TABLES (or unreachable); returns the recorded calls."""
    calls: list[tuple] = []

    def load_dataset(
        path,
        name=None,
        data_dir=None,
        data_files=None,
        split=None,
        cache_dir=None,
        features=None,
        download_config=None,
        download_mode=None,
        verification_mode=None,
        keep_in_memory=None,
        save_infos=False,
        revision=None,
        token=None,
        streaming=False,
        num_proc=None,
        storage_options=None,
        **config_kwargs,
    ):
        calls.append((path, name, data_files, split))
        if not reachable:  # what datasets 5.2.0 raises with no network
            raise ConnectionError(
                f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)\nretries ..."
            )
        return FakeDataset(TABLES[path]())

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    module.load_from_disk = lambda path: pytest.fail("not a saved dataset")
    module.DatasetDict = FakeDatasetDict
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_the_fake_hub_takes_load_datasets_parameters(monkeypatch) -> None:
    try:  # the real one (lm-eval depends on datasets): the parameters mgs passes keep their names
        import datasets

        real = list(inspect.signature(datasets.load_dataset).parameters)
        assert real[0] == "path" and {"name", "data_files", "split"} <= set(real), real
    except ImportError:
        pass
    fake_datasets(monkeypatch, reachable=True)
    import datasets as fake

    assert list(inspect.signature(fake.load_dataset).parameters) == LOAD_DATASET_PARAMS


def test_hub_ids_are_read_with_their_configuration_and_files(monkeypatch) -> None:
    calls = fake_datasets(monkeypatch, reachable=True)
    assert is_hub_id("argilla/ifeval-like-data") and not is_hub_id("data/x.parquet")
    rows = read_records("argilla/ifeval-like-data", hub_config="filtered")
    assert [r["key"] for r in rows] == [101, 102]
    read_records("hkust-nlp/SimpleRL-Zoo-Data", data_files="simplelr_qwen_level3to5/train.parquet")
    assert calls == [
        ("argilla/ifeval-like-data", "filtered", None, "train"),
        ("hkust-nlp/SimpleRL-Zoo-Data", None, "simplelr_qwen_level3to5/train.parquet", "train"),
    ]
    with pytest.raises(DataError, match="hub_config / data_files select parts"):
        read_records(__file__.replace(".py", ".json"), "json", hub_config="filtered")


def test_mgs_data_shows_the_paper_configs_recipe_data(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    fake_datasets(monkeypatch, reachable=True)
    code = main(["data", "--config", CONFIG, "--steps", "1", "--show", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "will load:" in out
    assert (
        "  math: hkust-nlp/SimpleRL-Zoo-Data, file simplelr_qwen_level3to5/train.parquet (format "
        "auto, split train, preset simplerl_math); prompt <- question, answer <- gt_answer, id <- "
        "row number"
    ) in out
    assert "  if: argilla/ifeval-like-data, configuration filtered" in out
    assert "SimpleRL-Zoo-Data -> math: 2 prompts" in out
    assert "--- chat, rl_tulu3_wildchat-if_prompts/" in out
    assert "--- if, ifeval-like-data/101, reference {'instruction_id_list'" in out


def test_an_unreachable_hub_is_one_error_naming_the_id_and_the_local_copy(
    monkeypatch, capsys
) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # an earlier test's library may set it
    fake_datasets(monkeypatch, reachable=False)
    code = main(["data", "--config", CONFIG])
    out, err = capsys.readouterr()
    assert code == 2 and "will load:" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: could not load Hugging Face dataset 'hkust-nlp/SimpleRL-Zoo-Data', file "
        "'simplelr_qwen_level3to5/train.parquet': Couldn't reach"
    )
    assert "hf download hkust-nlp/SimpleRL-Zoo-Data simplelr_qwen_level3to5/train.parquet" in err
    assert "set this source's path: to the local .parquet" in err
    assert err.rstrip().endswith("`export HF_HUB_OFFLINE=1` skips the hub's retries")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # already offline: nothing to suggest
    assert main(["data", "--config", CONFIG]) == 2
    assert "HF_HUB_OFFLINE" not in capsys.readouterr().err


def test_without_the_datasets_package_the_error_also_points_at_a_local_copy(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"mgs\[datasets\].*local copy.*path:"):
        read_records("argilla/ifeval-like-data", hub_config="filtered")
