"""A block brings its own counting: declare, next to the block, what its own ``forward`` costs.

fvcore and ptflops see stock layers (conv, linear, BN ...). Arithmetic that a block does itself,
outside its child modules (an einsum, a softmax, a custom autograd op), needs a cost, or the
counters would drop it. Instead of a central table, the block's own file declares it::

    from strabench.counting import counts_macs

    def _eca_macs(m: "ECA", x: Tensor, out: Tensor) -> int:
        return x.numel()  # x * gate

    @counts_macs(_eca_macs)
    class ECA(nn.Module):
        ...

- ``macs(module, x, out) -> int``: the multiply-adds of the block's own forward for input ``x``
  (children excluded, they keep their own hooks), costed as the table in
  ``strabench.measure.counters`` says (one per pointwise output element, one per reduced input
  element, exact multiply-adds for products). The ptflops convention uses it as the block's hook.
- ``fvcore``: handles for ops fvcore cannot cost, keyed by op name (e.g. a custom autograd op
  traces as ``prim::PythonOp.<ClassName>``), each ``handle(inputs, outputs) -> int`` on jit values.
  The fvcore convention adds them while it counts a model that contains the block.
- ``multiply_adds``: the block's own forward does multiply-accumulates (attention weights times
  values, products of activations) that the paper convention, which counts conv and linear layers
  only, leaves out: the paper convention then lists the block in ``uncounted``. Blocks whose
  products run through ``torch`` functions (matmul, einsum, bmm ...) are found without it.

The declaration lives on the class (a class attribute, no registry), so importing the block's
file is all it takes; subclasses inherit it. The tests check each declared formula against
fvcore's per-op count of the same forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["BlockCounting", "counts_macs", "declared_counting"]

OwnMacs = Callable[[Any, "Tensor", "Tensor"], int]
FvcoreHandle = Callable[[list, list], int]
T = TypeVar("T", bound=type)

_ATTRIBUTE = "__strabench_counting__"


@dataclass(frozen=True)
class BlockCounting:
    """What a block declared about its own arithmetic (see the module docstring)."""

    macs: OwnMacs
    fvcore: Mapping[str, FvcoreHandle] = field(default_factory=dict)
    multiply_adds: bool = False


def counts_macs(
    macs: OwnMacs, *, fvcore: Mapping[str, FvcoreHandle] | None = None, multiply_adds: bool = False
) -> Callable[[T], T]:
    """Class decorator declaring the cost of a block's own forward (ptflops hook, fvcore handles)."""

    def decorator(cls: T) -> T:
        setattr(cls, _ATTRIBUTE, BlockCounting(macs, dict(fvcore or {}), multiply_adds))
        return cls

    return decorator


def declared_counting(cls: type) -> BlockCounting | None:
    """The declaration of ``cls`` (or of the nearest base class that has one), else None."""
    found = getattr(cls, _ATTRIBUTE, None)
    return found if isinstance(found, BlockCounting) else None
