"""The optimisers: fused on CPU, each step the textbook update (float64 loops), a resumed optimiser
steps as the uninterrupted one, and a checkpoint of the other implementation resumes."""

from __future__ import annotations

import math

import pytest
import torch

from strabench.optim import build_optimizer, set_impl

STEPS = 4


def _params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in ((7, 5), (5,), (3, 2, 2))]


def _grads(step: int, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=gen) for p in params]


def _adam_reference(w: list[float], grads: list[list[float]], lr: float, wd: float, b1=0.9, b2=0.999, eps=1e-8) -> list[float]:
    """Kingma & Ba's Adam with L2 weight decay added to the gradient (torch's ``Adam``), element by element."""
    m, v = [0.0] * len(w), [0.0] * len(w)
    for t, g in enumerate(grads, 1):
        for i in range(len(w)):
            gi = g[i] + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            w[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return w


def _sgd_reference(w: list[float], grads: list[list[float]], lr: float, wd: float, momentum: float) -> list[float]:
    """SGD with momentum (the buffer starts at the first gradient) and L2 weight decay, element by element."""
    buf: list[float] | None = None
    for g in grads:
        d = [g[i] + wd * w[i] for i in range(len(w))]
        buf = d if buf is None else [momentum * buf[i] + d[i] for i in range(len(w))]
        w = [w[i] - lr * buf[i] for i in range(len(w))]
    return w


def _flat(tensors) -> list[float]:
    return [float(x) for t in tensors for x in t.detach().flatten().tolist()]


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_cpu_parameters_get_the_fused_kernel_and_each_step_is_the_textbook_update(name: str) -> None:
    params = _params()
    start = _flat(params)
    hyper = {"lr": 0.01, "weight_decay": 0.05, **({"momentum": 0.9} if name == "sgd" else {})}
    optimizer, impl = build_optimizer(name, params, **hyper)
    assert impl == "fused" and all(group["fused"] for group in optimizer.param_groups)
    grads = []
    for step in range(STEPS):
        for p, g in zip(params, _grads(step, params)):
            p.grad = g
        grads.append(_flat(p.grad for p in params))
        optimizer.step()
    if name == "adam":
        want = _adam_reference(start, grads, lr=0.01, wd=0.05)
    else:
        want = _sgd_reference(start, grads, lr=0.01, wd=0.05, momentum=0.9)
    assert _flat(params) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_parameters_without_a_fused_kernel_get_the_for_loop_implementation() -> None:
    with torch.device("meta"):
        _, impl = build_optimizer("adam", [torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    assert impl == "for-loop"
    _, impl = build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))], lr=0.1)
    assert impl == "for-loop"


def _train(optimizer: torch.optim.Optimizer, params, steps: range) -> None:
    for step in steps:
        for p, g in zip(params, _grads(step, params)):
            p.grad = g
        optimizer.step()


@pytest.mark.parametrize("saved_by", ["fused", "for-loop"])
def test_a_resumed_optimizer_runs_fused_and_steps_like_the_uninterrupted_one(saved_by: str) -> None:
    # uninterrupted, fused: the reference
    straight = _params()
    optimizer, _ = build_optimizer("adam", straight, lr=0.01)
    _train(optimizer, straight, range(STEPS))
    # the first half by ``saved_by``, its state saved; the second half by a new fused optimizer
    first = _params()
    if saved_by == "fused":
        before, _ = build_optimizer("adam", first, lr=0.01)
    else:
        before = torch.optim.Adam(first, lr=0.01)
    _train(before, first, range(STEPS // 2))
    state = before.state_dict()
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    after, impl = build_optimizer("adam", resumed, lr=0.01)
    after.load_state_dict(state)
    set_impl(after, impl)
    assert all(group["fused"] for group in after.param_groups)
    _train(after, resumed, range(STEPS // 2, STEPS))
    if saved_by == "fused":  # the same kernels all the way: bit for bit
        assert all(torch.equal(a, b) for a, b in zip(resumed, straight))
    else:  # the first half's rounding differs
        assert _flat(resumed) == pytest.approx(_flat(straight), rel=1e-5, abs=1e-6)
