"""The command line: a light start, and commands whose optional dependency is missing."""

from __future__ import annotations

import json
import os
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


def test_a_torchrun_rank_exits_with_the_commands_status_and_its_output_flushed() -> None:
    # Under torchrun a rank leaves by os._exit (skipping the interpreter teardown where a gloo
    # group still referenced can abort a finished run): the status and the output must survive.
    env = {**os.environ, "WORLD_SIZE": "2"}
    ok = subprocess.run(
        [sys.executable, "-m", "mgs", "data", "--steps", "1", "--show", "0", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["batches"]  # the whole JSON arrived (flushed before _exit)
    bad = subprocess.run(
        [sys.executable, "-m", "mgs", "train", "=3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr == "error: override '=3' has an empty key; write e.g. rollout.sampling.n=4\n"
