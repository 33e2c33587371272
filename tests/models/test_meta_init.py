"""Meta-device builds skip the initialisers' value ops, and nothing else: the same parameters and
buffers (names, shapes, dtypes) as torch's own meta build, refused arguments still refused,
real tensors still initialised."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from strabench.models.meta_init import skipping_meta_init
from strabench.registry import create_model, list_models, model_info

SKIPPED = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_, torch.Tensor.erfinv_}


class _Spy(TorchFunctionMode):
    """Records every torch function that reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(func)
        return func(*args, **(kwargs or {}))


def _layout(model: nn.Module) -> dict[str, tuple]:
    return {k: (tuple(v.shape), v.dtype, v.device.type) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_the_layout_of_torchs_own_meta_build(name: str) -> None:
    with torch.device("meta"):
        ours = create_model(name, num_classes=7)
        plain = model_info(name).builder(num_classes=7)  # no strabench wrapper: every initialiser runs
    assert _layout(ours) == _layout(plain)
    assert all(t.is_meta for t in ours.state_dict().values())


def test_the_initialisers_value_ops_never_run_on_meta_and_the_rest_do() -> None:
    with torch.device("meta"), _Spy() as spy, skipping_meta_init():
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4))
        nn.init.trunc_normal_(model[2].weight, std=0.02)
    assert model[0].weight.shape == (8, 3, 3, 3) and model[0].weight.is_meta
    assert not SKIPPED & set(spy.calls)  # the conv's and linear's uniform_, BN's fill_/zero_, trunc_normal_'s ops
    assert spy.calls  # everything else still goes through (parameter creation, trunc_normal_'s mul_, add_, clamp_)


def _outcome(call, skip: bool) -> str:
    with torch.device("meta"), (skipping_meta_init() if skip else contextlib.nullcontext()):
        try:
            call(torch.empty(3))
        except RuntimeError:
            return "refused"
    return "taken"


@pytest.mark.parametrize("call, plain", [
    (lambda t: t.normal_(0.0, -1.0), "refused"),
    (lambda t: t.normal_(0.0, float("nan")), "refused"),
    (lambda t: t.fill_(torch.ones(2, device="meta")), "refused"),
    (lambda t: t.uniform_(1.0, 0.0), "taken"),  # torch's meta uniform_ does not check its range
    (lambda t: t.normal_(mean=1.0, std=0.5), "taken"),
])
def test_arguments_are_refused_exactly_where_torch_refuses_them(call, plain: str) -> None:
    assert _outcome(call, skip=False) == plain
    assert _outcome(call, skip=True) == plain


def test_real_tensors_are_initialised_inside_and_outside_a_meta_block() -> None:
    with skipping_meta_init():  # not on the meta device: it does nothing
        outside = torch.zeros(1000).normal_()
    with torch.device("meta"), skipping_meta_init():
        inside = torch.zeros(1000, device="cpu").uniform_(1.0, 2.0)
    assert outside.std() > 0.5
    assert inside.min() >= 1.0 and inside.std() > 0.1
