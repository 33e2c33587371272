"""The ``strabench`` command line: one module per command, each a thin shell over the library.

Every ``StrabenchError`` (bad input, data, files) becomes one red line on stderr and exit code
2; ``--debug`` shows the traceback instead. Command modules import torch only inside their
functions, so ``strabench --help`` and ``strabench list`` start fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from strabench.errors import StrabenchError


class _StrabenchGroup(TyperGroup):
    """Turns library errors into one line + exit 2, Ctrl-C into exit 130."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StrabenchError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if (ctx.obj or {}).get("debug"):
                raise
            print_error("interrupted")
            raise typer.Exit(130) from None


def print_error(message: str) -> None:
    from rich.console import Console

    line = " ".join(message.split("\n")[0].split()) or "error"
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {line}", markup=True)


app = typer.Typer(
    name="strabench",
    cls=_StrabenchGroup,
    help="Benchmark and ablate attention blocks (StRA, SE, Non-local, SASA) in vision backbones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from strabench import __version__

        typer.echo(f"strabench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


def _register() -> None:
    from strabench.cli import flops, list as list_cmd

    app.command("list", help=list_cmd.__doc__)(list_cmd.list_command)
    app.command("flops", help=flops.__doc__)(flops.flops_command)
    for module_name in ("bench", "train", "evaluate", "run", "report", "viz", "doctor"):
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
