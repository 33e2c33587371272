"""``run --until-decided`` and the dry-run's seed statement: the wiring between the suite's rounds
loop (``strabench.suite.adaptive``) and the verdicts that decide when to stop
(``strabench.report``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from strabench.report.sequential import Design
    from strabench.suite.adaptive import AdaptiveDesign, AdaptiveOutcome
    from strabench.suite.config import SuiteConfig
    from strabench.suite.runner import SuiteOutcome
    from strabench.suite.plan import RunPlan


def check_options(*, until_decided: bool, max_seeds: int | None, max_minutes: float | None, shard: str | None,
                  executor: str, config: "SuiteConfig", only: Sequence[str]) -> None:
    """One-line refusals of what ``--until-decided`` cannot do (before anything runs)."""
    if not until_decided:
        for flag, value in (("--max-seeds", max_seeds), ("--max-minutes", max_minutes)):
            if value is not None:
                raise ConfigError(f"{flag} applies to --until-decided only; add it or drop {flag}")
        return
    if shard:
        raise ConfigError("--until-decided decides from all of a suite's runs: it cannot run one --shard of them")
    if executor != "local":
        raise ConfigError("--until-decided runs its rounds here (--executor local, --jobs N); a cluster executor "
                          "cannot wait for each round's verdicts")
    from strabench.suite.runner import dist_rank

    if dist_rank() != 0 or _world_size() > 1:
        raise ConfigError("--until-decided under torchrun is not supported: run it without torchrun (one process per run)")
    if (max_seeds or config.max_seeds) is None:
        raise ConfigError(f"--until-decided needs a budget of seeds: --max-seeds N, or max_seeds in {config.path}")
    if max_minutes is not None and not max_minutes > 0:
        raise ConfigError(f"--max-minutes must be > 0, got {max_minutes:g}")
    if config.settings:
        raise ConfigError(f"--until-decided decides one comparison per variant; {config.path} has [[settings]]: "
                          "run it with a fixed seed list (seeds = [...]) and read the verdicts with strabench report")
    if only and config.baseline not in only:
        raise ConfigError(f"--until-decided compares with the baseline {config.baseline!r}: add it to --only")


def _world_size() -> int:
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def adaptive_design(config: "SuiteConfig", seeds: Sequence[int], max_seeds: int | None, only: Sequence[str]) -> "AdaptiveDesign":
    """The design of a run-until-decided suite: the seed order, the looks and their alpha."""
    from strabench.report.sequential import METHOD, sequential_design
    from strabench.suite.adaptive import AdaptiveDesign, seed_order
    from strabench.suite.config import PRIMARY_METRIC

    initial = list(seeds) or list(config.seeds)
    top = max_seeds if max_seeds is not None else config.max_seeds
    assert top is not None
    if top < len(initial):
        raise ConfigError(f"--max-seeds {top} is fewer than the {len(initial)} seeds the suite starts with")
    design = sequential_design(len(initial), top, config.alpha)
    variants = tuple(v.name for v in config.variants if v.name != config.baseline and (not only or v.name in only))
    if not variants:
        raise ConfigError("--until-decided needs a variant to compare with the baseline")
    return AdaptiveDesign(
        seed_order=seed_order(initial, top), looks=design.looks, alphas=design.alphas, alpha=config.alpha, method=METHOD,
        baseline=config.baseline, variants=variants, metric=PRIMARY_METRIC[config.task],
        margins=dict(config.equivalence_margin),
    )


def report_design(design: "AdaptiveDesign") -> "Design":
    from strabench.report.sequential import Design

    return Design(design.looks, design.alphas, design.alpha, design.max_seeds)


def open_variants_after(design: "AdaptiveDesign") -> Callable[[Path, int], set[str]]:
    """The rounds loop's question: which variants still have an undecided comparison after a look."""

    def open_variants(suite_dir: Path, look: int) -> set[str]:
        from strabench.report.tables import load_suite_results, summarise

        summary = summarise(load_suite_results(suite_dir), paper=False, through_look=look)
        decided = {r["variant"] for r in summary if r.get(f"{design.metric}_sequential") and r.get(f"{design.metric}_verdict") != "undecided"}
        return {v for v in design.variants if v not in decided}

    return open_variants


def print_plan(out: "Console", config: "SuiteConfig", plan: "RunPlan", design: "AdaptiveDesign | None",
               only: Sequence[str]) -> None:
    """The dry run's statement: seeds each undecided comparison needs, and what they cost."""
    from strabench.report.planning import plan_lines
    from strabench.suite.adaptive import check_design

    if design is not None:
        check_design(plan.out_dir, design)
    if not config.measure.accuracy:
        return  # complexity only: nothing is compared
    lines = plan_lines(config, plan.out_dir, design=report_design(design) if design else None, variants=list(only) or None)
    if lines:
        out.print("seeds needed (docs/statistics.md):")
        for line in lines:
            out.print(f"  {line}", highlight=False)


def run_rounds(out: "Console", config: "SuiteConfig", outdir: str, design: "AdaptiveDesign", *,
               execute: Callable[["RunPlan"], "SuiteOutcome"], plan_options: dict[str, Any],
               max_minutes: float | None, resume: str, keep_checkpoints: str = "last") -> int:
    """Run the rounds, print how they ended and the verdict lines; the exit code."""
    from strabench.report.sequential import describe_design
    from strabench.suite.adaptive import check_design, run_until_decided

    check_design(Path(outdir) / config.name, design)
    out.print(f"run until decided: {describe_design(report_design(design))}; stops when every {design.metric} comparison "
              f"with {design.baseline} is decided" + (f" or the next round would pass {max_minutes:g} minutes" if max_minutes else ""),
              highlight=False)

    def on_round(look: int, d: "AdaptiveDesign", open_now: set[str], spent_s: float) -> None:
        out.print(f"look {look + 1} of {len(d.looks)}: {d.looks[look]} seeds of {', '.join([d.baseline, *sorted(open_now)])} "
                  f"({spent_s / 60:.0f} minutes spent in rounds so far)", highlight=False)

    failed: list[str] = []

    def counted(plan: "RunPlan") -> "SuiteOutcome":
        outcome = execute(plan)
        failed.extend(outcome.failed)
        return outcome

    outcome: AdaptiveOutcome = run_until_decided(
        config, outdir, design, execute=counted, open_variants=open_variants_after(design), plan_options=plan_options,
        max_minutes=max_minutes, keep_checkpoints=keep_checkpoints, on_round=on_round, on_stop=lambda text: out.print(text, highlight=False),
    )
    if outcome.interrupted:
        out.print(f"[yellow]interrupted[/]: the design and finished runs are kept; resume with:\n  {resume}")
        return 130
    if outcome.reason == "locked":
        out.print("[yellow]stopped[/]: another process holds runs of this round; rerun when it is done")
        return 1
    ended = {"decided": "every comparison is decided", "max seeds": f"the design's {design.max_seeds} seeds are run",
             "budget": "the budget is spent"}[outcome.reason]
    out.print(f"stopped after look {outcome.looks_done} of {len(design.looks)}: {ended}", highlight=False)
    _print_verdicts(out, Path(outdir) / config.name, design.metric)
    if failed:
        out.print(f"[red]{len(failed)} run(s) failed[/]: {', '.join(failed)} (reasons in their result.json)")
        return 1
    return 0


def _print_verdicts(out: "Console", suite_dir: Path, metric: str) -> None:
    from strabench.report.tables import load_suite_results, verdict_lines

    for line in verdict_lines(load_suite_results(suite_dir), metric=metric):
        out.print(f"  {line}", highlight=False)
