"""The trust boundary: data never names or loads code.

Trusted code is what the user runs: the command line, suite files and the user's own modules
they name. Everything else is data -- results folders, checkpoints, caches, job files -- and
may have been written by someone else (a shared results folder, a downloaded checkpoint). Each
test plants a payload that touches a marker file when it runs, shows that the payload really
runs when called directly, and that nothing strabench does with the data runs it:

* a checkpoint whose stored config names a user block (``model_overrides.replace``), through
  ``eval`` and the loader behind ``viz`` / ``bench --checkpoint`` / ``export --checkpoint``;
* a results folder whose run files name a model or a block by reference (``report``, ``status``);
* a job file swapped into ``<suite>/.jobs/`` while ``run --jobs 2`` works (workers get their
  jobs through a pipe: there is no job file to swap);
* submitit's pickles: kept in a user-private folder outside the results folder, never in it.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from .fake_cli import fake_cli_argv, fake_env
from .helpers import assert_one_line_error, child_env, invoke, no_exception, read_csv

MODEL = "mobilenetv2_100"
PATTERN = "features.1.conv.0"


@pytest.fixture
def payload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A module in the working directory that touches MARKER when imported (and a block class);
    its name is unique per test, so no earlier import hides a later one."""
    name = f"payload_{abs(hash(request.node.nodeid)) % 10**8}"
    marker = tmp_path / "PWNED"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).touch()
        from torch import nn

        class Block(nn.Identity):
            block_kind = "replace"

            def __init__(self, channels, *, stride=1):
                super().__init__()

        def build():
            return nn.Conv2d(3, 8, 3)
    """))
    monkeypatch.chdir(tmp_path)
    yield name, marker
    sys.modules.pop(name, None)


def _checkpoint_naming(tmp_path: Path, blocks: dict[str, str]) -> Path:
    """A valid strabench checkpoint (it passes weights_only) whose config names ``blocks``."""
    from strabench.registry import create_model
    from strabench.train.checkpoint import save_checkpoint
    from strabench.train.config import TrainConfig, config_to_dict, resolve

    cfg = resolve(TrainConfig(model=MODEL, task="reid", data="synthetic_reid", input_size=(32, 16), device="cpu"))
    config = {**config_to_dict(cfg), "model_overrides": {"replace": blocks}}
    model = create_model(MODEL, task="reid", num_classes=4)
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    save_checkpoint(path, {"model": model.state_dict(), "config": config, "epoch": 1}, config_hash="0" * 12)
    return path


def test_control_the_payload_module_runs_when_strabench_is_told_to_import_it(payload) -> None:
    """What the command line may do (it is trusted): naming the block imports it. Without this,
    the tests below could pass because the payload is inert."""
    from strabench.models.blocks import resolve_block

    name, marker = payload
    resolve_block(f"{name}:Block")
    assert marker.exists()


def test_eval_never_imports_a_block_its_checkpoint_names(tmp_path: Path, payload) -> None:
    name, marker = payload
    checkpoint = _checkpoint_naming(tmp_path, {PATTERN: f"{name}:Block"})
    result = invoke(["eval", MODEL, "--checkpoint", checkpoint, "--device", "cpu"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, "checkpoint.pt", "never imports code", f"--replace '{PATTERN}={name}:Block'", strict=True)
    assert not marker.exists()


@pytest.mark.parametrize("given", [None, {PATTERN: "stra"}], ids=["file_only", "other_blocks_given"])
def test_the_loader_behind_viz_bench_and_export_never_imports_a_block_its_checkpoint_names(tmp_path: Path, payload, given) -> None:
    from strabench.errors import CheckpointError
    from strabench.train.saved import model_from_checkpoint

    name, marker = payload
    checkpoint = _checkpoint_naming(tmp_path, {PATTERN: f"{name}:Block"})
    with pytest.raises(CheckpointError, match="checkpoint.pt") as info:
        model_from_checkpoint(MODEL, checkpoint, (32, 16), given)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_registry_blocks_a_checkpoint_names_are_used_and_a_user_block_given_on_the_command_line_is_checked(tmp_path: Path, payload) -> None:
    """The other side of the boundary: registry block names are data strabench can follow, and
    the user's own block, repeated on the command line, is the user's decision."""
    from strabench.errors import CheckpointError
    from strabench.train.trusted import build_options

    name, marker = payload
    assert build_options({"replace": {PATTERN: "stra"}, "groups": 4}, None, "f") == {"replace": {PATTERN: "stra"}, "groups": 4}
    for packaged in ("stra(groups=4)", "timm-attn:bottleneck", "se"):  # registry names with settings, a block source
        assert build_options({"replace": {PATTERN: packaged}}, None, "f") == {"replace": {PATTERN: packaged}}
    for code in (f"{name}:Block", f"{name}:Block(x=1)", f"timm_attn.x:{name}"):  # anything else names code
        with pytest.raises(CheckpointError, match="names user code"):
            build_options({"replace": {PATTERN: code}}, None, "f")
    mine = {PATTERN: f"{name}:Block"}
    assert build_options({"replace": mine}, {"replace": mine}, "f")["replace"] == mine
    with pytest.raises(CheckpointError, match="was trained with"):
        build_options({"replace": mine}, {"replace": {PATTERN: f"{name}:Other"}}, "f")
    with pytest.raises(CheckpointError, match="was trained with no --replace"):
        build_options({}, {"replace": {PATTERN: "stra"}}, "f")
    assert build_options(None, {"replace": mine}, "plain state_dict") == {"replace": mine}  # nothing to check against
    assert not marker.exists()


def test_report_and_status_never_import_code_a_results_folder_names(tmp_path: Path, payload) -> None:
    name, marker = payload
    suite_dir = tmp_path / "results" / "evil"
    run_dir = suite_dir / f"v-s0-{'a' * 12}"
    run_dir.mkdir(parents=True)
    identity = {"suite": "evil", "variant": "v", "model": f"{name}:build", "seed": 0, "hash": "a" * 12, "run_id": run_dir.name,
                "measure": {"params": True, "macs": ["paper"], "input": [32, 16], "latency": None, "accuracy": True}}
    (run_dir / "run.json").write_text(json.dumps(identity))
    (run_dir / "config.toml").write_text(f'model = "{name}:build"\ntask = "reid"\n[model_overrides.replace]\n"{PATTERN}" = "{name}:Block"\n')
    (run_dir / "result.json").write_text(json.dumps({"status": "finished", "model": f"{name}:build", "metrics": {"mAP": 1.0}}))
    (run_dir / "measure.json").write_text(json.dumps({"params": 5, "macs": {"paper": 7}, "input": [3, 32, 16]}))
    (suite_dir / "plan.json").write_text(json.dumps({"suite": {"name": "evil"}, "runs": [identity]}))
    for argv in (["report", suite_dir, "--no-plots"], ["report", suite_dir, "--json"], ["status", suite_dir]):
        result = invoke(argv)
        no_exception(result)
        assert result.exit_code == 0, result.stderr
    assert not marker.exists()


# --- job files -------------------------------------------------------------------------------------

JOBS_SUITE = """\
name = "jobs"
data = "synthetic_reid"
seeds = [0]
[train.quick]
epochs = 2
[measure]
params = false
macs = false
accuracy = true
[[variants]]
name = "a"
model = "resnet50"
[[variants]]
name = "b"
model = "resnet50_stra"
"""


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def test_control_a_swapped_job_file_would_run_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.timeout(240)
def test_jobs_workers_never_unpickle_a_file_of_the_results_folder(tmp_path: Path) -> None:
    """A process that can write the results folder swaps every job file the moment it appears
    (what it could do to `<suite>/.jobs/*.pkl` before): the workers must never run it."""
    marker = tmp_path / "PWNED"
    suite = tmp_path / "jobs.toml"
    suite.write_text(JOBS_SUITE)
    out = tmp_path / "out"
    evil = pickle.dumps(_Payload(marker))
    done = threading.Event()
    swapped: list[str] = []

    def swap() -> None:
        while not done.is_set():
            for path in out.rglob("*"):
                if path.is_file() and (path.suffix in (".pkl", ".pickle") or path.read_bytes()[:1] == b"\x80") and path.name not in swapped:
                    path.write_bytes(evil)
                    swapped.append(path.name)
            done.wait(0.005)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        result = subprocess.run(fake_cli_argv(0.0, "run", suite, "--out", out, "--jobs", "2"), cwd=tmp_path,
                                env=fake_env(child_env()), capture_output=True, text=True, timeout=180)
    finally:
        done.set()
        thread.join(timeout=10)
    assert not marker.exists(), f"a worker ran a job file it read from the results folder: {swapped}"
    assert result.returncode == 0, result.stdout + result.stderr
    assert swapped == [] and not (out / "jobs" / ".jobs").exists()
    assert [r["status"] for r in read_csv(out / "jobs" / "results.csv")] == ["finished", "finished"]


def _pickles_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.read_bytes()[:1] == b"\x80")


@pytest.mark.timeout(240)
def test_submitit_keeps_its_pickles_in_a_private_folder_outside_the_results_folder(tmp_path: Path, monkeypatch) -> None:
    from suite.fakes import FakeEngine  # tests/ is on the path of the submitit job (fake_env)

    from strabench.suite.config import load_suite
    from strabench.suite.executors import follow, submit_jobs
    from strabench.suite.jobfiles import suite_jobs_dir, sweep_job_files
    from strabench.suite.runner import plan_runs

    monkeypatch.setenv("PYTHONPATH", fake_env(dict(os.environ))["PYTHONPATH"])
    monkeypatch.setenv("STRABENCH_JOBS_DIR", str(tmp_path / "private" / "jobs"))
    (tmp_path / "private").mkdir(mode=0o700)
    suite = tmp_path / "jobs.toml"
    suite.write_text(JOBS_SUITE.replace('[[variants]]\nname = "b"\nmodel = "resnet50_stra"\n', ""))
    plan = plan_runs(load_suite(suite), tmp_path / "out", check_models=False)
    submitted, _ = submit_jobs(plan, {}, cluster="local", fit=FakeEngine())
    rows = follow(plan, [s.run_id for s in plan.selected], lambda rows: None, jobs=[job for _, job in submitted], poll_s=0.2)
    assert [r["state"] for r in rows] == ["finished"]
    folder = suite_jobs_dir(plan.out_dir, plan.suite.name)
    assert _pickles_under(folder), "submitit's job pickles should be in the private job folder"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    assert _pickles_under(plan.out_dir) == [] and not (plan.out_dir / ".submitit").exists()
    assert sweep_job_files(plan, min_age_s=0) == [folder]  # a finished suite's job files are swept
    assert not folder.exists()


@pytest.mark.parametrize("kind", ["open_to_others", "symlink", "other_parent"])
def test_a_job_folder_others_could_write_is_refused_in_one_line(tmp_path: Path, monkeypatch, kind: str) -> None:
    from strabench.errors import ConfigError
    from strabench.suite.jobfiles import submitit_folder

    root = tmp_path / "jobs"
    if kind == "open_to_others":
        root.mkdir(mode=0o700)
        root.chmod(0o755)  # others may read (and so copy) the pickled jobs: not private
    elif kind == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        root.symlink_to(tmp_path / "elsewhere")
    else:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # writable by all, not sticky: they could rename our folder away
        root = shared / "jobs"
    monkeypatch.setenv("STRABENCH_JOBS_DIR", str(root))
    with pytest.raises(ConfigError, match="STRABENCH_JOBS_DIR") as info:
        submitit_folder(tmp_path / "out" / "s", "s")
    assert "\n" not in str(info.value)


def test_the_job_folder_and_its_missing_parents_are_created_private_whatever_the_umask(tmp_path: Path, monkeypatch) -> None:
    from strabench.suite.jobfiles import submitit_folder

    monkeypatch.setenv("STRABENCH_JOBS_DIR", str(tmp_path / "state" / "strabench" / "jobs"))
    previous = os.umask(0o002)  # group-writable by default, as with user private groups
    try:
        folder = submitit_folder(tmp_path / "out" / "s", "s")
    finally:
        os.umask(previous)
    for path in (folder, folder.parent, folder.parent.parent, folder.parent.parent.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
