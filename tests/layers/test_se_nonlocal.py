from __future__ import annotations

import torch

from strabench.layers.non_local import NonLocal
from strabench.layers.se import SqueezeExcite


def test_se_matches_formula():
    block = SqueezeExcite(32, reduction=16).double()
    x = torch.randn(2, 32, 5, 3, dtype=torch.float64)
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ block.fc1.weight.view(2, 32).T + block.fc1.bias)
    gate = torch.sigmoid(hidden @ block.fc2.weight.view(32, 2).T + block.fc2.bias)
    torch.testing.assert_close(block(x), x * gate[:, :, None, None])


def test_non_local_is_identity_at_init_then_matches_reference():
    block = NonLocal(16).double().eval()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(block(x), x)  # BN gamma = 0
    torch.nn.init.ones_(block.bn.weight)
    b, c, h, w = x.shape
    theta = block.theta(x).flatten(2)  # (B, C/2, HW)
    phi = torch.nn.functional.max_pool2d(block.phi(x), 2, ceil_mode=True).flatten(2)
    g = torch.nn.functional.max_pool2d(block.g(x), 2, ceil_mode=True).flatten(2)
    expected = torch.empty(b, c // 2, h * w, dtype=x.dtype)
    for n in range(b):
        for i in range(h * w):
            weights = torch.softmax(torch.stack([theta[n, :, i] @ phi[n, :, j] for j in range(phi.shape[-1])]), 0)
            expected[n, :, i] = sum(weights[j] * g[n, :, j] for j in range(phi.shape[-1]))
    ref = x + block.bn(block.out(expected.view(b, c // 2, h, w)))
    torch.testing.assert_close(block(x), ref)


def test_non_local_gradients_reach_every_parameter():
    block = NonLocal(16).train()
    torch.nn.init.ones_(block.bn.weight)
    block(torch.randn(3, 16, 4, 4)).pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
