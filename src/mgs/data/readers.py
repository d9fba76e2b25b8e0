"""Read the rows of a data file as plain dicts: JSON Lines, JSON, Parquet, or Hugging Face datasets.

Each reader returns ``list[dict]`` and turns every way a file can be wrong (missing, unreadable,
not a table of records) into a :class:`~mgs.errors.DataError` that names the file and the fix.
Parquet goes through pyarrow and Hugging Face datasets through ``datasets`` (optional extra
``mgs[datasets]``), imported only when used. A path that is no file or folder here but has the form
``owner/name`` is a dataset on the Hugging Face hub (optionally one configuration of it, or some of
its files; ``owner/name/CONFIG`` names a configuration in the path, ``owner/name/*`` reads every
configuration); when the hub cannot be reached the error names the dataset and says how to point
the source at a local copy instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mgs.errors import DataError, MgsError, unknown_name

Records = list[dict[str, Any]]

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
# owner/name, as the hub spells dataset ids, optionally /CONFIG or /* (every configuration)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+|/\*)?$")


def is_hub_id(path: str) -> bool:
    """``path`` reads as ``owner/name``, is no file or folder here and has no data-file extension
    (a missing ``data/train.jsonl`` stays a missing file): a hub dataset id."""
    p = Path(path)
    return bool(_HUB_ID.match(path)) and not p.exists() and p.suffix.lower() not in _SUFFIX_FORMATS


def detect_format(path: str) -> str:
    """File extension (or a directory, a saved Hugging Face dataset; or a hub id) -> reader."""
    p = Path(path)
    if p.is_dir() or is_hub_id(path):
        return "hf"
    fmt = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path!r} from its extension; name the file *.jsonl, "
            f"*.json or *.parquet, or set format: to one of {', '.join(READERS)}"
        )
    return fmt


def read_records(
    path: str,
    fmt: str = "auto",
    split: str = "train",
    *,
    hub_config: str | None = None,
    data_files: str | None = None,
) -> Records:
    """All rows of ``path`` as dicts; ``fmt`` is a reader name or ``auto`` (from the extension).
    ``hub_config`` / ``data_files`` select a configuration / files of a Hugging Face dataset."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise unknown_name("data format", fmt, [*READERS, "auto"])
    if fmt == "hf":
        records = read_hf(path, split, hub_config=hub_config, data_files=data_files)
    else:
        if hub_config or data_files:
            raise DataError(
                f"{path!r} is read as a {fmt} file, but hub_config / data_files select parts of "
                "a Hugging Face dataset; remove them, or name the dataset (owner/name) as path"
            )
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


def _hub_where(path: str, hub_config: str | None, data_files: str | None) -> str:
    parts = [repr(path)]
    if hub_config:
        parts.append(f"configuration {hub_config!r}")
    if data_files:
        parts.append(f"file {data_files!r}")
    return ", ".join(parts)


def _local_copy_hint(
    path: str, data_files: str | None, split: str = "train", hub_config: str | None = None
) -> str:
    """How to fetch the dataset elsewhere: the same configuration and split this read asked for
    (an evaluation set's own split, e.g. GSM8K's ``main`` / ``test``, not its training split)."""
    repo, config = hub_parts(path)
    config = hub_config or config
    fetch = f"hf download {repo}{' ' + data_files if data_files else ''} --repo-type dataset"
    stem = path.replace("/", "_").replace("*", "all")
    name = f", '{config}'" if config and config != "*" else ""
    export = (
        f"python -c \"import datasets; datasets.load_dataset('{repo}'{name}, split='{split}')"
        f".to_json('{stem}.jsonl')\""
    )
    return (
        f"fetch it where the hub is reachable (`{fetch} --local-dir DIR`, or `{export}`, or "
        "datasets.load_dataset(...).save_to_disk(DIR)) and set this source's path: to the local "
        ".parquet / .jsonl / .json file or the saved dataset folder, keeping its preset: (with "
        "mgs eval, pass that file instead of the hub id)"
    )


def hub_parts(path: str) -> tuple[str, str | None]:
    """``owner/name[/CONFIG]`` -> (``owner/name``, ``CONFIG`` or None); ``*``: every config."""
    parts = path.split("/")
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2]
    return path, None


def read_hf(
    path: str,
    split: str = "train",
    *,
    hub_config: str | None = None,
    data_files: str | None = None,
) -> Records:
    """A Hugging Face dataset: a folder saved with ``save_to_disk``, or a hub id (``owner/name``,
    optionally one ``hub_config`` of it (or ``owner/name/CONFIG``; ``owner/name/*``: every
    configuration, each row tagged with its ``config``) or some of its ``data_files``)."""
    where = _hub_where(path, hub_config, data_files)
    hint = _local_copy_hint(path, data_files, split, hub_config)
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"reading Hugging Face dataset {where} needs the `datasets` package; run "
            f"`pip install mgs[datasets]`, or use a local copy: {hint}"
        ) from None
    try:
        saved = Path(path) / "dataset_info.json", Path(path) / "dataset_dict.json"
        if any(marker.is_file() for marker in saved):  # written by save_to_disk
            return _split(datasets.load_from_disk(path), path, split).to_list()
        repo, config = hub_parts(path)
        config = hub_config or config
        if config != "*":
            loaded = datasets.load_dataset(repo, name=config, data_files=data_files, split=split)
            return _split(loaded, path, split).to_list()
        rows: Records = []
        for name in datasets.get_dataset_config_names(repo):
            part = datasets.load_dataset(repo, name=name, data_files=data_files, split=split)
            rows += [{**r, "config": r.get("config", name)} for r in part.to_list()]
        return rows
    except MgsError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFound, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not load Hugging Face dataset {where}: {reason}. If the hub is out of reach, "
            f"use a local copy: {hint}{_offline_hint()}"
        ) from None


def _offline_hint() -> str:
    """Without a network the hub client retries for about half a minute before it gives up;
    HF_HUB_OFFLINE=1 makes it fail at once (and read only what is cached)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return ""
    return ". On a machine without network, `export HF_HUB_OFFLINE=1` skips the hub's retries"


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
