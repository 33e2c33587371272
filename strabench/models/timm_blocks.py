"""timm's attention layers as blocks: ``timm-attn:NAME[(settings)]`` (needs the ``timm`` extra).

timm ships two families of attention layers (``timm/layers/``, behind ``create_attn``): gates
that follow a convolution and keep its shape (SE, ECA, CBAM, global context ...), and
self-attention layers that take a convolution's place, stride included (Halo, Lambda,
bottleneck attention ...). Each is wrapped here under its ``create_attn`` name with the kind it
is, so ``replace`` puts a gate after the module and a self-attention layer in its place::

    strabench flops resnet50 --replace 'layer4.*.conv2=timm-attn:cbam'
    strabench flops resnet50 --replace 'layer4.*.conv2=timm-attn:halo(block_size=2, halo_size=1)'

Settings are the keyword arguments of the timm class (``rd_ratio``, ``num_heads`` ...), checked
against its signature when the name is read. What ``replace`` gives a block itself (channels,
output width, stride, the feature-map size) is not a setting. Every size constraint a layer has
(heads dividing the width, blocks tiling the map, an even map under a stride-2 pool, odd kernels)
is checked before the layer is built, with the map size the model really gives at that position,
and a layer that cannot fit is refused in one line that names the constraint: timm itself only
asserts, without a message, and some of its checks run only in ``forward``.

The names, classes and papers are in ``TIMM_ATTENTION`` (and ``docs/attention-zoo.md``). timm
is imported when a ``timm-attn`` block is first resolved, never at ``import strabench``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from strabench.errors import ConfigError
from strabench.models.blocks import STRUCTURAL, BlockSpec, format_block

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PREFIX", "TIMM_ATTENTION", "Fit", "TimmAttention", "timm_attention"]

#: The block-source prefix (``strabench.models.blocks.BLOCK_SOURCES``).
PREFIX = "timm-attn"
INSTALL_HINT = "pip install 'strabench[timm]'"
#: timm keywords ``replace`` fills itself (besides ``blocks.STRUCTURAL``), or that place the module.
_NOT_SETTINGS = (*STRUCTURAL, "dim", "dim_out", "feat_size", "device", "dtype")


@dataclass(frozen=True)
class Fit:
    """What a position gives a block: channels in and out, the stride, the input map (H, W)."""

    in_channels: int
    out_channels: int
    stride: int
    size: tuple[int, int]

    @property
    def map(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


#: ``check(fit, arg) -> None or the constraint it breaks``; ``arg(name)`` is the setting, else timm's default.
Check = Callable[[Fit, Callable[[str], Any]], "str | None"]


@dataclass(frozen=True)
class TimmAttention:
    """One wrapped timm layer: where its class lives, its kind and how ``replace`` builds it.

    ``out``/``stride``/``size``: the keyword that takes the output width / the stride / the
    feature-map size (None: the class takes none; a block without ``out`` keeps the width).
    ``strides``: the strides the layer implements (None: any). ``preset``: keywords the name
    fixes (``gca`` is ``GlobalContext(fuse_add=True, fuse_scale=False)``). ``lists``: settings
    timm wants as a list (settings arrive as tuples).
    """

    module: str
    cls: str
    kind: str
    paper: str
    out: str | None = None
    stride: str | None = None
    strides: tuple[int, ...] | None = None
    size: str | None = None
    preset: Mapping[str, Any] = field(default_factory=dict)
    lists: tuple[str, ...] = ()
    check: Check | None = None


# --- constraints, each one line naming what breaks ------------------------------------------------


def _divisors(*values: int) -> str:
    common = [d for d in range(1, min(values) + 1) if all(v % d == 0 for v in values)]
    return ", ".join(map(str, common))


def _make_divisible(value: float, divisor: int, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """timm's ``make_divisible`` (imported lazily by the checks that need timm's own rounding)."""
    from timm.layers.helpers import make_divisible

    return int(make_divisible(value, divisor, min_value=min_value, round_limit=round_limit))


def _heads(width: int, arg: Callable[[str], Any], what: str = "output width") -> str | None:
    heads = arg("num_heads")
    if not isinstance(heads, int) or heads < 1:
        return f"num_heads must be a positive integer, got {heads!r}"
    if width % heads:
        return f"num_heads={heads} must divide the {what} {width} (choose from {_divisors(width)})"
    return None


def _qk_head(out: int, arg: Callable[[str], Any]) -> str | None:
    """timm's query/key head width: dim_head, else make_divisible(out * qk_ratio, 8) // num_heads."""
    if arg("dim_head"):
        return None
    if _make_divisible(out * arg("qk_ratio"), 8) // arg("num_heads") < 1:
        return f"qk_ratio={arg('qk_ratio')} with num_heads={arg('num_heads')} leaves query/key heads of width 0; set dim_head"
    return None


def _pooled_stride(fit: Fit) -> str | None:
    """Layers that reach stride 2 with a 2x2 average pool: the map must be even (a conv rounds up)."""
    if fit.stride == 2 and (fit.size[0] % 2 or fit.size[1] % 2):
        return f"stride 2 is a 2x2 average pool here, which needs an even map, got {fit.map}"
    return None


def _odd(name: str, value: Any) -> str | None:
    values = value if isinstance(value, (list, tuple)) else (value,)
    if not all(isinstance(v, int) and v >= 1 and v % 2 for v in values):
        return f"{name} must be odd (it pads k // 2 to keep the map size), got {value!r}"
    return None


def _first(*problems: "str | None") -> str | None:
    return next((p for p in problems if p), None)


def _check_halo(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    block, halo = arg("block_size"), arg("halo_size")
    if not isinstance(block, int) or block < 1 or not isinstance(halo, int) or halo < 0:
        return f"block_size must be a positive integer and halo_size >= 0, got block_size={block!r}, halo_size={halo!r}"
    h, w = fit.size
    if h % block or w % block:
        return (f"block_size={block} must divide the {fit.map} map (the blocks tile it); "
                f"block sizes that fit: {_divisors(h, w)}")
    if fit.stride == 2 and (block % 2 or arg("avg_down")):
        return _pooled_stride(fit)
    return _first(_heads(fit.out_channels, arg), _qk_head(fit.out_channels, arg))


def _check_bottleneck(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    return _first(_heads(fit.out_channels, arg), _qk_head(fit.out_channels, arg), _pooled_stride(fit))


def _check_lambda(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    r = arg("r")
    return _first(
        _heads(fit.out_channels, arg),
        _odd("r", r) if r is not None else None,
        _qk_head(fit.out_channels, arg) if not arg("dim_head") else None,
        _pooled_stride(fit),
    )


def _check_selective_kernel(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    kernels = arg("kernel_size") or [3, 5]
    kernels = list(kernels) if isinstance(kernels, (list, tuple)) else [kernels, kernels]
    if not all(isinstance(k, int) and k >= 3 and k % 2 for k in kernels):
        return f"kernel_size must be odd and >= 3 per path, got {arg('kernel_size')!r}"
    paths, groups = len(kernels), min(fit.out_channels, arg("groups"))
    width = fit.in_channels // paths if arg("split_input") else fit.in_channels
    if arg("split_input") and fit.in_channels % paths:
        return f"the {paths} paths split the input: {paths} must divide the input width {fit.in_channels}"
    if width % groups or fit.out_channels % groups:
        return f"groups={groups} must divide each path's width {width} and the output width {fit.out_channels}"
    return None


def _check_split_attention(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    radix, groups = arg("radix"), arg("groups")
    if fit.in_channels % (groups * radix):
        return f"groups * radix = {groups * radix} must divide the input width {fit.in_channels}"
    if fit.out_channels % groups:
        return f"groups={groups} must divide the output width {fit.out_channels}"
    return _odd("kernel_size", arg("kernel_size")) if arg("padding") is None else None


def _check_attention2d(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    width = fit.out_channels if arg("expand_first") else fit.in_channels
    return _heads(width, arg, "attention width")


def _check_multi_query(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    strides = arg("query_strides")
    strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides, strides)
    h, w = fit.size
    if h % strides[0] or w % strides[-1]:
        return f"query_strides={arg('query_strides')!r} must divide the {fit.map} map (the query is pooled and upsampled back)"
    if not (arg("key_dim") and arg("value_dim")):
        return _heads(fit.in_channels, arg, "input width")
    return None


def _check_cbam(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    return _odd("spatial_kernel_size", arg("spatial_kernel_size"))


def _check_gather_excite(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    extent = arg("extent")
    if not isinstance(extent, int) or extent < 0 or extent % 2:
        return f"extent must be 0 (global) or an even number, got {extent!r}"
    return None


def _check_odd_kernel(fit: Fit, arg: Callable[[str], Any]) -> str | None:
    return _odd("kernel_size", arg("kernel_size"))


_SE = "Squeeze-and-Excitation Networks (Hu, Shen, Sun, CVPR 2018)"
_ECA = "ECA-Net: Efficient Channel Attention (Wang et al., CVPR 2020)"
_CBAM = "CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018)"
_GC = "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al., 2019)"
_COORD = "Coordinate Attention for Efficient Mobile Network Design (Hou, Zhou, Feng, CVPR 2021)"

#: Every wrapped layer by its ``create_attn`` name (``attn2d``/``mqa``: timm's Attention2d and
#: MultiQueryAttention2d, which ``create_attn`` does not name).
TIMM_ATTENTION: dict[str, TimmAttention] = {
    # gates: inserted after the module, built Layer(channels, **settings)
    "se": TimmAttention("timm.layers.squeeze_excite", "SEModule", "insert", _SE),
    "ese": TimmAttention("timm.layers.squeeze_excite", "EffectiveSEModule", "insert",
                         "CenterMask: Real-Time Anchor-Free Instance Segmentation (Lee, Park, CVPR 2020)"),
    "eca": TimmAttention("timm.layers.eca", "EcaModule", "insert", _ECA),
    "ceca": TimmAttention("timm.layers.eca", "CecaModule", "insert", _ECA + ", circular padding"),
    "cbam": TimmAttention("timm.layers.cbam", "CbamModule", "insert", _CBAM, check=_check_cbam),
    "lcbam": TimmAttention("timm.layers.cbam", "LightCbamModule", "insert", _CBAM + ", light variant", check=_check_cbam),
    "gc": TimmAttention("timm.layers.global_context", "GlobalContext", "insert", _GC),
    "gca": TimmAttention("timm.layers.global_context", "GlobalContext", "insert", _GC + ", additive fusion",
                         preset={"fuse_add": True, "fuse_scale": False}),
    "ge": TimmAttention("timm.layers.gather_excite", "GatherExcite", "insert",
                        "Gather-Excite: Exploiting Feature Context in CNNs (Hu et al., NeurIPS 2018)",
                        size="feat_size", check=_check_gather_excite),
    "coord": TimmAttention("timm.layers.coord_attn", "CoordAttn", "insert", _COORD),
    "scoord": TimmAttention("timm.layers.coord_attn", "SimpleCoordAttn", "insert", _COORD + ", simplified"),
    "ela": TimmAttention("timm.layers.coord_attn", "EfficientLocalAttn", "insert",
                         "ELA: Efficient Local Attention (Xu, Wan, 2024)", check=_check_odd_kernel),
    "strip": TimmAttention("timm.layers.coord_attn", "StripAttn", "insert", "strip pooling attention (timm)",
                           check=_check_odd_kernel),
    "nl": TimmAttention("timm.layers.non_local_attn", "NonLocalAttn", "insert",
                        "Non-local Neural Networks (Wang, Girshick, Gupta, He, CVPR 2018)"),
    # conv replacements: built Layer(in_channels, <out>=..., <stride>=..., <size>=..., **settings)
    "sk": TimmAttention("timm.layers.selective_kernel", "SelectiveKernel", "replace",
                        "Selective Kernel Networks (Li, Wang, Hu, Yang, CVPR 2019)",
                        out="out_channels", stride="stride", lists=("kernel_size",), check=_check_selective_kernel),
    "splat": TimmAttention("timm.layers.split_attn", "SplitAttn", "replace",
                           "ResNeSt: Split-Attention Networks (Zhang et al., 2020)",
                           out="out_channels", stride="stride", check=_check_split_attention),
    "halo": TimmAttention("timm.layers.halo_attn", "HaloAttn", "replace",
                          "Scaling Local Self-Attention for Parameter Efficient Visual Backbones (HaloNet; Vaswani et al., CVPR 2021)",
                          out="dim_out", stride="stride", strides=(1, 2), size="feat_size", check=_check_halo),
    "lambda": TimmAttention("timm.layers.lambda_layer", "LambdaLayer", "replace",
                            "LambdaNetworks: Modeling Long-Range Interactions Without Attention (Bello, ICLR 2021)",
                            stride="stride", strides=(1, 2), size="feat_size", check=_check_lambda),
    "bottleneck": TimmAttention("timm.layers.bottleneck_attn", "BottleneckAttn", "replace",
                                "Bottleneck Transformers for Visual Recognition (BoTNet; Srinivas et al., CVPR 2021)",
                                out="dim_out", stride="stride", strides=(1, 2), size="feat_size", check=_check_bottleneck),
    "attn2d": TimmAttention("timm.layers.attention2d", "Attention2d", "replace",
                            "multi-head self-attention on NCHW maps (timm; Attention Is All You Need, Vaswani et al., 2017)",
                            out="dim_out", check=_check_attention2d),
    "mqa": TimmAttention("timm.layers.attention2d", "MultiQueryAttention2d", "replace",
                         "multi-query attention (Shazeer, 2019) as in MobileNetV4 (Qin et al., 2024)",
                         out="dim_out", check=_check_multi_query),
}


# --- the source -----------------------------------------------------------------------------------


def _timm_class(name: str, entry: TimmAttention) -> type:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"{PREFIX}:{name} needs timm: {INSTALL_HINT}") from None
    try:
        cls = getattr(importlib.import_module(entry.module), entry.cls, None)
    except ImportError:  # a timm from before the layer's module existed
        cls = None
    if not isinstance(cls, type):
        raise ConfigError(f"{PREFIX}:{name}: timm {timm.__version__} has no {entry.module}.{entry.cls}; "
                          f"upgrade timm (tested with 1.0.31)")
    return cls


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    parameters = list(inspect.signature(cls).parameters.values())[1:]  # the first takes the channels
    return {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def timm_attention(name: str, settings: Mapping[str, Any]) -> BlockSpec:
    """The ``BlockSpec`` of ``timm-attn:NAME`` with its settings (the block source of ``PREFIX``)."""
    entry = TIMM_ATTENTION.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(TIMM_ATTENTION), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(f'{PREFIX}:{c}' for c in close)}? " if close else ""
        raise ConfigError(f"unknown block {PREFIX}:{name}; {hint}{PREFIX} blocks are {', '.join(TIMM_ATTENTION)}")
    display = format_block(f"{PREFIX}:{name}", settings)
    cls = _timm_class(name, entry)
    parameters = _signature(cls)
    for key in settings:
        if key in _NOT_SETTINGS or key in (entry.out, entry.stride, entry.size):
            raise ConfigError(f"block {display!r}: {key!r} is not a setting: replace takes it from the module it replaces or follows")
        if key in entry.preset:
            raise ConfigError(f"block {display!r}: {key!r} is fixed by the name {name!r} ({key}={entry.preset[key]!r})")
        if key not in parameters:
            takes = ", ".join(sorted(k for k in parameters if k not in _NOT_SETTINGS and k not in entry.preset)) or "none"
            raise ConfigError(f"block {display!r} has no setting {key!r}; timm's {entry.cls} takes: {takes}")
    keywords = {**entry.preset, **{k: list(v) if k in entry.lists and isinstance(v, tuple) else v for k, v in settings.items()}}

    def arg(key: str) -> Any:
        if key in keywords:
            return keywords[key]
        default = parameters[key].default
        return None if default is inspect.Parameter.empty else default

    def build(fit: Fit) -> "nn.Module":
        problem = entry.check(fit, arg) if entry.check is not None else None
        if problem:
            raise ConfigError(f"{display} does not fit a {fit.map} map of {fit.in_channels} channels: {problem}")
        extra = dict(keywords)
        if entry.out is not None:
            extra[entry.out] = fit.out_channels
        if entry.stride is not None:
            extra[entry.stride] = fit.stride
        if entry.size is not None:
            extra[entry.size] = fit.size
        try:
            return cls(fit.in_channels, **extra)
        except AssertionError as exc:  # timm checks sizes with bare asserts
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"timm's {entry.cls} refused {display} for {fit.in_channels} -> {fit.out_channels} channels, "
                              f"stride {fit.stride}, a {fit.map} map{detail}") from None

    if entry.kind == "insert":
        def insert(channels: int, *, size: tuple[int, int]) -> "nn.Module":
            return build(Fit(channels, channels, 1, tuple(size)))

        return BlockSpec(display, "insert", insert, sized=True)

    def replace(in_channels: int, out_channels: int, stride: int, *, size: tuple[int, int]) -> "nn.Module":
        if out_channels != in_channels and entry.out is None:
            raise ConfigError(f"{display} keeps the channel count (C -> C), and the module it would replace maps "
                              f"{in_channels} -> {out_channels} channels")
        if stride != 1 and entry.stride is None:
            raise ConfigError(f"{display} takes no stride, and the module it would replace has stride {stride}")
        if entry.strides is not None and stride not in entry.strides:
            raise ConfigError(f"{display} implements stride {' or '.join(map(str, entry.strides))}, "
                              f"and the module it would replace has stride {stride}")
        return build(Fit(in_channels, out_channels, stride, tuple(size)))

    return BlockSpec(display, "replace", replace, sized=True)

