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


def test_doctor_lists_every_optional_dependency_with_its_version(tmp_path):
    from importlib import metadata

    from strabench.cli.doctor import OPTIONAL

    result = CliRunner().invoke(app, ["doctor", "--json", "--results", str(tmp_path)])
    rows = {r["check"]: r for r in json.loads(result.stdout)}
    names = {package for package, _ in OPTIONAL}
    assert {"onnx", "onnxruntime", "scipy", "statsmodels", "submitit", "timm", "tensorboard", "mlflow", "wandb"} <= names
    for package in names:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            assert rows[package]["status"] == "absent" and rows[package]["detail"].startswith("not installed")
        else:
            assert rows[package]["status"] == "ok" and rows[package]["detail"].startswith(f"{version};")


def test_a_missing_optional_dependency_is_not_a_failure(tmp_path, monkeypatch):
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: (_ for _ in ()).throw(metadata.PackageNotFoundError(name)) if name == "mlflow" else real(name))
    result = CliRunner().invoke(app, ["doctor", "--json", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {r["check"]: r for r in json.loads(result.stdout)}
    assert rows["mlflow"]["status"] == "absent" and "--mlflow" in rows["mlflow"]["detail"]


def test_machine_load_warns_when_half_the_cores_are_busy(monkeypatch):
    import os

    import psutil

    from strabench.cli.doctor import load_row

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 2.0, 1.0))
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 50.0)  # 2 of 4 cores
    check, status, detail = load_row()
    assert (check, status) == ("machine load", "warn")
    assert "load average 3.50, 2.00, 1.00 (1, 5, 15 min) on 4 cores; 2.0 cores busy now" in detail
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: 25.0)
    assert load_row()[1] == "ok"
