"""One model's complexity under the requested conventions, as a plain dict (the `flops` JSON)."""

from __future__ import annotations

from typing import Iterable

from strabench.errors import ConfigError


def build_for_input(
    name: str, size: tuple[int, int], *, task: str | None = None, replace: dict | None = None, overrides: dict | None = None
):
    """Create ``name`` for inputs of ``size`` (rebuilding heads sized for the input), checking it fits.

    ``overrides`` go to the builder (``create_model``'s keywords, as a suite variant's)."""
    import torch

    from strabench.measure.memory import check_fits_in_memory
    from strabench.registry import create_model, model_info

    info = model_info(name)
    kwargs = {**(overrides or {}), **({} if info.source == "registry" else {"input_size": tuple(size)})}

    def build(kw: dict):  # noqa: ANN202 - an nn.Module
        return create_model(name, task=task, replace=replace, **kw)

    shape = (1, info.default_input[0], *size)
    with torch.device("meta"):  # shapes only: no memory taken
        meta = build(kwargs)
        fixed = getattr(meta, "fixed_input", None)
        if fixed is not None and tuple(fixed) != tuple(size):  # a head sized for its input: rebuilt for this one
            kwargs = {**kwargs, "input_size": tuple(size)}
            meta = build(kwargs)
    check = getattr(meta, "check_input", None)
    if check is not None:
        check(shape)  # the divisor / fixed-size message first
    check_fits_in_memory(meta, shape, what=name)  # before a 99984x99984 input is allocated
    model = build(kwargs)
    return model


def complexity_report(
    name: str,
    size: tuple[int, int],
    *,
    task: str | None = None,
    conventions: Iterable[str] = ("paper", "fvcore", "ptflops"),
    by_module: bool = False,
    replace: dict | None = None,
) -> dict:
    """``{"model", "input", "params", "params_scope", "macs": {conv: int}, "uncounted": {conv: [...]}, "paper_ref", "paper_note"}``.

    ``paper_ref`` is the paper's row only where our number measures the same thing: the model
    at the paper's input (its default) with no replacements; otherwise None, and ``paper_note``
    says why.
    """
    from strabench.measure.flops import CONVENTIONS, count_macs, training_classifier
    from strabench.measure.params import count_params
    from strabench.registry import model_info

    info = model_info(name)
    conventions = tuple(conventions)
    for convention in conventions:
        if convention not in CONVENTIONS:
            raise ConfigError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    model = build_for_input(name, size, task=task, replace=replace)
    shape = (info.default_input[0], *size)
    counts = {c: count_macs(model, shape, c) for c in conventions}
    result: dict = {
        "model": name,
        "input": list(shape),
        "params": count_params(model),
        # what "params" covers: a strabench task model's training-only classifier is left out;
        # a model from elsewhere has none, so every parameter counts (its own head included)
        "params_scope": "all but classifier" if training_classifier(model) is not None else "all",
        "macs": {c: counts[c].total for c in conventions},
        "uncounted": {c: list(counts[c].uncounted) for c in conventions if c != "paper" or counts[c].uncounted},
        "paper_ref": None,
        "paper_note": None,
    }
    if info.paper is not None:
        paper_input = info.input_size()
        if replace:
            result["paper_note"] = "the paper's figures are for the model as published, not with replaced blocks"
        elif tuple(size) != tuple(paper_input):
            result["paper_note"] = f"the paper's figures are for {paper_input[0]}x{paper_input[1]} inputs, not {size[0]}x{size[1]}"
        else:
            result["paper_ref"] = info.paper.as_dict()
    if replace:
        result["replace"] = dict(replace)
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
