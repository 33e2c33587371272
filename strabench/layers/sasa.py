"""Stand-alone self-attention (Ramachandran et al., NeurIPS 2019, Eq. 2-3): a conv-replacing block.

y_ij = sum_{ab in N_k(i,j)} softmax_ab(q_ij . k_ab + q_ij . r_{a-i,b-j}) v_ab, per head, with
q/k/v from grouped 1x1 convs (groups = heads) and relative embeddings r that concatenate a row
embedding (first half of each head's channels) and a column embedding (second half). Logits
are not scaled, as in the paper's equation. Neighbours outside the image are masked out.
Stride 2 is attention followed by 2x2 average pooling, as in the paper (Sec. 4.1); an odd side
rounds up (ceil(H/2), as a stride-2 convolution does), its last window averaging what it covers.

Two implementations of the same maths (``kernels``, set by ``strabench.layers.kernels.use_kernels``):

- ``"fused"`` (as built): one ``scaled_dot_product_attention`` call per block, the relative
  embeddings folded into the keys' dot product. With A_row[p, y] = q_p[:half] . r_row[y - y_p]
  (0 outside the window) and a one-hot e(y) of a key's row (likewise for columns),
  q_p . k_q + q_p . r_{q - p} = [q_p, A_row[p], A_col[p]] . [k_q, e(y_q), e(x_q)], so SDPA runs
  on these augmented queries and keys (and the values padded to their width, which keeps
  torch's fused CPU kernel) with the window as a boolean mask and scale 1. It traces as one
  node, ``prim::PythonOp.SASAttention``, whose fvcore handle costs the maths (the dense
  formulation's count), not the augmented product.
- ``"stock"``: the window evaluated densely in plain ops: a (HW x HW) logit matrix from einsums,
  the relative logits gathered into it, a band mask, softmax, einsum (also what an ONNX export
  traces).

For the small maps these blocks see (layer4: 16x8 for ReID, 7x7 for faces) both beat unfolding
K*K copies of the keys and values; ``max_dense_positions`` guards memory on large maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from strabench.counting import counts_macs
from strabench.errors import ShapeError
from strabench.layers import ops

__all__ = ["SASA", "SASAttention"]


def _attention_macs(b: int, c: int, heads: int, n: int, kernel_size: int) -> int:
    # dense q.k (HW x HW per head) and attn.v; relative logits q_half . r (K per axis);
    # two adds of the gathered relative logits and the softmax over HW x HW
    return 2 * b * c * n * n + b * c * n * kernel_size + 3 * b * heads * n * n


def _own_macs(m: "SASA", x: Tensor, out: Tensor) -> int:
    b, c, h, w = x.shape
    return _attention_macs(b, c, m.heads, h * w, m.kernel_size)


def _sasa_attention_jit_macs(inputs: list, outputs: list) -> int:
    """fvcore handle of ``prim::PythonOp.SASAttention`` (inputs q (B, G, C/G, HW), k, v, rel_row
    (G, C/G/2, K), rel_col): the maths of the dense formulation."""
    b, g, cg, n = inputs[0].type().sizes()
    return _attention_macs(b, g * cg, g, n, inputs[3].type().sizes()[2])


def _offsets(h: int, w: int, kernel_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Row/column offset indices (into the K embeddings) and the window mask, each (HW, HW)."""
    r = kernel_size // 2
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None]  # key row - query row
    dx = xs[None, :] - xs[:, None]
    inside = (dy.abs() <= r) & (dx.abs() <= r)
    return (dy + r).clamp(0, kernel_size - 1), (dx + r).clamp(0, kernel_size - 1), inside


def dense_attention(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor, rel_col: Tensor, h: int, w: int,
                    kernel_size: int) -> Tensor:
    """SASA's attention in plain ops (``kernels="stock"``): q, k, v (B, G, C/G, HW) -> (B, G, C/G, HW)."""
    b, g, cg, n = q.shape
    row_idx, col_idx, inside = _offsets(h, w, kernel_size, q.device)
    logits = torch.einsum("bgcp,bgcq->bgpq", q, k)
    half = cg // 2
    rel_r = torch.einsum("bgcp,gck->bgpk", q[:, :, :half], rel_row.to(q.dtype))  # (B, G, HW, K)
    rel_c = torch.einsum("bgcp,gck->bgpk", q[:, :, half:], rel_col.to(q.dtype))
    logits = logits + rel_r.gather(-1, row_idx.expand(b, g, n, n)) + rel_c.gather(-1, col_idx.expand(b, g, n, n))
    logits = logits.masked_fill(~inside, float("-inf"))
    attn = logits.softmax(dim=-1)
    return torch.einsum("bgpq,bgcq->bgcp", attn, v)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, rel_row: Tensor, rel_col: Tensor, h: int, w: int,
                   kernel_size: int) -> Tensor:
    """The same as ``dense_attention``, as one ``scaled_dot_product_attention`` call on queries and
    keys augmented with the relative logits (module docstring)."""
    b, g, cg, n = q.shape
    half, r, dev = cg // 2, kernel_size // 2, q.device
    ys, xs = torch.arange(h, device=dev).repeat_interleave(w), torch.arange(w, device=dev).repeat(h)
    rel_r = torch.einsum("bgcp,gck->bgpk", q[:, :, :half], rel_row.to(q.dtype))  # (B, G, HW, K)
    rel_c = torch.einsum("bgcp,gck->bgpk", q[:, :, half:], rel_col.to(q.dtype))
    dy = torch.arange(h, device=dev)[None, :] - ys[:, None]  # (HW, H): key row - query row
    dx = torch.arange(w, device=dev)[None, :] - xs[:, None]  # (HW, W)
    a_row = rel_r.gather(-1, (dy + r).clamp(0, kernel_size - 1).expand(b, g, n, h)) * (dy.abs() <= r)
    a_col = rel_c.gather(-1, (dx + r).clamp(0, kernel_size - 1).expand(b, g, n, w)) * (dx.abs() <= r)
    q_aug = torch.cat([q.transpose(2, 3), a_row, a_col], dim=-1)  # (B, G, HW, C/G + H + W)
    k_aug = torch.cat([k.transpose(2, 3), F.one_hot(ys, h).to(q.dtype).expand(b, g, n, h),
                       F.one_hot(xs, w).to(q.dtype).expand(b, g, n, w)], dim=-1)
    inside = ((ys[None, :] - ys[:, None]).abs() <= r) & ((xs[None, :] - xs[:, None]).abs() <= r)
    values = F.pad(v.transpose(2, 3), (0, h + w))  # as wide as the keys: torch's fused CPU kernel
    out = F.scaled_dot_product_attention(q_aug, k_aug, values, attn_mask=inside, scale=1.0)
    return out[..., :cg].transpose(2, 3)


class SASAttention(torch.autograd.Function):
    """``sdpa_attention`` as one named node (what fvcore counts with its handle); its backward is
    SDPA's own, through the graph the forward keeps."""

    @staticmethod
    def forward(ctx, q, k, v, rel_row, rel_col, h: int, w: int, kernel_size: int, record: bool):  # type: ignore[override]
        args = (q, k, v, rel_row, rel_col)
        if not record:  # nothing will ask for a gradient: no graph to keep
            return sdpa_attention(*args, h, w, kernel_size)
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(args, ctx.needs_input_grad)]
            out = sdpa_attention(*leaves, h, w, kernel_size)
        ctx.graph = (out, leaves)
        return out.detach()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        out, leaves = ctx.graph
        wanted = [t for t in leaves if t.requires_grad]
        # retain_graph: a caller may run this backward again (retain_graph=True outside, gradcheck)
        found = iter(torch.autograd.grad(out, wanted, grad, retain_graph=True))
        return (*[next(found) if t.requires_grad else None for t in leaves], None, None, None, None)


@counts_macs(_own_macs, fvcore={"prim::PythonOp.SASAttention": _sasa_attention_jit_macs})
class SASA(nn.Module):
    """Stand-alone local self-attention over a ``kernel_size`` window (7 in the SASA paper).

    Args:
        channels: C, divisible by ``heads``; each head's C/heads must be even (row/column split).
        heads: attention heads = groups of the q/k/v convs (8).
        kernel_size: spatial extent of the attended window.
        stride: 1 or 2 (2 = attention then 2x2 average pooling).
    """

    block_kind = "replace"  # takes a convolution's place (strabench.models.blocks)

    def __init__(self, channels: int, *, heads: int = 8, kernel_size: int = 7, stride: int = 1,
                 max_dense_positions: int = 4096) -> None:
        super().__init__()
        if channels % heads or (channels // heads) % 2:
            raise ValueError(f"SASA: channels ({channels}) must split into {heads} heads of even width")
        if kernel_size % 2 == 0:
            raise ValueError(f"SASA: kernel_size must be odd, got {kernel_size}")
        if stride not in (1, 2):
            raise ValueError(f"SASA: stride must be 1 or 2, got {stride}")
        self.channels, self.heads, self.kernel_size, self.stride = channels, heads, kernel_size, stride
        self.max_dense_positions = max_dense_positions
        self.query = nn.Conv2d(channels, channels, 1, groups=heads, bias=False)
        self.key = nn.Conv2d(channels, channels, 1, groups=heads, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, groups=heads, bias=False)
        half = channels // heads // 2
        self.rel_row = nn.Parameter(torch.randn(heads, half, kernel_size) * half**-0.5)
        self.rel_col = nn.Parameter(torch.randn(heads, half, kernel_size) * half**-0.5)
        # ceil_mode: an odd side gives ceil(H/2) like the stride-2 shortcut it is added to; the
        # last, partial window averages the pixels it has (the divisor excludes the overhang)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.kernels = "fused"  # "fused": SDPA; "stock": dense plain ops (strabench.layers.kernels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ShapeError(f"SASA expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        b, c, h, w = x.shape
        n = h * w
        if n > self.max_dense_positions:
            raise ShapeError(f"SASA: {h}x{w} feature map exceeds max_dense_positions={self.max_dense_positions}")
        g, cg = self.heads, c // self.heads
        q = self.query(x).reshape(b, g, cg, n)
        k = self.key(x).reshape(b, g, cg, n)
        v = self.value(x).reshape(b, g, cg, n)
        if self.kernels == "stock" or ops.decomposing():  # an exporter traces the plain ops
            out = dense_attention(q, k, v, self.rel_row, self.rel_col, h, w, self.kernel_size)
        else:
            rel_row, rel_col = self.rel_row.to(q.dtype), self.rel_col.to(q.dtype)
            record = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, rel_row, rel_col))
            # int(): the sizes as Python ints (a torch.jit.trace hands out traced sizes, which a
            # Python autograd Function cannot take as non-tensor arguments)
            out = SASAttention.apply(q, k, v, rel_row, rel_col, int(h), int(w), self.kernel_size, record)
        return self.pool(out.reshape(b, c, h, w))

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, kernel_size={self.kernel_size}, stride={self.stride}"
