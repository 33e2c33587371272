"""The CLI's safety net (strabench/cli/__init__.py): every error the user can cause is one line
``error: ...`` on stderr and exit 2; ``--debug`` shows the traceback instead."""

from __future__ import annotations

import errno
import os

import pytest
from typer.testing import CliRunner

from strabench.cli import app, print_error


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["train", "resnet50", "--epochs", "two"], ["'--epochs'", "valid integer", "got 'two'", "strabench train --help"]),
    (["train", "resnet50", "--epochs=3.5"], ["'--epochs'", "got '3.5'"]),
    (["flops", "resnet50", "--no-such-option"], ["--no-such-option"]),
    (["--no-such-option", "list"], ["--no-such-option"]),
    (["trian"], ["trian"]),
    (["train"], ["Missing argument 'model'"]),
])
def test_usage_errors_are_one_line_exit_2(argv: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    result = CliRunner().invoke(app, argv, prog_name="strabench")
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    for text in expected:
        assert text in line, line


def test_no_arguments_still_prints_the_help() -> None:
    result = CliRunner().invoke(app, [], prog_name="strabench")
    assert "Usage" in result.output and "error:" not in result.output


def test_an_os_error_is_one_line_naming_the_file_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    from strabench.cli import list as list_cmd

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/results/x/metrics.jsonl")

    monkeypatch.setattr(list_cmd, "list_models", disk_full, raising=False)
    monkeypatch.setattr("strabench.registry.list_models", disk_full)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 2, result.output
    assert one_error_line(result.stderr) == "error: /results/x/metrics.jsonl: no space left on device (disk full)"
    debug = CliRunner().invoke(app, ["--debug", "list"])
    assert isinstance(debug.exception, OSError) and debug.exception.errno == errno.ENOSPC


def test_print_error_is_always_one_line_and_never_markup(capsys: pytest.CaptureFixture[str]) -> None:
    print_error("bad.toml: key 'a\nb'\r\n  [bold]x[/bold]\u2028y")
    assert capsys.readouterr().err == "error: bad.toml: key 'a b' [bold]x[/bold] y\n"
