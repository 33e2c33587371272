"""A suite's plan: every (variant, setting, seed) resolved into a run with its hashed directory.

``plan_runs`` turns a checked ``SuiteConfig`` into ``RunSpec``s (one per run, each named
``<variant>[-<setting>]-s<seed>-<hash>``, the hash over the resolved training config and the
measure settings) and the ``RunPlan`` a process executes (all runs, and the shard it takes).
Nothing here trains or writes: ``strabench.suite.runner`` executes a plan, ``store`` and
``status`` read what runs left, and all of them take the file names from here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import ConfigError, DataError, StrabenchError
from strabench.suite.config import MeasureSpec, SuiteConfig
from strabench.suite.run_spec import RunSpec

if TYPE_CHECKING:
    from strabench.train.config import TrainConfig

PLAN_JSON = "plan.json"
ENV_JSON = "env.json"
ERROR_LOG = "error.log"
LATENCY_JSON = "latency.json"
STATUSES = ("finished", "failed", "partial", "pending")


@dataclass(frozen=True)
class RunPlan:
    """Every run of the suite as configured, and the subset this process executes."""

    suite: SuiteConfig
    out_dir: Path  # <out>/<suite name>
    runs: tuple[RunSpec, ...]
    selected: tuple[RunSpec, ...]
    shard: tuple[int, int] | None = None
    keep_checkpoints: str = "last"  # what a finished run keeps (strabench.train.engine.KEEP_CHECKPOINTS)
    allow_mixed: bool = False  # resume runs whose checkpoint other code trained (strabench.provenance)
    rerun_stale: bool = False  # retrain finished runs that other code made (``stale_runs``)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out_dir / spec.run_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.as_dict(),
            "runs": [
                {"run_id": r.run_id, "variant": r.variant, **({"setting": r.setting} if r.setting else {}),
                 "model": r.model, "seed": r.seed, "hash": r.hash}
                for r in self.runs
            ],
        }


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N."""
    parts = text.split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"--shard {text}: need 1 <= K <= N, got K={k}, N={n}")
    return k, n


def shard_runs(runs: Sequence[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """A deterministic 1/N of the runs: sorted by run id, every N-th starting at K-1."""
    if shard is None:
        return list(runs)
    k, n = shard
    ordered = sorted(runs, key=lambda r: r.run_id)
    chosen = {r.run_id for i, r in enumerate(ordered) if i % n == k - 1}
    return [r for r in runs if r.run_id in chosen]


def run_hash(config: "TrainConfig", measure: MeasureSpec, *, legacy: bool = False) -> str:
    """12 hex chars over the resolved training config's hash and the per-run measure settings.

    Latency is timed per suite (``latency.json``), not per run, so its settings are not part of
    a run's identity; ``legacy=True`` gives the hash of earlier versions, which included them,
    so that their run directories are still found (``plan_runs``).
    """
    from strabench.train.config import config_hash

    settings = measure.as_dict()
    if not legacy:
        settings["latency"] = None
    payload = {"train": config_hash(config), "measure": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _existing_hash(out_dir: Path, label: str, seed: int, config: "TrainConfig", measure: MeasureSpec) -> str:
    """The run's hash, or the legacy one where only a directory under the legacy hash exists
    (``label``: the variant, or ``variant-setting``)."""
    current = run_hash(config, measure)
    if measure.latency is None or (out_dir / f"{label}-s{seed}-{current}").is_dir():
        return current
    legacy = run_hash(config, measure, legacy=True)
    return legacy if (out_dir / f"{label}-s{seed}-{legacy}").is_dir() else current


def plan_runs(
    suite: SuiteConfig,
    out: Path | str,
    *,
    profile: str | None = None,
    data: str | None = None,
    seeds: Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
    check_models: bool = True,
) -> RunPlan:
    """Resolve every (variant, seed) into a RunSpec; command-line settings override the suite's.

    ``profile``/``data``/``seeds``/``device`` change the runs (and so their hashes); ``only`` and
    ``shard`` only choose which of them this process executes. ``check_models`` builds each
    variant once on the meta device so a bad override fails here, before anything runs; the
    data folder's layout is checked here too (``strabench.data.tasks.check_data``), since every
    run would fail on a folder that is not the dataset, and so is all else a run could only
    find out once started (``strabench.suite.checks.check_plan``: device, input sizes, cache).
    """
    from strabench.data.tasks import check_data
    from strabench.suite.checks import check_plan
    from strabench.suite.config import PROFILES, data_task_of, merge_train
    from strabench.suite.overrides import run_overrides
    from strabench.train.config import TrainConfig, resolve

    where = str(suite.path)
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    profile = profile or suite.profile
    if data is not None and data_task_of(data, key="--data") != suite.task:
        raise ConfigError(f"--data {data!r} is for task {data_task_of(data)!r}, suite {suite.name!r} is {suite.task!r}")
    data_key = "--data" if data is not None else "data"
    data = data or suite.data
    seeds = tuple(seeds) if seeds else suite.seeds
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds must be distinct integers >= 0, got {list(seeds)}")
    names = [v.name for v in suite.variants]
    for name in only or ():
        if name not in names:
            raise ConfigError(f"--only {name!r}: {where} has no such variant; variants: {', '.join(names)}")
    if device is not None and device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")

    runs: list[RunSpec] = []
    built: dict[str, Any] = {}  # meta-device builds by model_key, shared with check_plan
    for index, variant in enumerate(suite.variants):
        for setting in suite.settings or (None,):
            settings: dict[str, Any] = merge_train(suite.train, suite.profile_train.get(profile, {}),
                                                   setting.train if setting else {}, variant.train)
            if device is not None:
                settings["device"] = device
            if data != suite.data and not data.split(":")[0].startswith("synthetic"):
                settings.pop("data_sizes", None)  # synthetic sizes do not apply to a real dataset
            where_run = f"variants[{index}] ({variant.name})" + (f", setting {setting.name!r}" if setting else "")
            for seed in seeds:
                try:
                    config = TrainConfig(
                        model=variant.model,
                        task=suite.task,
                        data=data,
                        profile=profile,
                        seed=seed,
                        model_overrides=variant.model_overrides(),
                        **settings,
                    )
                    resolved = resolve(config)
                except StrabenchError as exc:
                    raise ConfigError(f"{where}: {where_run}: {exc}") from None
                label = f"{variant.name}-{setting.name}" if setting else variant.name
                digest = _existing_hash(Path(out) / suite.name, label, seed, resolved, suite.measure)
                runs.append(RunSpec(suite.name, variant.name, variant.model, seed, resolved, suite.measure, digest,
                                    run_overrides(suite, variant.name), setting.name if setting else ""))
        if check_models:
            _check_builds(suite, index, variant, built)
    for spec_text in dict.fromkeys(str(r.config.data) for r in runs):  # resolved: absolute paths
        try:
            check_data(spec_text, suite.task)
        except StrabenchError as exc:
            raise DataError(f"{where}: {data_key}: {exc}") from None
    if check_models:
        check_plan(runs, where, built)  # devices, input sizes, dataset cache (strabench.suite.checks)
    selected = [r for r in runs if not only or r.variant in only]
    return RunPlan(suite, Path(out) / suite.name, tuple(runs), tuple(shard_runs(selected, shard)), shard)


def _check_builds(suite: SuiteConfig, index: int, variant: Any, built: dict[str, Any]) -> None:
    """Build the variant without memory (meta device) so unknown overrides fail before any run,
    then once with its ``replace`` blocks (a forward checks that each fits) when it has any.
    ``built`` keeps each distinct build by ``model_key``, which a large suite repeats and
    ``strabench.suite.checks.check_plan`` reuses (its key includes ``replace`` as the run's
    ``model_overrides`` does)."""
    import torch

    from strabench.registry import create_model
    from strabench.suite.checks import model_key

    overrides = _tuples(dict(variant.overrides))
    key = model_key(variant.model, dict(variant.overrides))
    if key not in built:
        try:
            with torch.device("meta"):
                built[key] = create_model(variant.model, task=suite.task, **overrides)
        except StrabenchError as exc:
            raise ConfigError(f"{suite.path}: variants[{index}].overrides: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{suite.path}: variants[{index}].overrides: model {variant.model!r} rejects them: {exc}") from None
    if variant.replace:
        replaced = model_key(variant.model, {**dict(variant.overrides), "replace": dict(variant.replace)})
        if replaced in built:
            return
        try:
            with torch.device("meta"):
                built[replaced] = create_model(variant.model, task=suite.task, replace=dict(variant.replace), **overrides)
        except StrabenchError as exc:
            raise ConfigError(f"{suite.path}: variants[{index}].replace: {str(exc).removeprefix('replace: ')}") from None


def _tuples(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
