"""Property tests: whatever a suite file holds, the loader answers with a suite or OUR error.

``strabench.suite.config.load_suite`` is fed (1) random TOML documents (random keys, scalars,
dates, nested tables, arrays), (2) the tiny suite with random mutations (keys deleted,
replaced by random values, unknown keys added -- this reaches the deep checks), and (3) random
bytes. It must return a ``SuiteConfig`` or raise a ``StrabenchError`` subclass, never anything
else (a TypeError, RecursionError ... is a traceback for the user). A suite that loads must then
also plan (``plan_runs``) or be refused with our error, and what planning produces must be
writable (plan.json, config.toml, the config hash), because `strabench run` writes those before
the first run. Hypothesis is derandomised, so a failure is reproducible.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strabench.errors import StrabenchError

from .helpers import suite_text

SETTINGS = settings(
    max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- a tiny TOML writer ---------------------------------------------------------------------------


def toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


# --- strategies ----------------------------------------------------------------------------------

KNOWN_KEYS = [
    "name", "description", "paper_table", "task", "data", "profile", "seeds", "train", "measure", "variants",
    "model", "overrides", "epochs", "batch_size", "lr", "input_size", "quick", "paper", "params", "macs", "input",
    "latency", "accuracy", "batch", "mode", "threads", "data_sizes", "milestones", "device", "groups",
]
KNOWN_STRINGS = ["reid", "face", "fer", "quick", "paper", "synthetic_reid", "synthetic_faces", "market1501:/nonexistent",
                 "resnet50", "mobilenetv2_100", "256x128", "32x16", "0x0", "infer", "train", "cpu", "fvcore", "a/b", ""]

keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(KNOWN_STRINGS),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc])),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(keys, values, max_size=8)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path / list index path in a decoded TOML document."""
    found = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append(prefix + (key,))
            found += _paths(child, prefix + (key,))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.append(prefix + (index,))
            found += _paths(child, prefix + (index,))
    return found


def _containers(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths of the tables in a document (where a new key can go)."""
    found = [prefix] if isinstance(node, dict) else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += _containers(child, prefix + (key,))
    return found


def _at(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated_suites(draw: st.DrawFn) -> str:
    """The tiny suite with 1-4 random edits."""
    doc = tomllib.loads(suite_text())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add":
            where = draw(st.sampled_from(_containers(doc)))
            _at(doc, where)[draw(keys)] = draw(values)
            continue
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _at(doc, path[:-1])
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return toml_document(doc)


# --- the contract ----------------------------------------------------------------------------------


def _load(tmp_path: Path, content: str | bytes, *, one_line: bool = False):
    """The suite, or None if refused with our error (any other exception fails the test)."""
    from strabench.suite.config import load_suite

    path = tmp_path / "fuzz.toml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    try:
        return load_suite(path)
    except StrabenchError as exc:
        assert str(exc).strip(), "an error without a message"
        if one_line:  # the CLI prints only the first line of a message
            assert "\n" not in str(exc).strip(), f"a multi-line error: {exc!r}"
        return None


def _plan_and_serialise(suite: Any, tmp_path: Path) -> None:
    """What `strabench run` does before the first run: plan, then write plan.json / config.toml."""
    from strabench.suite.runner import plan_runs
    from strabench.train.config import config_hash, to_toml

    try:
        plan = plan_runs(suite, tmp_path / "out", check_models=False)
    except StrabenchError:
        return
    json.dumps(plan.as_dict(), allow_nan=True)
    json.dumps(suite.as_dict(), allow_nan=True)
    for spec in plan.runs:
        tomllib.loads(to_toml(spec.config))
        config_hash(spec.config)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_unmutated_tiny_suite_loads_and_plans(fuzz_dir: Path) -> None:
    """Sanity: the seed of the mutations is valid, so mutations explore around a real suite."""
    suite = _load(fuzz_dir, toml_document(tomllib.loads(suite_text())))
    assert suite is not None and [v.name for v in suite.variants] == ["mnv2", "mnv2_stra"]
    _plan_and_serialise(suite, fuzz_dir)


@SETTINGS
@given(documents)
def test_random_toml_documents_load_or_raise_our_error(fuzz_dir: Path, doc: dict[str, Any]) -> None:
    text = toml_document(doc)
    tomllib.loads(text)  # the writer emits valid TOML (NaN breaks ==, so no round-trip comparison)
    _load(fuzz_dir, text)


@SETTINGS
@example({"\n": []})
@given(documents)
def test_loader_errors_are_one_line(fuzz_dir: Path, doc: dict[str, Any]) -> None:
    """The CLI prints the first line of an error only, so every message must be one line."""
    _load(fuzz_dir, toml_document(doc), one_line=True)


@SETTINGS
@given(mutated_suites())
def test_mutated_suites_load_or_raise_our_error(fuzz_dir: Path, text: str) -> None:
    _load(fuzz_dir, text)


@SETTINGS
@given(st.one_of(st.binary(max_size=300), mutated_suites().map(lambda t: t.encode("utf-8")).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(0, max(len(b) - 1, 0)), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):]))))
def test_random_and_corrupted_bytes_load_or_raise_our_error(fuzz_dir: Path, content: bytes) -> None:
    _load(fuzz_dir, content)


@SETTINGS
@example(suite_text().replace("num_train_ids = 4,", "num_train_ids = 1979-05-27,"))
@example(suite_text().replace("num_train_ids = 4,", "num_train_ids = inf,"))
@given(mutated_suites())
def test_a_suite_that_loads_plans_or_is_refused_with_our_error(fuzz_dir: Path, text: str) -> None:
    suite = _load(fuzz_dir, text)
    if suite is not None:
        _plan_and_serialise(suite, fuzz_dir)


def _plan_text(fuzz_dir: Path, text: str) -> None:
    from strabench.suite.config import load_suite
    from strabench.suite.runner import plan_runs

    path = fuzz_dir / f"plan-{abs(hash(text))}.toml"
    path.write_text(text)
    plan_runs(load_suite(path), fuzz_dir / "out", check_models=True)


@pytest.mark.parametrize(
    "value", ["1979-05-27", "inf", "nan", '"four"', "-3", "2.5"], ids=["date", "inf", "nan", "string", "negative", "float"]
)
def test_bad_synthetic_data_size_is_refused_when_planning(fuzz_dir: Path, value: str) -> None:
    """data_sizes values are only checked when the dataset is generated, i.e. inside each run
    (which then fails), or they crash the planner (a date or inf cannot be hashed). They must be
    refused before anything runs, naming the key."""
    with pytest.raises(StrabenchError, match="num_train_ids"):
        _plan_text(fuzz_dir, suite_text().replace("num_train_ids = 4,", f"num_train_ids = {value},"))


def test_unknown_synthetic_data_size_key_is_refused_when_planning(fuzz_dir: Path) -> None:
    with pytest.raises(StrabenchError, match="num_trian_ids"):
        _plan_text(fuzz_dir, suite_text().replace("num_train_ids = 4,", "num_train_ids = 4, num_trian_ids = 5,"))


@pytest.mark.parametrize("value", ["1979-05-27", "nan", "inf", "07:32:00"], ids=["date", "nan", "inf", "time"])
def test_unhashable_model_override_is_refused_with_our_error(fuzz_dir: Path, value: str) -> None:
    """A variant override the config hash cannot encode must be a one-line ConfigError, not a
    TypeError/ValueError traceback from json.dumps inside the planner."""
    text = suite_text(variants=(("mnv2", "mobilenetv2_100", f"overrides = {{ feature_dim = {value} }}"),))
    with pytest.raises(StrabenchError, match="feature_dim"):
        _plan_text(fuzz_dir, text)
