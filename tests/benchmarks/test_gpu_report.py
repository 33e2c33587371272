"""benchmarks/gpu.sh: the smoke run writes every section from real step outputs; bad input is one
line and exit 2; a hung step is stopped and reported, not waited for."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu.sh"
SECTIONS = (
    "## Machine",
    "## Steps",
    "## ReID ResNet-50 variants vs resnet50 (`strabench bench`)",
    "### Inference (eval, inference_mode)",
    "### Train step (forward, CE + aux losses, backward, SGD)",
    "## LocalAttention block vs the 3x3 conv it replaces (`benchmarks/local_attention.py`)",
    "## Training: resnet50_stra, quick profile, AMP bf16 (`strabench train`)",
    "## Commands",
)


@pytest.fixture()
def gpu_report(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("gpu_report")


def _cells(text: str, first: str) -> list[str]:
    """The cells after ``first`` of the first markdown table row that starts with it (commas dropped)."""
    row = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip().replace(",", "") for c in row.strip("|").split("|")][1:]


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_run_writes_every_section_from_the_step_outputs(tmp_path):
    done = _run("--device", "cpu", "--smoke", "--out", str(tmp_path), timeout=600)  # 40 s idle; CI runs it beside the compile tests
    assert done.returncode == 0, done.stderr[-3000:]
    (md,) = tmp_path.glob("*.md")
    raw = json.loads(md.with_suffix(".json").read_text())
    text = md.read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "not measured" not in text and "Not completed" not in text
    steps = {s["key"]: s for s in raw["steps"]}
    assert [s["status"] for s in raw["steps"]] == ["ok"] * 7
    # bench: both models in every run, the baseline's ratio 1, a peak memory per row
    for key in ("bench-infer-fp32", "bench-infer-bf16+channels_last", "bench-train-fp32", "bench-train-bf16+channels_last"):
        rows = {r["model"]: r for r in steps[key]["result"]}
        assert set(rows) == {"resnet50", "resnet50_stra"}
        assert rows["resnet50"]["ratio_to_baseline"] == 1.0 and rows["resnet50_stra"]["ratio_to_baseline"] > 0
        assert all(r["peak_mem_mb"] is not None for r in rows.values())
        assert (rows["resnet50"]["amp"], rows["resnet50"]["channels_last"]) == (
            ("bf16", True) if "bf16" in key else ("none", False))
    # the tables carry the JSON's numbers: train step, fp32 ms and ratio of resnet50_stra
    stra = next(r for r in steps["bench-train-fp32"]["result"] if r["model"] == "resnet50_stra")
    train_table = text.split("### Train step")[1]
    cells = _cells(train_table, "resnet50_stra")
    assert float(cells[0].split(" (")[0]) == pytest.approx(stra["median_ms"], rel=0.01)
    assert float(cells[2]) == pytest.approx(stra["ratio_to_baseline"], abs=0.001)
    # LocalAttention: the file's JSON keys are unchanged, the new switches recorded in its config
    la = steps["local-attention-bf16+channels_last"]["result"]
    assert set(la) == {"machine", "config", "results", "ratios", "ratios_of_min", "targets"}
    assert (la["config"]["device"], la["config"]["amp"], la["config"]["memory_format"]) == ("cpu", "bf16 autocast", "channels_last")
    fp32, bf16 = (float(c) for c in _cells(text, "fast_vs_conv_fwdbwd"))
    assert fp32 == pytest.approx(steps["local-attention-fp32"]["result"]["ratios"]["fast_vs_conv_fwdbwd"], rel=0.01)
    assert bf16 == pytest.approx(la["ratios"]["fast_vs_conv_fwdbwd"], rel=0.01)
    # training: it ran in bf16, its epochs and peak memory were read back
    train = steps["train-quick-bf16"]
    assert train["result"]["amp"] == "bfloat16" and train["result"]["status"] == "finished"
    assert len(train["epochs"]) == 1 and train["epochs"][0]["images_per_s"] > 0
    assert train["peak_memory"]["max_rss_mb"] > 0
    assert str(tmp_path) not in json.dumps(train)  # the temporary run folder is not recorded
    # a second run refuses to replace the report
    again = _run("--device", "cpu", "--smoke", "--out", str(tmp_path), timeout=60)
    assert again.returncode == 2 and "--overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    done = _run("--device", "cuda", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2
    assert "no CUDA GPU is available" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
    la = subprocess.run([sys.executable, str(REPO / "benchmarks" / "local_attention.py"), "--device", "cuda"],
                        capture_output=True, text=True, timeout=60)
    assert la.returncode == 2 and "no CUDA GPU" in la.stderr


def test_missing_python_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([str(SCRIPT), "--device", "cpu"], env={**os.environ, "PYTHON": str(tmp_path / "nope")},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "make venv" in done.stderr


def test_slug_names_the_device(gpu_report):
    slug = gpu_report.slug
    assert slug("NVIDIA H200") == "nvidia-h200"
    assert slug("AMD EPYC 7B13 64-Core Processor") == "amd-epyc-7b13-64-core-processor"
    assert slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon-cpu-2-20ghz"
    assert slug("  ") == "unknown-device"


def test_a_hung_step_is_stopped_at_its_limit_and_reported(gpu_report):
    step = gpu_report.Step("hang", "a step that hangs", "bench", (sys.executable, "-c", "import time; time.sleep(60)"),
                           "sleep 60", timeout_s=1)
    record = gpu_report.run_step(step, 1.0, log=io.StringIO())
    assert record["status"] == "timed out" and record["elapsed_s"] < 10
    failing = gpu_report.Step("fail", "a step that fails", "bench",
                              (sys.executable, "-c", "import sys; sys.exit('boom: bad thing')"), "fail", timeout_s=30)
    record = gpu_report.run_step(failing, 30.0, log=io.StringIO())
    assert record["status"] == "failed" and "boom: bad thing" in record["error"]


def test_a_failed_step_shows_in_its_section(gpu_report):
    from gpu_report_render import render

    steps = [{"key": "bench-infer-fp32", "title": "bench infer, fp32", "kind": "bench", "command": "strabench bench ...",
              "status": "timed out", "elapsed_s": 150.0, "error": "stopped after 150 s (step limit)"},
             {"key": "train-quick-bf16", "title": "train", "kind": "train", "command": "strabench train ...",
              "status": "skipped", "elapsed_s": 0.0, "error": "budget of 470 s spent"}]
    env = {"device_name": "NVIDIA H200", "gpu_memory_gib": 139.8, "compute_capability": "9.0", "multiprocessors": 132,
           "gpu_count": 1, "driver": None, "cuda": "13.0", "cudnn": 91000, "torch": "2.x", "python": "3.11",
           "cpu": "CPU", "cpu_count": 16, "ram_gib": 128, "platform": "Linux", "loadavg_1m": 0.1, "niceness": 0,
           "git_commit": "abc", "git_dirty": False, "strabench": "0.1.0"}
    report = {"device": "cuda", "profile": {"name": "cuda"}, "budget_s": 470, "invocation": "benchmarks/gpu.sh",
              "started_utc": "t0", "finished_utc": "t1", "total_s": 150.0, "environment": env, "steps": steps}
    text = render(report, "nvidia-h200.json")
    assert "# strabench on NVIDIA H200" in text and "139.8 GiB, compute capability 9.0" in text
    assert "**fp32 not measured** (timed out: stopped after 150 s (step limit))" in text
    assert "**Not completed** (skipped: budget of 470 s spent)" in text
    assert "unknown (no nvidia-smi)" in text
