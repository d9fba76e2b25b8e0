"""The command line: a light start, and commands whose optional dependency is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mgs import cli

HEAVY = ("torch", "transformers", "lm_eval", "nltk", "langdetect", "math_verify", "matplotlib")


def test_import_and_help_load_neither_torch_nor_transformers() -> None:
    code = (
        "import json, sys, mgs, mgs.cli\n"
        "mgs.cli.build_parser().format_help()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_command_with_a_missing_dependency_is_listed_and_says_what_to_install(
    monkeypatch, capsys
) -> None:
    commands = {**cli.COMMANDS, "fancy": ("trl.no_such_module_of_mgs", "needs TRL")}
    monkeypatch.setattr(cli, "COMMANDS", commands)
    assert "fancy" in cli.build_parser().format_help()  # listed, not silently dropped
    assert cli.main(["fancy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `mgs fancy` cannot start: the Python package 'trl'")
    assert "pip install 'mgs[trl]'" in err


def test_every_command_has_help(capsys) -> None:
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith("usage: mgs " + name)
