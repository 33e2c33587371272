"""Mode attention (StRA paper, Eq. 1 and 3, appendix A) and its diversity loss.

The input (B, C, H, W) is split into G contiguous groups ("modes") of C/G channels. Each mode
gets a spatial softmax mask M_g, a modal vector z_g = sum_p M_g(p) x_g(p), and every pixel is
gated towards it: y_g(p) = x_g(p) + sigmoid(BN(<z_g, x_g(p)>)) z_g. With mode interaction the
modal vectors are first mixed, z'_g = sum_j softmax_j(sqrt(G) * rownorm(Z Z^T))[g, j] z_j, and
a second gate adds them: out_g(p) = y_g(p) + sigmoid(BN(<z'_g, y_g(p)>)) z'_g.

The diversity loss L_d = G - sum_p max_g M_g(p) (0 for disjoint modes, G-1 for identical ones)
is computed in training mode only and handed back through ``pop_aux_losses()``, which the
owning model calls right after its forward; nothing is kept in globals.

Its layers are modules called as modules; the mask branch's grouped 1x1 convs are
``GroupedPointwiseConv``s (StRA's GEMM kernel on the CPU). After
``strabench.layers.kernels.fuse_for_inference`` (eval mode) the whole forward is one
``strabench::mode_attention_infer`` call (one C kernel call for a contiguous NCHW
float32/float64 CPU input: per (image, mode) the mask branch, the softmax over pixels, z and the
first gate, then the modes' mixing, then the second gate and the output).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from strabench.counting import counts_macs
from strabench.errors import ShapeError
from strabench.layers import ops
from strabench.layers._inference import check_inference, conv_tensors, eval_norm, norm_tensors, plain_pointwise
from strabench.layers._local_ops import _memory_format
from strabench.layers.pointwise import GroupedPointwiseConv


def diversity_loss(masks: Tensor) -> Tensor:
    """Per-sample L_d = G - sum_p max_g M_g(p) for masks of shape (B, G, P) (each row sums to 1)."""
    groups = masks.shape[1]
    return groups - masks.amax(dim=1).sum(dim=-1)


def _own_macs(m: "ModeAttention", x: Tensor, out: Tensor) -> int:
    b, c, h, w = x.shape
    g, p = m.groups, h * w
    # mask softmax over HW, z = M x (bmm), gate logits <z, x> (bmm), sigmoid, y = x + r z (addcmul: mul, add)
    macs = b * g * p + 2 * b * c * p + b * g * p + 2 * b * c * p
    if m.interaction:
        # S = Z Z^T and P Z (bmm, G x G x C/G each), row norm + divide + sqrt(G) scale + softmax on G x G,
        # gate 2 logits (bmm), sigmoid, y + s z' (addcmul: mul, add)
        macs += 2 * b * g * c + 4 * b * g * g + b * c * p + b * g * p + 2 * b * c * p
    return macs


# z_g = sum_p M_g(p) x_g(p) and <z_g, x_g(p)>. In NCHW each is one batched matmul over
# (batch, group) with no copy. In channels_last (channels innermost) that batching needs a copy of
# the activation, so the products run per image over all channels at once instead: G times the
# multiply-adds of a small product (C x P x G per image), no copy, the layout kept. The counters
# cost the maths (the NCHW products), whichever way it runs.


def _pool(masks: Tensor, xg: Tensor, pixel_major: bool) -> Tensor:
    """(B, G, P) masks, (B, G, Cg, P) x -> z (B, G, Cg)."""
    b, g, cg, p = xg.shape
    if not pixel_major:  # one matrix-vector product per (image, group)
        return torch.bmm(xg.reshape(b * g, cg, p), masks.reshape(b * g, p, 1)).view(b, g, cg)
    # (B, G, P) @ (B, P, C), both row-major in this layout: each mask x each channel
    every = torch.bmm(masks, xg.reshape(b, g * cg, p).transpose(1, 2))
    # mask g x the channels of group g; contiguous (B*C values) so later products read z with unit stride
    return every.view(b, g, g, cg).diagonal(dim1=1, dim2=2).permute(0, 2, 1).contiguous()


def _dot(z: Tensor, xg: Tensor, pixel_major: bool) -> Tensor:
    """(B, G, Cg) z, (B, G, Cg, P) x -> <z_g, x_g(p)> (B, G, P)."""
    b, g, cg, p = xg.shape
    if not pixel_major:
        return torch.bmm(z.reshape(b * g, 1, cg), xg.reshape(b * g, cg, p)).view(b, g, p)
    eye = torch.eye(g, dtype=z.dtype, device=z.device).unsqueeze(-1)  # (G, G, 1)
    block_rows = (z.unsqueeze(2) * eye).reshape(b, g, g * cg)  # row g: z_g at group g's channels, 0 elsewhere
    return torch.bmm(block_rows, xg.reshape(b, g * cg, p))


@counts_macs(_own_macs)
class ModeAttention(nn.Module):
    """Node-to-mode attention with optional mode interaction (StRA paper, Sec. 2 and App. A).

    Args:
        channels: C, divisible by ``groups``.
        groups: G, the number of modes.
        interaction: mix the modal vectors across modes (the full StRA); off = "w/o interaction".
        mask_hidden: hidden width per group of the mask branch (8 in the authors' model).
    """

    block_kind = "insert"  # follows a module, which stays (strabench.models.blocks)

    def __init__(self, channels: int, *, groups: int = 8, interaction: bool = True, mask_hidden: int = 8) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"ModeAttention: channels ({channels}) must be divisible by groups ({groups})")
        self.channels, self.groups, self.interaction = channels, groups, interaction
        hidden = mask_hidden * groups
        self.mask = nn.Sequential(
            GroupedPointwiseConv(channels, hidden, groups=groups, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Tanh(),
            GroupedPointwiseConv(hidden, groups, groups=groups, bias=False),
            nn.BatchNorm2d(groups),
        )
        self.gate1_bn = nn.BatchNorm2d(groups)
        self.gate2_bn = nn.BatchNorm2d(groups) if interaction else None
        self._aux: dict[str, Tensor] = {}
        self.kernels = "fused"  # "stock" | "fused" | "inference": strabench.layers.kernels

    def masks(self, x: Tensor) -> Tensor:
        """The spatial masks M, shape (B, G, H, W), each mode summing to 1 over positions."""
        b, _, h, w = x.shape
        logits = self.mask(x).flatten(2)
        return logits.softmax(dim=-1).view(b, self.groups, h, w)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ShapeError(f"ModeAttention expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if self.kernels == "inference":
            check_inference(self, x)
            return ops.mode_attention_infer(x, *self._infer_args())
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()  # a strided view (a slice, a transpose): the grouped views below need a layout
        b, c, h, w = x.shape
        g = self.groups
        masks = self.masks(x).view(b, g, h * w)
        # a view in NCHW and in channels_last alike; addcmul keeps x's layout and needs no temporary
        xg = x.view(b, g, c // g, h * w)
        pixel_major = _memory_format(x) == torch.channels_last
        z = _pool(masks.to(xg.dtype), xg, pixel_major)
        r = torch.sigmoid(self.gate1_bn(_dot(z, xg, pixel_major).view(b, g, h, w)))
        y = torch.addcmul(xg, r.view(b, g, 1, h * w), z.unsqueeze(-1))
        if self.interaction:
            s = torch.bmm(z, z.transpose(1, 2))
            s = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            z2 = torch.bmm((math.sqrt(g) * s).softmax(dim=-1), z)
            gate = torch.sigmoid(self.gate2_bn(_dot(z2, y, pixel_major).view(b, g, h, w)))
            y = torch.addcmul(y, gate.view(b, g, 1, h * w), z2.unsqueeze(-1))
        if self.training:
            self._aux = {"diversity": diversity_loss(masks.float())}
        return y.view(b, c, h, w)

    def fusible(self) -> bool:
        """Whether ``fuse_for_inference`` can make this block one call: eval mode, its mask branch grouped
        1x1 conv, eval-mode BN, tanh, grouped 1x1 conv to G maps, eval-mode BN, and eval-mode gate BNs."""
        mask = list(self.mask)
        gates = [self.gate1_bn] + ([self.gate2_bn] if self.interaction else [])
        return (
            not self.training and len(mask) == 5 and type(mask[2]) is nn.Tanh
            and plain_pointwise(mask[0], self.groups) and plain_pointwise(mask[3], self.groups)
            and mask[3].out_channels == self.groups and all(eval_norm(bn) for bn in [mask[1], mask[4], *gates])
        )

    def _infer_args(self) -> list:
        mods = self._modules
        mask = list(mods["mask"]._modules.values())
        gate2 = norm_tensors(mods["gate2_bn"]) if self.interaction else (None, None, None, None, 0.0)
        return [self.groups, self.interaction, *conv_tensors(mask[0]), *conv_tensors(mask[3]), *norm_tensors(mask[1]),
                *norm_tensors(mask[4]), *norm_tensors(mods["gate1_bn"]), *gate2]

    def pop_aux_losses(self) -> dict[str, Tensor]:
        """Per-sample auxiliary losses of the last training forward (cleared on read)."""
        aux, self._aux = self._aux, {}
        return aux

    def extra_repr(self) -> str:
        return f"{self.channels}, groups={self.groups}, interaction={self.interaction}"
