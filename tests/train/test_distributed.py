"""DDP on CPU: two gloo processes under torchrun train a tiny config; rank 0 alone writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from strabench.io import read_jsonl
from strabench.train.distributed import DistContext, init_distributed


def test_single_process_context_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    assert ctx.any_rank(True) is True and ctx.broadcast_object({"a": 1}) == {"a": 1}
    ctx.barrier()
    assert isinstance(ctx, DistContext)


def test_torchrun_two_gloo_processes(tmp_path):
    """2 epochs, the first with stages 1-4 frozen (App. B.1), so DDP's re-wrap on unfreezing runs too."""
    import torch

    from strabench.registry import create_model

    weights = tmp_path / "pretrained.pth"
    torch.save(create_model("resnet50_stra", num_classes=4, layers=(1, 1, 1, 1), feature_dim=32).state_dict(), weights)
    out = tmp_path / "run"
    sets = [
        "model_overrides={layers=[1,1,1,1], feature_dim=32}",
        "data_sizes={num_train_ids=4, train_images_per_id=4, num_test_ids=3, query_cams_per_id=1, "
        "gallery_images_per_id=2, num_distractors=2, num_junk=1, height=32, width=16}",
        "warmup_epochs=0.0",
    ]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "strabench", "train", "resnet50_stra", "--task", "reid", "--data", "synthetic_reid",
        "--epochs", "2", "--batch", "8", "--input", "16x16", "--device", "cpu", "--workers", "0",
        "--pretrained", str(weights), "--set", "freeze_epochs=1", "--out", str(out), "--json",
    ]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and result["world_size"] == 2
    # Only rank 0 printed the result and logged the epoch.
    assert proc.stdout.count('"status": "finished"') == 1
    records = read_jsonl(out / "metrics.jsonl").records
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["frozen"] for r in records] == [True, False]
    # 16 training images, global batch 8 = 4 per rank: 2 steps per rank, 16 images in all.
    assert records[0]["steps"] == 2
    assert records[0]["images_per_s"] * records[0]["time_s"] == pytest.approx(16)
    assert not (out / ".lock").exists()
