"""Read the rows of a data file as plain dicts: JSON Lines, JSON, Parquet, or Hugging Face datasets.

Each reader returns ``list[dict]`` and turns every way a file can be wrong (missing, unreadable,
not a table of records) into a :class:`~mgs.errors.DataError` that names the file and the fix.
Parquet goes through pyarrow and Hugging Face datasets through ``datasets`` (optional extra
``mgs[datasets]``), imported only when used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mgs.errors import DataError, MgsError, unknown_name

Records = list[dict[str, Any]]

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


def detect_format(path: str) -> str:
    """File extension (or a directory, a saved Hugging Face dataset) -> reader name."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    fmt = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path!r} from its extension; name the file *.jsonl, "
            f"*.json or *.parquet, or set format: to one of {', '.join(READERS)}"
        )
    return fmt


def read_records(path: str, fmt: str = "auto", split: str = "train") -> Records:
    """All rows of ``path`` as dicts; ``fmt`` is a reader name or ``auto`` (from the extension)."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise unknown_name("data format", fmt, [*READERS, "auto"])
    if fmt != "hf":
        _check_file(path)
    records = READERS[fmt](path, split)
    if not records:
        raise DataError(f"data file {path!r} holds no rows; point the source at a non-empty file")
    return records


def _check_file(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"data path {path!r} is a folder, not a file; name the file itself, or set "
            "format: hf for a folder saved by Hugging Face datasets"
        )
    if not p.is_file():
        raise DataError(f"data file {path!r} does not exist; check the source's path")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(f"data file {path!r} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise DataError(f"data file {path!r} is empty (0 bytes); point the source at a data file")


def _read_text(path: str) -> str:
    """The file's text; unreadable files and non-UTF-8 bytes are DataErrors naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {path!r} is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "is it a binary file under a .json / .jsonl name? Set format: to its real format"
        ) from None
    except OSError as exc:
        raise DataError(f"data file {path!r} cannot be read: {exc.strerror or exc}") from None


def read_jsonl(path: str, split: str = "train") -> Records:
    """One JSON object per line; blank lines are skipped, a bad line is reported by number."""
    records = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
        records.append(_record(record, f"{path}, line {number}"))
    return records


def read_json(path: str, split: str = "train") -> Records:
    """A JSON list of objects; a .json file that actually holds JSON Lines is read as such."""
    text = _read_text(path)
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines under a .json name
            return read_jsonl(path)
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of records, got a {type(data).__name__}; "
            "write [{...}, {...}] or one object per line in a .jsonl file"
        )
    return [_record(r, f"{path}, record {i}") for i, r in enumerate(data)]


def read_parquet(path: str, split: str = "train") -> Records:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def read_hf(path: str, split: str = "train") -> Records:
    """A Hugging Face dataset: a folder saved with ``save_to_disk``, or a hub id ``ORG/NAME``,
    ``ORG/NAME/CONFIG`` (one configuration) or ``ORG/NAME/*`` (every configuration, each row
    tagged with its ``config``)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"reading {path!r} as a Hugging Face dataset needs the `datasets` package; "
            "run `pip install mgs[datasets]` or export the data to .jsonl / .parquet"
        ) from None
    saved = Path(path) / "dataset_info.json", Path(path) / "dataset_dict.json"
    try:
        if any(marker.is_file() for marker in saved):  # written by save_to_disk
            return _split(datasets.load_from_disk(path), path, split).to_list()
        repo, _, config = _hub_parts(path)
        if config != "*":
            return _split(datasets.load_dataset(repo, config, split=split), path, split).to_list()
        rows: Records = []
        for name in datasets.get_dataset_config_names(repo):
            part = datasets.load_dataset(repo, name, split=split).to_list()
            rows += [{**r, "config": r.get("config", name)} for r in part]
        return rows
    except MgsError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFound, ConnectionError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stem = path.replace("/", "_").replace("*", "all")
        raise DataError(
            f"could not load Hugging Face dataset {path!r} (split {split!r}): {first}. Without "
            'hub access, save it where the hub is reachable, e.g. `python -c "import datasets; '
            f"datasets.load_dataset('{path.split('/*')[0]}', split='{split}')"
            f".to_json('{stem}.jsonl')\"`, and pass that file instead of the hub id"
        ) from None


def _hub_parts(path: str) -> tuple[str, str, str | None]:
    """``ORG/NAME[/CONFIG]`` -> (``ORG/NAME``, ``NAME``, ``CONFIG`` or None)."""
    parts = path.split("/")
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[1], parts[2]
    return path, parts[-1], None


def _split(loaded: Any, path: str, split: str) -> Any:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise unknown_name(f"split of dataset {path!r}", split, list(loaded))
        return loaded[split]
    return loaded


def _record(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object (one record), got {type(value).__name__}")
    return value


READERS: dict[str, Callable[[str, str], Records]] = {
    "jsonl": read_jsonl,
    "json": read_json,
    "parquet": read_parquet,
    "hf": read_hf,
}
