"""Guarantee 3 -- bad input never hurts.

Every case goes through the command line (typer's CliRunner, in-process, so ~50 cases stay
fast; one test runs real subprocesses). Each must: exit with code 2; print exactly one
stderr line that names the problem (the file, key or value); raise no traceback; and leave a
pre-existing results directory byte-identical (every file hashed before and after). With
``--debug`` the traceback is shown instead. (`strabench train` announces its run on stderr
before it reads the data; that line is tolerated in the parametrised cases and refused by
``test_train_with_bad_data_prints_nothing_but_the_error``.)
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from strabench.cli import app

from .helpers import TINY_INPUT, TINY_SIZES, assert_one_line_error, run_strabench, suite_text, tree_digest

MODEL = "mobilenetv2_100"
TRAIN = [MODEL, "--epochs", "1", "--batch", "8", "--input", TINY_INPUT, "--device", "cpu", "--workers", "0", "--out", "runs/r"]


# --- the workspace: a seeded results directory and broken inputs ----------------------------------


def _jpeg(path: Path, size: tuple[int, int] = (16, 32), colour: tuple[int, int, int] = (120, 30, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")


def _market(root: Path) -> Path:
    """A minimal valid Market-1501 layout: 8 train images (2 ids), 2 queries, 4 gallery images."""
    for pid in (1, 2):
        for k in range(4):
            _jpeg(root / "bounding_box_train" / f"{pid:04d}_c{1 + k % 2}s1_{k:06d}_00.jpg", colour=(60 * pid, 20 * k, 90))
    for pid in (3, 4):
        _jpeg(root / "query" / f"{pid:04d}_c1s1_000001_00.jpg", colour=(40 * pid, 10, 10))
        for cam in (2, 3):
            _jpeg(root / "bounding_box_test" / f"{pid:04d}_c{cam}s1_000002_00.jpg", colour=(40 * pid, 12, 12))
    return root


def _fer_csv(path: Path, header: str, pixels: int) -> Path:
    rows = [header] + [f"{i % 7},{' '.join(['128'] * pixels)},{u}" for i, u in enumerate(["Training"] * 8 + ["PublicTest", "PrivateTest"])]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Broken datasets and checkpoints, shared read-only by every case."""
    import torch

    from strabench.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "market_empty").mkdir()
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        _jpeg(root / "market_names" / folder / "person-one-camera-two.jpg")
    corrupt = _market(root / "market_corrupt")
    query = sorted((corrupt / "query").iterdir())[0]
    query.write_bytes(query.read_bytes()[:40])  # a truncated JPEG: header, no image data
    _fer_csv(root / "fer_columns.csv", "label,pixels,Usage", 48 * 48)
    _fer_csv(root / "fer_pixels.csv", "emotion,pixels,Usage", 47 * 48)

    weights = {"conv.weight": torch.ones(4, 3, 3, 3), "fc.weight": torch.ones(2, 4)}
    torch.save(weights, root / "other_state_dict.pt")
    data = (root / "other_state_dict.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    save_checkpoint(root / "resnet50_checkpoint.pt", {"model": weights, "config": {"model": "resnet50"}, "epoch": 1})
    (root / "not_utf8.toml").write_bytes(b'name = "tiny"\ndata = "\xff\xfe"\n')
    (root / "a_file").write_text("not a directory\n")
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = a folder holding results/tiny/ as a finished run left it (fabricated files)."""
    suite_dir = tmp_path / "results" / "tiny"
    run_dir = suite_dir / "mnv2-s0-0123456789ab"
    run_dir.mkdir(parents=True)
    identity = {"suite": "tiny", "variant": "mnv2", "model": MODEL, "seed": 0, "hash": "0123456789ab", "run_id": run_dir.name}
    (run_dir / "run.json").write_text(json.dumps(identity))
    (run_dir / "result.json").write_text(json.dumps({"status": "finished", "metrics": {"mAP": 12.5, "rank1": 25.0}}))
    (run_dir / "measure.json").write_text(json.dumps({"params": 2880256, "macs": {"paper": 6123520}, "input": [3, 32, 16]}))
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.4}\n{"epoch": 2, "loss": 1.3}\n')
    (run_dir / "config.toml").write_text(f'model = "{MODEL}"\n')
    (run_dir / "checkpoint.pt").write_bytes(os.urandom(4096))
    (run_dir / "checkpoint.pt.sha256").write_text('{"sha256": "00", "size": 4096}\n')
    (suite_dir / "plan.json").write_text(json.dumps({"runs": [identity]}))
    (suite_dir / "results.csv").write_text("suite,variant,model,seed,hash,status,mAP\ntiny,mnv2,mobilenetv2_100,0,0123456789ab,finished,12.5\n")
    (suite_dir / "report.md").write_text("# strabench report: tiny\n")
    (tmp_path / "tiny.toml").write_text(suite_text(name="tiny"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "1000")  # rich would wrap long lines at 80 columns
    return tmp_path


# --- the cases --------------------------------------------------------------------------------------


def _suite(replace: tuple[str, str] | None = None, append: str = "") -> Callable[[Path], str]:
    """A `run` case whose suite file is the tiny suite with one textual change."""

    def make(ws: Path) -> str:
        text = suite_text(name="tiny")
        if replace is not None:
            assert replace[0] in text, replace
            text = text.replace(*replace, 1)
        (ws / "bad.toml").write_text(text + append, encoding="utf-8")
        return "bad.toml"

    return make


def _deep_nesting(ws: Path) -> str:
    (ws / "bad.toml").write_text(suite_text(name="tiny") + "\n[measure.x]\ny = " + "[" * 5000 + "]" * 5000 + "\n")
    return "bad.toml"


RUN_SUITE_CASES = [
    ("malformed_toml", _suite(("seeds = [0]", "seeds = [0,")), ["bad.toml", "invalid TOML"]),
    ("unknown_top_level_key", _suite(("profile = \"quick\"", "profile = \"quick\"\nepoch = 3")), ["bad.toml", "epoch", "unknown key"]),
    ("unknown_variant_key", _suite(('model = "mobilenetv2_100"\n', 'modle = "mobilenetv2_100"\n')), ["variants[0].modle"]),
    ("wrong_type_seeds", _suite(("seeds = [0]", 'seeds = "0"')), ["seeds", "'0'"]),
    ("wrong_type_train_value", _suite(("epochs = 2", 'epochs = "two"')), ["train.epochs", "'two'"]),
    ("suite_owned_train_key", _suite(("epochs = 2", 'epochs = 2\nmodel = "resnet50"')), ["train.model"]),
    ("duplicate_seeds", _suite(("seeds = [0]", "seeds = [0, 0]")), ["seeds", "[0, 0]"]),
    ("unknown_model", _suite(('model = "mobilenetv2_100"\n', 'model = "mobilenetv3_large"\n')), ["variants[0].model", "mobilenetv3_large"]),
    ("unknown_override", _suite(append='overrides = { no_such_knob = 1 }\n'), ["variants[1].overrides", "no_such_knob"]),
    ("unknown_dataset", _suite(('data = "synthetic_reid"', 'data = "imagenet"')), ["data", "imagenet"]),
    ("missing_data_folder", _suite(('data = "synthetic_reid"', 'data = "market1501:/nonexistent/Market-1501"')), ["/nonexistent/Market-1501"]),
    ("negative_epochs", _suite(("epochs = 2", "epochs = -1")), ["epochs", "-1"]),
    ("batch_zero", _suite(("batch_size = 8", "batch_size = 0")), ["batch_size", "0"]),
    ("bad_measure_input", _suite(('input = "32x16"', 'input = "32by16"')), ["measure.input", "32by16"]),
    ("unknown_mac_counter", _suite(('macs = ["paper"]', 'macs = ["papr"]')), ["measure.macs[0]", "papr"]),
    ("deeply_nested_toml", _deep_nesting, ["bad.toml"]),
]

OPTION_CASES = [
    ("shard_3_of_2", ["run", "tiny.toml", "--shard", "3/2"], ["--shard", "3/2"]),
    ("shard_not_k_of_n", ["run", "tiny.toml", "--shard", "half"], ["--shard", "half"]),
    ("unknown_profile", ["run", "tiny.toml", "--profile", "fast"], ["--profile", "fast"]),
    ("unknown_only_variant", ["run", "tiny.toml", "--only", "nosuch"], ["--only", "nosuch"]),
    ("unknown_device", ["run", "tiny.toml", "--device", "tpu"], ["--device", "tpu"]),
    ("negative_seed", ["run", "tiny.toml", "--seeds", "-1"], ["--seeds", "-1"]),
    ("data_for_other_task", ["run", "tiny.toml", "--data", "synthetic_faces"], ["--data", "synthetic_faces"]),
    ("missing_suite_file", ["run", "nosuch.toml"], ["nosuch.toml"]),
    ("suite_not_utf8", ["run", "{inputs}/not_utf8.toml"], ["not_utf8.toml"]),
    ("results_dir_is_a_file", ["run", "tiny.toml", "--out", "{inputs}/a_file"], ["a_file"]),
    ("results_dir_under_a_file", ["run", "tiny.toml", "--out", "{inputs}/a_file/results"], ["a_file"]),
    ("train_unknown_model", ["train", "resnet51", *TRAIN[1:]], ["resnet51"]),
    ("train_batch_zero", ["train", *TRAIN, "--batch", "0"], ["batch_size", "0"]),
    ("train_negative_epochs", ["train", *TRAIN, "--epochs", "-3"], ["epochs", "-3"]),
    ("train_nan_lr", ["train", *TRAIN, "--lr", "nan"], ["lr", "nan"]),
    ("train_unknown_set_key", ["train", *TRAIN, "--set", "learning_rate=0.1"], ["learning_rate"]),
    ("train_deeply_nested_set_value", ["train", *TRAIN, "--set", "milestones=" + "[" * 3000 + "]" * 3000], ["milestones"]),
    ("train_input_model_cannot_take", ["train", *TRAIN, "--input", "30x17"], ["30x17"]),
    ("train_missing_data_folder", ["train", *TRAIN, "--data", "market1501:/nonexistent/Market-1501"], ["/nonexistent/Market-1501"]),
    ("train_empty_data_folder", ["train", *TRAIN, "--data", "market1501:{inputs}/market_empty"], ["market_empty/bounding_box_train"]),
    ("train_wrong_market_file_names", ["train", *TRAIN, "--data", "market1501:{inputs}/market_names"], ["person-one-camera-two.jpg"]),
    ("train_corrupt_jpeg", ["train", *TRAIN, "--data", "market1501:{inputs}/market_corrupt"], ["0003_c1s1_000001_00.jpg", "corrupt"]),
    ("train_fer_csv_wrong_columns", ["train", "fer_resnet", "--epochs", "1", "--batch", "4", "--input", "16x16", "--device", "cpu", "--out", "runs/f", "--data", "fer2013:{inputs}/fer_columns.csv"], ["fer_columns.csv", "label"]),
    ("train_fer_csv_wrong_pixel_count", ["train", "fer_resnet", "--epochs", "1", "--batch", "4", "--input", "16x16", "--device", "cpu", "--out", "runs/f", "--data", "fer2013:{inputs}/fer_pixels.csv"], ["fer_pixels.csv:2", "2256"]),
    ("train_missing_pretrained_file", ["train", *TRAIN, "--pretrained", "/nonexistent/weights.pth"], ["/nonexistent/weights.pth"]),
    ("eval_truncated_checkpoint", ["eval", MODEL, "--checkpoint", "{inputs}/truncated.pt"], ["truncated.pt"]),
    ("eval_checkpoint_of_another_model", ["eval", MODEL, "--checkpoint", "{inputs}/resnet50_checkpoint.pt"], ["resnet50_checkpoint.pt", "resnet50"]),
    ("eval_state_dict_of_another_model", ["eval", MODEL, "--checkpoint", "{inputs}/other_state_dict.pt", "--device", "cpu"], ["other_state_dict.pt", "another model"]),
    ("eval_missing_checkpoint", ["eval", MODEL, "--checkpoint", "/nonexistent/checkpoint.pt"], ["/nonexistent/checkpoint.pt"]),
    ("flops_input_model_cannot_take", ["flops", "resnet50", "--input", "30x17"], ["30x17"]),
    ("flops_zero_input", ["flops", "resnet50", "--input", "0x16"], ["0x16"]),
    ("flops_unknown_counter", ["flops", "resnet50", "--counter", "thop"], ["--counter", "thop"]),
    ("flops_unknown_model", ["flops", "resnet51"], ["resnet51"]),
    ("bench_input_model_cannot_take", ["bench", "resnet50", "--input", "30x17", "--rounds", "1", "--min-run-time", "0.01"], ["30x17"]),
    ("bench_batch_zero", ["bench", MODEL, "--batch", "0"], ["--batch", "0"]),
    ("bench_unknown_mode", ["bench", MODEL, "--mode", "fast"], ["--mode", "fast"]),
    ("report_unknown_format", ["report", "results", "--format", "xml"], ["--format", "xml"]),
    ("report_missing_directory", ["report", "/nonexistent/results"], ["/nonexistent/results"]),
]


def _params(cases: list[tuple]) -> list:
    """pytest params named by each case's first element."""
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


def _invoke_and_check(argv: list[str], expected: list[str], ws: Path, *, strict: bool = False) -> None:
    before = tree_digest(ws / "results")
    result = CliRunner().invoke(app, argv)
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    assert unexpected is None, f"{type(unexpected).__name__}: {unexpected} (a traceback, not a one-line error)"
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout
    assert_one_line_error(result.stderr, *expected, strict=strict or argv[0] != "train")
    assert tree_digest(ws / "results") == before, "the results directory changed"


@pytest.mark.parametrize(("make_suite", "expected"), _params(RUN_SUITE_CASES))
def test_bad_suite_file_is_one_line_exit_2_and_touches_nothing(workspace: Path, make_suite, expected) -> None:
    suite = make_suite(workspace)
    _invoke_and_check(["run", suite, "--out", "results"], expected, workspace)


@pytest.mark.parametrize(("argv", "expected"), _params(OPTION_CASES))
def test_bad_option_or_file_is_one_line_exit_2_and_touches_nothing(workspace: Path, inputs: Path, argv, expected) -> None:
    argv = [a.replace("{inputs}", str(inputs)) for a in argv]
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", "results"]
    _invoke_and_check(argv, expected, workspace)


def test_read_only_results_directory_is_one_line_exit_2(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, chmod does not stop writes, so "read-only" is simulated: every attempt to create
    or write a file (or directory) under results/ fails with EACCES, as on a read-only mount."""
    results = str(workspace / "results")
    real_open, real_mkdir = os.open, os.mkdir

    def guarded_open(path, flags, *args, **kwargs):
        if os.path.abspath(path).startswith(results) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if os.path.abspath(path).startswith(results):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    (workspace / "other.toml").write_text(suite_text(name="tiny", epochs=1))
    _invoke_and_check(["run", "other.toml", "--out", "results", "--seeds", "5"], ["results", "ermission denied"], workspace)


def test_mistyped_option_value_is_one_line_exit_2(workspace: Path) -> None:
    """A value typer cannot parse (`--epochs two`) is bad input like any other."""
    _invoke_and_check(["train", *TRAIN, "--epochs", "two"], ["--epochs"], workspace, strict=True)


def test_bad_data_folder_in_a_suite_is_refused_before_anything_is_written(workspace: Path, inputs: Path) -> None:
    """A suite whose data folder exists but is not a dataset (empty here) must be refused up front,
    like a missing folder: all of its runs would fail on it, and running them rewrites the suite's
    results.csv and plan.json and adds failed run directories to the user's results."""
    (workspace / "empty_data.toml").write_text(
        suite_text(name="tiny").replace('data = "synthetic_reid"', f'data = "market1501:{inputs}/market_empty"')
        .replace(f"data_sizes = {TINY_SIZES}\n", "")
    )
    _invoke_and_check(["run", "empty_data.toml", "--out", "results"], ["market_empty"], workspace)


# --- real processes ---------------------------------------------------------------------------------


def test_real_process_prints_one_line_and_debug_prints_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(suite_text(name="tiny").replace('model = "mobilenetv2_100"\n', 'model = "mobilenetv3_large"\n'))
    plain = run_strabench("run", "bad.toml", "--out", "results", cwd=tmp_path, timeout=120)
    assert plain.returncode == 2, plain.stdout + plain.stderr
    assert_one_line_error(plain.stderr, "bad.toml", "variants[0].model", "mobilenetv3_large")
    assert "\x1b[" not in plain.stderr  # no colour codes when stderr is not a terminal
    debug = run_strabench("--debug", "run", "bad.toml", "--out", "results", cwd=tmp_path, timeout=120)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError" in debug.stderr and "mobilenetv3_large" in debug.stderr
    assert not (tmp_path / "results").exists()


def test_debug_flag_in_process_reraises_the_error(workspace: Path) -> None:
    from strabench.errors import ConfigError

    result = CliRunner().invoke(app, ["--debug", "run", "nosuch.toml"])
    assert isinstance(result.exception, ConfigError)
    assert "nosuch.toml" in str(result.exception)



def test_train_with_bad_data_prints_nothing_but_the_error(workspace: Path, inputs: Path) -> None:
    """Strictly one stderr line: `train` must not announce a training run it is not going to start."""
    argv = ["train", *TRAIN, "--data", f"market1501:{inputs}/market_empty"]
    _invoke_and_check(argv, ["market_empty/bounding_box_train"], workspace, strict=True)
