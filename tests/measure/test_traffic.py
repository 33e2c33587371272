"""Byte counting: checked against hand-counted traffic of single ops and of a small chain."""

from __future__ import annotations

import torch

from strabench.measure.traffic import compulsory_bytes, copy_bandwidth, count_bytes, tensor_bytes

F32 = 4


def test_tensor_bytes_counts_a_broadcast_dimension_once() -> None:
    assert tensor_bytes(torch.zeros(3, 5)) == 15 * F32
    assert tensor_bytes(torch.zeros(3, 1).expand(3, 5)) == 3 * F32
    assert tensor_bytes(torch.zeros(2, 4, dtype=torch.float64)[:, ::2]) == 4 * 8
    assert compulsory_bytes(torch.zeros(3), torch.zeros(2, 2)) == 7 * F32


def test_out_of_place_op_reads_inputs_writes_output() -> None:
    a, b = torch.randn(10, 20), torch.randn(10, 20)
    traffic = count_bytes(lambda: a + b)
    assert traffic.ops == 1 and traffic.bytes == 3 * 200 * F32


def test_broadcast_operand_is_read_once() -> None:
    a, row = torch.randn(10, 20), torch.randn(1, 20)
    assert count_bytes(lambda: a * row).bytes == (200 + 20 + 200) * F32


def test_in_place_op_reads_and_writes_its_target() -> None:
    a, b = torch.randn(10, 20), torch.randn(10, 20)
    # a is read and written, b read
    assert count_bytes(lambda: a.add_(b)).bytes == 3 * 200 * F32
    # a slice updated in place: only the slice moves; the slicing itself is a free view
    traffic = count_bytes(lambda: a[:, :5].mul_(2.0))
    assert traffic.bytes == 2 * 50 * F32 and traffic.by_op["slice"] == 0


def test_out_argument_is_written_not_read() -> None:
    a, b, out = torch.randn(100), torch.randn(100), torch.empty(100)
    assert count_bytes(lambda: torch.mul(a, b, out=out)).bytes == 3 * 100 * F32


def test_views_and_allocations_are_free() -> None:
    a = torch.randn(4, 6)
    traffic = count_bytes(lambda: (a.view(6, 4).t().unsqueeze(0), torch.empty(1000), torch.empty_like(a)))
    assert traffic.bytes == 0


def test_chain_and_backward_are_counted_op_by_op() -> None:
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 4, requires_grad=True)

    def step():
        y = x @ w  # reads 128 + 64, writes 32
        return torch.autograd.grad(y.sum(), [x, w])

    traffic = count_bytes(step)
    assert traffic.by_op["mm"] >= (128 + 64 + 32) * F32  # forward; backward adds two more products
    forward_only = (128 + 64 + 32) * F32 + (32 + 1) * F32  # mm, sum
    assert traffic.bytes > forward_only


def test_copy_bandwidth_is_a_plausible_rate() -> None:
    bw = copy_bandwidth(megabytes=16, repeats=2)
    assert 1e8 < bw < 1e13  # bytes/s: between 0.1 GB/s and 10 TB/s
