"""A grouped 1x1 convolution that runs StRA's GEMM kernel: the layer both StRA blocks build on.

StRA's blocks are built from grouped 1x1 convolutions (the value projection, the logit and mask
branches: G = 8 groups). On the CPU in NCHW, oneDNN spends 30-70 us on each of them at batch 1
whatever its size, MKL runs its AVX2 code on AMD CPUs, and oneDNN's grouped backward is slow in
NCHW; the register-blocked GEMM of ``_local_kernel.c`` runs them at several times the rate
(docs/kernels.md). ``GroupedPointwiseConv`` is an ``nn.Conv2d`` (same parameters, state_dict and
hooks) whose forward calls the ``strabench::grouped_pointwise`` operator wherever its kernel
takes the input (a contiguous NCHW float32/float64 CPU tensor, kernels loaded), and
``nn.Conv2d``'s own forward elsewhere (channels_last, where oneDNN is fast; CUDA; other dtypes)
or when its ``kernels`` is ``"stock"`` (``strabench.layers.kernels.use_kernels``).
"""

from __future__ import annotations

from torch import Tensor, nn

from strabench.layers import _local_kernel, ops

__all__ = ["GroupedPointwiseConv"]


class GroupedPointwiseConv(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=bias)``, run by the GEMM kernel where it applies."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, groups=groups, bias=bias)
        self.kernels = "fused"
        _local_kernel.available()  # load (or build) the kernels now, once per process: see ops.kernel_fits

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias
        if self.kernels != "stock" and x.dim() == 4 and ops.kernel_fits(x, self.weight, bias):
            return ops.grouped_pointwise(x, self.weight, bias, self.groups)
        return super().forward(x)
