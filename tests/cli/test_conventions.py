"""Command-line conventions users bring from git, pip and timm: ``-h``, ``--debug`` anywhere (or
STRABENCH_DEBUG=1), flags without value placeholders, ``--json`` wherever results are printed,
and options that would do nothing in a mode are refused rather than ignored."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from strabench.cli import app

COMMANDS = ["list", "flops", "bench", "export", "train", "eval", "run", "status", "report", "viz", "doctor"]


def invoke(argv: list[str], **env: str):
    return CliRunner().invoke(app, argv, prog_name="strabench", env={"COLUMNS": "200", **env})


@pytest.mark.parametrize("argv", [[], *([c] for c in COMMANDS)])
def test_short_help_everywhere_and_no_placeholder_on_flags(argv: list[str]) -> None:
    short, long = invoke([*argv, "-h"]), invoke([*argv, "--help"])
    assert short.exit_code == 0, short.output
    assert short.output == long.output and "Usage" in short.output
    assert "<bool>" not in short.output  # a flag takes no value, so help shows none


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_prints_results_has_json(command: str) -> None:
    assert "--json" in invoke([command, "-h"]).output


@pytest.mark.parametrize("argv", [
    ["--debug", "flops", "no_such_model"],
    ["flops", "no_such_model", "--debug"],
    ["flops", "--debug", "no_such_model"],
])
def test_debug_anywhere_shows_the_traceback(argv: list[str]) -> None:
    from strabench.errors import UnknownModelError

    result = invoke(argv)
    assert isinstance(result.exception, UnknownModelError)


def test_debug_from_the_environment() -> None:
    from strabench.errors import UnknownModelError

    assert isinstance(invoke(["flops", "no_such_model"], STRABENCH_DEBUG="1").exception, UnknownModelError)
    plain = invoke(["flops", "no_such_model"], STRABENCH_DEBUG="0")
    assert plain.exit_code == 2 and plain.stderr.startswith("error: unknown model")


def test_debug_after_double_dash_is_an_argument_not_the_option() -> None:
    result = invoke(["flops", "--", "--debug"])
    assert result.exit_code == 2 and "unknown model '--debug'" in result.stderr


@pytest.mark.parametrize("argv, expected", [
    (["run", "suites/quick.toml", "--json"], "--json applies to --dry-run only"),
    (["report", "results", "--format", "json"], "--format json is now --json"),
    (["bench", "resnet50", "--compile"], "--compile is now --runtime compile"),
    (["report", "results", "--json", "--format", "csv"], "give one"),
    (["report", "results", "--json", "--no-plots"], "markdown report only"),
    (["report", "results", "--format", "csv", "--plots"], "markdown report only"),
])
def test_options_that_do_nothing_in_a_mode_are_refused(argv: list[str], expected: str) -> None:
    result = invoke(argv)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
