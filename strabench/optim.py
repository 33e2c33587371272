"""The optimisers of training and of the benchmarks' train step, built one way.

Each uses torch's fused kernel for CPU and CUDA parameters of a floating-point dtype: one pass
over each tensor per step instead of a dozen element-wise ops, several times faster on a CPU for
a ResNet-50's 25-68 M parameters. Elsewhere torch's default (for-loop) implementation runs. The
two agree to rounding (a float32 ulp or so per step), not bit for bit, so a run records which one
it used (``optimizer_impl`` in its env.json).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch has fused Adam and SGD kernels for more devices; these two are the ones strabench runs
# on and tests (torch checks only at the first step, so the choice is made here, up front)
FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(name: str, params: "Iterable[torch.nn.Parameter]", **hyper: Any) -> "tuple[torch.optim.Optimizer, str]":
    """torch's ``name`` optimiser ("adam" or "sgd") over ``params`` with ``hyper``; and its
    implementation, "fused" or "for-loop"."""
    import torch

    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name]
    params = list(params)
    if params and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params):
        return cls(params, fused=True, **hyper), "fused"
    return cls(params, **hyper), "for-loop"


def set_impl(optimizer: "torch.optim.Optimizer", impl: str) -> None:
    """Run ``optimizer`` with ``impl`` again after ``load_state_dict``, which brings back the saved
    groups' settings: a checkpoint written by another implementation (or on another device)
    resumes with the one this process chose."""
    import torch

    fused = impl == "fused"
    for group in optimizer.param_groups:
        group["fused"] = fused
        if fused:
            group["foreach"] = None
            for p in group["params"]:  # the fused kernels take each step count on its parameter's device
                step = optimizer.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor):
                    optimizer.state[p]["step"] = step.to(device=p.device, dtype=torch.float32)
