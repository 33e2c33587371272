"""The memory floor of a forward pass on the meta device, and the process's memo of it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from strabench.errors import ShapeError
from strabench.measure import memory


class Widen(nn.Module):
    """Repeats its input's channels ``factor`` times: the output size lives in a plain attribute."""

    forwards = 0

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Widen.forwards += 1
        return x.repeat(1, self.factor, 1, 1)


class PrivateWiden(Widen):
    """The same, its factor kept in a private attribute."""

    def __init__(self, factor: int) -> None:
        super().__init__(1)
        self._hidden = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Widen.forwards += 1
        return x.repeat(1, self._hidden, 1, 1)


def _meta(module: nn.Module) -> nn.Module:
    return module.to("meta")


@pytest.fixture(autouse=True)
def _empty_memo():
    memory._MEASURED.clear()
    yield
    memory._MEASURED.clear()


def test_bytes_are_the_input_and_the_largest_output_by_hand():
    model = _meta(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Widen(4), nn.AdaptiveAvgPool2d(1)))
    inputs, largest = memory.activation_bytes(model, (2, 3, 10, 6))
    assert inputs == 2 * 3 * 10 * 6 * 4
    assert largest == 2 * 32 * 10 * 6 * 4  # Widen's output (the whole model's is pooled to 1x1)


def test_a_second_model_alike_is_not_run_again():
    first, second = _meta(nn.Sequential(Widen(3))), _meta(nn.Sequential(Widen(3)))
    before = Widen.forwards
    a = memory.activation_bytes(first, (1, 2, 4, 4))
    b = memory.activation_bytes(second, (1, 2, 4, 4))
    assert a == b == (1 * 2 * 16 * 4, 1 * 6 * 16 * 4)
    assert Widen.forwards == before + 1
    memory.activation_bytes(second, (1, 2, 8, 4))  # another shape: run
    assert Widen.forwards == before + 2


@pytest.mark.parametrize("cls", [Widen, PrivateWiden])
def test_models_that_differ_in_an_attribute_are_measured_each(cls):
    shape = (1, 2, 4, 4)
    assert memory.activation_bytes(_meta(cls(2)), shape)[1] == 1 * 4 * 16 * 4
    assert memory.activation_bytes(_meta(cls(5)), shape)[1] == 1 * 10 * 16 * 4


def test_models_that_differ_in_a_weight_shape_are_measured_each():
    shape = (1, 3, 4, 4)
    assert memory.activation_bytes(_meta(nn.Conv2d(3, 4, 1)), shape)[1] == 4 * 16 * 4
    assert memory.activation_bytes(_meta(nn.Conv2d(3, 9, 1)), shape)[1] == 9 * 16 * 4


def test_a_model_with_a_forward_hook_is_run_every_time():
    model = _meta(nn.Sequential(Widen(1)))
    model[0].register_forward_hook(lambda _m, _i, out: out.repeat(1, 7, 1, 1))
    before = Widen.forwards
    for _ in range(2):
        assert memory.activation_bytes(model, (1, 2, 4, 4))[1] == 1 * 14 * 16 * 4
    assert Widen.forwards == before + 2


def test_a_refusal_is_not_remembered_as_a_pass():
    model = _meta(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(5, 4, 1)))  # channels do not line up
    for _ in range(2):
        with pytest.raises(ShapeError, match="cannot take input"):
            memory.check_fits_in_memory(model, (1, 3, 4, 4), what="m")
    assert not memory._MEASURED


def test_an_input_beyond_the_machine_is_refused_even_after_a_small_one_passed():
    model = _meta(nn.Conv2d(3, 4, 1))
    memory.check_fits_in_memory(model, (1, 3, 8, 8), what="m")
    with pytest.raises(ShapeError, match="needs at least"):
        memory.check_fits_in_memory(model, (1, 3, 99984, 99984), what="m")
