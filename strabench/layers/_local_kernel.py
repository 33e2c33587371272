"""StRA's fused CPU kernels (``_local_kernel.c``) through ctypes: the bodies of the ``strabench::``
operators of ``ops``, which are what the rest of strabench calls.

The local weighted sum: the op-per-pass weighting in ``_local_ops`` makes K*K passes over the
value tensor in each direction (plus a multiply and a reduction per offset for the attention's
gradient), so on a CPU it runs at the memory bandwidth of ~30 passes over the activation. The
C kernel does each direction in one pass, with a group's channel rows in cache, so its traffic
is the inputs and outputs once (float32/float64, stride 1, NCHW or channels_last).

The LocalAttention block's other parts, NCHW: the grouped 1x1 convolutions as a
register-blocked GEMM (``pointwise_*``: MKL runs its AVX2 code on AMD CPUs and oneDNN's grouped
backward is slow in NCHW; these tiles keep 6 x 4 vectors of accumulators in registers; the
weight gradient transposes x slice by slice in cache), and the attention from the
logits: omega + nu, the softmax and the weighting of one (image, group) in one pass
(``attention_*``). The blocked loops come in 64-byte (AVX-512) and 32-byte (AVX2) vectors, one
picked per process from the CPU (``vector_bytes``).

Inference (eval-mode batch norms, no autograd), NCHW: the whole LocalAttention block in one call
(``local_attention_infer``) and the whole mode attention in one call (``mode_attention_forward``),
which at batch 1 replace dozens of small ops each.

Build: the system C compiler (``$CC``, else ``cc``) with ``-O3 -fopenmp``, once per source and
compiler, into ``$STRABENCH_KERNEL_CACHE``, else ``<cache>/kernels/``
(``strabench.cache.kernel_cache_dir``; the cache is ``$STRABENCH_CACHE``, else
``~/.cache/strabench``), a folder of this user's with mode 0700, with the library's sha256
recorded beside it; only a library that passes those checks is loaded, and a damaged or foreign
one is rebuilt (``_kernel_cache``). Without a usable cache the kernels are not used. The library runs on torch's own OpenMP runtime (``libgomp.so.1`` is already loaded
when torch is), with torch's intra-op thread count. Hot loops are compiled for x86-64-v4, v3
and baseline and picked at load time, so one cached build serves every node of a
heterogeneous cluster sharing a home directory.

``STRABENCH_FUSED_KERNEL=0`` turns the kernels off (the operators run their decompositions, the
blocks their plain torch ops); ``status()`` says which and why, and every run's environment record
carries it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch
from torch import Tensor

from strabench.cache import kernel_cache_dir
from strabench.layers import _kernel_cache
from strabench.layers._kernel_cache import KernelUnavailable

__all__ = [
    "KernelUnavailable", "attention_backward", "attention_forward", "available", "backward", "build",
    "channels_last", "forward", "local_attention_infer", "mode_attention_forward", "pointwise_backward_input",
    "pointwise_backward_weight", "pointwise_forward", "status", "vector_bytes",
]

_SOURCE = Path(__file__).with_name("_local_kernel.c")
_FLAGS = ("-O3", "-std=c11", "-ffp-contract=fast", "-fPIC", "-shared", "-fopenmp")
#: ``STRABENCH_KERNEL_SANITIZE=1``: a separate build under AddressSanitizer and UBSan (baseline target
#: only, -O1), for a process started with libasan preloaded (``make sanitize``; docs/kernels.md)
_SANITIZE_SWITCH = "STRABENCH_KERNEL_SANITIZE"
_SANITIZE_FLAGS = ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                   "-DLWS_ONE_TARGET", "-std=c11", "-ffp-contract=fast", "-fPIC", "-shared", "-fopenmp")
_ABI_VERSION = 4
_ENV_SWITCH = "STRABENCH_FUSED_KERNEL"
_STEM = "local_kernel"
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def _cache_dir() -> Path:
    return kernel_cache_dir()


def _recipe() -> tuple[tuple[str, ...], str]:
    """(compiler flags, library stem): the sanitizer build where ``STRABENCH_KERNEL_SANITIZE=1``."""
    if os.environ.get(_SANITIZE_SWITCH, "0").strip().lower() in ("1", "on", "true", "yes"):
        return _SANITIZE_FLAGS, f"{_STEM}_sanitized"
    return _FLAGS, _STEM


def build(cache_dir: Path | None = None) -> Path:
    """Compile the kernels into the cache unless a verified build of this source and compiler is
    there; the library's path. Raises ``KernelUnavailable`` with the reason (no compiler, no
    OpenMP, compile error, a cache folder that is not this user's)."""
    flags, stem = _recipe()
    path, _note = _kernel_cache.ensure_built(_SOURCE, flags, cache_dir or _cache_dir(), stem)
    return path


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    if lib.lws_abi_version() != _ABI_VERSION:
        raise KernelUnavailable(f"kernel ABI {lib.lws_abi_version()} is not the expected {_ABI_VERSION}")
    lib.lws_vector_bytes.argtypes, lib.lws_vector_bytes.restype = [_int], _int
    lib.lws_vector_bytes(0)  # picked now, before any kernel's threads ask for it
    for suffix in _SUFFIX.values():
        fwd, bwd = getattr(lib, f"lws_forward_{suffix}"), getattr(lib, f"lws_backward_{suffix}")
        fwd.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _int, _int]
        bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _int, _int]
        fwd.restype = bwd.restype = _int
        getattr(lib, f"gpw_forward_{suffix}").argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int]
        getattr(lib, f"gpw_backward_input_{suffix}").argtypes = [
            _ptr, _ptr, _i64, _ptr, _ptr, _i64, _ptr, _i64, _i64, _i64, _i64, _int]
        getattr(lib, f"gpw_backward_weight_{suffix}").argtypes = [
            _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int]
        getattr(lib, f"nchw_to_nhwc_{suffix}").argtypes = [_ptr, _ptr, _i64, _i64, _i64, _int]
        for name in ("gpw_forward", "gpw_backward_input", "nchw_to_nhwc"):
            getattr(lib, f"{name}_{suffix}").restype = None
        getattr(lib, f"gpw_backward_weight_{suffix}").restype = _int
        la_fwd, la_bwd = getattr(lib, f"la_forward_{suffix}"), getattr(lib, f"la_backward_{suffix}")
        la_fwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _int, _int]
        la_bwd.argtypes = [_ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _int]
        la_fwd.restype = la_bwd.restype = _int
        ma_fwd, la_inf = getattr(lib, f"ma_forward_{suffix}"), getattr(lib, f"la_infer_{suffix}")
        ma_fwd.argtypes = [_ptr, _ptr, _i64, _i64, _i64, _i64, _ptr, _ptr, _i64, _ptr, _ptr, _ptr, _ptr, _int, _int]
        la_inf.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _int, _int, _ptr, _ptr, _ptr, _ptr, _i64,
                           _ptr, _ptr, _ptr, _ptr, _int]
        ma_fwd.restype = la_inf.restype = _int
    return lib


def _load_once() -> tuple[ctypes.CDLL | str, str]:
    if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "off", "false", "no"):
        return f"switched off by {_ENV_SWITCH}={os.environ[_ENV_SWITCH]}", ""
    try:
        flags, stem = _recipe()
        lib, note = _kernel_cache.load(_SOURCE, flags, _cache_dir(), stem)
        return _declare(lib), note
    except (KernelUnavailable, OSError, AttributeError) as exc:
        return f"unavailable: {exc}", ""


#: The process's one load: (the library, or why there is none; what loading it repaired). A plain
#: dict, filled on first use (the blocks' constructors ask): ``torch.compile`` reads it as a constant
#: when it traces a block, where it could not trace the loading itself.
_LOADED: dict[str, tuple[ctypes.CDLL | str, str]] = {}


def _state() -> tuple[ctypes.CDLL | str, str]:
    state = _LOADED.get("kernels")
    if state is None:
        state = _LOADED["kernels"] = _load_once()
    return state


def _forget() -> None:
    """Load again on next use (tests: another cache, compiler or switch)."""
    _LOADED.clear()


def _load() -> ctypes.CDLL | str:
    """The loaded library, or why there is none (built or verified once per process)."""
    return _state()[0]


def status() -> str:
    """Which kernels a float32/float64 stride-1 CPU LocalAttention runs: the fused ones, or why not."""
    lib = _load()
    if not isinstance(lib, ctypes.CDLL):
        return f"op-per-pass: fused kernel {lib}"
    notes = [f"{lib.lws_vector_bytes(0)}-byte vectors"]
    if _recipe()[1] != _STEM:
        notes.append("AddressSanitizer + UBSan build")
    if _state()[1]:
        notes.append(_state()[1])
    return f"fused C kernel ({'; '.join(notes)})"


def vector_bytes(force: int = 0) -> int:
    """The blocked loops' vector width, 64 (AVX-512) or 32 bytes, picked from the CPU; ``force``
    (32 or 64) sets it for the process, so tests run both widths on one machine."""
    if not available():
        raise KernelUnavailable(str(_load()))
    return _load().lws_vector_bytes(force)


def _nhwc(t: Tensor) -> bool:
    return not t.is_contiguous()



def available() -> bool:
    """Whether the kernels are built and loaded (``status()`` says why not)."""
    return isinstance(_load(), ctypes.CDLL)


def _call(name: str, dtype: torch.dtype, *args: object) -> None:
    """Run kernel ``name`` for ``dtype`` (the ``strabench::`` operators of ``ops`` call these)."""
    lib = _load()
    assert isinstance(lib, ctypes.CDLL), "kernel_fits() must be checked first"
    failed = getattr(lib, f"{name}_{_SUFFIX[dtype]}")(*args)
    if failed:
        raise MemoryError(f"the fused kernel {name} ran out of scratch memory")


def _ptr_of(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def forward(masked: Tensor, value: Tensor, kernel_size: int) -> Tensor:
    """out (value's shape and layout) = weighted sum of ``value``'s neighbours by ``masked``.

    masked: (B, G, K*K, H*W), zero where a neighbour is outside the image; contiguous.
    """
    b, c, h, w = value.shape
    g = masked.shape[1]
    out = torch.empty_like(value)
    _call("lws_forward", value.dtype, masked.data_ptr(), value.data_ptr(), out.data_ptr(), b, g, c // g,
          h, w, kernel_size, int(_nhwc(value)), torch.get_num_threads())
    return out


def backward(
    masked: Tensor, value: Tensor, grad_out: Tensor, kernel_size: int, need_attn: bool, need_value: bool
) -> tuple[Tensor | None, Tensor | None]:
    """(d/d masked attention, zero outside the image, as (B, G, K*K, H*W); d/d value), as needed.

    ``grad_out`` must have ``value``'s layout.
    """
    b, c, h, w = value.shape
    g, kk = masked.shape[1:3]
    grad_attn = torch.empty((b, g, kk, h * w), dtype=value.dtype) if need_attn else None
    grad_value = torch.empty_like(value) if need_value else None
    written = [t for t in (grad_attn, grad_value) if t is not None]
    read = [grad_out, *([value] if need_attn else []), *([masked] if need_value else [])]
    _call("lws_backward", value.dtype, masked.data_ptr(), value.data_ptr(), grad_out.data_ptr(),
          _ptr_of(grad_attn), _ptr_of(grad_value), b, g, c // g, h, w, kernel_size, int(_nhwc(value)),
          torch.get_num_threads())
    return grad_attn, grad_value


# ---- the whole block (``_local_fast``): its grouped 1x1 convs and the attention from logits ----
# Every tensor argument is a contiguous NCHW (or (G, M, K) weight) tensor of one dtype.


def pointwise_forward(weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
    """The grouped 1x1 conv: y[b, g*M + i] = bias[g*M + i] + sum_k weight[g, i, k] x[b, g*K + k]."""
    b, c, h, w = x.shape
    g, m, k = weight.shape
    y = torch.empty((b, g * m, h, w), dtype=x.dtype)
    _call("gpw_forward", x.dtype, weight.data_ptr(), _ptr_of(bias), x.data_ptr(), y.data_ptr(), b, g, m, k,
          h * w, torch.get_num_threads())
    return y


def pointwise_backward_input(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """d/dx of the grouped 1x1 convs that read x: sum over (weight (G, M, K), grad_out) pairs (one or two)."""
    (w1, gy1), *rest = pairs
    w2, gy2 = rest[0] if rest else (None, None)
    b, _, h, w = gy1.shape
    g, _, k = w1.shape
    gx = torch.empty((b, g * k, h, w), dtype=gy1.dtype)
    _call("gpw_backward_input", gy1.dtype, w1.data_ptr(), gy1.data_ptr(), w1.shape[1], _ptr_of(w2), _ptr_of(gy2),
          0 if w2 is None else w2.shape[1], gx.data_ptr(), b, g, k, h * w, torch.get_num_threads())
    return gx


def channels_last(x: Tensor) -> Tensor:
    """``x.contiguous(memory_format=torch.channels_last)`` for a contiguous NCHW x, in tiles (faster here)."""
    b, c, h, w = x.shape
    out = torch.empty_like(x, memory_format=torch.channels_last)
    _call("nchw_to_nhwc", x.dtype, x.data_ptr(), out.data_ptr(), b, c, h * w, torch.get_num_threads())
    return out


def pointwise_backward_weight(grad_out: Tensor, x: Tensor, groups: int) -> Tensor:
    """d/dweight (G, M, K) of a grouped 1x1 conv of the contiguous NCHW x."""
    b, gm, h, w = grad_out.shape
    k = x.shape[1] // groups
    gw = torch.empty((groups, gm // groups, k), dtype=grad_out.dtype)
    _call("gpw_backward_weight", grad_out.dtype, grad_out.data_ptr(), x.data_ptr(), gw.data_ptr(),
          b, groups, gm // groups, k, h * w, torch.get_num_threads())
    return gw


def attention_forward(
    logits: Tensor, valid: Tensor, value: Tensor, kernel_size: int, mask: bool
) -> tuple[Tensor, Tensor]:
    """(out, attention): softmax weights from the logit branch's output, then the weighted sum.

    logits (B, G*(K*K + 1), H, W): per group omega_0..omega_{K*K-1}, nu; valid (K*K, H*W) 1/0;
    value (B, C, H, W). attention: (B, G, K*K, H*W), the softmax (before masking the outside).
    """
    b, c, h, w = value.shape
    kk = kernel_size * kernel_size
    g = logits.shape[1] // (kk + 1)
    out = torch.empty_like(value)
    attn = torch.empty((b, g, kk, h * w), dtype=value.dtype)
    _call("la_forward", value.dtype, logits.data_ptr(), valid.data_ptr(), value.data_ptr(), attn.data_ptr(),
          out.data_ptr(), b, g, c // g, h, w, kernel_size, int(mask), torch.get_num_threads())
    return out, attn


def attention_backward(
    attn: Tensor, valid: Tensor, value: Tensor, grad_out: Tensor, kernel_size: int, need_logits: bool,
    need_value: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """(d/d logits, d/d value) of ``attention_forward``, as needed."""
    b, c, h, w = value.shape
    g, kk = attn.shape[1:3]
    grad_logits = torch.empty((b, g * (kk + 1), h, w), dtype=value.dtype) if need_logits else None
    grad_value = torch.empty_like(value) if need_value else None
    _call("la_backward", value.dtype, attn.data_ptr(), valid.data_ptr(), value.data_ptr(), grad_out.data_ptr(),
          _ptr_of(grad_logits), _ptr_of(grad_value), b, g, c // g, h, w, kernel_size, torch.get_num_threads())
    return grad_logits, grad_value


# ---- inference (eval-mode batch norms, no autograd): the LocalAttention block and mode attention ----
# A conv is (weight, bias or None); a batch norm (weight or None, bias or None, running mean, running
# var, eps).

Conv = tuple[Tensor, Tensor | None]
Norm = tuple[Tensor | None, Tensor | None, Tensor, Tensor, float]


def _norm_args(norms: list[Norm]) -> tuple[ctypes.Array, ctypes.Array]:
    """The C side's batch norms: 4 pointers each (NULL for an absent weight or bias), and the eps."""
    return (_ptr * (4 * len(norms)))(*(_ptr_of(t) for norm in norms for t in norm[:4])), \
        (ctypes.c_double * len(norms))(*(norm[4] for norm in norms))


def local_attention_infer(x: Tensor, groups: int, kernel_size: int, mask: bool, value: Conv, first: Conv,
                          second: Conv, norms: list[Norm], valid: Tensor) -> Tensor:
    """The LocalAttention block of a contiguous NCHW x, its branch's two BNs in eval mode and its
    activation tanh: value (C, C/G), first (G*M1, C/G) and second (G*(K*K + 1), M1) are the grouped 1x1
    convs (value projection, branch), norms the branch's two BNs; valid (K*K, H*W) 1/0."""
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    pointers, eps = _norm_args(norms)
    (wv, bv), (w1, b1), (w2, b2) = value, first, second
    _call("la_infer", x.dtype, x.data_ptr(), valid.data_ptr(), out.data_ptr(), b, groups, c // groups, h, w,
          kernel_size, int(mask), wv.data_ptr(), _ptr_of(bv), w1.data_ptr(), _ptr_of(b1), w1.shape[0] // groups,
          w2.data_ptr(), _ptr_of(b2), pointers, eps, torch.get_num_threads())
    return out


def mode_attention_forward(x: Tensor, groups: int, first: Conv, second: Conv, norms: list[Norm],
                           interaction: bool) -> Tensor:
    """Mode attention of a contiguous NCHW x with every batch norm in eval mode.

    first: the mask branch's first grouped 1x1 conv (G*Mh, C/G); second: its second (G, Mh); norms:
    the branch's two BNs, the first gate's and the second gate's (the last only read with
    interaction: pass the first gate's again without).
    """
    b, c, h, w = x.shape
    (w1, b1), (w2, b2) = first, second
    out = torch.empty_like(x)
    pointers, eps = _norm_args(norms)
    _call("ma_forward", x.dtype, x.data_ptr(), out.data_ptr(), b, groups, c // groups, h * w, w1.data_ptr(),
          _ptr_of(b1), w1.shape[0] // groups, w2.data_ptr(), _ptr_of(b2), pointers, eps, int(interaction),
          torch.get_num_threads())
    return out
