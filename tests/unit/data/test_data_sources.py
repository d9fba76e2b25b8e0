"""Sources: presets on the real files, column mapping, and one clear error per kind of bad row."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from mgs.data.generators import generate, split_tasks
from mgs.data.presets import BOXED_INSTRUCTION, PRESETS
from mgs.data.readers import read_records
from mgs.data.sources import SourceConfig, check_sources, load_source
from mgs.errors import ConfigError, DataError, UnknownNameError


def _jsonl(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_math_preset_on_math500():
    path = shared_file("math500.json")
    examples = load_source(SourceConfig(domain="math", path=str(path), preset="math"))
    rows = json.loads(path.read_text())
    assert len(examples) == len(rows) == 500
    first = examples[0]
    assert first.uid == f"math500/{rows[0]['unique_id']}"
    assert first.domain == "math"
    assert first.question == rows[0]["problem"] + BOXED_INSTRUCTION
    assert [ex.reference["answer"] for ex in examples] == [r["answer"] for r in rows]
    # Every column the source does not map travels along as metadata.
    assert first.metadata == {k: rows[0][k] for k in ("solution", "subject", "level")}
    assert first.suffix == BOXED_INSTRUCTION


def test_ifeval_preset_keeps_the_instruction_specs():
    path = shared_file("ifeval.json")
    examples = load_source(SourceConfig(domain="ifeval", path=str(path), preset="ifeval"))
    rows = json.loads(path.read_text())
    assert len(examples) == 541
    assert examples[0].uid == f"ifeval/{rows[0]['key']}"
    assert examples[0].question == rows[0]["prompt"]  # no suffix for IFEval
    assert examples[0].reference == {
        "instruction_id_list": rows[0]["instruction_id_list"],
        "kwargs": rows[0]["kwargs"],
    }


@pytest.mark.parametrize(("name", "rows"), [("wildchat-if_val", 250), ("wildchat-if_train", 7544)])
def test_wildchat_preset_reads_chat_messages_and_nested_ids(name, rows):
    path = shared_file(f"{name}.parquet")
    examples = load_source(SourceConfig(domain="chat", path=str(path), preset="wildchat"))
    records = read_records(str(path))
    assert len(examples) == len(records) == rows
    assert [ex.uid for ex in examples] == [f"{name}/{r['extra_info']['index']}" for r in records]
    assert examples[3].messages == (
        {"role": "user", "content": records[3]["prompt"][0]["content"]},
    )
    assert examples[3].reference == {}  # a reward model needs nothing
    assert set(examples[3].metadata) == {"data_source", "ability", "reward_model", "extra_info"}
    assert examples[3].metadata["extra_info"] == records[3]["extra_info"]


def test_metadata_lists_the_columns_to_keep_and_names_a_missing_one(tmp_path):
    rows = [{"prompt": "a", "topic": "x", "score": None, "big": "..."}]
    path = _jsonl(tmp_path, rows)
    (ex,) = load_source(SourceConfig(domain="chat", path=path, metadata=["topic", "score"]))
    assert dict(ex.metadata) == {"topic": "x", "score": None}  # a null passes through
    (ex,) = load_source(SourceConfig(domain="chat", path=path, metadata=[]))
    assert dict(ex.metadata) == {}
    with pytest.raises(DataError, match=r"rows\.jsonl, row 0: no column 'lang' \(the metadata\)"):
        load_source(SourceConfig(domain="chat", path=path, metadata=["lang"]))


def test_alpacaeval_preset_and_limit():
    path = shared_file("alpacaeval2_gpt4_baseline.json")
    examples = load_source(
        SourceConfig(domain="chat", path=str(path), preset="alpacaeval", limit=5)
    )
    rows = json.loads(path.read_text())[:5]
    assert [ex.question for ex in examples] == [r["instruction"] for r in rows]
    assert [ex.reference["baseline_output"] for ex in examples] == [r["output"] for r in rows]
    assert [ex.uid for ex in examples] == [f"alpacaeval2_gpt4_baseline/{i}" for i in range(5)]


def test_verl_preset_reads_the_dotted_ground_truth(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2"}},
        {"prompt": [{"role": "user", "content": "2+2?"}], "reward_model": {"ground_truth": "4"}},
    ]
    examples = load_source(SourceConfig(domain="math", path=_jsonl(tmp_path, rows), preset="verl"))
    assert [ex.reference for ex in examples] == [{"answer": "2"}, {"answer": "4"}]
    assert [ex.uid for ex in examples] == ["rows/0", "rows/1"]


def test_explicit_keys_override_the_preset(tmp_path):
    rows = [{"question": "Q1", "gold": "7", "problem": "unused", "answer": "x"}]
    cfg = SourceConfig(
        domain="math",
        path=_jsonl(tmp_path, rows),
        preset="math",
        prompt_key="question",
        reference={"answer": "gold"},
        suffix="",
        id_key="",
        name="mine",
    )
    (ex,) = load_source(cfg)
    assert (ex.uid, ex.question, dict(ex.reference)) == ("mine/0", "Q1", {"answer": "7"})


def test_missing_column_names_the_column_the_file_and_the_fix(tmp_path):
    path = _jsonl(tmp_path, [{"question": "Q", "gold": "1"}])
    with pytest.raises(DataError) as info:
        load_source(SourceConfig(domain="math", path=path, preset="math"))
    message = str(info.value)
    assert message.startswith(f"{path}, row 0: no column 'problem' (the prompt_key)")
    assert "columns are: question, gold" in message
    assert "preset" in message
    # A reference column missing from a later row names that row.
    path = _jsonl(tmp_path, [{"p": "a", "sol": "1"}, {"p": "b"}], "late.jsonl")
    with pytest.raises(
        DataError, match=r"late\.jsonl, row 1: no column 'sol' \(the reference 'answer'\)"
    ):
        load_source(
            SourceConfig(domain="math", path=path, prompt_key="p", reference={"answer": "sol"})
        )


def test_null_reference_and_missing_nested_key_name_the_row(tmp_path):
    rows = [
        {"problem": "a", "answer": "1", "unique_id": "u0"},
        {"problem": "b", "answer": None, "unique_id": "u1"},
    ]
    with pytest.raises(
        DataError, match=r"row 1: column 'answer' \(the reference 'answer'\) is null"
    ):
        load_source(SourceConfig(domain="math", path=_jsonl(tmp_path, rows), preset="math"))
    rows = [{"prompt": "a", "reward_model": {"style": "rule"}}]
    with pytest.raises(DataError, match=r"no column 'reward_model\.ground_truth'"):
        load_source(
            SourceConfig(domain="math", path=_jsonl(tmp_path, rows, "v.jsonl"), preset="verl")
        )


def test_duplicate_ids_are_an_error_not_a_silent_overwrite(tmp_path):
    rows = [{"prompt": "a", "id": 1}, {"prompt": "b", "id": 1}]
    with pytest.raises(DataError, match=r"id 'rows/1' appears twice in column 'id'.*id_key: ''"):
        load_source(SourceConfig(domain="chat", path=_jsonl(tmp_path, rows), id_key="id"))
    renumbered = load_source(SourceConfig(domain="chat", path=_jsonl(tmp_path, rows), id_key=""))
    assert [ex.uid for ex in renumbered] == ["rows/0", "rows/1"]


def test_synthetic_source_and_suffix():
    cfg = SourceConfig(
        domain="math", synthetic="tiny_math", size=3, seed=1, suffix=" Use \\boxed{}."
    )
    examples = load_source(cfg)
    tasks = generate("tiny_math", 3, 1)
    assert [ex.uid for ex in examples] == ["tiny_math/0", "tiny_math/1", "tiny_math/2"]
    assert [ex.question for ex in examples] == [t.question + " Use \\boxed{}." for t in tasks]
    assert [dict(ex.reference) for ex in examples] == [t.reference for t in tasks]
    assert [ex.metadata["completion"] for ex in examples] == [t.completion for t in tasks]
    assert examples[0].suffix == " Use \\boxed{}."


def test_synthetic_sources_read_their_split():
    held = load_source(SourceConfig(domain="chat", synthetic="tiny_chat", split="eval"))
    assert {ex.question for ex in held} == {t.question for t in split_tasks("tiny_chat", "eval")}
    assert all(ex.reference == {} and ex.metadata["topic"] in ex.question for ex in held)
    (ex,) = load_source(SourceConfig(domain="if", synthetic="tiny_if", size=1, metadata=["topic"]))
    assert list(ex.metadata) == ["topic"]


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"domain": "math"}, ConfigError, "exactly one of path"),
        (
            {"domain": "math", "path": "a.json", "synthetic": "tiny_math"},
            ConfigError,
            "exactly one of",
        ),
        ({"domain": "2math", "path": "a.json"}, ConfigError, "must be a name of letters"),
        (
            {"domain": "math", "synthetic": "huge_math"},
            UnknownNameError,
            "valid names: tiny_chat, tiny_if, tiny_math",
        ),
        (
            {"domain": "math", "path": "a.json", "preset": "gsm8k_v2"},
            UnknownNameError,
            "valid names: alpacaeval",
        ),
        (
            {"domain": "math", "path": "a.json", "format": "csv"},
            UnknownNameError,
            "valid names: auto",
        ),
        ({"domain": "math", "path": "a.json", "limit": 0}, ConfigError, "limit must be positive"),
        ({"domain": "math", "synthetic": "tiny_math", "size": 0}, ConfigError, "size must be"),
        (
            {"domain": "math", "synthetic": "tiny_math", "split": "test"},
            ConfigError,
            "split must be one of train, eval",
        ),
    ],
)
def test_bad_source_configs(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        SourceConfig(**kwargs)


def test_source_labels_must_be_unique_and_sources_non_empty():
    with pytest.raises(ConfigError, match=r"data\.sources is empty"):
        check_sources([])
    twice = [SourceConfig(domain="a", path="x/d.json"), SourceConfig(domain="b", path="y/d.json")]
    with pytest.raises(ConfigError, match="share the label 'd'"):
        check_sources(twice)
    check_sources([twice[0], SourceConfig(domain="b", path="y/d.json", name="d2")])


def test_every_preset_documents_itself():
    assert all(layout.about for layout in PRESETS.values())
