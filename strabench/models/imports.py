"""Importing the user's own code (a model builder, a block class) by module name.

A leaf: both the model sources and the block sources name user code as ``package.module:NAME``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from strabench.errors import ConfigError


def import_from_cwd(module: str) -> Any:
    """Import ``module`` with the working directory searchable (a console script's path lacks it)."""
    added = "" not in sys.path and "." not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module!r} ({exc}); it must be importable from the working directory or PYTHONPATH") from None
    finally:
        if added:
            sys.path.remove("")
