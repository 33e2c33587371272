"""One line, everywhere: your code failing, the machine lacking something, a damaged run file.

A model or block given by reference (``package.module:callable``) is the user's code; whatever
it raises -- while importing, building, in a block's constructor or forward, in the probe that
sizes a feature extractor, during training -- is one line naming the reference and the line of
the user's file that raised (``strabench.usercode``), exit 2, never a traceback. The probe runs
at the model's declared input (``--input``, ``default_input``), so a model that takes only its
own size trains. Out of memory on the CPU in ``bench``, ``--runtime compile`` without a C++
compiler and ``status`` over a run file with an unknown key are one line (or no error) too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import assert_error_reported, assert_one_line_error, child_env, invoke, no_exception, tiny_train_args

USER_CODE = '''
from torch import nn

class OwnSize(nn.Module):
    """Takes 32x16 images only (a model with a fixed head, say)."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
    def forward(self, x):
        if tuple(x.shape[-2:]) != (32, 16):
            raise ValueError(f"only 32x16, got {tuple(x.shape[-2:])}")
        return self.conv(x)

def own_size():
    return OwnSize()

def declares_on_module():
    model = OwnSize()
    model.default_input = (3, 32, 16)
    return model

def broken():
    return 1 / 0

class BadInit(nn.Module):
    block_kind = "replace"
    def __init__(self, channels, *, stride=1):
        super().__init__()
        raise KeyError("no such setting")

def not_a_module(channels, *, stride=1):
    return 42

class NotAModule:
    block_kind = "replace"
    def __init__(self, channels, *, stride=1):
        pass

class BadForward(nn.Module):
    block_kind = "replace"
    def __init__(self, channels, *, stride=1):
        super().__init__()
    def forward(self, x):
        return {}["missing"]

class FailsInTraining(OwnSize):
    def forward(self, x):
        if self.training:
            raise RuntimeError("broken in training")
        return super().forward(x)

def fails_in_training():
    return FailsInTraining()
'''


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """The module above (and one that fails to import) in the working directory, fresh per test."""
    name = f"mine_{abs(hash(request.node.nodeid)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(USER_CODE)
    (tmp_path / f"{name}_bad.py").write_text("raise RuntimeError('fails at import')\n")
    monkeypatch.chdir(tmp_path)
    yield name
    for module in (name, f"{name}_bad"):
        sys.modules.pop(module, None)


@pytest.mark.parametrize("argv,expected", [
    (["flops", "{m}:broken", "--input", "8x8"], ["{m}:broken", "ZeroDivisionError", "{m}.py:"]),
    (["flops", "{m}_bad:anything", "--input", "8x8"], ["{m}_bad:anything", "RuntimeError: fails at import", "{m}_bad.py:1"]),
    (["flops", "resnet50", "--replace", "layer4.*.conv2={m}:BadInit"], ["{m}:BadInit", "layer4.0.conv2", "KeyError", "{m}.py:"]),
    (["flops", "resnet50", "--replace", "layer4.*.conv2={m}:NotAModule"], ["{m}:NotAModule", "not a torch.nn.Module"]),
    (["flops", "resnet50", "--replace", "layer4.*.conv2={m}:not_a_module"], ["{m}:not_a_module", "names no class"]),
    (["flops", "resnet50", "--replace", "layer4.*.conv2={m}:BadForward"], ["{m}:BadForward", "forward", "KeyError", "{m}.py:"]),
], ids=["callable_raises", "import_raises", "block_init_raises", "block_not_a_module", "block_function", "block_forward_raises"])
def test_user_code_that_fails_is_one_line_naming_it(user_code: str, argv: list[str], expected: list[str]) -> None:
    result = invoke([a.format(m=user_code) for a in argv])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_one_line_error(result.stderr, *(e.format(m=user_code) for e in expected), strict=True)


def test_user_model_failing_in_a_training_step_is_one_line_naming_it(user_code: str, tmp_path: Path) -> None:
    result = invoke(["train", f"{user_code}:fails_in_training", "--task", "reid", *tiny_train_args(1), "--out", tmp_path / "run"])
    no_exception(result)
    assert result.exit_code == 2, result.stderr
    assert_error_reported(result.stderr, f"{user_code}:fails_in_training raised RuntimeError: broken in training", f"{user_code}.py:")


def test_a_model_that_takes_only_its_own_size_is_probed_at_the_declared_input(user_code: str, tmp_path: Path) -> None:
    from strabench.registry import create_model

    result = invoke(["train", f"{user_code}:own_size", "--task", "reid", *tiny_train_args(1), "--out", tmp_path / "run", "--json"])
    no_exception(result)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "finished"
    assert create_model(f"{user_code}:declares_on_module", task="reid", num_classes=3).feature_dim == 8
    from strabench.errors import UserCodeError

    with pytest.raises(UserCodeError, match=r"feature probe at input 3x64x64.*declare it") as info:
        create_model(f"{user_code}:own_size", task="reid", num_classes=3)  # nothing declared: the fallback, said plainly
    assert "\n" not in str(info.value)


def test_status_over_a_run_file_with_an_unknown_key_or_markup_is_shown(tmp_path: Path) -> None:
    suite_dir = tmp_path / "s"
    run = suite_dir / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"variant": "a", "run_id": "r1", "measure": {"params": True, "latency": {"bogus": 1}}}))
    (run / "state.json").write_text(json.dumps({"state": "running", "reason": "[/bold] \x1b[31m", "job_id": [1]}))
    other = suite_dir / "r2"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"variant": "b", "run_id": "r2", "measure": {"macs": 5}}))
    for plan in ({"runs": 5}, {"runs": [{"run_id": "r3", "variant": "c", "measure": {"latency": {"bogus": 1}}}]}):
        (suite_dir / "plan.json").write_text(json.dumps(plan))
        for argv in (["status", suite_dir], ["status", suite_dir, "--json"]):
            result = invoke(argv)
            no_exception(result)
            assert result.exit_code == 0, result.stderr
    assert {r["run_id"] for r in json.loads(result.stdout)} == {"r1", "r2", "r3"}


DRIVER = """
import resource, sys
import torch, strabench.cli
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
limit = vm + 1500 * 2**20  # what is mapped now (torch loaded) plus 1.5 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
strabench.cli.main(sys.argv[1:])
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc to size the memory limit")
@pytest.mark.timeout(300)
def test_bench_out_of_cpu_memory_even_at_batch_1_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", DRIVER, "bench", "resnet50", "--input", "4096x4096", "--batch", "2",
                             "--rounds", "1", "--device", "cpu"], cwd=tmp_path, env=child_env(), capture_output=True,
                            text=True, timeout=280)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_error_reported(result.stderr, "resnet50 does not fit in cpu memory even at batch 1", "4096x4096", "can't allocate memory")


@pytest.mark.timeout(300)
def test_runtime_compile_without_a_cxx_compiler_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "onelayer.py").write_text("from torch import nn\n\ndef build():\n    return nn.Conv2d(3, 4, 3)\n")
    env = {**child_env(), "PATH": str(Path(sys.executable).parent)}  # python, and no compiler
    env.pop("CXX", None)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")  # nothing compiled earlier to reuse
    result = subprocess.run([sys.executable, "-m", "strabench", "bench", "onelayer:build", "--input", "8x8", "--batch", "1",
                             "--rounds", "1", "--runtime", "compile", "--device", "cpu"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_error_reported(result.stderr, "--runtime compile needs a working C++ compiler", "--runtime eager")
