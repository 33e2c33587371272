"""StRA's compiled kernels as torch operators, ``torch.ops.strabench.*``.

Each kernel entry point of ``_local_kernel.c`` is a ``torch.library.custom_op`` with a fake
(meta) implementation, an autograd rule where it has a backward, and a decomposition into
plain torch ops (``_decompositions``). So the dispatcher sees every call: hooks, the profiler,
``torch.compile`` (one opaque op each), ``torch.export``, the byte counter
(``strabench.measure.traffic``) and fvcore's trace (``FVCORE_HANDLES``) all see the op that runs,
and the same op runs whether or not anything observes it.

| operator | what it computes | C kernel |
| --- | --- | --- |
| ``grouped_pointwise(x, weight, bias, groups)`` | a grouped 1x1 conv; backward: ``grouped_pointwise_backward_input`` / ``_weight`` | register-blocked GEMM |
| ``local_attention(logits, value, kernel_size, mask)`` | (out, attention): omega + nu, softmax over the window, weighting; backward: ``local_attention_backward`` | one pass per (image, group) |
| ``local_weighted_sum(attn, value, kernel_size)`` | the weighting by (masked) weights, NCHW or channels_last; backward: ``local_weighted_sum_backward`` | one pass each way |
| ``local_attention_infer(x, ...)`` | the whole LocalAttention block, eval-mode BNs, tanh branch (inference only) | one call |
| ``mode_attention_infer(x, ...)`` | the whole ModeAttention, eval-mode BNs (inference only) | one call |

Each runs its C kernel for contiguous (NCHW; ``local_weighted_sum``: or channels_last) float32 /
float64 CPU tensors when the kernels are loaded (``_local_kernel.status()``), and its
decomposition otherwise, with the same output layout either way; the backward of a call that ran
the decomposition differentiates the decomposition. Under autocast ``grouped_pointwise`` takes
its inputs in the autocast dtype, as a convolution does; the others run in their inputs' dtype
(the inference operators on a float32 input: their C kernel, in float32). No double backward.
``decomposed()`` swaps every operator for its decomposition while an exporter traces (ONNX).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from strabench.layers import _decompositions, _local_kernel
from strabench.layers._window import flat_valid

__all__ = [
    "FVCORE_HANDLES", "OPERATORS", "decomposed", "decomposing", "grouped_pointwise", "kernel_fits", "local_attention",
    "local_attention_infer", "local_weighted_sum", "mode_attention_infer",
]

def _memory_format(t: Tensor) -> torch.memory_format:
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def kernel_fits(*tensors: Tensor | None, channels_last: bool = False) -> bool:
    """Whether the C kernels take these tensors: loaded, CPU, one float32/float64 dtype, each
    contiguous (the first one, with ``channels_last``, may be channels_last instead). Called on
    every operator call: a few attribute reads per tensor. The blocks load the kernels when they
    are built, so a compiler tracing a block reads their availability as a constant."""
    first = tensors[0]
    dtype = first.dtype
    if dtype is not torch.float32 and dtype is not torch.float64:
        return False
    for t in tensors:
        if t is None:
            continue
        if t.dtype is not dtype or not t.is_cpu:
            return False
        if not t.is_contiguous() and not (channels_last and t is first
                                          and t.is_contiguous(memory_format=torch.channels_last)):
            return False
    return _local_kernel.available()


def _empty(shape: Sequence[int], like: Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device=like.device, memory_format=memory_format)


def _nothing(like: Tensor) -> Tensor:
    """What a backward operator returns for a gradient nobody asked for."""
    return torch.empty((0,), dtype=like.dtype, device=like.device)


def _grouped(weight: Tensor, groups: int) -> Tensor:
    """A (G*M, K, 1, 1) conv weight as (G, M, K)."""
    return weight.view(groups, weight.shape[0] // groups, weight.shape[1])


def _recompute_grads(decomposition: Callable[..., Any], inputs: Sequence[Any], needs: Sequence[bool],
                     grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The backward of a call that ran ``decomposition``: differentiate it (run again with autograd)."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_(need) if isinstance(x, Tensor) and need else
                  (x.detach() if isinstance(x, Tensor) else x) for x, need in zip(inputs, needs)]
        outputs = decomposition(*leaves)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        wanted = [x for x, need in zip(leaves, needs) if need and isinstance(x, Tensor)]
        found = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True) \
            if pairs and wanted else [None] * len(wanted)
    it = iter(found)
    return [next(it) if need and isinstance(x, Tensor) else None for x, need in zip(inputs, needs)]


# ---- grouped 1x1 convolution ----------------------------------------------------------------


@torch.library.custom_op("strabench::grouped_pointwise", mutates_args=())
def grouped_pointwise(x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int) -> Tensor:
    """``conv2d(x, weight, bias, groups=groups)`` for a 1x1 ``weight`` (out, in / groups, 1, 1), in x's layout."""
    if kernel_fits(x, weight, bias):
        return _local_kernel.pointwise_forward(_grouped(weight, groups), bias, x)
    return _decompositions.grouped_pointwise(x, weight, bias, groups).contiguous(memory_format=_memory_format(x))


@grouped_pointwise.register_fake
def _(x, weight, bias, groups):
    return _empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]), x, _memory_format(x))


@torch.library.custom_op("strabench::grouped_pointwise_backward_input", mutates_args=())
def grouped_pointwise_backward_input(grad: Tensor, weight: Tensor, groups: int) -> Tensor:
    """d/dx of ``grouped_pointwise``, in grad's layout."""
    if kernel_fits(grad, weight):
        return _local_kernel.pointwise_backward_input([(_grouped(weight, groups), grad)])
    gx = torch.nn.functional.conv_transpose2d(grad, weight, groups=groups)
    return gx.contiguous(memory_format=_memory_format(grad))


@grouped_pointwise_backward_input.register_fake
def _(grad, weight, groups):
    return _empty((grad.shape[0], weight.shape[1] * groups, grad.shape[2], grad.shape[3]), grad, _memory_format(grad))


@torch.library.custom_op("strabench::grouped_pointwise_backward_weight", mutates_args=())
def grouped_pointwise_backward_weight(grad: Tensor, x: Tensor, groups: int) -> Tensor:
    """d/dweight (out, in / groups, 1, 1) of ``grouped_pointwise``."""
    if kernel_fits(grad, x):
        gw = _local_kernel.pointwise_backward_weight(grad, x, groups)
        return gw.view(grad.shape[1], x.shape[1] // groups, 1, 1)
    shape = (grad.shape[1], x.shape[1] // groups, 1, 1)
    return torch.nn.grad.conv2d_weight(x, shape, grad, groups=groups).contiguous()


@grouped_pointwise_backward_weight.register_fake
def _(grad, x, groups):
    return _empty((grad.shape[1], x.shape[1] // groups, 1, 1), grad)


def _pointwise_setup(ctx, inputs, output) -> None:
    x, weight, bias, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.groups, ctx.has_bias = groups, bias is not None


def _pointwise_backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    grad = grad.contiguous(memory_format=_memory_format(x))
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = torch.ops.strabench.grouped_pointwise_backward_input(grad, weight, ctx.groups)
    if ctx.needs_input_grad[1]:
        gw = torch.ops.strabench.grouped_pointwise_backward_weight(grad, x, ctx.groups)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = grad.sum((0, 2, 3))
    return gx, gw, gb, None


grouped_pointwise.register_autograd(_pointwise_backward, setup_context=_pointwise_setup)


# ---- the attention from the logits, and the weighting alone -----------------------------------


@torch.library.custom_op("strabench::local_attention", mutates_args=())
def local_attention(logits: Tensor, value: Tensor, kernel_size: int, mask: bool) -> tuple[Tensor, Tensor]:
    """(out, attention) of LocalAttention from its logits: ``_decompositions.local_attention``.
    The attention (B, G, K*K, H*W) is kept for the backward; it is not differentiable."""
    if kernel_fits(value, logits):
        h, w = value.shape[-2:]
        valid = flat_valid(kernel_size, h, w, value)
        return _local_kernel.attention_forward(logits, valid, value, kernel_size, mask)
    out, attn = _decompositions.local_attention(logits, value, kernel_size, mask)
    return out.contiguous(), attn.contiguous()


@local_attention.register_fake
def _(logits, value, kernel_size, mask):
    b, _c, h, w = value.shape
    groups = logits.shape[1] // (kernel_size * kernel_size + 1)
    return _empty(value.shape, value), _empty((b, groups, kernel_size * kernel_size, h * w), value)


@torch.library.custom_op("strabench::local_attention_backward", mutates_args=())
def local_attention_backward(attn: Tensor, value: Tensor, grad_out: Tensor, kernel_size: int, need_logits: bool,
                             need_value: bool) -> tuple[Tensor, Tensor]:
    """(d/d logits, d/d value) of a ``local_attention`` call that ran its C kernel (an empty tensor
    for a gradient not needed). C kernel only."""
    if not kernel_fits(attn, value, grad_out):
        raise RuntimeError("strabench::local_attention_backward runs its C kernel only (contiguous float32/float64 "
                           f"CPU tensors, kernels loaded: {_local_kernel.status()})")
    h, w = value.shape[-2:]
    valid = flat_valid(kernel_size, h, w, value)
    gl, gv = _local_kernel.attention_backward(attn, valid, value, grad_out, kernel_size, need_logits, need_value)
    return (gl if gl is not None else _nothing(value)), (gv if gv is not None else _nothing(value))


@local_attention_backward.register_fake
def _(attn, value, grad_out, kernel_size, need_logits, need_value):
    b, _c, h, w = value.shape
    groups = attn.shape[1]
    gl = _empty((b, groups * (kernel_size * kernel_size + 1), h, w), value) if need_logits else _nothing(value)
    return gl, (_empty(value.shape, value) if need_value else _nothing(value))


def _attention_setup(ctx, inputs, output) -> None:
    logits, value, kernel_size, mask = inputs
    ctx.kernel_size, ctx.mask = kernel_size, mask
    ctx.fused = kernel_fits(value, logits)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zero-filled gradient for the attention nobody differentiates
    ctx.save_for_backward(output[1], value, *([] if ctx.fused else [logits]))


def _attention_backward(ctx, grad_out: Tensor | None, _grad_attn: Tensor | None):
    need_logits, need_value = ctx.needs_input_grad[:2]
    if grad_out is None:
        return None, None, None, None
    if ctx.fused:
        attn, value = ctx.saved_tensors
        gl, gv = torch.ops.strabench.local_attention_backward(attn, value, grad_out.contiguous(), ctx.kernel_size,
                                                              need_logits, need_value)
        return (gl if need_logits else None), (gv if need_value else None), None, None
    _attn, value, logits = ctx.saved_tensors
    gl, gv, _, _ = _recompute_grads(_decompositions.local_attention, [logits, value, ctx.kernel_size, ctx.mask],
                                    [need_logits, need_value, False, False], [grad_out, None])
    return gl, gv, None, None


local_attention.register_autograd(_attention_backward, setup_context=_attention_setup)


@torch.library.custom_op("strabench::local_weighted_sum", mutates_args=())
def local_weighted_sum(attn: Tensor, value: Tensor, kernel_size: int) -> Tensor:
    """out = sum over the window of attn (B, G, K*K, H*W) times value's zero-padded neighbours, stride 1,
    in value's layout (NCHW or channels_last)."""
    if kernel_fits(value, attn, channels_last=True):
        return _local_kernel.forward(attn, value, kernel_size)
    out = _decompositions.local_weighted_sum(attn, value, kernel_size)
    return out.contiguous(memory_format=_memory_format(value))


@local_weighted_sum.register_fake
def _(attn, value, kernel_size):
    return _empty(value.shape, value, _memory_format(value))


@torch.library.custom_op("strabench::local_weighted_sum_backward", mutates_args=())
def local_weighted_sum_backward(attn: Tensor, value: Tensor, grad_out: Tensor, kernel_size: int, need_attn: bool,
                                need_value: bool) -> tuple[Tensor, Tensor]:
    """(d/d attn, zero outside the image; d/d value) of a ``local_weighted_sum`` call that ran its C
    kernel (an empty tensor for a gradient not needed); grad_out in value's layout. C kernel only."""
    if not (kernel_fits(value, attn, channels_last=True) and grad_out.is_contiguous(memory_format=_memory_format(value))):
        raise RuntimeError("strabench::local_weighted_sum_backward runs its C kernel only (float32/float64 CPU "
                           f"tensors, grad_out in value's layout, kernels loaded: {_local_kernel.status()})")
    ga, gv = _local_kernel.backward(attn, value, grad_out, kernel_size, need_attn, need_value)
    return (ga if ga is not None else _nothing(value)), (gv if gv is not None else _nothing(value))


@local_weighted_sum_backward.register_fake
def _(attn, value, grad_out, kernel_size, need_attn, need_value):
    ga = _empty(attn.shape, attn) if need_attn else _nothing(value)
    return ga, (_empty(value.shape, value, _memory_format(value)) if need_value else _nothing(value))


def _weighting_setup(ctx, inputs, output) -> None:
    attn, value, kernel_size = inputs
    ctx.kernel_size = kernel_size
    ctx.fused = kernel_fits(value, attn, channels_last=True)
    ctx.save_for_backward(attn, value)


def _weighting_backward(ctx, grad_out: Tensor):
    attn, value = ctx.saved_tensors
    need_attn, need_value = ctx.needs_input_grad[:2]
    if ctx.fused:
        grad_out = grad_out.contiguous(memory_format=_memory_format(value))
        ga, gv = torch.ops.strabench.local_weighted_sum_backward(attn, value, grad_out, ctx.kernel_size, need_attn,
                                                                 need_value)
        return (ga if need_attn else None), (gv if need_value else None), None
    ga, gv, _ = _recompute_grads(_decompositions.local_weighted_sum, [attn, value, ctx.kernel_size],
                                 [need_attn, need_value, False], [grad_out])
    return ga, (gv.contiguous(memory_format=_memory_format(value)) if gv is not None else None), None


local_weighted_sum.register_autograd(_weighting_backward, setup_context=_weighting_setup)


# ---- inference: whole blocks, every batch norm on its running statistics -----------------------
# A conv is (weight, bias or None); a batch norm (weight or None, bias or None, running mean, running var) + eps.


@torch.library.custom_op("strabench::local_attention_infer", mutates_args=())
def local_attention_infer(
    x: Tensor, kernel_size: int, mask: bool, groups: int, value_weight: Tensor, value_bias: Optional[Tensor],
    first_weight: Tensor, first_bias: Optional[Tensor], second_weight: Tensor, second_bias: Optional[Tensor],
    norm1_weight: Optional[Tensor], norm1_bias: Optional[Tensor], norm1_mean: Tensor, norm1_var: Tensor, norm1_eps: float,
    norm2_weight: Optional[Tensor], norm2_bias: Optional[Tensor], norm2_mean: Tensor, norm2_var: Tensor, norm2_eps: float,
) -> Tensor:
    """The LocalAttention block in eval mode (``_decompositions.local_attention_infer``), one call."""
    norm1 = (norm1_weight, norm1_bias, norm1_mean, norm1_var)
    norm2 = (norm2_weight, norm2_bias, norm2_mean, norm2_var)
    convs = ((value_weight, value_bias), (first_weight, first_bias), (second_weight, second_bias))
    if kernel_fits(x, *(t for conv in convs for t in conv), *norm1, *norm2):
        h, w = x.shape[-2:]
        valid = flat_valid(kernel_size, h, w, x)
        return _local_kernel.local_attention_infer(x, groups, kernel_size, mask, *convs, [(*norm1, norm1_eps),
                                                   (*norm2, norm2_eps)], valid)
    return _decompositions.local_attention_infer(x, kernel_size, mask, groups, *convs, norm1, norm1_eps, norm2,
                                                 norm2_eps).contiguous()


@local_attention_infer.register_fake
def _(x, *args):
    return _empty(x.shape, x)


@torch.library.custom_op("strabench::mode_attention_infer", mutates_args=())
def mode_attention_infer(
    x: Tensor, groups: int, interaction: bool, first_weight: Tensor, first_bias: Optional[Tensor],
    second_weight: Tensor, second_bias: Optional[Tensor],
    norm1_weight: Optional[Tensor], norm1_bias: Optional[Tensor], norm1_mean: Tensor, norm1_var: Tensor, norm1_eps: float,
    norm2_weight: Optional[Tensor], norm2_bias: Optional[Tensor], norm2_mean: Tensor, norm2_var: Tensor, norm2_eps: float,
    gate1_weight: Optional[Tensor], gate1_bias: Optional[Tensor], gate1_mean: Tensor, gate1_var: Tensor, gate1_eps: float,
    gate2_weight: Optional[Tensor], gate2_bias: Optional[Tensor], gate2_mean: Optional[Tensor],
    gate2_var: Optional[Tensor], gate2_eps: float,
) -> Tensor:
    """ModeAttention in eval mode (``_decompositions.mode_attention_infer``), one call. The second
    gate's BN is read only with ``interaction``."""
    gate1 = (gate1_weight, gate1_bias, gate1_mean, gate1_var)
    gate2 = (gate2_weight, gate2_bias, gate2_mean, gate2_var) if interaction else gate1
    norms = [((norm1_weight, norm1_bias, norm1_mean, norm1_var), norm1_eps),
             ((norm2_weight, norm2_bias, norm2_mean, norm2_var), norm2_eps),
             (gate1, gate1_eps), (gate2, gate2_eps if interaction else gate1_eps)]
    convs = ((first_weight, first_bias), (second_weight, second_bias))
    if kernel_fits(x, *(t for conv in convs for t in conv), *(t for norm, _ in norms for t in norm)):
        return _local_kernel.mode_attention_forward(x, groups, *convs, [(*norm, eps) for norm, eps in norms], interaction)
    return _decompositions.mode_attention_infer(x, groups, *convs, norms, interaction)


@mode_attention_infer.register_fake
def _(x, *args):
    return _empty(x.shape, x)


# ---- autocast: a grouped 1x1 conv takes its inputs in the autocast dtype, as a convolution does;
# the attention operators take what they are given (their inputs come from those convs), and the
# whole-block inference operators run in their input's dtype (as float32-list ops do) ------------

_FORWARD = (grouped_pointwise, local_attention, local_weighted_sum, local_attention_infer, mode_attention_infer)
_AUTOCAST_LIBRARY = torch.library.Library("strabench", "FRAGMENT")


def _autocast_kernel(op: Any, device_type: str) -> Callable[..., Any]:
    def kernel(_keyset: Any, *args: Any) -> Any:
        dtype = torch.get_autocast_dtype(device_type)
        cast = [a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() and a.device.type == device_type
                else a for a in args]
        with torch.autocast(device_type, enabled=False):
            return op(*cast)

    return kernel


for _op in (grouped_pointwise,):
    for _device in ("cpu", "cuda"):
        _AUTOCAST_LIBRARY.impl(_op._name, _autocast_kernel(_op, _device),
                               "Autocast" + ("CPU" if _device == "cpu" else "CUDA"), with_keyset=True)


#: Every strabench operator (for opcheck, the profiler, the byte counter): qualified name -> op.
OPERATORS: dict[str, Any] = {
    op._qualname: op for op in (*_FORWARD, grouped_pointwise_backward_input, grouped_pointwise_backward_weight,
                            local_attention_backward, local_weighted_sum_backward)
}


# ---- decomposition for exporters ---------------------------------------------------------------


def _infer_decomposition(x, kernel_size, mask, groups, vw, vb, w1, b1, w2, b2, n1w, n1b, n1m, n1v, e1, n2w, n2b, n2m,
                         n2v, e2):
    return _decompositions.local_attention_infer(x, kernel_size, mask, groups, (vw, vb), (w1, b1), (w2, b2),
                                                 (n1w, n1b, n1m, n1v), e1, (n2w, n2b, n2m, n2v), e2)


def _mode_decomposition(x, groups, interaction, w1, b1, w2, b2, *norm_args):
    n = [tuple(norm_args[i:i + 4]) + (norm_args[i + 4],) for i in range(0, 20, 5)]
    norms = [((w, b, m, v), e) for w, b, m, v, e in n]
    if not interaction:
        norms[3] = norms[2]
    return _decompositions.mode_attention_infer(x, groups, (w1, b1), (w2, b2), norms, interaction)


_DECOMPOSITIONS: dict[str, Callable[..., Any]] = {
    "strabench::grouped_pointwise": _decompositions.grouped_pointwise,
    "strabench::local_attention": _decompositions.local_attention,
    "strabench::local_weighted_sum": _decompositions.local_weighted_sum,
    "strabench::local_attention_infer": _infer_decomposition,
    "strabench::mode_attention_infer": _mode_decomposition,
}
_BY_FUNC: dict[Any, Callable[..., Any]] = {}
for _name, _fn in _DECOMPOSITIONS.items():
    _packet = getattr(torch.ops.strabench, _name.split("::")[1])
    _BY_FUNC[_packet] = _BY_FUNC[_packet.default] = _fn

_decomposing: contextvars.ContextVar[bool] = contextvars.ContextVar("strabench_decomposing", default=False)


class _Decompose(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            decomposition = _BY_FUNC.get(func)
        except TypeError:  # an unhashable callable: not one of ours
            decomposition = None
        if decomposition is not None:
            return decomposition(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def decomposed() -> Iterator[None]:
    """Run every strabench operator as its decomposition, and the blocks' plain-torch weighting in its
    traceable form (pad / slice / multiply / add): what an exporter such as ``torch.onnx`` traces."""
    token = _decomposing.set(True)
    try:
        with _Decompose():
            yield
    finally:
        _decomposing.reset(token)


def decomposing() -> bool:
    """Whether ``decomposed()`` is active (the plain-torch weighting then takes its traceable form)."""
    return _decomposing.get()


# ---- fvcore: multiply-adds of the operators as a torch.jit trace records them ------------------
# (fvcore's conventions: one fused multiply-add = 1, bias and BN's shift not counted in a conv)


def _sizes(value: Any) -> list[int]:
    return list(value.type().sizes())


def _prod(sizes: Sequence[int]) -> int:
    out = 1
    for s in sizes:
        out *= s
    return out


def _pointwise_macs(inputs: list, outputs: list) -> int:
    """A 1x1 conv: every output element sums in / groups products (fvcore's conv count)."""
    return _prod(_sizes(outputs[0])) * _sizes(inputs[1])[1]


def _attention_macs(inputs: list, outputs: list) -> int:
    """omega + nu and the softmax (1 per logit each), then the weighting (K*K per output element)."""
    b, c, h, w = _sizes(inputs[1])
    k = int(inputs[2].toIValue())
    groups = _sizes(inputs[0])[1] // (k * k + 1)
    return 2 * b * groups * k * k * h * w + b * c * h * w * k * k


def _weighting_macs(inputs: list, outputs: list) -> int:
    b, c, h, w = _sizes(inputs[1])
    return b * c * h * w * _sizes(inputs[0])[2]


#: fvcore handles of the forward operators (the inference operators are not counted: count the model
#: before ``fuse_for_inference``; the counters refuse a fused model).
FVCORE_HANDLES: dict[str, Callable[[list, list], int]] = {
    "strabench::grouped_pointwise": _pointwise_macs,
    "strabench::local_attention": _attention_macs,
    "strabench::local_weighted_sum": _weighting_macs,
}

