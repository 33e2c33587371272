# Over 600 lines on purpose: every key a suite file may hold is parsed here, one function per table (the value checks are strabench.suite.checker).
"""Suite files (``suites/*.toml``) → frozen dataclasses, checked before anything runs.

A suite is the unit of a paper table: a set of variants (registered models + overrides), the
seeds to train each with, the training defaults and what to measure. Every mistake in the file
is a ``ConfigError`` of one line naming the file, the key path (``variants[2].model``) and what
was expected, raised at load time so that nothing runs and no results directory is created.

Layout of a suite file::

    name = "quick"                       # results go to <out>/<name>/ (default: the file name)
    description = "..."
    paper_table = "Table 1 (Market-1501)"
    task = "reid"                        # optional: defaults to the data's task
    data = "synthetic_reid"              # or "market1501:/data/Market-1501" (see strabench.data)
    profile = "quick"                    # "quick" | "paper"
    seeds = [0, 1, 2]                    # or a range on the command line: --seeds 0-4
    baseline = "resnet50"                # the variant the others are compared with (default: the first)

    # How comparisons are decided (docs/statistics.md); none of these changes a run:
    alpha = 0.05                         # family-wise error rate per metric (default 0.05)
    equivalence_margin = { mAP = 2.0, rank1 = 3.0 }   # or a number: the task's primary metric
    min_effect = 2.0                     # the smallest difference worth detecting (planning seeds)
    pilot = "results/quick"              # results folder whose spread plans seeds before this one has any
    max_seeds = 15                       # --until-decided: at most this many seeds per variant

    [train]                              # TrainConfig fields, every profile
    diversity_weight = 1.0
    [train.quick]                        # ... only under profile "quick" (same for [train.paper])
    epochs = 1

    [measure]
    params = true
    macs = ["paper", "fvcore", "ptflops"]
    input = "256x128"                    # MACs/latency input; default: the model's default input
    latency = { batch = 1, mode = "infer", threads = 2, min_run_time = 0.5 }   # or false, or an array
                                         # of such tables: one interleaved timing each (latency.json, latency-2.json ...)
    accuracy = true                      # train + evaluate (false: complexity only)

    [executor]                           # optional: where runs go with --executor slurm
    partition = "gpu"                    # (strabench.suite.config.EXECUTOR_KEYS lists them all)
    gpus_per_node = 1
    timeout_min = 240

    [[settings]]                         # optional: conditions every variant runs under (a sweep)
    name = "rigid"                       # label; run directories become <variant>-<setting>-s<seed>-<hash>
    train = { data_sizes = { deformation = 0.0 } }   # TrainConfig overrides of this setting
    [leaderboard]                        # optional: `strabench report` ranks the variants (strabench.report.leaderboard)
    rank_by = "mAP"                      # a metric (higher first) or a cost: params, macs_<convention>, latency
    versus = ["resnet50", "stra"]        # variants every row is compared with, seed by seed (default: the baseline)

    [[variants]]
    name = "stra"                        # label; run directories are <name>-s<seed>-<hash>
    model = "resnet50_stra"              # registry name
    overrides = { groups = 8 }           # model builder overrides
    replace = { "layer4.*.conv2" = "stra" }   # put blocks into the model (strabench.models.replace);
                                         # with settings: "stra(groups=4)", or a table:
                                         # [variants.replace."layer4.*.conv2"]  block = "stra"  groups = 4
    train = { lr = 1e-4 }                # per-variant TrainConfig overrides

``replace`` reaches training and measuring as the ``replace`` key of the run's
``model_overrides`` (the keywords of ``create_model``), present only when non-empty, so a run
without replacements keeps the identity (hash) it always had. Unknown blocks are refused when
the file is loaded; patterns that match nothing and blocks that do not fit, when it is planned.

Settings: each ``[[settings]]`` table is one condition of an experiment (a deformation level, a
dataset size); every variant runs in every setting, and the report compares each variant with
the baseline *within* a setting. A setting's ``train`` table applies after the suite's
``[train]`` tables and before the variant's own ``train``; ``data_sizes`` tables are merged key
by key, so a setting may change one dataset parameter and keep the suite's others.

Per-profile tables keep quick-run sizes out of paper runs: ``--profile paper`` drops
``[train.quick]`` so the paper recipe (``strabench.train.recipes``) fills those fields.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strabench.errors import ConfigError, StrabenchError
from strabench.suite.checker import (  # noqa: F401 - PROFILES, SUITE_OWNED and train_fields are part of this module's API
    PROFILES, SUITE_OWNED, _Checker, _check_plain, _check_train_table, _describe, train_fields,
)
from strabench.train.config import key_path

MAC_CONVENTIONS = ("paper", "fvcore", "ptflops")
LATENCY_MODES = ("infer", "train")  # strabench.measure.latency.MODES
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # used with fullmatch: `$` would let a final newline through
EXECUTORS = ("local", "slurm", "submitit-local")
#: The keys of a suite's ``[executor]`` table: (kind checked by the suite loader, submitit parameter).
EXECUTOR_KEYS: dict[str, tuple[str, str]] = {
    "partition": ("str", "slurm_partition"),
    "account": ("str", "slurm_account"),
    "qos": ("str", "slurm_qos"),
    "constraint": ("str", "slurm_constraint"),
    "gpus_per_node": ("count", "gpus_per_node"),
    "cpus_per_task": ("int", "cpus_per_task"),
    "mem_gb": ("int", "mem_gb"),
    "timeout_min": ("int", "timeout_min"),
    "array_parallelism": ("int", "slurm_array_parallelism"),
    "max_num_timeout": ("count", "slurm_max_num_timeout"),
    "signal_delay_s": ("int", "slurm_signal_delay_s"),
    "setup": ("lines", "slurm_setup"),
    "slurm_additional_parameters": ("table", "slurm_additional_parameters"),
}
_TOP_KEYS = (
    "name", "description", "paper_table", "task", "data", "profile", "seeds", "baseline", "train", "measure", "executor",
    "settings", "variants", "alpha", "equivalence_margin", "min_effect", "pilot", "max_seeds", "leaderboard",
)
#: The metric a bare number in ``equivalence_margin`` / ``min_effect`` is about, per task.
PRIMARY_METRIC = {"reid": "mAP", "face": "mean", "fer": "test_acc"}
#: The metrics each task reports (face: ``mean`` and one per verification set, named by its file).
TASK_METRICS: dict[str, tuple[str, ...] | None] = {"reid": ("mAP", "rank1", "rank5", "rank10"), "fer": ("val_acc", "test_acc"), "face": None}
_SETTING_KEYS = ("name", "train")
_LEADERBOARD_KEYS = ("rank_by", "versus")
_VARIANT_KEYS = ("name", "model", "overrides", "replace", "train")
_MEASURE_KEYS = ("params", "macs", "input", "latency", "accuracy")
_LATENCY_KEYS = ("batch", "input", "mode", "threads", "min_run_time", "rounds")


@dataclass(frozen=True)
class LatencySpec:
    """How to time a model on the CPU (``strabench.measure.latency``): batch, input (None = the
    measure input), infer/train mode, threads (None = all cores), seconds per measurement, rounds."""

    batch: int = 1
    input: tuple[int, int] | None = None
    mode: str = "infer"
    threads: int | None = None
    min_run_time: float = 1.0
    rounds: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "input": list(self.input) if self.input else None}


@dataclass(frozen=True)
class MeasureSpec:
    """What each run measures besides (or instead of) accuracy."""

    params: bool = True
    macs: tuple[str, ...] = ("paper",)
    input: tuple[int, int] | None = None
    latency: LatencySpec | None = None
    accuracy: bool = True
    more_latency: tuple[LatencySpec, ...] = ()  # further timings (``latency`` given as an array), in order

    @property
    def latencies(self) -> tuple[LatencySpec, ...]:
        """Every timing the suite asks for, the first (``latency``) first."""
        return ((self.latency,) if self.latency else ()) + self.more_latency

    def as_dict(self) -> dict[str, Any]:
        """The settings that change a run's row (part of its hash)."""
        return {
            "params": self.params,
            "macs": list(self.macs),
            "input": list(self.input) if self.input else None,
            "latency": self.latency.as_dict() if self.latency else None,
            "accuracy": self.accuracy,
            **({"more_latency": [spec.as_dict() for spec in self.more_latency]} if self.more_latency else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MeasureSpec":
        """Inverse of ``as_dict`` (reading a results directory's plan.json)."""
        def spec(lat: Mapping[str, Any]) -> LatencySpec:
            return LatencySpec(**{**lat, "input": tuple(lat["input"]) if lat.get("input") else None})

        lat = data.get("latency")
        return cls(
            params=bool(data.get("params", True)),
            macs=tuple(data.get("macs") or ()),
            input=tuple(data["input"]) if data.get("input") else None,  # type: ignore[arg-type]
            latency=spec(lat) if lat else None,
            accuracy=bool(data.get("accuracy", True)),
            more_latency=tuple(spec(more) for more in data.get("more_latency") or ()),
        )


@dataclass(frozen=True)
class LeaderboardSpec:
    """``[leaderboard]``: what ``strabench report`` ranks by and the variants each row is compared with."""

    rank_by: str | None
    versus: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**({"rank_by": self.rank_by} if self.rank_by else {}), "versus": list(self.versus)}


@dataclass(frozen=True)
class VariantSpec:
    """One row of the table: a label, a model, its overrides, blocks put in and training tweaks."""

    name: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    train: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    replace: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))

    def model_overrides(self) -> dict[str, Any]:
        """The run's ``model_overrides``: the overrides, plus ``replace`` only when there is one."""
        return {**self.overrides, "replace": dict(self.replace)} if self.replace else dict(self.overrides)


class Amounts(dict):
    """Metric -> amount (``equivalence_margin``, ``min_effect``), read-only; a dict rather than
    a mapping proxy so that a plan pickles into ``--jobs`` workers."""

    def _read_only(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        raise TypeError("suite amounts are read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Amounts, (dict(self),))


@dataclass(frozen=True)
class SettingSpec:
    """One condition every variant runs under: a label and its training-config overrides."""

    name: str
    train: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))


def merge_train(*tables: Mapping[str, Any]) -> dict[str, Any]:
    """Later tables win; ``data_sizes`` tables are merged key by key (see the module doc)."""
    merged: dict[str, Any] = {}
    for table in tables:
        for key, value in table.items():
            if key == "data_sizes" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


@dataclass(frozen=True)
class SuiteConfig:
    """A loaded, checked suite file. ``train`` = every profile; ``profile_train[p]`` = profile p only."""

    path: Path
    name: str
    description: str
    paper_table: str
    task: str
    data: str
    profile: str
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    profile_train: Mapping[str, Mapping[str, Any]]
    measure: MeasureSpec
    variants: tuple[VariantSpec, ...]
    baseline: str = ""  # the variant every other one is compared with (default: the first)
    executor: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    """The checked ``[executor]`` table (resources for cluster jobs); not part of any run's hash."""
    # How comparisons are decided (strabench.report.sequential); not part of any run's hash.
    alpha: float = 0.05
    equivalence_margin: Mapping[str, float] = field(default_factory=lambda: Amounts())
    min_effect: Mapping[str, float] = field(default_factory=lambda: Amounts())
    pilot: str = ""
    max_seeds: int | None = None
    overrides: tuple[str, ...] = ()
    """Command-line overrides applied to the file (``strabench.suite.overrides``), as given."""
    settings: tuple[SettingSpec, ...] = ()
    """The ``[[settings]]`` (empty: one implicit setting, run directories without a setting label)."""
    leaderboard: "LeaderboardSpec | None" = None
    """The checked ``[leaderboard]`` table (how the report ranks the variants); not part of any run's hash."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (written as ``suite.json`` next to the results)."""
        return {
            "path": str(self.path),
            "name": self.name,
            "description": self.description,
            "paper_table": self.paper_table,
            "task": self.task,
            "data": self.data,
            "profile": self.profile,
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "train": _plain(self.train),
            "profile_train": {k: _plain(v) for k, v in self.profile_train.items()},
            "measure": self.measure.as_dict(),
            "executor": _plain(self.executor),
            "alpha": self.alpha,
            "equivalence_margin": dict(self.equivalence_margin),
            "min_effect": dict(self.min_effect),
            "pilot": self.pilot,
            "max_seeds": self.max_seeds,
            **({"overrides": list(self.overrides)} if self.overrides else {}),
            **({"settings": [{"name": s.name, "train": _plain(s.train)} for s in self.settings]} if self.settings else {}),
            **({"leaderboard": self.leaderboard.as_dict()} if self.leaderboard else {}),
            "variants": [
                {"name": v.name, "model": v.model, "overrides": _plain(v.overrides), "train": _plain(v.train),
                 **({"replace": _plain(v.replace)} if v.replace else {})}
                for v in self.variants
            ],
        }


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_plain(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v) for k, v in mapping.items()}


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(
        {k: (_freeze(v) if isinstance(v, Mapping) else tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()}
    )


# --- loading ------------------------------------------------------------------------------------


def resolve_suite_path(suite: str | Path, *, search: tuple[Path, ...] = (Path("suites"),)) -> Path:
    """A path to a suite file, or a bare name looked up as ``suites/<name>.toml``."""
    path = Path(suite)
    if path.is_file():
        return path
    if path.suffix == "" and len(path.parts) == 1:
        for folder in search:
            candidate = folder / f"{path}.toml"
            if candidate.is_file():
                return candidate
    raise ConfigError(f"suite file not found: {suite} (give a path like suites/quick.toml or a name from suites/)")


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and check a suite file; every problem is a one-line ConfigError naming file and key."""
    path = resolve_suite_path(path)
    return parse_suite(read_suite_table(path), path)


def read_suite_table(path: Path) -> dict[str, Any]:
    """The decoded TOML of a suite file (not checked yet); unreadable or invalid: a ConfigError."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level: [[[[...]]]] exhausts the stack
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read suite file: {exc}") from None
    return raw


def parse_suite(raw: Mapping[str, Any], path: Path) -> SuiteConfig:
    """Check a decoded suite table (see the module docstring for the layout)."""
    from strabench.registry import model_info

    check = _Checker(path)
    check.keys(raw, _TOP_KEYS, "")
    name = check.string(raw.get("name", path.stem), "name")
    if not _NAME_RE.fullmatch(name):
        check.fail("name", f"expected letters, digits and _.+- only (it names a directory), got {name!r}")
    description = check.string(raw.get("description", ""), "description")
    paper_table = check.string(raw.get("paper_table", ""), "paper_table")
    profile = check.string(raw.get("profile", "quick"), "profile", choices=PROFILES)
    if "data" not in raw:
        check.fail("data", "missing; expected a data spec such as \"synthetic_reid\" or \"market1501:/path\"")
    data = check.string(raw["data"], "data")
    data_task = data_task_of(data, check)
    task = check.string(raw.get("task", data_task), "task", choices=("reid", "face", "fer"))
    if task != data_task:
        check.fail("task", f"data {data!r} is for task {data_task!r}, not {task!r}")

    seeds_raw = raw.get("seeds", [0])
    if not isinstance(seeds_raw, list) or not seeds_raw:
        check.fail("seeds", f"expected a non-empty array of integers >= 0, got {_describe(seeds_raw)}")
    seeds = tuple(check.integer(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds_raw))
    if len(set(seeds)) != len(seeds):
        check.fail("seeds", f"expected distinct seeds, got {list(seeds)}")

    train, profile_train = _check_train_table(check, check.table(raw.get("train", {}), "train"), "train", allow_profiles=True)
    measure = _parse_measure(check, check.table(raw.get("measure", {}), "measure"))
    executor = _parse_executor(check, check.table(raw.get("executor", {}), "executor"))

    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        check.fail("variants", "expected at least one [[variants]] table")
    variants: list[VariantSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(variants_raw):
        key = f"variants[{i}]"
        entry = check.table(entry, key)
        check.keys(entry, _VARIANT_KEYS, key)
        for required in ("name", "model"):
            if required not in entry:
                check.fail(f"{key}.{required}", "missing")
        vname = check.string(entry["name"], f"{key}.name")
        if not _NAME_RE.fullmatch(vname):
            check.fail(f"{key}.name", f"expected letters, digits and _.+- only (it names a directory), got {vname!r}")
        if vname in seen:
            check.fail(f"{key}.name", f"duplicate variant name {vname!r} (also variants[{seen[vname]}])")
        seen[vname] = i
        model = check.string(entry["model"], f"{key}.model")
        try:
            info = model_info(model)
        except StrabenchError as exc:
            check.fail(f"{key}.model", f"{exc} (expected a registered model name)")
        if task not in info.tasks:
            check.fail(f"{key}.model", f"model {model!r} is for task(s) {', '.join(info.tasks)}, the suite's task is {task!r}")
        overrides = check.table(entry.get("overrides", {}), f"{key}.overrides")
        for oname, ovalue in overrides.items():
            if isinstance(ovalue, dict):
                check.fail(key_path(f"{key}.overrides", oname), "expected a value or an array, got a table")
            _check_plain(check, key_path(f"{key}.overrides", oname), ovalue)
        if "replace" in overrides:
            check.fail(key_path(f"{key}.overrides", "replace"), "use the variant's `replace` table")
        replace = _check_replace(check, entry.get("replace", {}), f"{key}.replace")
        vtrain, _ = _check_train_table(check, check.table(entry.get("train", {}), f"{key}.train"), f"{key}.train", allow_profiles=False)
        variants.append(VariantSpec(vname, model, _freeze(overrides), _freeze(vtrain), _freeze(replace)))
    settings = _parse_settings(check, raw.get("settings"))
    baseline = variants[0].name if variants else ""
    if "baseline" in raw:
        baseline = check.string(raw["baseline"], "baseline")
        if baseline not in seen:
            check.fail("baseline", f"no variant is named {baseline!r}; variants: {', '.join(seen)}")

    alpha = check.number(raw.get("alpha", 0.05), "alpha", positive=True)
    if not alpha < 0.5:
        check.fail("alpha", f"expected a number between 0 and 0.5, got {raw['alpha']}")
    margins = _metric_amounts(check, raw.get("equivalence_margin", {}), "equivalence_margin", task)
    effects = _metric_amounts(check, raw.get("min_effect", {}), "min_effect", task)
    pilot = check.string(raw.get("pilot", ""), "pilot")
    max_seeds = check.integer(raw["max_seeds"], "max_seeds", minimum=1) if "max_seeds" in raw else None
    if max_seeds is not None and max_seeds < len(seeds):
        check.fail("max_seeds", f"expected at least as many as the suite's {len(seeds)} seeds, got {max_seeds}")

    return SuiteConfig(
        path=path,
        name=name,
        description=description,
        paper_table=paper_table,
        task=task,
        data=data,
        profile=profile,
        seeds=seeds,
        train=_freeze(train),
        profile_train=types.MappingProxyType({k: _freeze(v) for k, v in profile_train.items()}),
        measure=measure,
        variants=tuple(variants),
        baseline=baseline,
        executor=_freeze(executor),
        alpha=alpha,
        equivalence_margin=Amounts(margins),
        min_effect=Amounts(effects),
        pilot=pilot,
        max_seeds=max_seeds,
        settings=settings,
        leaderboard=_parse_leaderboard(check, raw["leaderboard"], seen, baseline) if "leaderboard" in raw else None,
    )


def _metric_amounts(check: _Checker, value: Any, key: str, task: str) -> dict[str, float]:
    """``2.0`` (the task's primary metric) or ``{ mAP = 2.0, rank1 = 3.0 }``: amounts > 0 in metric units."""
    if not isinstance(value, dict):
        return {PRIMARY_METRIC[task]: _finite_amount(check, value, key)}
    known = TASK_METRICS[task]
    amounts = {}
    for metric, amount in value.items():
        where = key_path(key, metric)
        if known is not None and metric not in known:
            import difflib

            close = difflib.get_close_matches(metric, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            check.fail(where, f"unknown metric for task {task!r}{hint}; expected one of {', '.join(known)}")
        if known is None and not _NAME_RE.fullmatch(metric):
            check.fail(where, f"expected a metric name, got {metric!r}")
        amounts[metric] = _finite_amount(check, amount, where)
    return amounts


def _finite_amount(check: _Checker, value: Any, key: str) -> float:
    amount = check.number(value, key, positive=True)
    if amount == float("inf"):
        check.fail(key, "expected a finite number, got inf")
    return amount


def _parse_settings(check: _Checker, raw: Any) -> tuple[SettingSpec, ...]:
    """``[[settings]]``: each a name (it labels run directories) and a train table."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        check.fail("settings", f"expected one or more [[settings]] tables, got {_describe(raw)}")
    settings: list[SettingSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        key = f"settings[{i}]"
        entry = check.table(entry, key)
        check.keys(entry, _SETTING_KEYS, key)
        if "name" not in entry:
            check.fail(f"{key}.name", "missing")
        name = check.string(entry["name"], f"{key}.name")
        if not _NAME_RE.fullmatch(name):
            check.fail(f"{key}.name", f"expected letters, digits and _.+- only (it names a directory), got {name!r}")
        if name in seen:
            check.fail(f"{key}.name", f"duplicate setting name {name!r} (also settings[{seen[name]}])")
        seen[name] = i
        train, _ = _check_train_table(check, check.table(entry.get("train", {}), f"{key}.train"), f"{key}.train",
                                      allow_profiles=False)
        settings.append(SettingSpec(name, _freeze(train)))
    return tuple(settings)


def _parse_leaderboard(check: _Checker, value: Any, variants: Any, baseline: str) -> LeaderboardSpec:
    """``[leaderboard]``: the ranking metric (checked against the results when reported) and the
    variants every row is compared with (each must be a variant of the suite; default: the baseline)."""
    table = check.table(value, "leaderboard")
    check.keys(table, _LEADERBOARD_KEYS, "leaderboard")
    rank_by = check.string(table["rank_by"], "leaderboard.rank_by") if "rank_by" in table else None
    names = [baseline]
    if "versus" in table:
        versus = table["versus"]
        if not isinstance(versus, list) or not versus:
            check.fail("leaderboard.versus", f"expected a non-empty array of variant names, got {_describe(versus)}")
        names = [check.string(v, f"leaderboard.versus[{i}]") for i, v in enumerate(versus)]
        for i, name in enumerate(names):
            if name not in variants:
                check.fail(f"leaderboard.versus[{i}]", f"no variant is named {name!r}; variants: {', '.join(variants)}")
        if len(set(names)) != len(names):
            check.fail("leaderboard.versus", f"expected distinct variants, got {names}")
    return LeaderboardSpec(rank_by, tuple(names))


def _check_replace(check: _Checker, value: Any, key: str) -> dict[str, str]:
    """``{ "layer4.*.conv2" = "stra" }``: module patterns to known blocks (fit is checked at plan time).

    A block is a name with optional settings, ``"stra(groups=4)"``, or a table with its name and
    settings, ``{ block = "stra", groups = 4 }``; both are kept as the canonical text, so the two
    forms give a run the same identity (``strabench.models.blocks.format_block``).
    """
    from strabench.models.blocks import block_from_table, canonical_block, resolve_block

    table = check.table(value, key)
    out: dict[str, str] = {}
    for pattern, block in table.items():
        where = key_path(key, pattern)
        if not pattern.strip() or any(c.isspace() for c in pattern):
            check.fail(where, "expected a module pattern such as \"layer4.*.conv2\"")
        if isinstance(block, dict):
            try:
                text = block_from_table(block, where)
            except StrabenchError as exc:  # names its key: <where>.groups
                raise ConfigError(f"{check.path}: {exc}") from None
        else:
            block = check.string(block, where)
            try:
                text = canonical_block(block)
            except StrabenchError as exc:
                check.fail(where, str(exc))
        try:
            resolve_block(text)
        except StrabenchError as exc:
            check.fail(where, str(exc))
        out[pattern] = text
    return out


def data_task_of(data: str, check: _Checker | None = None, key: str = "data") -> str:
    """The task a data spec belongs to; unknown specs are ConfigErrors naming the key."""
    from strabench.data.tasks import parse_data_spec

    try:
        return parse_data_spec(data).task
    except StrabenchError as exc:
        if check is None:
            raise ConfigError(str(exc)) from None
        check.fail(key, f"{exc}")


def _parse_measure(check: _Checker, table: Mapping[str, Any]) -> MeasureSpec:
    check.keys(table, _MEASURE_KEYS, "measure")
    params = check.boolean(table.get("params", True), "measure.params")
    macs_raw = table.get("macs", ["paper"])
    if macs_raw is False:
        macs_raw = []
    if not isinstance(macs_raw, list):
        check.fail("measure.macs", f"expected an array of conventions ({', '.join(MAC_CONVENTIONS)}) or false, got {_describe(macs_raw)}")
    macs = tuple(check.string(m, f"measure.macs[{i}]", choices=MAC_CONVENTIONS) for i, m in enumerate(macs_raw))
    if len(set(macs)) != len(macs):
        check.fail("measure.macs", f"expected distinct conventions, got {list(macs)}")
    size = check.size(table["input"], "measure.input") if "input" in table else None
    accuracy = check.boolean(table.get("accuracy", True), "measure.accuracy")
    latency_raw = table.get("latency", False)
    timings: list[LatencySpec] = []
    if isinstance(latency_raw, list):  # several timings, e.g. batch 1 and batch 32
        if not latency_raw:
            check.fail("measure.latency", "expected a table, an array of tables or false, got an empty array")
        timings = [_parse_latency(check, lat, f"measure.latency[{i}]") for i, lat in enumerate(latency_raw)]
        if len(set(timings)) != len(timings):
            check.fail("measure.latency", "the same timing is listed twice")
    elif latency_raw is not False:
        timings = [_parse_latency(check, latency_raw if not isinstance(latency_raw, bool) else {}, "measure.latency")]
    latency = timings[0] if timings else None
    if not (params or macs or latency or accuracy):
        check.fail("measure", "nothing to do: params, macs, latency and accuracy are all off")
    return MeasureSpec(params=params, macs=macs, input=size, latency=latency, accuracy=accuracy, more_latency=tuple(timings[1:]))


def _parse_latency(check: _Checker, raw: Any, key: str) -> LatencySpec:
    lat = check.table(raw, key)
    check.keys(lat, _LATENCY_KEYS, key)
    return LatencySpec(
        batch=check.integer(lat.get("batch", 1), f"{key}.batch", minimum=1),
        input=check.size(lat["input"], f"{key}.input") if "input" in lat else None,
        mode=check.string(lat.get("mode", "infer"), f"{key}.mode", choices=LATENCY_MODES),
        threads=check.integer(lat["threads"], f"{key}.threads", minimum=1) if "threads" in lat else None,
        min_run_time=check.number(lat.get("min_run_time", 1.0), f"{key}.min_run_time", positive=True),
        rounds=check.integer(lat.get("rounds", 1), f"{key}.rounds", minimum=1),
    )


def parse_seeds(texts: "list[str] | tuple[str, ...]", *, key: str = "--seeds") -> list[int]:
    """Seeds from the command line: ``3``, ``0,2,5``, ``0-4`` (inclusive) or a mix (``0-2,7``).

    Ranges are capped at 10,000 seeds so that a typo (``0-99999999``) is an error, not a plan.
    """
    seeds: list[int] = []
    for text in texts:
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            low, dash, high = part.partition("-")
            try:
                first = int(low)
                last = int(high) if dash else first
            except ValueError:
                raise ConfigError(f"{key} takes integers or ranges like 0-4, got {part!r}") from None
            if first < 0 or last < first:
                raise ConfigError(f"{key} {part!r}: need 0 <= first <= last")
            if last - first >= 10_000:
                raise ConfigError(f"{key} {part!r}: more than 10,000 seeds")
            seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{key} lists a seed twice: {seeds}")
    return seeds


def _parse_executor(check: _Checker, table: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[executor]`` table: each key checked against its type in
    ``EXECUTOR_KEYS`` (unknown keys are errors, as everywhere)."""
    check.keys(table, tuple(EXECUTOR_KEYS), "executor")
    checked: dict[str, Any] = {}
    for name, value in table.items():
        kind, _ = EXECUTOR_KEYS[name]
        key = f"executor.{name}"
        if kind == "int":
            checked[name] = check.integer(value, key, minimum=1)
        elif kind == "count":
            checked[name] = check.integer(value, key, minimum=0)
        elif kind == "number":
            checked[name] = check.number(value, key, positive=True)
        elif kind == "str":
            checked[name] = check.string(value, key)
        elif kind == "lines":
            if not isinstance(value, list):
                check.fail(key, f"expected an array of strings, got {_describe(value)}")
            checked[name] = [check.string(v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:  # "table": extra #SBATCH options, name -> string / number / true
            options = check.table(value, key)
            for option, setting in options.items():
                if isinstance(setting, (dict, list)) or isinstance(setting, float) and setting != setting:
                    check.fail(key_path(key, option), f"expected a string, number or true, got {_describe(setting)}")
            checked[name] = dict(options)
    return checked
