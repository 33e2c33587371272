"""The fused C kernel of the local weighted sum: same values and gradients as a float64 loop
reference, chosen where it applies, and a clear fallback where it cannot be built."""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor

import paper_reference
from strabench.layers import _kernel_cache, _local_kernel, ops
from strabench.layers._local_ops import local_weighted_sum
from strabench.layers.local_attention import LocalAttention
from strabench.measure.traffic import count_bytes, tensor_bytes

pytestmark = pytest.mark.requires_kernels


def _inputs(b: int, c: int, g: int, k: int, h: int, w: int, dtype: torch.dtype, channels_last: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    attn = torch.rand(b, g, k * k, h, w, generator=gen, dtype=dtype).requires_grad_()
    value = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    if channels_last:
        value = value.contiguous(memory_format=torch.channels_last)
    return attn, value.requires_grad_()


def _value_and_grads(fn, attn: Tensor, value: Tensor, proj: Tensor) -> list[Tensor]:
    out = fn(attn, value)
    return [out, *torch.autograd.grad(out, [attn, value], proj)]


class _Spy:
    """Counts the fused kernel's forward and backward calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("forward", "backward"):
            real = getattr(_local_kernel, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                self.calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(_local_kernel, name, spy)


CASES = [  # (B, C, G, K, H, W): K = 1, 3 (its own code path), 5, 7; maps smaller than the window
    (2, 16, 4, 3, 5, 7), (1, 8, 8, 3, 1, 1), (3, 12, 3, 3, 2, 9), (2, 64, 8, 3, 16, 8), (1, 6, 2, 3, 3, 1),
    (2, 8, 2, 1, 4, 3), (2, 8, 4, 5, 4, 6), (1, 4, 1, 5, 2, 2), (1, 6, 3, 7, 5, 3), (2, 10, 5, 3, 6, 6),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("b", "c", "g", "k", "h", "w"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_the_loop_reference(b, c, g, k, h, w, dtype, channels_last, monkeypatch) -> None:
    spy = _Spy(monkeypatch)
    attn, value = _inputs(b, c, g, k, h, w, dtype, channels_last)
    proj = torch.randn(b, c, h, w, dtype=dtype)
    got = _value_and_grads(lambda a, v: local_weighted_sum(a, v, k, 1, kernel="fused"), attn, value, proj)
    assert spy.calls == ["forward", "backward"]
    a64, v64 = attn.detach().double().requires_grad_(), value.detach().double().requires_grad_()
    want = _value_and_grads(lambda a, v: paper_reference.weighted_sum_loops(a, v, k, 1), a64, v64, proj.double())
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for name, x, y in zip(("out", "d attn", "d value"), got, want):
        torch.testing.assert_close(x.double(), y, atol=tol, rtol=tol, msg=lambda m, n=name: f"{n}: {m}")
    fmt = torch.channels_last if channels_last and not value.is_contiguous() else torch.contiguous_format
    assert got[0].is_contiguous(memory_format=fmt) and got[2].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_gradcheck_float64(channels_last: bool) -> None:
    attn, value = _inputs(2, 6, 3, 3, 4, 5, torch.float64, channels_last)
    assert torch.autograd.gradcheck(lambda a, v: local_weighted_sum(a, v, 3, 1, kernel="fused"), (attn, value))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("needs", [(True, False), (False, True)])
def test_fused_backward_computes_only_what_is_needed(channels_last: bool, needs: tuple[bool, bool]) -> None:
    attn, value = _inputs(2, 16, 4, 3, 5, 6, torch.float64, channels_last)
    attn.requires_grad_(needs[0])
    value.requires_grad_(needs[1])
    out = local_weighted_sum(attn, value, 3, 1, kernel="fused")
    proj = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, [attn if needs[0] else value], proj)
    a64, v64 = attn.detach().requires_grad_(), value.detach().requires_grad_()
    ref = paper_reference.weighted_sum_loops(a64, v64, 3, 1)
    (want,) = torch.autograd.grad(ref, [a64 if needs[0] else v64], proj)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_gives_the_same_bits_on_any_thread_count(channels_last: bool) -> None:
    attn, value = _inputs(4, 64, 8, 3, 16, 8, torch.float32, channels_last)
    proj = torch.randn(4, 64, 16, 8)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_value_and_grads(lambda a, v: local_weighted_sum(a, v, 3, 1, kernel="fused"), attn, value, proj))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for x, y in zip(results[0], other):
            assert torch.equal(x, y)


def _forward_in_child(queue) -> None:
    torch.set_num_threads(1)  # as torch does in DataLoader workers
    attn, value = _inputs(4, 64, 8, 3, 16, 8, torch.float32, False)
    queue.put(local_weighted_sum(attn, value, 3, 1, kernel="fused").sum().item())


def test_a_forked_single_thread_process_can_run_it() -> None:
    """After the parent ran the kernel on an OpenMP team, a forked child (a DataLoader worker)
    running one thread must not wait on the parent's team."""
    import multiprocessing as mp

    attn, value = _inputs(4, 64, 8, 3, 16, 8, torch.float32, False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        want = local_weighted_sum(attn, value, 3, 1, kernel="fused").sum().item()
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_forward_in_child, args=(queue,))
        child.start()
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
    finally:
        torch.set_num_threads(before)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == want


def test_empty_batch() -> None:
    attn, value = _inputs(0, 8, 2, 3, 4, 4, torch.float32, False)
    out = local_weighted_sum(attn, value, 3, 1, kernel="fused")
    assert out.shape == (0, 8, 4, 4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_auto_picks_the_fused_kernel_only_where_it_applies(channels_last: bool, monkeypatch) -> None:
    """In NCHW the block runs its attention operator (its own kernel), in channels_last this
    weighting's operator, observed or not; elsewhere the op-per-pass version."""
    spy = _Spy(monkeypatch)
    m = LocalAttention(16, groups=4)
    x = torch.randn(2, 16, 6, 5)
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    m(x.requires_grad_()).sum().backward()
    assert spy.calls == (["forward", "backward"] if channels_last else [])
    spy.calls.clear()
    m.register_forward_hook(lambda *_: None)  # observed: the same operators run
    m(x).sum().backward()
    assert spy.calls == (["forward", "backward"] if channels_last else [])
    spy.calls.clear()
    LocalAttention(16, groups=4, stride=2)(x).sum().backward()  # stride 2: the op-per-pass version
    LocalAttention(16, groups=4, impl="shifted")(x).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        LocalAttention(16, groups=4)(x).float().sum().backward()
    assert spy.calls == []


def test_fused_where_it_does_not_apply_is_refused() -> None:
    attn, value = _inputs(1, 8, 2, 3, 5, 5, torch.float32, False)
    with pytest.raises(ValueError, match="stride 2"):
        local_weighted_sum(attn[..., ::2, ::2].contiguous(), value, 3, 2, kernel="fused")
    with pytest.raises(ValueError, match="kernel must be one of"):
        local_weighted_sum(attn, value, 3, 1, kernel="fast")
    with pytest.raises(ValueError, match="stride 1 only"):
        LocalAttention(16, groups=4, stride=2, impl="fused")


@pytest.mark.parametrize("channels_last", [False, True])
def test_traffic_counts_the_fused_kernel(channels_last: bool) -> None:
    """The kernel is a dispatcher operator: the byte counter sees its tensors like any aten op's."""
    attn, value = _inputs(2, 16, 4, 3, 5, 6, torch.float32, channels_last)
    proj = torch.randn(2, 16, 5, 6)

    def step() -> None:
        torch.autograd.grad(local_weighted_sum(attn, value, 3, 1, kernel="fused"), [attn, value], proj)

    traffic = count_bytes(step)
    masked = 4 * 2 * 4 * 9 * 30  # float32 (B, G, K*K, H*W)
    act = tensor_bytes(value)
    assert traffic.by_op["local_weighted_sum"] == masked + 2 * act  # attention and value in, out written
    # backward reads the masked attention, value and grad_out, writes both gradients
    assert traffic.by_op["local_weighted_sum_backward"] == act + act + masked + masked + act


# --------------------------------------------------------------------------------------------
# building and loading


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """A loader with an empty cache of its own; the process's loaded kernel comes back afterwards."""
    monkeypatch.setenv("STRABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STRABENCH_KERNEL_CACHE", raising=False)  # the kernels under that cache too
    _local_kernel._forget()
    yield tmp_path
    _local_kernel._forget()


def test_an_unusable_cache_means_no_kernels_with_the_reason(fresh_loader, monkeypatch) -> None:
    (fresh_loader / "cache").write_text("a file where the cache folder should be")
    assert _local_kernel.status().startswith(
        f"op-per-pass: fused kernel unavailable: cannot create the kernel cache {fresh_loader / 'cache' / 'kernels'}: "
    )
    attn, value = _inputs(2, 8, 2, 3, 4, 5, torch.float32, False)
    torch.testing.assert_close(local_weighted_sum(attn, value, 3, 1),
                               paper_reference.weighted_sum_loops(attn, value, 3, 1), atol=1e-5, rtol=1e-5)


def test_no_compiler_falls_back_with_the_reason(fresh_loader, monkeypatch) -> None:
    monkeypatch.setattr(_kernel_cache, "compiler", lambda: None)
    assert _local_kernel.status() == (
        "op-per-pass: fused kernel unavailable: no C compiler found (set CC, or install gcc/clang)"
    )
    attn, value = _inputs(2, 8, 2, 3, 4, 5, torch.float32, False)
    assert not ops.kernel_fits(value)
    torch.testing.assert_close(local_weighted_sum(attn, value, 3, 1),
                               paper_reference.weighted_sum_loops(attn, value, 3, 1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no C compiler"):
        local_weighted_sum(attn, value, 3, 1, kernel="fused")


def test_a_compile_error_is_reported(fresh_loader, monkeypatch) -> None:
    monkeypatch.setattr(_local_kernel, "_FLAGS", (*_local_kernel._FLAGS, "-DLWS_BODY"))
    with pytest.raises(_local_kernel.KernelUnavailable, match="could not build the kernels"):
        _local_kernel.build()
    assert [p.name for p in (fresh_loader / "cache" / "kernels").iterdir()] == [_kernel_cache.LOCK_NAME]


def test_switched_off_by_the_environment(fresh_loader, monkeypatch) -> None:
    monkeypatch.setenv("STRABENCH_FUSED_KERNEL", "0")
    assert _local_kernel.status() == "op-per-pass: fused kernel switched off by STRABENCH_FUSED_KERNEL=0"
    assert not (fresh_loader / "cache").exists()  # nothing built


def test_environment_record_names_the_weighting() -> None:
    from strabench.env import describe_environment

    assert describe_environment()["local_attention_kernel"].startswith("fused C kernel (")
