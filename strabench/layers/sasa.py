"""Stand-alone self-attention (Ramachandran et al., NeurIPS 2019, Eq. 2-3): a conv-replacing block.

y_ij = sum_{ab in N_k(i,j)} softmax_ab(q_ij . k_ab + q_ij . r_{a-i,b-j}) v_ab, per head, with
q/k/v from grouped 1x1 convs (groups = heads) and relative embeddings r that concatenate a row
embedding (first half of each head's channels) and a column embedding (second half). Logits
are not scaled, as in the paper's equation. Neighbours outside the image are masked out.
Stride 2 is attention followed by 2x2 average pooling, as in the paper (Sec. 4.1); an odd side
rounds up (ceil(H/2), as a stride-2 convolution does), its last window averaging what it covers.

The window is evaluated densely: a (HW x HW) logit matrix with a band mask. For the small
maps these blocks see (layer4: 16x8 for ReID, 7x7 for faces) this is faster than unfolding
K*K copies of the keys and values; ``max_dense_positions`` guards memory on large maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from strabench.counting import counts_macs
from strabench.errors import ShapeError


def _own_macs(m: "SASA", x: Tensor, out: Tensor) -> int:
    b, c, h, w = x.shape
    n = h * w
    # dense q.k (HW x HW per head) and attn.v; relative logits q_half . r (K per axis);
    # two adds of the gathered relative logits and the softmax over HW x HW
    return 2 * b * c * n * n + b * c * n * m.kernel_size + 3 * b * m.heads * n * n


@counts_macs(_own_macs)
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

    def _offsets(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Row/column offset indices (into the K embeddings) and the window mask, each (HW, HW)."""
        r = self.kernel_size // 2
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[None, :] - ys[:, None]  # key row - query row
        dx = xs[None, :] - xs[:, None]
        inside = (dy.abs() <= r) & (dx.abs() <= r)
        return (dy + r).clamp(0, self.kernel_size - 1), (dx + r).clamp(0, self.kernel_size - 1), inside

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
        row_idx, col_idx, inside = self._offsets(h, w, x.device)
        logits = torch.einsum("bgcp,bgcq->bgpq", q, k)
        half = cg // 2
        rel_r = torch.einsum("bgcp,gck->bgpk", q[:, :, :half], self.rel_row.to(q.dtype))  # (B, G, HW, K)
        rel_c = torch.einsum("bgcp,gck->bgpk", q[:, :, half:], self.rel_col.to(q.dtype))
        logits = logits + rel_r.gather(-1, row_idx.expand(b, g, n, n)) + rel_c.gather(-1, col_idx.expand(b, g, n, n))
        logits = logits.masked_fill(~inside, float("-inf"))
        attn = logits.softmax(dim=-1)
        out = torch.einsum("bgpq,bgcq->bgcp", attn, v).reshape(b, c, h, w)
        return self.pool(out)

    def extra_repr(self) -> str:
        return f"{self.channels}, heads={self.heads}, kernel_size={self.kernel_size}, stride={self.stride}"
