"""The layer4 profile's per-part timing pass labels the parts without changing what runs."""


from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from strabench.layers import _local_kernel
from strabench.layers.kernels import fuse_for_inference
from strabench.layers.stra import StRA

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"


def _bench_models():
    spec = importlib.util.spec_from_file_location("bench_models", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2 = StRA(32, groups=4)

    def forward(self, x):
        return self.conv2(x)


@pytest.mark.requires_kernels
def test_labelled_parts_run_their_fused_paths(monkeypatch) -> None:
    calls = []
    for name in ("local_attention_infer", "mode_attention_forward"):
        real = getattr(_local_kernel, name)

        def spy(*args, real=real, name=name):
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(_local_kernel, name, spy)
    layer4 = torch.nn.Sequential(_Block(), _Block()).eval()
    fuse_for_inference(layer4)
    x = torch.randn(1, 32, 6, 4)
    with torch.inference_mode():
        want = layer4(x)
    calls.clear()
    out = []

    def run() -> None:
        with torch.inference_mode():  # as the profile's inference step
            out.append(layer4(x))

    times = _bench_models()._module_times(layer4, run)
    assert set(times) == {"conv2", "conv2.local", "conv2.mode"}
    assert all(t > 0 for t in times.values())
    assert sorted(calls) == sorted(["local_attention_infer", "mode_attention_forward"] * 2)
    torch.testing.assert_close(out[0], want)
    assert all("forward" not in m.__dict__ for m in layer4.modules())  # the wrappers are gone
