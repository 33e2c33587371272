"""The ``strabench`` command line: one module per command, each a thin shell over the library.

Every ``StrabenchError`` (bad input, data, files), any other ``OSError`` (a file that cannot be
read or written) and every usage error (``--epochs two``) becomes one red line on stderr and
exit code 2; ``--debug`` (anywhere on the line) or ``STRABENCH_DEBUG=1`` shows the traceback
instead. So does any failure raised inside a model or block given by reference (the user's
code, ``strabench.usercode``), wherever it was called. Ctrl-C and SIGTERM stop cleanly
(``strabench.signals``): exit 130 and 143. ``-h`` is ``--help`` everywhere. Command modules import torch only inside their
functions, so ``strabench --help`` and ``strabench list`` start fast.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from strabench.cli._tracking import rewrite_mlflow_uri
from strabench.errors import StrabenchError

try:  # recent typer vendors click as typer._click (typer.BadParameter is its subclass)
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer depends on the click package
    from click.exceptions import UsageError


_ARGV = "strabench.argv"  # ctx.meta key: the command line as given
DEBUG_ENV = "STRABENCH_DEBUG"


def _env_debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _hoist_debug(args: list[str]) -> list[str]:
    """``--debug`` may come anywhere (``strabench run x.toml --debug``): move it before the subcommand,
    where the root option parses it. Tokens after ``--`` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return (["--debug"] if len(head) < end else []) + head + args[end:]


class _StrabenchGroup(TyperGroup):
    """Turns library errors, OS errors and usage errors into one line + exit 2, Ctrl-C into 130."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> typer.Context:
        # Usage errors of the top-level options (``strabench --bogus``) happen here, before invoke.
        if parent is None:
            args = rewrite_mlflow_uri(_hoist_debug([*args]))
        argv = [*args]  # a copy: click's parser consumes the list (and `list` is the list command here)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:
            if _shows_help(exc) or "--debug" in argv or _env_debug():
                raise
            print_error(_usage_line(exc, argv))
            raise typer.Exit(exc.exit_code) from None
        ctx.meta[_ARGV] = argv  # for naming the value of a bad option later
        return ctx

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)
        _no_flag_placeholders(params)
        return params

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _no_flag_placeholders([*command.params, command.get_help_option(ctx)])
        return command

    def invoke(self, ctx: typer.Context) -> Any:
        from strabench.signals import interrupt_exit_code, stop_on_sigterm

        try:
            with stop_on_sigterm():  # SIGTERM stops cleanly, like Ctrl-C (exit 143)
                return super().invoke(ctx)
        except StrabenchError as exc:
            if _debug(ctx):
                raise
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:  # a subcommand's options: `train MODEL --epochs two`
            if _debug(ctx) or _shows_help(exc):
                raise
            print_error(_usage_line(exc, ctx.meta.get(_ARGV, [])))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if _debug(ctx) or exc.errno == errno.EPIPE:  # typer exits quietly on a closed pipe
                raise
            print_error(_os_error_line(exc))
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a failure of the user's own code
            from strabench.usercode import user_code_failure

            line = user_code_failure(exc)
            if line is None or _debug(ctx):
                raise
            print_error(f"{line} (--debug shows the traceback)")  # the user's model or block raised (strabench.usercode)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            if _debug(ctx):
                raise
            print_error("interrupted" if interrupt_exit_code(exc) == 130 else f"stopped ({exc})")
            raise typer.Exit(interrupt_exit_code(exc)) from None


def _no_flag_placeholders(params: list[Any]) -> None:
    """Boolean flags take no value, so help shows ``--json``, not ``--json <bool>`` (typer's rich
    help prints a type for every option; an empty metavar is what it shows instead)."""
    for param in params:
        if param is not None and getattr(param, "is_flag", False):
            param.metavar = ""


def _debug(ctx: typer.Context) -> bool:
    """Whether ``--debug`` or STRABENCH_DEBUG=1 was given (known once the root callback has run, inside invoke)."""
    return bool((ctx.obj or {}).get("debug")) or _env_debug()


def _shows_help(exc: UsageError) -> bool:
    """``no_args_is_help``: click raises a usage error whose message is the help text itself."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def _usage_line(exc: UsageError, argv: list[str]) -> str:
    """click's message ("Invalid value for '--epochs': ...") + the value given + where to look."""
    message = exc.format_message()
    value = _option_value(exc, argv)
    if value is not None and repr(value) not in message:
        message = f"{message.rstrip('.')}: got {value!r}"
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{message}{hint}"


def _option_value(exc: UsageError, argv: list[str]) -> str | None:
    """The value given on the command line for the option a BadParameter is about (the last one)."""
    param = getattr(exc, "param", None)
    if getattr(param, "param_type_name", None) != "option":
        return None
    opts = [*param.opts, *param.secondary_opts]
    value = None
    for index, token in enumerate(argv):
        for opt in opts:
            if token == opt and index + 1 < len(argv):
                value = argv[index + 1]
            elif token.startswith(f"{opt}="):
                value = token[len(opt) + 1 :]
    return value


def _os_error_line(exc: OSError) -> str:
    """"PATH: reason" for an OSError that escaped the library (e.g. "metrics.jsonl: disk full")."""
    from strabench.io import describe_os_error

    where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = describe_os_error(exc)
    return f"{where}: {reason}" if where else reason


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, always one whole line: every whitespace run (newlines
    included) becomes one space, other control characters (an ANSI escape inside a file name)
    become ``?``, and the message is not read as rich markup. Red only on a terminal: a log or
    a pipe gets plain text, whatever FORCE_COLOR says."""
    line = _CONTROL_CHARS.sub("?", " ".join(message.split())) or "error"
    if not sys.stderr.isatty():
        sys.stderr.write(f"error: {line}\n")
        sys.stderr.flush()
        return
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(line)}", markup=True)


app = typer.Typer(
    name="strabench",
    cls=_StrabenchGroup,
    help="Benchmark and ablate attention blocks (StRA, SE, Non-local, SASA) in vision backbones.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from strabench import __version__

        typer.echo(f"strabench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors (anywhere on the line; or STRABENCH_DEBUG=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


def _register() -> None:
    from strabench.cli import flops, list as list_cmd

    app.command("list", help=list_cmd.__doc__)(list_cmd.list_command)
    app.command("flops", help=flops.__doc__)(flops.flops_command)
    for module_name in ("bench", "export", "train", "evaluate", "run", "status", "report", "show", "viz", "doctor"):
        try:
            module = __import__(f"strabench.cli.{module_name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"strabench.cli.{module_name}":
                raise
            continue
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="strabench")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
