"""Shell completion: Typer's --install-completion / --show-completion, and what a Tab completes.

The completion protocol is driven as the installed shell script drives it: the command run
with _STRABENCH_COMPLETE and the words typed so far in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.registry import list_models

REPO = Path(__file__).resolve().parents[2]


def complete(words: str, *, cwd: Path = REPO) -> list[str]:
    """What bash completion offers after ``words`` (the last word being completed)."""
    env = {**os.environ, "_STRABENCH_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    done = subprocess.run([sys.executable, "-m", "strabench"], env=env, capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout.split()


# Typer detects the user's shell from the process tree (shellingham) and then ignores a shell named
# on the command line; under a runner with no shell among its parents (nohup, an IDE, some CI) it
# finds none and refuses. Typer's own switch makes the option take the shell it is given, so these
# tests do not depend on what started pytest.
SHELL_SWITCH = "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"


def test_show_completion_prints_the_bash_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHELL_SWITCH, "1")
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="strabench")
    assert result.exit_code == 0, result.output
    assert "_STRABENCH_COMPLETE=complete_bash" in result.stdout and "complete -o default" in result.stdout


def test_install_completion_writes_into_the_users_shell_files(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash", SHELL_SWITCH: "1"}
    done = subprocess.run([sys.executable, "-m", "strabench", "--install-completion", "bash"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "strabench.sh"
    assert script.is_file() and "_STRABENCH_COMPLETE" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


def test_commands_complete() -> None:
    assert complete("strabench li") == ["list"]
    assert {"show", "status"} <= set(complete("strabench s"))


def test_model_names_complete_for_commands_that_take_a_model() -> None:
    expected = [name for name in list_models() if name.startswith("resnet50_s")]
    assert len(expected) >= 3
    for command in ("flops", "bench", "train", "viz"):
        assert complete(f"strabench {command} resnet50_s") == expected, command


def test_suite_names_complete_from_the_suites_folder(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    for name in ("demo", "deep", "quick"):
        (tmp_path / "suites" / f"{name}.toml").write_text("")
    assert complete("strabench run de", cwd=tmp_path) == ["deep", "demo"]
    assert complete("strabench run ./sui", cwd=tmp_path) == [], "paths are left to the shell's file completion"


@pytest.mark.parametrize("option", ["--install-completion", "--show-completion"])
def test_completion_options_are_in_the_help(option: str) -> None:
    assert option in CliRunner().invoke(app, ["--help"]).output
