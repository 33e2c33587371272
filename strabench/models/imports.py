"""Importing the user's own code (a model builder, a block class) by module name.

A leaf: both the model sources and the block sources name user code as ``package.module:NAME``.
The import goes through the user-code boundary (``strabench.usercode``), so a module that fails
while importing is one line naming it.
"""

from __future__ import annotations

from typing import Any

from strabench.usercode import import_user_module


def import_from_cwd(module: str, reference: str | None = None) -> Any:
    """Import ``module`` (named by ``reference``, e.g. ``mypkg.blocks:Gate``) with the working
    directory searchable (a console script's path lacks it)."""
    return import_user_module(module, reference or module)
