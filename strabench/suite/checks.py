"""Plan-time checks: what a run would learn only after the suite started, learned before it.

``strabench run`` and ``strabench run --dry-run`` both plan (``strabench.suite.plan.plan_runs``),
and a plan that is accepted must not fail for a reason that was knowable up front: a device
the machine lacks, an input size a variant cannot take, a data folder whose images do not
decode, a dataset cache that cannot be written. Each check here raises a one-line
``StrabenchError`` naming the suite, the variant or the path; none writes anything.

Bounds (so a plan of a large dataset stays fast):

* models are built on the meta device (no memory) once per distinct (model, task, overrides,
  input); the forward pass there checks every layer's shapes, not only the divisor;
* data: every Market-1501 / identity-folder / LFW file name and every FER2013 csv row are
  read (``strabench.data.tasks.check_data``), and at most ``DECODE_SAMPLE`` images per split
  are fully decoded (first, last and evenly spaced), so a corrupt image outside the sample is
  still only found when a run reads it;
* seeds up to ``strabench.train.config.SEED_MAX`` and synthetic sizes up to
  ``strabench.data.synthetic.MAX_SYNTHETIC_BYTES`` are refused in ``resolve`` itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strabench.errors import ConfigError, DeviceError, StrabenchError, WriteError

if TYPE_CHECKING:
    from strabench.suite.run_spec import RunSpec


def check_plan(runs: Sequence["RunSpec"], where: str, built: dict[str, Any] | None = None) -> None:
    """Every plan-time check over the resolved runs (see the module doc); ``where`` names the suite.

    ``built`` maps ``model_key(model, overrides)`` to a model already built on the meta device
    (``plan_runs`` builds each variant once), so a 1,000-variant suite of a few models builds
    a few models."""
    for device in dict.fromkeys(str(r.config.device) for r in runs):
        check_device(device)
    built = {} if built is None else built
    checked: set[Any] = set()
    for spec in runs:
        for size, purpose in _input_sizes(spec):
            overrides = dict(spec.config.model_overrides or {})
            key = (model_key(spec.model, overrides), spec.config.task, size)
            if key in checked:
                continue
            checked.add(key)
            try:
                check_model_input(spec.model, spec.config.task, overrides, size, built)
            except StrabenchError as exc:
                raise ConfigError(f"{where}: variant {spec.variant} ({spec.model}), {purpose} {size[0]}x{size[1]}: {exc}") from None
    for data, seed, sizes in dict.fromkeys(
        (str(r.config.data), r.config.data_seed, _freeze(r.config.data_sizes)) for r in runs
    ):
        check_cache_writable(data, seed, dict(sizes))


def model_key(model: str, overrides: dict[str, Any]) -> str:
    """One string per distinct (model, overrides): the cache key of a meta-device build."""
    return json.dumps([model, overrides], sort_keys=True, default=repr)


def check_device(name: str) -> None:
    """Refuse ``cuda`` / ``cuda:N`` on a machine without that GPU (``auto`` and ``cpu`` always work).

    Unlike ``strabench.train.distributed.pick_device`` this selects nothing."""
    if not name.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine (use --device cpu or auto)")
    index = name.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")


def _input_sizes(spec: "RunSpec") -> list[tuple[tuple[int, int], str]]:
    """The (H, W) inputs a run feeds its model: training's, the measure input, the latency input."""
    from strabench.registry import model_info

    sizes: list[tuple[tuple[int, int], str]] = []
    if spec.measure.accuracy:
        sizes.append((tuple(spec.config.input_size), "input_size"))  # type: ignore[arg-type]
    if spec.measure.params or spec.measure.macs or spec.measure.latency is not None:
        measure = tuple(spec.measure.input) if spec.measure.input else tuple(model_info(spec.model).default_input[1:])
        sizes.append((measure, "[measure] input"))  # type: ignore[arg-type]
        for latency in spec.measure.latencies:
            if latency.input:
                sizes.append((tuple(latency.input), "[measure.latency] input"))  # type: ignore[arg-type]
    return sizes


def check_model_input(
    model: str, task: str | None, overrides: dict[str, Any], size: tuple[int, int], built: dict[str, Any] | None = None
) -> None:
    """Build ``model`` on the meta device for ``size`` and run it there: any layer that cannot take
    the shape fails now (``ShapeError``), as does an input no machine here could hold.
    ``built`` caches meta builds by ``model_key`` (see ``check_plan``)."""
    import torch

    from strabench.measure.memory import check_fits_in_memory
    from strabench.registry import create_model, model_info

    info = model_info(model)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    shape = (1, info.default_input[0], *size)
    built = {} if built is None else built
    key = model_key(model, overrides)
    with torch.device("meta"):
        if key not in built:
            built[key] = create_model(model, task=task, **kwargs)
        meta = built[key]
        fixed = getattr(meta, "fixed_input", None)
        if fixed is not None and tuple(fixed) != tuple(size):  # heads sized for the input (face models)
            sized = model_key(model, {**overrides, "input_size": list(size)})
            if sized not in built:
                built[sized] = create_model(model, task=task, **{**kwargs, "input_size": tuple(size)})
            meta = built[sized]
    check = getattr(meta, "check_input", None)
    if check is not None:
        check(shape)
    check_fits_in_memory(meta, shape, what=model)  # runs it on meta: every layer's shapes


def check_cache_writable(data: str, seed: int | None, sizes: dict[str, Any]) -> None:
    """Refuse a synthetic dataset that is not cached yet when the cache cannot be written.

    Probes the nearest existing folder of the cache path with a temp folder created and removed
    at once (``os.access`` says yes to root on a read-only bind mount); a cached dataset is only
    read, so it needs no probe."""
    from strabench.data.synthetic import SYNTHETIC_DATASETS, cache_root, dataset_folder, is_cached

    if data not in SYNTHETIC_DATASETS:
        return
    base = cache_root()
    folder = dataset_folder(data, seed=seed or 0, cache_dir=base, **sizes)
    if is_cached(data, folder, seed=seed or 0, **sizes):
        return
    probe = base
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise WriteError(f"cannot write dataset cache {base}: {probe} is not a folder (set STRABENCH_CACHE to a writable folder)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-probe-", dir=probe))
    except OSError as err:
        from strabench.io import describe_os_error

        raise WriteError(
            f"cannot write dataset cache {base}: {describe_os_error(err)} (set STRABENCH_CACHE to a writable folder)"
        ) from None


def _freeze(value: Any) -> Any:
    """A hashable copy of a config value (dicts and lists inside)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
