"""Runs finished before the quick recipe evaluated every epoch are kept, not retrained."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from strabench.suite.config import load_suite
from strabench.suite.runner import plan_runs, run_hash

from .fakes import write_suite


def _move_to_the_earlier_identity(out: Path, spec) -> str:
    earlier = run_hash(dataclasses.replace(spec.config, eval_every=0), spec.measure)
    shutil.move(out / "t" / spec.run_id, out / "t" / f"{spec.variant}-s{spec.seed}-{earlier}")
    return earlier


def test_a_run_made_without_periodic_evaluation_is_found_with_its_own_config(tmp_path: Path, engine) -> None:
    from typer.testing import CliRunner

    from strabench.cli import app

    suite = write_suite(tmp_path)
    out = tmp_path / "r"
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(out)]).exit_code == 0
    plan = plan_runs(load_suite(suite), out, check_models=False)
    spec = plan.runs[0]
    assert spec.config.eval_every == 1, "the quick recipe evaluates every epoch"
    earlier = _move_to_the_earlier_identity(out, spec)
    again = plan_runs(load_suite(suite), out, check_models=False).runs[0]
    assert (again.hash, again.config.eval_every) == (earlier, 0), "the run on disk, with the config it was made with"
    calls = len(engine.calls)
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(out)]).exit_code == 0
    assert len(engine.calls) == calls, "nothing retrained"


def test_a_suite_that_asks_for_eval_every_gets_it(tmp_path: Path, engine) -> None:
    suite = write_suite(tmp_path)
    out = tmp_path / "r"
    spec = plan_runs(load_suite(suite), out, check_models=False).runs[0]
    (out / "t").mkdir(parents=True)
    (out / "t" / spec.run_id).mkdir()
    _move_to_the_earlier_identity(out, spec)
    suite.write_text(suite.read_text().replace("epochs = 2", "epochs = 2\neval_every = 1"))
    again = plan_runs(load_suite(suite), out, check_models=False).runs[0]
    assert again.hash == spec.hash and again.config.eval_every == 1
