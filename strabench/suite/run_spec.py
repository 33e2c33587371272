"""One run of a suite: a variant trained and measured with one seed, in one of the suite's settings.

A leaf of ``strabench.suite``: the plan (``suite.plan``) makes these, the checks
(``suite.checks``), the runner and the store read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strabench.suite.config import MeasureSpec

if TYPE_CHECKING:
    from strabench.train.config import TrainConfig

__all__ = ["RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """One run: a variant of the suite trained/measured with one seed (in one of its settings)."""

    suite: str
    variant: str
    model: str
    seed: int
    config: "TrainConfig"  # resolved
    measure: MeasureSpec
    hash: str
    overrides: tuple[str, ...] = ()  # the command line's suite overrides that concern this run (run.json)
    setting: str = ""  # the suite's [[settings]] name; "" when the suite has none

    @property
    def label(self) -> str:
        """``variant`` or ``variant-setting``: what the run directory's name starts with."""
        return f"{self.variant}-{self.setting}" if self.setting else self.variant

    @property
    def run_id(self) -> str:
        return f"{self.label}-s{self.seed}-{self.hash}"

    def identity(self) -> dict[str, Any]:
        """run.json's identity fields (``setting`` only when there is one, so older runs keep theirs)."""
        return {"suite": self.suite, "variant": self.variant, **({"setting": self.setting} if self.setting else {}),
                "model": self.model, "seed": self.seed, "hash": self.hash, "run_id": self.run_id,
                **({"overrides": list(self.overrides)} if self.overrides else {})}
