"""strabench: benchmark and ablate attention blocks (StRA, SE, Non-local, SASA) in vision backbones.

Importing the package is cheap: torch and the model zoo load on first use of ``create_model``
or ``list_models``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from strabench.errors import StrabenchError

__all__ = ["StrabenchError", "__version__", "create_model", "list_models", "model_info"]


def __getattr__(name: str):  # lazy: keep `import strabench` (and the CLI's start-up) fast
    if name in {"create_model", "list_models", "model_info"}:
        from strabench import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'strabench' has no attribute {name!r}")
