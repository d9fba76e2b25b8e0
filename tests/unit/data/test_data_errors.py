"""Every mistake the domains issue lists, made the way a user makes it (a YAML data section run
through ``mgs data``), gives one ``error:`` line that names the problem and the fix."""

from __future__ import annotations

import pytest
import yaml

from mgs.cli import main

TINY = [
    {"domain": "math", "synthetic": "tiny_math"},
    {"domain": "if", "synthetic": "tiny_if"},
    {"domain": "chat", "synthetic": "tiny_chat"},
]


def _files(tmp_path):
    (tmp_path / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 but not really")
    (tmp_path / "zero.json").write_bytes(b"")
    (tmp_path / "none.json").write_text("[]")
    (tmp_path / "noprob.jsonl").write_text('{"question": "1+1?", "answer": "2", "unique_id": "a"}')
    (tmp_path / "noans.jsonl").write_text('{"problem": "1+1?", "unique_id": "a"}')


def _file_source(tmp_path, name, preset="math"):
    return [{"domain": "math", "path": str(tmp_path / name), "preset": preset}]


CASES = {
    "unknown domain in proportions": (
        lambda t: {"sources": TINY, "mixture": {"proportions": {"math": 1, "if": 1, "code": 1}}},
        "mixture proportions names domain 'code', which no source provides; "
        "domains with sources: math, if, chat",
    ),
    "unknown domain in a phase": (
        lambda t: {"sources": TINY[:1], "mixture": {"phases": [{"domain": "maths"}]}},
        "mixture phases[0] names domain 'maths', which no source provides",
    ),
    "a domain with no proportion": (
        lambda t: {"sources": TINY, "mixture": {"proportions": {"math": 1, "chat": 1}}},
        "domain 'if' has sources but no share in the mixture",
    ),
    "a zero proportion": (
        lambda t: {"sources": TINY, "mixture": {"proportions": {"math": 1, "if": 0, "chat": 1}}},
        "mixture.proportions: the weight of 'if' must be a positive number, got 0.0; "
        "leave a domain out instead",
    ),
    "a negative proportion": (
        lambda t: {"sources": TINY, "mixture": {"proportions": {"math": 1, "if": 1, "chat": -2}}},
        "the weight of 'chat' must be a positive number, got -2",
    ),
    "a negative proportion in a phase": (
        lambda t: {"sources": TINY[:1], "mixture": {"phases": [{"proportions": {"math": -1}}]}},
        "phase proportions: the weight of 'math' must be a positive number, got -1",
    ),
    "a missing file": (
        lambda t: _file_source(t, "nope.json"),
        "nope.json' does not exist; check the source's path",
    ),
    "an unreadable (binary) file": (
        lambda t: _file_source(t, "binary.jsonl"),
        "binary.jsonl' is not UTF-8 text (byte 0 cannot be decoded)",
    ),
    "an unreadable (corrupt) parquet file": (
        lambda t: _file_source(t, "junk.parquet"),
        "junk.parquet: not a readable Parquet file",
    ),
    "an empty file": (
        lambda t: _file_source(t, "zero.json"),
        "zero.json' is empty (0 bytes)",
    ),
    "a file without rows": (
        lambda t: _file_source(t, "none.json"),
        "none.json' holds no rows",
    ),
    "a missing prompt column": (
        lambda t: _file_source(t, "noprob.jsonl"),
        "noprob.jsonl, row 0: no column 'problem' (the prompt_key); the row's columns are: "
        "question, answer, unique_id",
    ),
    "a missing reference column": (
        lambda t: _file_source(t, "noans.jsonl"),
        "noans.jsonl, row 0: no column 'answer' (the reference 'answer')",
    ),
    "a batch smaller than the domains with a share": (
        lambda t: {"sources": TINY, "mixture": {"batch_size": 2}},
        "the batch size 2 is smaller than the 3 domains with a share (math, if, chat)",
    ),
    "a batch smaller than a phase's domains": (
        lambda t: {
            "sources": TINY,
            "mixture": {
                "batch_size": 2,
                "phases": [
                    {"domain": "math", "steps": 1},
                    {"proportions": {"if": 1, "chat": 1, "math": 1}},
                ],
            },
        },
        "mixture.phases[1]: the batch size 2 is smaller than the 3 domains with a share",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_listed_mistake_is_one_clear_error_line(case, tmp_path, capsys):
    _files(tmp_path)
    section, needle = CASES[case]
    data = section(tmp_path)
    if isinstance(data, list):  # a list of sources
        data = {"sources": data, "max_prompt_tokens": None}
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump(data))
    code = main(["data", "--config", str(config), "--steps", "1", "--show", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err, err
