"""Slow float64 references for the attention blocks, written from the papers' equations.

Each reference takes a module only for its parameters (conv weights, BN affine parameters and
running statistics) and recomputes the block with explicit loops over pixels, window offsets,
groups and modes. None of them calls the module, its submodules or anything in ``strabench``,
so a bug in the module cannot hide in its reference. BatchNorm is written out as well: batch
statistics (biased variance) in training mode, running statistics in eval mode.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn


def conv1x1(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """A grouped 1x1 convolution, group by group: out[o] = sum_c W[o, c] x[c] (+ b[o])."""
    cin, cout = x.shape[1], weight.shape[0]
    ci, co = cin // groups, cout // groups
    parts = [torch.einsum("oc,bchw->bohw", weight[g * co:(g + 1) * co, :, 0, 0], x[:, g * ci:(g + 1) * ci]) for g in range(groups)]
    y = torch.cat(parts, dim=1)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def batch_norm(x: Tensor, bn: nn.BatchNorm2d, training: bool) -> Tensor:
    """(x - mean) / sqrt(var + eps) * gamma + beta, per channel."""
    if training:
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    else:
        mean, var = bn.running_mean, bn.running_var
    shape = (1, -1, 1, 1)
    y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
    return y if bn.weight is None else y * bn.weight.view(shape) + bn.bias.view(shape)


def softmax(values: list[Tensor]) -> list[Tensor]:
    """exp(v_i - max) / sum_j exp(v_j - max) over a list of same-shaped tensors."""
    top = torch.stack(values).amax(dim=0)
    exps = [torch.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def out_size(n: int, k: int, s: int) -> int:
    """Output length of a K-window with padding K // 2 and stride s."""
    return (n + 2 * (k // 2) - k) // s + 1


def window(k: int) -> list[tuple[int, int]]:
    """Window offsets (dy, dx), row-major: offset index n = (dy + K//2) * K + (dx + K//2)."""
    r = k // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def weighted_sum_loops(attn: Tensor, value: Tensor, k: int, s: int) -> Tensor:
    """out[b, g*Cg + c, i, j] = sum_k attn[b, g, k, i, j] * value[b, g*Cg + c, i*s+dy, j*s+dx] (0 outside)."""
    b, c, h, w = value.shape
    g = attn.shape[1]
    cg = c // g
    ho, wo = out_size(h, k, s), out_size(w, k, s)
    pixels = []
    for i, j in itertools.product(range(ho), range(wo)):
        acc = value.new_zeros(b, g, cg)
        for n, (dy, dx) in enumerate(window(k)):
            y, x = i * s + dy, j * s + dx
            if 0 <= y < h and 0 <= x < w:
                acc = acc + attn[:, :, n, i, j, None] * value[:, :, y, x].reshape(b, g, cg)
        pixels.append(acc.reshape(b, c))
    return torch.stack(pixels, dim=-1).reshape(b, c, ho, wo)


def gather_neighbours_loops(t: Tensor, k: int, s: int, fill: float) -> Tensor:
    """out[b, g, n, i, j] = t[b, g, i*s + dy_n, j*s + dx_n], ``fill`` outside the image."""
    b, g, h, w = t.shape
    ho, wo = out_size(h, k, s), out_size(w, k, s)
    out = torch.full((b, g, k * k, ho, wo), fill, dtype=t.dtype)
    for n, (dy, dx) in enumerate(window(k)):
        for i, j in itertools.product(range(ho), range(wo)):
            y, x = i * s + dy, j * s + dx
            if 0 <= y < h and 0 <= x < w:
                out[:, :, n, i, j] = t[:, :, y, x]
    return out


def set_random_batch_norm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN parameters and running statistics, so eval mode is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)


# --- StRA local attention (paper Eq. 2) ----------------------------------------------------------


def local_attention(m: nn.Module, x: Tensor, *, training: bool) -> tuple[Tensor, Tensor]:
    """(output, attention weights (B, G, K*K, Ho, Wo)) of StRA's local attention.

    logit[g, k](p) = omega[g, k](p*s) + nu[g](p*s + delta_k); a = softmax_k(logit);
    out_g(p) = sum_k a[g, k](p) u_g(p*s + delta_k), u = grouped 1x1 conv of x. The branch is
    1x1 (groups G) -> BN -> tanh -> 1x1 (groups G) -> BN with, per group, K*K omegas then nu.
    Border "zero": an outside neighbour has nu = 0 and u = 0 but stays in the softmax (weight
    0 in ``attention`` for "mask", where it is left out).
    """
    b, c, h, w = x.shape
    g, k, s = m.groups, m.kernel_size, m.stride
    kk, cg = k * k, c // g
    u = conv1x1(x, m.value.weight, m.value.bias, g)
    first, first_bn, _, second, second_bn = m.branch
    hidden = torch.tanh(batch_norm(conv1x1(x, first.weight, first.bias, g), first_bn, training))
    logits = batch_norm(conv1x1(hidden, second.weight, second.bias, g), second_bn, training)
    ho, wo = out_size(h, k, s), out_size(w, k, s)
    out = x.new_zeros(b, c, ho, wo)
    attention = x.new_zeros(b, g, kk, ho, wo)
    for i in range(ho):
        for j in range(wo):
            for group in range(g):
                base = group * (kk + 1)
                terms, values, used = [], [], []
                for n, (dy, dx) in enumerate(window(k)):
                    y, xx = i * s + dy, j * s + dx
                    omega = logits[:, base + n, i * s, j * s]
                    if 0 <= y < h and 0 <= xx < w:
                        terms.append(omega + logits[:, base + kk, y, xx])
                        values.append(u[:, group * cg:(group + 1) * cg, y, xx])
                    elif m.border == "zero":
                        terms.append(omega)
                        values.append(x.new_zeros(b, cg))
                    else:
                        continue
                    used.append(n)
                weights = softmax(terms)
                out[:, group * cg:(group + 1) * cg, i, j] = sum(a[:, None] * v for a, v in zip(weights, values))
                for n, a in zip(used, weights):
                    attention[:, group, n, i, j] = a
    return out, attention


# --- StRA mode attention (paper Eq. 1, 3, appendix A) --------------------------------------------


def mode_attention(m: nn.Module, x: Tensor, *, training: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(output, masks (B, G, H, W), per-sample diversity loss) of StRA's mode attention.

    M_g = softmax over positions of the mask branch (1x1 -> BN -> tanh -> 1x1 -> BN, groups G);
    z_g = sum_p M_g(p) x_g(p); y_g(p) = x_g(p) + sigmoid(BN(<z_g, x_g(p)>)) z_g. With
    interaction: S = Z Z^T, rows L2-normalised, P = softmax_j(sqrt(G) S), z'_g = sum_j P[g, j] z_j,
    out_g(p) = y_g(p) + sigmoid(BN(<z'_g, y_g(p)>)) z'_g. L_d = G - sum_p max_g M_g(p).
    """
    b, c, h, w = x.shape
    g = m.groups
    cg = c // g
    first, first_bn, _, second, second_bn = m.mask
    hidden = torch.tanh(batch_norm(conv1x1(x, first.weight, first.bias, g), first_bn, training))
    logits = batch_norm(conv1x1(hidden, second.weight, second.bias, g), second_bn, training)
    positions = [(i, j) for i in range(h) for j in range(w)]
    masks = x.new_zeros(b, g, h, w)
    for mode in range(g):
        for (i, j), weight in zip(positions, softmax([logits[:, mode, i, j] for i, j in positions])):
            masks[:, mode, i, j] = weight

    def part(t: Tensor, mode: int) -> Tensor:
        return t[:, mode * cg:(mode + 1) * cg]

    z = [sum(masks[:, mode, i, j, None] * part(x, mode)[:, :, i, j] for i, j in positions) for mode in range(g)]  # G x (B, Cg)
    inner = x.new_zeros(b, g, h, w)
    for mode in range(g):
        for i, j in positions:
            inner[:, mode, i, j] = (z[mode] * part(x, mode)[:, :, i, j]).sum(dim=1)
    gate = torch.sigmoid(batch_norm(inner, m.gate1_bn, training))
    y = torch.cat([part(x, mode) + gate[:, mode, None] * z[mode][:, :, None, None] for mode in range(g)], dim=1)
    if m.interaction:
        mixed = []
        for n in range(b):
            rows = []
            for a in range(g):
                sims = [(z[a][n] * z[j][n]).sum() for j in range(g)]
                norm = torch.sqrt(sum(v * v for v in sims))
                weights = softmax([math.sqrt(g) * v / norm for v in sims])
                rows.append(sum(p * z[j][n] for j, p in enumerate(weights)))
            mixed.append(torch.stack(rows))
        z2 = torch.stack(mixed, dim=1)  # (G, B, Cg)
        inner2 = x.new_zeros(b, g, h, w)
        for mode in range(g):
            for i, j in positions:
                inner2[:, mode, i, j] = (z2[mode] * part(y, mode)[:, :, i, j]).sum(dim=1)
        gate2 = torch.sigmoid(batch_norm(inner2, m.gate2_bn, training))
        y = torch.cat([part(y, mode) + gate2[:, mode, None] * z2[mode][:, :, None, None] for mode in range(g)], dim=1)
    plain = masks.detach().tolist()
    diversity = [g - sum(max(plain[n][mode][i][j] for mode in range(g)) for i, j in positions) for n in range(b)]
    return y, masks, torch.tensor(diversity, dtype=x.dtype)


# --- SASA (Ramachandran et al. 2019, Eq. 2-3) ----------------------------------------------------


def sasa(m: nn.Module, x: Tensor) -> Tensor:
    """y_ij = sum_{ab in N_k(ij)} softmax_ab(q_ij . k_ab + q_ij . r_{a-i, b-j}) v_ab per head.

    q, k, v: 1x1 convs with groups = heads; r_{dy, dx} = [row embedding of dy ; column
    embedding of dx] (half of a head's channels each); neighbours outside the image are left
    out; stride 2 = the attention then 2x2 average pooling (an odd side's last window averages
    the pixels it covers).
    """
    b, c, h, w = x.shape
    heads, kernel = m.heads, m.kernel_size
    cg, half, r = c // heads, c // heads // 2, kernel // 2
    q = conv1x1(x, m.query.weight, None, heads)
    key = conv1x1(x, m.key.weight, None, heads)
    v = conv1x1(x, m.value.weight, None, heads)
    out = x.new_zeros(b, c, h, w)
    for i in range(h):
        for j in range(w):
            for head in range(heads):
                sl = slice(head * cg, (head + 1) * cg)
                query = q[:, sl, i, j]
                logits, values = [], []
                for dy, dx in window(kernel):
                    a, bb = i + dy, j + dx
                    if not (0 <= a < h and 0 <= bb < w):
                        continue
                    rel = torch.cat([m.rel_row[head, :, dy + r], m.rel_col[head, :, dx + r]])
                    logits.append((query * (key[:, sl, a, bb] + rel)).sum(dim=1))
                    values.append(v[:, sl, a, bb])
                out[:, sl, i, j] = sum(p[:, None] * val for p, val in zip(softmax(logits), values))
    if m.stride == 1:
        return out
    ho, wo = (h + 1) // 2, (w + 1) // 2  # odd sides round up, like the stride-2 shortcut beside it
    pooled = x.new_zeros(b, c, ho, wo)
    for i in range(ho):
        for j in range(wo):
            pooled[:, :, i, j] = out[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(dim=(2, 3))
    return pooled


# --- Non-local (Wang et al. 2018, Eq. 1-3, embedded Gaussian) ------------------------------------


def non_local(m: nn.Module, x: Tensor, *, training: bool) -> Tensor:
    """z = BN(W y) + x, y_i = sum_j softmax_j(theta_i . phi_j) g_j, phi and g 2x2 max-pooled
    (ceil: a last odd row/column forms its own window)."""
    b, c, h, w = x.shape
    theta = conv1x1(x, m.theta.weight, m.theta.bias, 1)
    phi_full = conv1x1(x, m.phi.weight, m.phi.bias, 1)
    g_full = conv1x1(x, m.g.weight, m.g.bias, 1)

    def pool(t: Tensor) -> list[Tensor]:
        cells = []
        for i in range(0, h, 2):
            for j in range(0, w, 2):
                cells.append(t[:, :, i:i + 2, j:j + 2].amax(dim=(2, 3)))
        return cells

    phi, g = pool(phi_full), pool(g_full)
    y = x.new_zeros(b, theta.shape[1], h, w)
    for i in range(h):
        for j in range(w):
            weights = softmax([(theta[:, :, i, j] * p).sum(dim=1) for p in phi])
            y[:, :, i, j] = sum(a[:, None] * gv for a, gv in zip(weights, g))
    return x + batch_norm(conv1x1(y, m.out.weight, m.out.bias, 1), m.bn, training)
