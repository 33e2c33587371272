"""One model's complexity under the requested conventions, as a plain dict (the `flops` JSON)."""

from __future__ import annotations

from typing import Iterable

from strabench.errors import ConfigError


def build_for_input(name: str, size: tuple[int, int], *, task: str | None = None):
    """Create ``name`` for inputs of ``size`` (rebuilding heads sized for the input), checking it fits."""
    from strabench.registry import create_model, model_info

    info = model_info(name)
    model = create_model(name, task=task)
    fixed = getattr(model, "fixed_input", None)
    if fixed is not None and tuple(fixed) != tuple(size):
        model = create_model(name, task=task, input_size=tuple(size))
    model.check_input((1, info.default_input[0], *size))
    return model


def complexity_report(
    name: str,
    size: tuple[int, int],
    *,
    task: str | None = None,
    conventions: Iterable[str] = ("paper", "fvcore", "ptflops"),
    by_module: bool = False,
) -> dict:
    """``{"model", "input", "params", "macs": {conv: int}, "uncounted": {conv: [ops]}, "paper_ref"}``."""
    from strabench.measure.flops import CONVENTIONS, count_macs
    from strabench.measure.params import count_params
    from strabench.registry import model_info

    info = model_info(name)
    conventions = tuple(conventions)
    for convention in conventions:
        if convention not in CONVENTIONS:
            raise ConfigError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    model = build_for_input(name, size, task=task)
    shape = (info.default_input[0], *size)
    counts = {c: count_macs(model, shape, c) for c in conventions}
    result: dict = {
        "model": name,
        "input": list(shape),
        "params": count_params(model),
        "macs": {c: counts[c].total for c in conventions},
        "uncounted": {c: list(counts[c].uncounted) for c in conventions if c != "paper"},
        "paper_ref": info.paper.as_dict() if info.paper else None,
    }
    if by_module:
        names: dict[str, dict[str, int]] = {}
        for convention, count in counts.items():
            keys = set(count.by_module)
            # Counters report nested totals (``layer4`` and ``layer4.0``) or leaves; keep the
            # innermost names only, then group them two levels deep, so no MAC is counted twice.
            leaves = {k: v for k, v in count.by_module.items() if not any(o.startswith(k + ".") for o in keys if o != k)}
            for module, macs in leaves.items():
                top = ".".join(module.split(".")[:2]) if module else "(model)"
                names.setdefault(top, {}).setdefault(convention, 0)
                names[top][convention] += macs
        result["by_module"] = names
    return result
