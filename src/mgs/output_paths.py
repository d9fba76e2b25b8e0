"""Checks of the paths a command will write, made before it spends minutes computing.

A command that would fail only when it saves (``--out`` names a directory where a file goes, a
file where a directory goes, or a folder that cannot be created) loses everything it computed;
these checks turn such mistakes into one :class:`~mgs.errors.ConfigError` at start-up. They create
nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from mgs.errors import ConfigError


def check_output_file(path: str | Path, option: str, example_name: str = "results.json") -> Path:
    """``path`` can be written as a file: not a directory, and its folder exists or can be made.

    ``example_name``: the file name suggested inside ``path`` when ``path`` is a directory."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"{option} {str(p)!r} is a directory; pass a file path, e.g. {option} "
            f"{p / example_name}"
        )
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{option} {str(p)!r} exists and is not writable; pass another path")
    _check_creatable(p.parent, option, p)
    return p


def check_output_dir(path: str | Path, option: str) -> Path:
    """``path`` can be used as a directory: not a file, and it exists or can be made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(
            f"{option} {str(p)!r} is a file, not a directory; pass the path of a directory "
            "(it is created when missing)"
        )
    _check_creatable(p, option, p)
    return p


def _check_creatable(folder: Path, option: str, target: Path) -> None:
    """``folder`` exists as a writable directory, or its nearest existing ancestor is one."""
    ancestor = folder.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(
            f"{option} {str(target)!r} cannot be created: {str(ancestor)!r} is a file, not a "
            "directory; pass another path"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {str(target)!r} cannot be created: {str(ancestor)!r} is not writable; "
            "pass a path you can write to"
        )
