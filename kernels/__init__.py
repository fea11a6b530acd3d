"""Custom ops of facestyle: ``upfirdn2d``, ``bias_act`` and ``fused_leaky_relu`` (``fused_leaky_relu_``
may work in place).

Each op has ``impl="auto" | "cuda" | "ref"``: a plain-PyTorch reference (the CPU path, and the
definition of the op) and a CUDA kernel built on first CUDA use (never at import). Environment:
``FACESTYLE_KERNELS=ref`` forces the reference everywhere; ``FACESTYLE_KERNEL_CACHE`` moves the
build cache (default ``~/.cache/facestyle/kernels``). Details in ``kernels/_build.py``.
"""

from __future__ import annotations

from kernels._build import KernelBuildError, status
from kernels.bias_act import ACTIVATIONS, Activation, bias_act, fused_leaky_relu, fused_leaky_relu_
from kernels.upfirdn2d import upfirdn2d


def cuda_status(build: bool = False) -> str:
    """One line for diagnostics: whether the CUDA kernels are loaded, where from, or why not.

    Args:
        build: first try to load or build the extension (can take a minute); default False.
    """
    return status(build)


__all__ = [
    "ACTIVATIONS",
    "Activation",
    "KernelBuildError",
    "bias_act",
    "cuda_status",
    "fused_leaky_relu",
    "fused_leaky_relu_",
    "upfirdn2d",
]
