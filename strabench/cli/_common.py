"""Small parsing and rendering helpers shared by the commands."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from strabench.errors import ConfigError


def parse_size(text: str, *, option: str = "--input") -> tuple[int, int]:
    """'256x128' -> (256, 128); anything else is a one-line ConfigError."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ConfigError(f"{option} must look like HEIGHTxWIDTH with positive integers (e.g. 256x128), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_replace(items: list[str] | None, *, option: str = "--replace") -> dict[str, str] | None:
    """['layer4.*.conv2=stra(groups=4)'] -> {'layer4.*.conv2': 'stra(groups=4)'}, the block in its
    canonical text (``strabench.models.blocks``); anything else is a one-line ConfigError."""
    from strabench.models.blocks import canonical_block

    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        pattern, sep, block = item.partition("=")
        if not sep or not pattern.strip() or not block.strip():
            raise ConfigError(f"{option} must look like PATTERN=BLOCK (e.g. 'layer4.*.conv2=stra'), got {item!r}")
        try:
            out[pattern.strip()] = canonical_block(block)
        except ConfigError as exc:
            raise ConfigError(f"{option} {item!r}: {exc}") from None
    return out


def print_json(obj: Any) -> None:
    """JSON on stdout, unwrapped (rich would wrap long lines)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)
