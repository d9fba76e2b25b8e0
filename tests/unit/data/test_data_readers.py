"""Readers: every supported format gives the same records; every broken file a clear DataError."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared_file
from mgs.data.readers import detect_format, read_records
from mgs.errors import DataError, UnknownNameError

ROWS = [
    {"prompt": "one", "meta": {"id": 1}},
    {"prompt": "two", "meta": {"id": 2}},
]


def _write_all(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    return tmp_path


@pytest.mark.parametrize("name", ["a.jsonl", "a.json", "lines.json", "a.parquet"])
def test_every_format_reads_the_same_records(tmp_path, name):
    path = _write_all(tmp_path) / name
    assert read_records(str(path)) == ROWS


def test_explicit_format_overrides_the_extension(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    with pytest.raises(DataError, match="cannot tell the format"):
        read_records(str(path))
    assert read_records(str(path), fmt="jsonl") == ROWS


def test_bad_jsonl_line_is_reported_by_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not valid JSON"):
        read_records(str(path))


def test_json_must_hold_a_list_of_objects(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text('{"data": []}')
    with pytest.raises(DataError, match="expected a JSON list of records, got a dict"):
        read_records(str(path))
    path.write_text('[{"prompt": "a"}, 3]')
    with pytest.raises(DataError, match="record 1: expected a JSON object"):
        read_records(str(path))


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_records(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="holds no rows"):
        read_records(str(tmp_path / "empty.jsonl"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_records(str(tmp_path / "junk.parquet"))


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="valid names: auto, hf, json, jsonl, parquet"):
        read_records(str(tmp_path / "a.jsonl"), fmt="csv")


def test_a_directory_is_read_as_a_hugging_face_dataset(tmp_path):
    assert detect_format(str(tmp_path)) == "hf"


def test_saved_hugging_face_dataset_round_trips(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert read_records(str(tmp_path / "saved")) == ROWS
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(
        str(tmp_path / "dd")
    )
    assert read_records(str(tmp_path / "dd"), split="test") == ROWS
    with pytest.raises(UnknownNameError, match="valid names: test"):
        read_records(str(tmp_path / "dd"), split="train")


def test_real_parquet_keeps_nested_chat_messages():
    rows = read_records(str(shared_file("wildchat-if_val.parquet")))
    assert len(rows) == 250
    assert rows[0]["prompt"][0]["role"] == "user"
    assert rows[0]["extra_info"] == {"index": 0, "split": "val"}
