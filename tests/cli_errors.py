"""The bad-input contract of every `mgs` command, asserted in one place: exit status 2 and one
line on stderr that starts with ``error: `` (the problem and the fix), never a traceback."""

from __future__ import annotations

from mgs.cli import main


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``mgs ARGV`` in-process, assert the contract, and return the error line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err
