"""Command-line overrides of a suite (``strabench run SUITE KEY=VALUE``): the same checks, the
same runs and hashes as editing the file, recorded in plan.json and each run.json.

The reference for every override is the suite file edited by hand: loading it must give what
the override gives (same SuiteConfig, same run hashes, same error message)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strabench.cli import app
from strabench.errors import ConfigError
from strabench.suite import runner
from strabench.suite.config import load_suite
from strabench.suite.overrides import apply_overrides, load_suite_with_overrides, parse_override, run_overrides

from .fakes import BASE_SUITE, write_suite

EDITS = [  # (overrides, the same change written into the file by hand)
    (["train.quick.epochs=3"], ("epochs = 2", "epochs = 3")),
    (["seeds=[0, 1]"], ("seeds = [0]", "seeds = [0, 1]")),
    (["variants.stra.model=resnet50_local"], ('model = "resnet50_stra"', 'model = "resnet50_local"')),
    (["train.lr=1e-4"], ("[train.quick]", "[train]\nlr = 1e-4\n\n[train.quick]")),
    (["measure.macs=[\"paper\", \"fvcore\"]"], ('macs = ["paper"]', 'macs = ["paper", "fvcore"]')),
    (['variants.stra.replace."layer4.*.conv2"=sasa'],
     ('model = "resnet50_stra"', 'model = "resnet50_stra"\nreplace = { "layer4.*.conv2" = "sasa" }')),
    (["description=hello world"], ('description = "test suite"', 'description = "hello world"')),
    (["~measure.input"], ('input = "64x32"\n', "")),
    (["+variants.eca.model=resnet50_eca"], ('model = "resnet50_stra"', 'model = "resnet50_stra"\n\n[[variants]]\nname = "eca"\nmodel = "resnet50_eca"')),
    (["~variants.base"], ('[[variants]]\nname = "base"\nmodel = "resnet50"\n\n', "")),
]


def _suite_text(**kw) -> str:
    return BASE_SUITE.format(name="t", seeds=kw.get("seeds", "[0]"), epochs=kw.get("epochs", 2))


@pytest.mark.parametrize("overrides,edit", EDITS, ids=[" ".join(o) for o, _ in EDITS])
def test_an_override_is_the_file_edited_by_hand(tmp_path: Path, overrides: list[str], edit: tuple[str, str]) -> None:
    suite = write_suite(tmp_path)
    text = _suite_text()
    assert edit[0] in text
    edited = write_suite(tmp_path, text.replace(edit[0], edit[1], 1), filename="edited.toml")
    by_override = load_suite_with_overrides(suite, overrides)
    by_hand = load_suite(edited)
    assert by_override.overrides == tuple(overrides)
    strip = lambda cfg: {k: v for k, v in cfg.as_dict().items() if k not in ("path", "overrides")}  # noqa: E731
    assert strip(by_override) == strip(by_hand)
    planned = runner.plan_runs(by_override, tmp_path / "a", check_models=False)
    reference = runner.plan_runs(by_hand, tmp_path / "a", check_models=False)
    assert [r.run_id for r in planned.runs] == [r.run_id for r in reference.runs]


BAD = [  # (override, the bad value written into the file by hand)
    ("train.quick.epochs=two", ("epochs = 2", 'epochs = "two"')),
    ("seeds=[0, 0]", ("seeds = [0]", "seeds = [0, 0]")),
    ("measure.latency={ rounds = 0 }", ("accuracy = true", "accuracy = true\nlatency = { rounds = 0 }")),
    ("variants.stra.model=resnet50_str", ('model = "resnet50_stra"', 'model = "resnet50_str"')),
    ("train.quick.optimiser=sgd", ("epochs = 2", 'epochs = 2\noptimiser = "sgd"')),
    ("profile=fast", ('profile = "quick"', 'profile = "fast"')),
]


@pytest.mark.parametrize("override,edit", BAD, ids=[o for o, _ in BAD])
def test_a_bad_override_gets_the_files_own_error_and_names_itself(tmp_path: Path, override: str, edit: tuple[str, str]) -> None:
    suite = write_suite(tmp_path)
    edited = write_suite(tmp_path, _suite_text().replace(edit[0], edit[1], 1), filename="suite.toml")
    with pytest.raises(ConfigError) as by_hand:
        load_suite(edited)
    write_suite(tmp_path)  # back to the original file
    with pytest.raises(ConfigError) as by_override:
        load_suite_with_overrides(suite, [override])
    assert str(by_override.value) == f"{by_hand.value} (from override {override!r})"
    assert "\n" not in str(by_override.value)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train.epochs", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("train..epochs=3", "is not a key"),
        ("a\nb=2", "is not a key"),
        ("a = 1\nb=2", "more than one value"),
        ("train.epochs=3\nseeds = [9]", "more than one value"),
        ("data=abc\ndef", "a value is one line"),
        ("train.epochs=3 \nx = 1", "more than one value"),
        ("~train.epochs=3", "takes no value"),
        ("epochs=3", "write train.epochs=3"),
        ("sedes=[1]", "did you mean 'seeds'"),
        ("variants.nope.model=resnet50", "no variant named 'nope'"),
        ("variants=[]", "address a variant by name"),
        ("~train.quick.lr", "nothing to delete: train.quick.lr is not set"),
        ("train.quick.epochs.x=1", "train.quick.epochs is 2, not a table"),
        ("variants.stra=3", "a variant is a table"),
    ],
)
def test_malformed_overrides_are_one_line_errors(tmp_path: Path, text: str, needle: str) -> None:
    suite = write_suite(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_suite_with_overrides(suite, [text])
    message = str(caught.value)
    assert needle in message and message.startswith("override ") and "\n" not in message.replace(repr(text), "")


def test_values_are_toml_else_text() -> None:
    assert parse_override("train.lr=1e-4").value == 1e-4
    assert parse_override("seeds=[0,1]").value == [0, 1]
    assert parse_override("data=market1501:/data/Market-1501").value == "market1501:/data/Market-1501"
    assert parse_override('name="2024"').value == "2024" and parse_override("name=2024").value == 2024
    assert parse_override('variants.s.replace."layer4.*.conv2"=stra').path == ("variants", "s", "replace", "layer4.*.conv2")
    assert parse_override("+variants.e.model=m").op == "add" and parse_override("~seeds").op == "delete"


def test_overrides_apply_in_order_and_leave_the_input_alone() -> None:
    raw = {"train": {"lr": 1.0}, "variants": [{"name": "a", "model": "m"}]}
    data, touched = apply_overrides(raw, [parse_override("train.lr=2"), parse_override("train.lr=3"),
                                          parse_override("variants.a.train.lr=4")])
    assert data["train"]["lr"] == 3 and data["variants"][0]["train"] == {"lr": 4}
    assert raw == {"train": {"lr": 1.0}, "variants": [{"name": "a", "model": "m"}]}
    assert touched == {"train.lr=2": "train.lr", "train.lr=3": "train.lr", "variants.a.train.lr=4": "variants[0].train.lr"}


def test_each_run_records_the_overrides_that_concern_it(tmp_path: Path, engine) -> None:
    suite = write_suite(tmp_path)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(suite), "train.quick.epochs=1", "variants.stra.train.lr=1e-4",
                                      "--set", "seeds=[3]", "--out", str(out)])
    assert result.exit_code == 0, result.output
    runs = {json.loads(p.read_text())["variant"]: json.loads(p.read_text()) for p in (out / "t").glob("*/run.json")}
    assert runs["base"]["overrides"] == ["train.quick.epochs=1", "seeds=[3]"]
    assert runs["stra"]["overrides"] == ["train.quick.epochs=1", "variants.stra.train.lr=1e-4", "seeds=[3]"]
    assert {r["seed"] for r in runs.values()} == {3}
    plan = json.loads((out / "t" / "plan.json").read_text())
    assert plan["suite"]["overrides"] == ["train.quick.epochs=1", "variants.stra.train.lr=1e-4", "seeds=[3]"]
    stra_dir = out / "t" / runs["stra"]["run_id"]
    assert "lr = 0.0001" in (stra_dir / "config.toml").read_text() and "epochs = 1" in (stra_dir / "config.toml").read_text()


def test_runs_without_overrides_keep_their_run_json(tmp_path: Path, engine) -> None:
    suite = write_suite(tmp_path)
    assert CliRunner().invoke(app, ["run", str(suite), "--out", str(tmp_path / "r")]).exit_code == 0
    for path in (tmp_path / "r" / "t").glob("*/run.json"):
        assert "overrides" not in json.loads(path.read_text())
    assert "overrides" not in json.loads((tmp_path / "r" / "t" / "plan.json").read_text())["suite"]


def test_the_resume_line_repeats_the_overrides(tmp_path: Path, engine) -> None:
    suite = write_suite(tmp_path)
    plan = runner.plan_runs(load_suite_with_overrides(suite, ["train.quick.epochs=3"]), tmp_path / "r", check_models=False)
    engine.interrupt_runs.add(plan.runs[0].run_id)
    result = CliRunner().invoke(app, ["run", str(suite), "train.quick.epochs=3", "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    assert f"strabench run {suite} train.quick.epochs=3 --out {tmp_path / 'r'}" in result.output.replace("\n", "")


def test_run_overrides_of_a_renamed_variant(tmp_path: Path) -> None:
    given = ["variants.stra.train.lr=1e-4", "variants.stra.name=s2", "variants.s2.overrides.groups=4", "seeds=[1]"]
    config = load_suite_with_overrides(write_suite(tmp_path), given)
    assert [v.name for v in config.variants] == ["base", "s2"]
    assert run_overrides(config, "s2") == tuple(given)
    assert run_overrides(config, "base") == ("seeds=[1]",)


def test_bad_override_on_the_command_line_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    result = CliRunner().invoke(app, ["run", str(suite), "train.quick.epochs=two", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ") and "(from override 'train.quick.epochs=two')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_the_error_names_the_override_that_set_the_key_only(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_suite_with_overrides(suite, ["seeds=[0, 1]", "variants.stra.overrides.groups=[]", "variants.stra.model=nope"])
    assert str(caught.value).endswith("(from override 'variants.stra.model=nope')")
    with pytest.raises(ConfigError) as caught:
        load_suite_with_overrides(suite, ["seeds=[1]", "task=fer"])
    message = str(caught.value)
    assert "task" in message and message.endswith("(from override 'task=fer')")
    with pytest.raises(ConfigError) as caught:
        load_suite_with_overrides(suite, ["seeds=[1]", "+variants.x.model=resnet50", "~variants.x.model"])
    assert str(caught.value).endswith("variants[2].model: missing (from override '+variants.x.model=resnet50', '~variants.x.model')")
    # the key that fails was set by none of them: all are named, as context
    with pytest.raises(ConfigError) as caught:
        load_suite_with_overrides(suite, ["seeds=[1]", "data=synthetic_faces"])
    assert str(caught.value).endswith("the suite's task is 'face' (with overrides 'seeds=[1]', 'data=synthetic_faces')")


def test_an_override_the_file_shadows_is_warned_about(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)  # [train.quick] epochs = 2
    warned: list[str] = []
    load_suite_with_overrides(suite, ["train.epochs=3", "train.lr=1e-4", "variants.stra.train.lr=1e-3"], warn=warned.append)
    assert warned == [
        "override 'train.epochs=3': train.quick.epochs also sets epochs and takes precedence where it applies; set train.quick.epochs=... to change it there",
        "override 'train.lr=1e-4': variants.stra.train.lr also sets lr and takes precedence where it applies; set variants.stra.train.lr=... to change it there",
    ]
    warned.clear()
    load_suite_with_overrides(suite, ["train.quick.epochs=3", "train.lr=1e-4"], warn=warned.append)
    assert warned == []


def test_the_warning_reaches_the_command_line(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    result = CliRunner().invoke(app, ["run", str(suite), "train.epochs=3", "--dry-run", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "warning: override 'train.epochs=3': train.quick.epochs also sets epochs" in result.stderr
