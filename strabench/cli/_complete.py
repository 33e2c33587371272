"""Shell completion of values: model names for commands that take one, suite names for `run`.

Typer's ``--install-completion`` / ``--show-completion`` install the shell side; these are
called while completing, so they stay cheap (the registry's names, a directory listing) and
never fail: a completion that raises would print a traceback into the user's prompt.
"""

from __future__ import annotations

from pathlib import Path


def model_names(incomplete: str) -> list[str]:
    """Registered names starting with what was typed (references such as ``timm:`` are not listed)."""
    try:
        from strabench.registry import list_models

        return [name for name in list_models() if name.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never break the shell prompt
        return []


def suite_names(incomplete: str) -> list[str]:
    """Suites in ./suites by name (``strabench run demo``); a path is left to the shell's own
    file completion (an empty answer: the installed script falls back to file names)."""
    if "/" in incomplete or incomplete.startswith("."):
        return []
    try:
        return sorted(p.stem for p in Path("suites").glob("*.toml") if p.stem.startswith(incomplete))
    except OSError:
        return []
