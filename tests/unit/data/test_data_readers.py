"""Readers: every supported format gives the same records; every broken file a clear DataError."""

from __future__ import annotations

import json
import re

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


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*nope\.jsonl' does not exist"):
        read_records(str(tmp_path / "nope.jsonl"))
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match=r"'.*dir' is a folder, not a file.*format: hf"):
        read_records(str(tmp_path / "dir"), fmt="json")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("zero.jsonl", b"", "is empty (0 bytes)"),
        ("zero.json", b"", "is empty (0 bytes)"),
        ("zero.parquet", b"", "is empty (0 bytes)"),
        ("blank.jsonl", b"\n\n", "holds no rows"),
        ("blank.json", b"  \n", "holds no rows"),
        ("list.json", b"[]", "holds no rows"),
    ],
)
def test_empty_files(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=re.escape(needle)) as info:
        read_records(str(tmp_path / name))
    assert name in str(info.value)


def test_a_parquet_file_without_rows_is_empty(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS).slice(0, 0), tmp_path / "none.parquet")
    with pytest.raises(DataError, match=r"none\.parquet' holds no rows"):
        read_records(str(tmp_path / "none.parquet"))


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("binary.jsonl", b"\x89PNG\r\n\x1a\n\xff\xfe", "is not UTF-8 text (byte 0"),
        ("binary.json", b'[{"a": "\xff"}]', "is not UTF-8 text (byte 8"),
        ("junk.parquet", b"not parquet at all", "not a readable Parquet file"),
        ("junk.json", b"{oops", "not valid JSON"),
    ],
)
def test_unreadable_files(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=re.escape(needle)) as info:
        read_records(str(tmp_path / name))
    assert name in str(info.value)


def test_a_file_the_system_refuses_to_open(tmp_path, monkeypatch):
    # chmod cannot lock root out, so the refusal is simulated where the reader opens the file.
    path = tmp_path / "locked.jsonl"
    path.write_text('{"prompt": "a"}\n')

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(DataError, match=r"locked\.jsonl' cannot be read: Permission denied"):
        read_records(str(path))


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
