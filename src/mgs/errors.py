"""User-facing errors.

Every problem a user can fix (a bad config value, a missing file, an unknown name) raises a subclass
of :class:`MgsError` whose message names the problem and the fix. The CLI prints such errors as one
line, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MgsError(Exception):
    """An error the user can fix; its message says how."""


class ConfigError(MgsError, ValueError):
    """A config file or override is malformed or has an invalid value."""


class DataError(MgsError, ValueError):
    """A data file is missing, unreadable, empty, or lacks a required column."""


class UnknownNameError(MgsError, KeyError):
    """A name looked up in a registry does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it plainly.
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: object, valid: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build the registry error every lookup uses: ``unknown aggregator 'x'; valid: a, b``."""
    return UnknownNameError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
