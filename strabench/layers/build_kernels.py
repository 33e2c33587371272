"""``python -m strabench.layers.build_kernels``: build (or verify) StRA's C kernels now.

``make venv`` runs it right after installing, so the first import does not wait for the compiler
(about 20 s of CPU); otherwise the kernels are built on first use. Prints the kernels' status in
one line. Exit 0 when they are built and loaded, switched off (``STRABENCH_FUSED_KERNEL=0``), or
when there is no C compiler (the blocks then run as plain torch ops); exit 1 when a compiler is
there and the build or load fails: a broken build must not pass as "no kernels".
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    from strabench.layers import _kernel_cache, _local_kernel

    status = _local_kernel.status()
    print(f"strabench kernels: {status}")
    if _local_kernel.available() or "switched off" in status or _kernel_cache.compiler() is None:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
