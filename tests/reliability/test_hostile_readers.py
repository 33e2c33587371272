"""Guarantee 10 -- readers never crash on what they read.

Every file strabench reads back from a results directory (results.csv, plan.json, and per run
run.json, result.json, measure.json, metrics.jsonl, env.json, config.toml) is replaced, one at a
time, in a copy of the committed ``results/quick`` suite by: random bytes, Latin-1 text, and
structurally valid files holding hostile values (inf, nan, 10**400, negative, wrong JSON types,
control characters, huge strings) where numbers, strings or tables belong. `strabench report`
must then exit 0 (working around the damaged entry, with a warning where it matters) or 2
with one error line, never a traceback; ``load_suite_results`` must return or raise our error.
Hypothesis is derandomised, so a failure is reproducible.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strabench.errors import StrabenchError

from .helpers import assert_one_line_error, invoke, no_exception

COMMITTED = Path(__file__).resolve().parents[2] / "results" / "quick"
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RUN_FILES = ("run.json", "result.json", "measure.json", "metrics.jsonl", "env.json", "config.toml")

HOSTILE_SCALARS = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 10**400, -(10**30), 2**64, -1, 0, True, None, "", "x" * 5000,
                     "a\nb", "\x1b[31mred", "../../etc", "/", "é", [], {}, [1, 2], {"a": 1}]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
HOSTILE_CELLS = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "9" * 5000, "-0", "0x10", "1_000", "true", "", " ",
                     "é", "\x00", "a\nb", "\x1b[0m", "None", "[]", "{}"]),
    st.text(max_size=12),
)


def _suite_copy(tmp: Path) -> Path:
    target = tmp / "results" / "quick"
    if target.exists():
        shutil.rmtree(target)
    for leftover in target.parent.glob("*") if target.parent.exists() else ():
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    shutil.copytree(COMMITTED, target, ignore=shutil.ignore_patterns("plots", "report.md"))
    return target


def _run_dirs(suite: Path) -> list[Path]:
    return sorted(p for p in suite.iterdir() if p.is_dir() and (p / "result.json").is_file())


def _target(suite: Path, which: str, run_index: int) -> Path:
    if which == "results.csv":  # read when it is all there is (copied without its run directories)
        (suite / "plan.json").unlink()
        for run_dir in _run_dirs(suite):
            shutil.rmtree(run_dir)
    if which in ("results.csv", "plan.json"):
        return suite / which
    return _run_dirs(suite)[run_index % 3] / which


def _replace_values(obj: Any, draw: Any, path: str = "") -> Any:
    """Replace some leaves (and some whole sub-trees) of a JSON value by hostile values."""
    if draw(st.integers(0, 5)) == 0:
        return draw(HOSTILE_SCALARS)
    if isinstance(obj, dict):
        return {k: _replace_values(v, draw, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_values(v, draw, f"{path}[]") for v in obj]
    return draw(HOSTILE_SCALARS) if draw(st.booleans()) else obj


def _dump(obj: Any) -> str:
    return json.dumps(obj, default=str)  # 10**400 and NaN stay as JSON numbers Python reads back


def _check_report(suite: Path, *, plots: bool = False) -> None:
    result = invoke(["report", suite, "--no-paper", *([] if plots else ["--no-plots"])])
    no_exception(result)
    assert result.exit_code in (0, 2), result.stdout + result.stderr
    if result.exit_code == 2:
        assert_one_line_error(result.stderr, strict=True)
    from strabench.report.tables import load_suite_results

    try:
        load_suite_results(suite)
    except StrabenchError:
        pass


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


FILES = st.sampled_from(["results.csv", "plan.json", *RUN_FILES])


@SETTINGS
@given(which=FILES, run=st.integers(0, 2), data=st.binary(max_size=400))
def test_random_bytes_in_any_file(workdir: Path, which: str, run: int, data: bytes) -> None:
    suite = _suite_copy(workdir)
    _target(suite, which, run).write_bytes(data)
    _check_report(suite)


@SETTINGS
@given(which=FILES, run=st.integers(0, 2), junk=st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=8))
def test_latin1_text_in_any_file(workdir: Path, which: str, run: int, junk: str) -> None:
    suite = _suite_copy(workdir)
    path = _target(suite, which, run)
    text = path.read_text(encoding="utf-8")
    cut = len(text) // 2
    path.write_bytes((text[:cut] + junk + text[cut:]).encode("latin-1", errors="replace"))
    _check_report(suite)


@SETTINGS
@given(which=st.sampled_from(["plan.json", "run.json", "result.json", "measure.json", "env.json"]), run=st.integers(0, 2),
       data=st.data())
def test_hostile_values_in_json_files(workdir: Path, which: str, run: int, data: st.DataObject) -> None:
    suite = _suite_copy(workdir)
    path = _target(suite, which, run)
    path.write_text(_dump(_replace_values(json.loads(path.read_text()), data.draw)), encoding="utf-8")
    _check_report(suite)


@SETTINGS
@given(run=st.integers(0, 2), data=st.data())
def test_hostile_values_in_metrics_log(workdir: Path, run: int, data: st.DataObject) -> None:
    suite = _suite_copy(workdir)
    path = _target(suite, "metrics.jsonl", run)
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(_dump(_replace_values(r, data.draw)) + "\n" for r in lines), encoding="utf-8")
    _check_report(suite, plots=data.draw(st.booleans()))  # the curves read this log: plotted in about half


@SETTINGS
@given(data=st.data())
def test_hostile_cells_in_results_csv(workdir: Path, data: st.DataObject) -> None:
    import csv
    import io

    suite = _suite_copy(workdir)
    (suite / "plan.json").unlink()  # a lone results.csv (copied without its runs): the report reads it
    for run_dir in _run_dirs(suite):
        shutil.rmtree(run_dir)
    path = suite / "results.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))[:4]  # header + 3 runs: small examples
    for row in rows[1:]:
        for i in range(len(row)):
            if data.draw(st.integers(0, 3)) == 0:
                row[i] = data.draw(HOSTILE_CELLS)
    if data.draw(st.booleans()):
        rows[0][data.draw(st.integers(0, len(rows[0]) - 1))] = data.draw(HOSTILE_CELLS)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    _check_report(suite)


@SETTINGS
@given(run=st.integers(0, 2), data=st.data())
def test_hostile_values_in_config_toml(workdir: Path, run: int, data: st.DataObject) -> None:
    suite = _suite_copy(workdir)
    path = _target(suite, "config.toml", run)
    lines = path.read_text().splitlines()
    values = ["inf", "nan", "1e400", "-1", "9223372036854775808", '"x"', "[]", "{}", "true", '"\\u001b[31m"']
    out = [line.split("=")[0] + "= " + data.draw(st.sampled_from(values)) if "=" in line and data.draw(st.booleans()) else line
           for line in lines]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    _check_report(suite)
