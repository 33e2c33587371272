from __future__ import annotations

import json

from typer.testing import CliRunner

from strabench.cli import app


def test_doctor_reports_environment(tmp_path):
    result = CliRunner().invoke(app, ["doctor", "--json", "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    rows = {r["check"]: r for r in json.loads(result.stdout)}
    assert rows["torch"]["status"] == "ok"
    assert {"cuda", "dataset cache", "results dir", "torch threads", "cpu"} <= set(rows)
    assert "will be created" in rows["results dir"]["detail"]


def test_doctor_fails_when_results_is_a_file(tmp_path):
    target = tmp_path / "results"
    target.write_text("not a directory")
    result = CliRunner().invoke(app, ["doctor", "--json", "--results", str(target)])
    assert result.exit_code == 1
    rows = {r["check"]: r for r in json.loads(result.stdout)}
    assert rows["results dir"]["status"] == "fail"
