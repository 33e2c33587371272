"""How a model whose weights come from a file is built: the file is data, only the user names code.

A strabench checkpoint stores its training config, ``model_overrides`` included, and those can
name a block by reference (``replace = {"layer4.*.conv2" = "mypkg.blocks:MyBlock"}``). Building
the model as stored would import and call whatever a file says -- and a results folder, a
downloaded checkpoint or a colleague's run directory is not code anyone reviewed. So, for
``eval``, ``viz``, ``export``/``bench --checkpoint`` (``strabench.train.engine``):

* block *names* of the registry (``strabench.models.replace.BLOCKS``: ``stra``, ``se`` ...,
  with their settings, ``stra(groups=4)``) and of a registered block source (``timm-attn:NAME``:
  ``strabench.models.blocks.BLOCK_SOURCES``) are taken from the file: they name code strabench
  ships or this process registered, and resolving them imports nothing a file names;
* a block *reference* (``package.module:Class``) is used only when the caller gives it again
  (``--replace`` on the command line, ``model_overrides`` in the API), and what the caller gives
  is checked against the file: a mismatch is refused in one line, never silently built;
* the model itself always comes from the caller (a checkpoint of another model is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strabench.errors import CheckpointError

__all__ = ["build_options"]


def _blocks(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CheckpointError(f"{source}: its stored model_overrides replace is not a table of pattern = block")
    return dict(value)


def _shown(blocks: Mapping[str, str]) -> str:
    return " ".join(f"--replace '{pattern}={block}'" for pattern, block in blocks.items()) or "no --replace"


def _named_by_registry(block: str) -> bool:
    """Whether ``block`` resolves without importing anything the text names (module doc)."""
    from strabench.models.blocks import BLOCK_SOURCES
    from strabench.models.replace import BLOCKS

    name = block.partition("(")[0].strip()
    prefix, colon, _ = name.partition(":")
    return name in BLOCKS or (bool(colon) and prefix in BLOCK_SOURCES)


def build_options(stored: Mapping[str, Any] | None, given: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The ``model_overrides`` to build a model whose weights come from ``source``.

    ``stored``: the overrides the file records (None: the file records no config, e.g. a plain
    state_dict); ``given``: the caller's (None: none given). The caller's keys win; blocks
    follow the module doc. Raises ``CheckpointError`` naming the file when the file names code
    the caller did not give, or the caller's blocks differ from the file's.
    """
    if stored is not None and not isinstance(stored, Mapping):
        raise CheckpointError(f"{source}: its stored model_overrides is not a table")
    stored_options = dict(stored or {})
    stored_blocks = _blocks(stored_options.pop("replace", None), source)
    given_options = dict(given or {})
    has_given_blocks = "replace" in given_options
    given_blocks = _blocks(given_options.pop("replace", None), "the given model_overrides")
    if has_given_blocks:
        if stored is not None and given_blocks != stored_blocks:
            raise CheckpointError(
                f"{source} was trained with {_shown(stored_blocks)}, not {_shown(given_blocks)}: "
                "give the blocks it was trained with (or leave --replace out when they are registry blocks)"
            )
        blocks = given_blocks
    else:
        references = {p: b for p, b in stored_blocks.items() if not _named_by_registry(b)}
        if references:
            raise CheckpointError(
                f"{source} names user code for its blocks; strabench never imports code a file names: "
                f"if you trust that code, give it on the command line: {_shown(stored_blocks)}"
            )
        blocks = stored_blocks
    options = {**stored_options, **given_options}
    if blocks:
        options["replace"] = blocks
    return options
