from __future__ import annotations

import pytest
import torch

import paper_reference

from strabench.layers.non_local import NonLocal
from strabench.layers.se import SqueezeExcite


def test_se_matches_formula():
    block = SqueezeExcite(32, reduction=16).double()
    x = torch.randn(2, 32, 5, 3, dtype=torch.float64)
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ block.fc1.weight.view(2, 32).T + block.fc1.bias)
    gate = torch.sigmoid(hidden @ block.fc2.weight.view(32, 2).T + block.fc2.bias)
    torch.testing.assert_close(block(x), x * gate[:, :, None, None])


def test_non_local_is_identity_at_init() -> None:
    block = NonLocal(16).double().eval()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(block(x), x)  # W's BN starts at gamma = 0, beta = 0


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("hw", [(6, 4), (5, 7), (1, 3)])  # odd sizes: the last pooling window is partial
def test_non_local_matches_the_equations(training: bool, hw: tuple[int, int]) -> None:
    torch.manual_seed(7)
    block = NonLocal(16).double().train(training)
    paper_reference.set_random_batch_norm(block, 7)
    x = torch.randn(3, 16, *hw, dtype=torch.float64, requires_grad=True)
    got, expected = block(x), paper_reference.non_local(block, x, training=training)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-7)
    weight = torch.randn_like(got)
    params = list(block.parameters())
    for a, b in zip(torch.autograd.grad((got * weight).sum(), [x, *params]),
                    torch.autograd.grad((expected * weight).sum(), [x, *params], allow_unused=True)):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, atol=1e-8, rtol=1e-6)


def test_non_local_gradients_reach_every_parameter():
    block = NonLocal(16).train()
    torch.nn.init.ones_(block.bn.weight)
    block(torch.randn(3, 16, 4, 4)).pow(2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
