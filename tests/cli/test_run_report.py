"""`strabench run` / `report` / `viz` as commands: registration, the run -> report flow, the views."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.suite import runner

_spec = importlib.util.spec_from_file_location("strabench_suite_fakes", Path(__file__).parents[1] / "suite" / "fakes.py")
fakes = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, fakes)
_spec.loader.exec_module(fakes)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch):
    fake = fakes.FakeEngine()
    monkeypatch.setattr(runner, "_fit", fake)
    monkeypatch.setattr(runner, "measure_model", fakes.fake_measure)
    return fake


def test_commands_are_registered_with_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    for command in ("run", "report", "viz"):
        assert command in result.output
    run_help = CliRunner().invoke(app, ["run", "--help"]).output
    for option in ("--out", "--profile", "--only", "--shard", "--dry-run", "--device", "--seeds"):
        assert option in run_help
    assert "--paper" in CliRunner().invoke(app, ["report", "--help"]).output


def test_command_modules_import_no_heavy_libraries() -> None:
    import subprocess

    code = (
        "import sys; import strabench.cli.run, strabench.cli.report, strabench.cli.viz; "
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_run_then_report(tmp_path: Path, engine) -> None:
    suite = fakes.write_suite(tmp_path, seeds="[0, 1]")
    out = tmp_path / "results"
    run = CliRunner().invoke(app, ["run", str(suite), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "[4/4]" in run.output and "results.csv" in run.output
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert "## t — Table 1 (Market-1501)" in report.output
    assert "60.00 ± 7.07" in report.output and "55.00 ± 7.07" in report.output
    assert (out / "t" / "report.md").is_file()


def test_resume_command_repeats_the_options(tmp_path: Path, engine) -> None:
    suite = fakes.write_suite(tmp_path)
    from strabench.suite.config import load_suite

    plan = runner.plan_runs(load_suite(suite), tmp_path / "r o", device="cpu")
    engine.interrupt_runs.add(plan.runs[0].run_id)
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r o"), "--only", "base,stra", "--seeds", "0", "--device", "cpu"])
    assert result.exit_code == 130
    expected = f"strabench run {suite} --out '{tmp_path / 'r o'}' --device cpu --only base,stra --seeds 0"
    assert expected in result.output.replace("\n", "")


def test_live_view_renders_progress(tmp_path: Path, engine) -> None:
    from rich.console import Console

    from strabench.cli.run import LiveView
    from strabench.suite.config import load_suite

    plan = runner.plan_runs(load_suite(fakes.write_suite(tmp_path, epochs=3)), tmp_path / "r")
    buffer = io.StringIO()
    view = LiveView(Console(file=buffer, force_terminal=True, width=150))
    try:
        outcome = runner.run_suite(plan, view)
    finally:
        view.close()
    assert not outcome.failed and view.done == 2
    task = view.progress.tasks[0]
    assert task.completed == 2
    run_task = view.progress.tasks[-1]
    assert run_task.completed == run_task.total == 3  # 3 epochs x 1 step
    view.on_run_start(1, 1, plan.runs[0], "pending")
    view.on_epoch_start(2, 3)
    view.on_step(1, 4, 0.5)
    task = view.progress.tasks[-1]
    assert "epoch 2/3 step 1/4 loss 0.5000" in task.description
    assert (task.completed, task.total) == (5, 12)
    text = buffer.getvalue()
    assert "ETA" in text and "[2/2]" in text


def test_viz_help_names_the_options() -> None:
    output = CliRunner().invoke(app, ["viz", "--help"]).output
    for option in ("--checkpoint", "--image", "--out"):
        assert option in output
