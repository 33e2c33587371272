"""The boundary around your code: a failure of a model or block you wrote is one line naming it.

strabench calls code it did not write wherever a model or block is given by reference
(``package.module:callable``, ``replace = {... = "package.module:Class"}``): importing the
module, calling the builder or the block's constructor, and every forward pass after that
(the probe that sizes a feature extractor, training, evaluation, ``bench``, ``export``). Any of
these can raise anything. Instead of a traceback (the CLI keeps those for strabench's own bugs),
a failure of that code becomes a ``UserCodeError`` -- a ``StrabenchError``, so one red line and
exit 2 -- naming the reference, what was being done, the exception and the line of your file
where it was raised (``--debug`` shows the whole traceback):

* ``calling(reference, doing)`` wraps each call strabench makes into user code;
* ``import_user_module(name)`` is the one place such modules are imported, and remembers them,
  so that ``user_code_failure(exc)`` can tell, from any exception's traceback, that it was
  raised inside them (a forward pass deep in a training step) -- the CLI's last resort.

Nothing here catches ``KeyboardInterrupt`` or ``SystemExit``, nor errors strabench already
reports in one line (``StrabenchError``).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from strabench.errors import ConfigError, StrabenchError, UserCodeError, clip

__all__ = ["calling", "import_user_module", "user_code_failure"]

#: Top-level package name -> the reference strabench imported it for (``mypkg`` -> ``mypkg.nets:build``).
#: A record of what this process imported, like ``sys.modules`` itself.
_imported: dict[str, str] = {}


def _is_user_frame(frame_globals: dict[str, Any]) -> bool:
    name = frame_globals.get("__name__")
    return isinstance(name, str) and name.partition(".")[0] in _imported


def _innermost_user_frame(tb: TracebackType | None) -> traceback.FrameSummary | None:
    found = None
    for frame, line in traceback.walk_tb(tb):
        if _is_user_frame(frame.f_globals):
            found = traceback.FrameSummary(frame.f_code.co_filename, line, frame.f_code.co_name, lookup_line=False)
    return found


def _where(tb: TracebackType | None) -> str:
    frame = _innermost_user_frame(tb)
    if frame is None:
        return ""
    return f" at {frame.filename}:{frame.lineno} in {frame.name}"


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return clip(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 240)


@contextlib.contextmanager
def calling(reference: str, doing: str = "") -> Iterator[None]:
    """Run user code: any ``Exception`` raised inside (but a ``StrabenchError``) becomes a
    one-line ``UserCodeError`` naming ``reference`` and ``doing`` (e.g. "building it for
    layer4.0.conv2"), the cause kept as ``__cause__``."""
    try:
        yield
    except StrabenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as one line naming the user's code
        doing_text = f" ({doing})" if doing else ""
        raise UserCodeError(f"{reference}{doing_text} raised {_message(exc)}{_where(exc.__traceback__)}") from exc


def import_user_module(module: str, reference: str) -> Any:
    """Import ``module`` (named by ``reference``) with the working directory searchable (a console
    script's ``sys.path`` lacks it); a module that is missing is a ``ConfigError``, one that fails
    while importing a ``UserCodeError``."""
    top = module.partition(".")[0]
    if top not in sys.modules and top != "strabench":  # a library already loaded is not the user's code
        _imported.setdefault(top, reference)
    added = "" not in sys.path and "." not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        with calling(reference, f"importing {module}"):
            try:
                return importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is not None and module != exc.name and not module.startswith(exc.name + "."):
                    raise  # the module exists; something it imports does not: its failure
                raise ConfigError(f"cannot import {module!r} ({exc}); it must be importable from the working directory or PYTHONPATH") from None
    finally:
        if added:
            sys.path.remove("")


def user_code_failure(exc: BaseException) -> str | None:
    """A one-line description of ``exc`` if it was raised inside user code strabench imported
    (``import_user_module``), else None: for errors that escaped every ``calling`` boundary."""
    if isinstance(exc, StrabenchError) or not isinstance(exc, Exception):
        return None
    frame = _innermost_user_frame(exc.__traceback__)
    if frame is None:
        return None
    top = None
    for tb_frame, _ in traceback.walk_tb(exc.__traceback__):
        if _is_user_frame(tb_frame.f_globals):
            top = tb_frame.f_globals["__name__"].partition(".")[0]
    reference = _imported.get(top or "", "your code")
    return f"{reference} raised {_message(exc)}{_where(exc.__traceback__)}"
