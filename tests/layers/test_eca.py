"""ECA (Wang et al., CVPR 2020) against a reference written here from the paper's equations."""

from __future__ import annotations

import math

import pytest
import torch

from strabench.layers.eca import ECA, eca_kernel_size
from strabench.measure import counters
from strabench.measure.flops import count_macs, count_macs_paper
from strabench.measure.params import count_params
from strabench.registry import create_model


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_kernel_size_follows_eq_12(channels, k):
    # |log2(C)/2 + 1/2|_odd as the authors' code rounds it: int(), then +1 when even
    t = int((math.log2(channels) + 1) / 2)
    assert eca_kernel_size(channels) == (t if t % 2 else t + 1) == k


def test_eca_matches_a_loop_over_channels():
    block = ECA(12, kernel_size=5).double()
    torch.nn.init.normal_(block.conv.weight)
    x = torch.randn(2, 12, 4, 3, dtype=torch.float64)
    w = block.conv.weight.view(5)
    expected = torch.empty_like(x)
    for n in range(2):
        y = [x[n, c].mean() for c in range(12)]
        for c in range(12):  # 1-D cross-correlation over channels, zero padded by 2 each side
            s = sum(w[j] * y[c + j - 2] for j in range(5) if 0 <= c + j - 2 < 12)
            expected[n, c] = x[n, c] * torch.sigmoid(s)
    torch.testing.assert_close(block(x), expected)


def test_eca_counting_is_declared_next_to_the_block():
    block, x = ECA(64).eval(), torch.zeros(2, 64, 5, 4)
    fv, pt = counters.count_macs_fvcore(block, x), counters.count_macs_ptflops(block, x)
    assert fv.uncounted == pt.uncounted == []
    k, elements = 3, 2 * 64 * 5 * 4
    conv, gate = 2 * 64 * k, 2 * 64  # conv1d over 64 positions; sigmoid per channel
    # fvcore: mean over HW (1 per input element), conv1d, sigmoid, x * w
    assert fv.total == elements + conv + gate + elements
    # ptflops: its adaptive-pool hook (1 per input element), conv1d, our sigmoid hook, x * w
    assert pt.total == elements + conv + gate + elements
    paper = count_macs_paper(block, x[:1])
    assert paper.total == 0 and paper.uncounted == ["conv (Conv1d)"]  # a Conv1d is outside conv2d+linear


def test_resnet50_eca_adds_k_weights_per_bottleneck():
    base, eca = create_model("resnet50"), create_model("resnet50_eca")
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert count_params(eca) - count_params(base) == sum(eca_kernel_size(c) for c in widths) == 86
    # the paper convention is unchanged (ECA has no conv2d or linear) and says what it left out
    shape = (3, 64, 32)
    paper = count_macs(eca, shape, "paper")
    assert paper.total == count_macs(base, shape, "paper").total
    assert len(paper.uncounted) == 16 and all(u.endswith("addon.conv (Conv1d)") for u in paper.uncounted)
    assert count_macs(eca, shape, "ptflops").uncounted == []
