"""The ``fvcore`` and ``ptflops`` MAC conventions, extended so that no attention arithmetic is dropped.

Both libraries count one fused multiply-add as one unit, and both miss arithmetic that is not
a stock layer: fvcore reports such ops in ``unsupported_ops()`` and skips them; ptflops
treats unknown modules and tensor code in ``forward`` as free without a word. Here every op
the registered models emit gets a cost, and whatever still has none is handed back in
``MacCount.uncounted`` (empty for every registered model; the tests check it).

Cost per op family (fvcore handles; the ptflops block hooks cost their blocks' own
arithmetic the same way). B = batch; an element is one scalar of a tensor.

| family | ops (``aten::`` names as fvcore sees them) | cost |
| --- | --- | --- |
| matmul-like | _convolution, linear/addmm, matmul/mm, bmm (fvcore's handles); einsum (ours: exact); ``prim::PythonOp.LocalWeightedSum`` (the local-attention weighting) | multiply-adds; the weighting is ``local_attention_macs`` = B*C*Ho*Wo*K*K |
| pointwise arithmetic and functions | add, sub, rsub, mul, div, neg, abs, pow, sqrt, rsqrt, reciprocal, exp, log, sigmoid, tanh, gelu, silu (and their in-place forms), softmax, log_softmax | 1 per output element |
| fused multiply-add | addcmul (``x + t1 * t2``, ModeAttention's gating) and its in-place form | 2 per output element (the mul and the add it fuses) |
| reductions | sum, mean, linalg_vector_norm / norm (a sum of squares) | 1 per input element |
| pooling | avg_pool2d / adaptive_avg_pool2d (fvcore's) | kernel area per output element / 1 per input element |
| normalisation | batch_norm (fvcore's, eval mode: scale and shift) | 2 per element |
| comparisons, selections | hardtanh (ReLU6), relu6, clamp_min, clamp_max, le, lt, ne, maximum, minimum, where, amax, amin, max_pool2d, masked_fill_ | 0, registered |
| data movement | pad, im2col (``F.unfold``), unfold (``Tensor.unfold`` windows), unflatten, movedim, view_as, reshape_as, as_strided, expand_as, meshgrid, repeat, clone, index_select, flip | 0, registered |
| fvcore's default ignore list | of it our models emit ``FVCORE_FREE_BY_DEFAULT``: views and copies (view, reshape, transpose, select, slice, expand, stack, to ...), gather, masked_fill, relu_, clamp, dropout, size arithmetic | 0 |

Pointwise ops and reductions on integer or bool tensors cost 0: they are index bookkeeping
(SASA's window offsets) or the size arithmetic ``torch.jit.trace`` records, not model
arithmetic. Comparisons cost 0 because fvcore already treats relu, clamp, max and eq/ge/gt as
free, and a ReLU6 network should be counted like a ReLU one. Softmax is one pointwise
function (as sigmoid is), not exp + sum + divide. fvcore's own einsum handle reads numpy's
printed cost, rounded to 4 significant digits; ours contracts in numpy's order and is exact.

Attention is counted as it executes: SASA's dense HW x HW logits and values (with its band
mask), NonLocal's theta.phi and attn.g matmuls, ModeAttention's bmms, the local
weighting. ``LocalAttention(impl="unfold")`` runs mul + sum, so fvcore counts its weighting
twice (one per element each); the registered models use the fast op.

Where the two counters differ (both count what the eval forward runs for one image, so a FER
model's classifier, which gives its eval output, is in; ``paper`` counts only conv and linear
layers with bias and never the classifier):

| | fvcore | ptflops |
| --- | --- | --- |
| conv / linear bias | not counted | 1 per output element |
| ReLU, ReLU6 | 0 | 1 per element |
| max pooling | 0 | 1 per input element |
| average pooling | as above | 1 per input element |
| residual adds of Bottleneck / InvertedResidual | 1 per element | 0 (ptflops never counts them for torchvision models) |
| Tanh, Sigmoid modules; our blocks' own arithmetic | table above | the same (our hooks) |

ptflops runs its ``pytorch`` backend (module hooks): the numbers papers quote come from it,
and its ``aten`` backend costs only convs and matmuls, a coarser copy of what fvcore sees op by
op. Its functional patching is switched off: it catches ``torch.bmm`` (which our ModeAttention
hook already counts) but not ``@``, ``einsum``, ``Tensor.softmax`` or ``torch.sigmoid``, and it
rebinds torch functions process-wide while it runs. Each block of ``strabench.layers`` instead
declares, next to its class, a hook costing the arithmetic of its own ``forward``
(``strabench.counting.counts_macs``; the tests check it equals fvcore's per-op count); its
child modules keep ptflops' hooks. Any module, ours or not, may do the same.
``uncounted`` lists the classes of modules without a hook whose own forward (children excluded)
ran arithmetic (``strabench.measure.own_ops``: anything but data movement, comparisons and the
residual add, which ptflops never counts for torchvision blocks). A module that only calls its
children (ResNet, BasicBlock, Sequential) is never listed; torchvision's Swin attention (matmul
and softmax written in its forward) and a custom ``x * 2`` module are.
ptflops is handed a throwaway wrapper module and removes its hooks and per-module variables
itself, so the model is left as it was.

Both count the whole ``example`` batch (``count_macs`` passes one image; ptflops itself
divides by the batch). ``by_module`` (both counters): totals of the modules at depth 1 and 2 (``layer4``,
``layer4.0``), zero entries left out; for the registered models, whose top level does no
arithmetic, the depth-1 entries sum to ``total``.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections import Counter
from typing import Any, Callable

import torch
from torch import Tensor, nn

from strabench.counting import declared_counting
from strabench.layers import ops as strabench_ops
from strabench.layers.kernels import refuse_fused
from strabench.layers.pointwise import GroupedPointwiseConv
from strabench.measure import attention_ops
from strabench.measure.mac_count import MacCount
from strabench.measure.own_ops import arithmetic, own_ops

__all__ = [
    "COUNTERS",
    "FVCORE_FREE_BY_DEFAULT",
    "FVCORE_HANDLES",
    "PTFLOPS_TORCH_MACS",
    "count_macs_fvcore",
    "count_macs_ptflops",
]

Handle = Callable[[list, list], int]

# --------------------------------------------------------------------------------------------
# fvcore: handles on jit values (``torch._C.Value``)


def _float_numel(value: Any) -> int:
    """Elements of a floating tensor value; 0 for ints, bools and non-tensors (index/size arithmetic)."""
    if not isinstance(value.type(), torch._C.TensorType):
        return 0
    if not value.isCompleteTensor():
        raise RuntimeError(f"fvcore handle: a traced tensor has no static shape ({value.debugName()})")
    dtype = value.type().dtype()
    if dtype is None or not (dtype.is_floating_point or dtype.is_complex):
        return 0
    return math.prod(value.type().sizes())


def _per_output_element(inputs: list, outputs: list) -> int:
    return _float_numel(outputs[0])


def _two_per_output_element(inputs: list, outputs: list) -> int:
    return 2 * _float_numel(outputs[0])


def _per_input_element(inputs: list, outputs: list) -> int:
    return _float_numel(inputs[0])


def _free(inputs: list, outputs: list) -> int:
    return 0


def _int_list(value: Any) -> list[int]:
    """A traced int-list argument (a constant, or a prim::ListConstruct of constants)."""
    constant = value.toIValue()
    if constant is not None:
        return list(constant)
    return [item.toIValue() for item in value.node().inputs()]


def _avg_pool2d(inputs: list, outputs: list) -> int:
    kernel = _int_list(inputs[1])
    area = math.prod(kernel) if len(kernel) == 2 else kernel[0] ** 2
    return _float_numel(outputs[0]) * area


def _einsum_macs(equation: str, shapes: list[list[int]]) -> int:
    """Exact multiply-adds of an einsum, contracting pairwise in numpy's optimal order.

    One pairwise contraction costs the product of the sizes of every index it touches.
    """
    import numpy as np

    equation = equation.replace(" ", "")
    lhs, _, out = equation.partition("->")
    terms = lhs.split(",")
    if "->" not in equation:
        letters = "".join(terms)
        out = "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    sizes = {ch: n for term, shape in zip(terms, shapes) for ch, n in zip(term, shape)}
    if len(terms) == 1:
        return math.prod(sizes.values())
    path = np.einsum_path(equation, *[np.empty(s, dtype=np.float32) for s in shapes], optimize="optimal")[0]
    macs = 0
    for step in path[1:]:
        picked = [terms[i] for i in step]
        terms = [t for i, t in enumerate(terms) if i not in step]
        touched = set("".join(picked))
        macs += math.prod(sizes[ch] for ch in touched)
        keep = set("".join(terms)) | set(out)
        terms.append("".join(ch for ch in dict.fromkeys("".join(picked)) if ch in keep))
    return macs


def _einsum(inputs: list, outputs: list) -> int:
    equation = inputs[0].toIValue()
    shapes = [v.type().sizes() for v in inputs[1].node().inputs()]
    if "." in equation:  # ellipsis: fall back to fvcore's estimate (4 significant digits)
        from fvcore.nn.jit_handles import einsum_flop_jit

        return int(einsum_flop_jit(inputs, outputs))
    return _einsum_macs(equation, shapes)


def _inplace_too(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for name in names for n in (f"aten::{name}", f"aten::{name}_"))


POINTWISE_OPS = _inplace_too(
    ("add", "sub", "rsub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "reciprocal",
     "exp", "log", "sigmoid", "tanh", "gelu", "silu")
) + ("aten::softmax", "aten::log_softmax")
REDUCTION_OPS = ("aten::sum", "aten::mean", "aten::linalg_vector_norm", "aten::norm")
COMPARISON_OPS = _inplace_too(("hardtanh", "relu6", "clamp_min", "clamp_max", "le", "lt", "ne")) + (
    "aten::maximum", "aten::minimum", "aten::where", "aten::amax", "aten::amin",
    "aten::max_pool2d", "aten::masked_fill_",
)
DATA_MOVEMENT_OPS = (
    "aten::pad", "aten::im2col", "aten::unfold", "aten::unflatten", "aten::movedim", "aten::view_as",
    "aten::reshape_as", "aten::as_strided", "aten::expand_as", "aten::meshgrid", "aten::repeat",
    "aten::clone", "aten::index_select", "aten::flip",
)

#: Handles added to fvcore's defaults (see the table in the module docstring), open to more
#: (``FVCORE_HANDLES[op name] = handle``): strabench's own operators bring theirs
#: (``strabench.layers.ops.FVCORE_HANDLES``).
FVCORE_HANDLES: dict[str, Handle] = {
    **strabench_ops.FVCORE_HANDLES,
    "aten::einsum": _einsum,  # replaces fvcore's, which rounds to 4 significant digits
    "aten::avg_pool2d": _avg_pool2d,
    **{op: _per_output_element for op in POINTWISE_OPS},
    **{op: _two_per_output_element for op in _inplace_too(("addcmul",))},
    **{op: _per_input_element for op in REDUCTION_OPS},
    **{op: _free for op in COMPARISON_OPS + DATA_MOVEMENT_OPS},
    **attention_ops.FVCORE_HANDLES,  # fused attention, hard activations (strabench.measure.attention_ops)
}

#: Ops in fvcore's default ignore list that the registered models emit (plus a few views and
#: copies of the same kind: cat, contiguous, squeeze, relu), accepted as free. Any other op from
#: that list turning up in a registered model fails the tests, so it gets a deliberate cost.
FVCORE_FREE_BY_DEFAULT = (
    "aten::Int", "aten::ScalarImplicit", "aten::__and__", "aten::arange", "aten::bitwise_not",
    "aten::cat", "aten::clamp", "aten::contiguous", "aten::dropout", "aten::expand", "aten::flatten",
    "aten::floor_divide", "aten::gather", "aten::masked_fill", "aten::permute", "aten::relu",
    "aten::relu_", "aten::reshape", "aten::select", "aten::size", "aten::slice", "aten::squeeze",
    "aten::stack", "aten::to", "aten::transpose", "aten::unsqueeze", "aten::view",
)


def _depth_two(counts: dict[str, float]) -> dict[str, int]:
    return {name: int(v) for name, v in counts.items() if name and name.count(".") <= 1 and v}


def count_macs_fvcore(model: nn.Module, example: Tensor) -> MacCount:
    """fvcore's FlopCountAnalysis with our handles; ``uncounted`` = ops it still cannot cost."""
    refuse_fused(model, "count the MACs of")
    with warnings.catch_warnings():  # fvcore scripts a loss at import (a torch.jit FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    declared: dict[str, Handle] = {}
    for cls in {type(m) for m in model.modules()}:
        counting = declared_counting(cls)
        if counting is not None:
            declared.update(counting.fvcore)
    analysis = (
        FlopCountAnalysis(model, example)
        .set_op_handle(**{**FVCORE_HANDLES, **declared})
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    with torch.no_grad():
        total = analysis.total()
    uncounted = sorted(analysis.unsupported_ops())
    return MacCount("fvcore", int(total), _depth_two(analysis.by_module()), uncounted)


# --------------------------------------------------------------------------------------------
# ptflops: hooks on modules. A block's own arithmetic is costed by the hook it declares next to
# its class (``strabench.counting.counts_macs``); torch's own modules that ptflops leaves out
# get theirs here.


def _per_output(m: nn.Module, x: Tensor, out: Tensor) -> int:
    return out.numel()


#: Torch module classes whose arithmetic ptflops cannot see, and its cost (our blocks declare
#: theirs with ``counts_macs`` instead of being listed here).
PTFLOPS_TORCH_MACS: dict[type, Callable[[Any, Tensor, Tensor], int]] = {
    nn.Tanh: _per_output,
    nn.Sigmoid: _per_output,
}

#: Subclasses that compute exactly what their stock base class computes, only faster: ptflops
#: costs them with the base class's hook (open to more).
PTFLOPS_SAME_AS: dict[type, type] = {
    GroupedPointwiseConv: nn.Conv2d,
}


def ptflops_block_macs(cls: type) -> Callable[[Any, Tensor, Tensor], int] | None:
    """The own-arithmetic cost of ``cls`` for the ptflops convention: declared, torch's above, or
    the attention zoo's (``strabench.measure.attention_ops``: timm's attention layers)."""
    declared = declared_counting(cls)
    return declared.macs if declared is not None else PTFLOPS_TORCH_MACS.get(cls) or attention_ops.ptflops_macs(cls)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def count_macs_ptflops(model: nn.Module, example: Tensor) -> MacCount:
    """ptflops (pytorch backend, no functional patching) with hooks for our blocks."""
    from ptflops import get_model_complexity_info
    from ptflops.pytorch_ops import MODULES_MAPPING

    refuse_fused(model, "count the MACs of")

    names = {id(m): name for name, m in model.named_modules()}
    own: Counter[str] = Counter()  # each hooked module's own MACs, by module name

    def recording(hook: Callable) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            before = module.__flops__
            hook(module, inputs, output)
            own[names[id(module)]] += module.__flops__ - before
            # ptflops stops summing at a module it has a hook for, even one whose hook counts only
            # its own arithmetic (its timm ViT ``Attention`` hook leaves qkv and proj to their
            # Linear hooks): carry the children's MACs, or ptflops' total drops them
            module.__flops__ = own[names[id(module)]] + children_macs(module)

        return record

    def block_hook(macs: Callable) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            own[names[id(module)]] += int(macs(module, inputs[0], output))
            # ptflops stops summing at a hooked module, so it must carry its children's MACs too
            module.__flops__ = own[names[id(module)]] + children_macs(module)

        return hook

    hooks: dict[type, Callable] = {}
    for module in model.modules():
        cls = type(module)
        declared = ptflops_block_macs(cls)
        if declared is not None:
            hooks[cls] = block_hook(declared)
        elif PTFLOPS_SAME_AS.get(cls, cls) in MODULES_MAPPING:
            hooks[cls] = recording(MODULES_MAPPING[PTFLOPS_SAME_AS.get(cls, cls)])
    # A module without a hook is uncounted when its own forward ran arithmetic (not when it only
    # calls its children: containers never are); one more forward finds out, with no hooks of ours.
    calls: dict[str, Counter[str]] = {}
    if any(type(m) not in hooks for m in model.modules()):
        was_training = model.training
        try:
            calls = own_ops(model.eval(), example)
        finally:
            model.train(was_training)
    uncounted = {
        _qualname(type(module))
        for name, module in model.named_modules()
        if type(module) not in hooks and arithmetic(calls.get(name, Counter()))
    }

    def children_macs(module: nn.Module) -> int:
        return sum(
            child.__flops__ if type(child) in hooks else children_macs(child) for child in module.children()
        )

    # ptflops binds its helper methods and batch counter to the module it is given, and removes
    # only its hooks and per-module variables: give it a throwaway wrapper (cheaper than a copy).
    wrapper, was_training = nn.Sequential(model), model.training
    log = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            total, _params = get_model_complexity_info(
                wrapper,
                tuple(example.shape[1:]),
                print_per_layer_stat=False,
                as_strings=False,
                input_constructor=lambda _shape: example,
                ost=log,
                custom_modules_hooks=hooks,
                backend="pytorch",
                backend_specific_config={"count_functional": False},
            )
    finally:
        model.train(was_training)  # ptflops switches what it is given to eval mode
    if total is None:
        raise RuntimeError(f"ptflops failed on {type(model).__name__}: {log.getvalue().strip()}")
    batch = example.shape[0]
    if int(sum(own.values()) / batch) != total:  # ptflops reports per image; we keep the batch's total
        raise RuntimeError(f"ptflops total {total} per image disagrees with its hooks' {sum(own.values())} for {batch}")
    by_module: Counter[str] = Counter()
    for name, macs in own.items():
        parts = name.split(".")
        for depth in (1, 2):
            if len(parts) >= depth:
                by_module[".".join(parts[:depth])] += macs
    return MacCount("ptflops", sum(own.values()), _depth_two(by_module), sorted(uncounted))


COUNTERS: dict[str, Callable[[nn.Module, Tensor], MacCount]] = {
    "fvcore": count_macs_fvcore,
    "ptflops": count_macs_ptflops,
}
