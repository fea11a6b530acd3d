"""bias_act: add a bias along one dimension, apply an activation, scale and clamp (one pass).

:data:`ACTIVATIONS` is the single table of activations: the code the CUDA kernel switches on
(``csrc/bias_act_math.h``), the default ``alpha`` and ``gain``, and the reference function. The
reference path is plain PyTorch (also the CPU production path); the CUDA path runs the element-wise
kernel in ``csrc/bias_act.cu``. :func:`bias_act` picks one (``impl``, see ``kernels/_build.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

from kernels._build import load_extension, select_impl

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Activation:
    """One row of :data:`ACTIVATIONS`.

    Attributes:
        name: the ``act`` string.
        code: ``facestyle::ActCode`` of the CUDA kernel (``csrc/bias_act_math.h``).
        gain: default output gain.
        alpha: default ``alpha`` (lrelu slope, elu scale); None when the activation takes none.
        ref: reference ``ref(v, alpha) -> act(v)`` in PyTorch (alpha is None when unused).
    """

    name: str
    code: int
    gain: float
    alpha: float | None
    ref: Callable[[torch.Tensor, float | None], torch.Tensor]


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("linear", 0, 1.0, None, lambda v, _: v),
        Activation("relu", 1, SQRT2, None, lambda v, _: torch.relu(v)),
        Activation("lrelu", 2, SQRT2, 0.2, lambda v, a: F.leaky_relu(v, a)),
        Activation("tanh", 3, 1.0, None, lambda v, _: torch.tanh(v)),
        Activation("sigmoid", 4, 1.0, None, lambda v, _: torch.sigmoid(v)),
        Activation("elu", 5, 1.0, 1.0, lambda v, a: F.elu(v, a)),
        Activation("selu", 6, 1.0, None, lambda v, _: F.selu(v)),
        Activation("softplus", 7, 1.0, None, lambda v, _: F.softplus(v)),
        Activation("swish", 8, SQRT2, None, lambda v, _: F.silu(v)),
    )
}


class Spec(NamedTuple):
    """Resolved arguments of one call (defaults filled in from the table)."""

    dim: int
    act: Activation
    alpha: float | None
    gain: float
    clamp: float | None


def resolve(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float | None,
    gain: float | None,
    clamp: float | None,
) -> Spec:
    """Check the arguments of :func:`bias_act` and fill in the table defaults (ValueError if bad)."""
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    if alpha is not None and spec.alpha is None:
        raise ValueError(f"activation {act!r} takes no alpha")
    if clamp is not None and not clamp >= 0:
        raise ValueError(f"clamp must be None or >= 0, got {clamp}")
    if b is not None:
        if x.ndim == 0 or not -x.ndim <= dim < x.ndim:
            raise ValueError(f"dim {dim} is out of range for a {x.ndim}-D x")
        dim %= x.ndim
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"b must have shape [{x.shape[dim]}] (x.shape[{dim}]), got {tuple(b.shape)}")
    return Spec(
        dim=dim,
        act=spec,
        alpha=spec.alpha if alpha is None else float(alpha),
        gain=spec.gain if gain is None else float(gain),
        clamp=None if clamp is None else float(clamp),
    )


def _ref(x: torch.Tensor, b: torch.Tensor | None, s: Spec) -> torch.Tensor:
    """Steps 1-4 of :func:`bias_act` in plain PyTorch."""
    v = x
    if b is not None:  # 1. bias, broadcast along dim
        v = v + b.to(dtype=x.dtype, device=x.device).reshape([-1 if i == s.dim else 1 for i in range(x.ndim)])
    v = s.act.ref(v, s.alpha)  # 2. activation
    if s.gain != 1:  # 3. gain
        v = v * s.gain
    if s.clamp is not None:  # 4. clamp
        v = v.clamp(-s.clamp, s.clamp)
    return v


ForwardFn = Callable[[torch.Tensor, torch.Tensor | None, Spec], torch.Tensor]


class _BiasActFunction(torch.autograd.Function):
    """Autograd wrapper of a forward-only implementation; the backward pass differentiates the
    reference on the saved inputs (first-order gradients only)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, b: torch.Tensor | None, s: Spec, fn: ForwardFn
    ) -> torch.Tensor:
        ctx.save_for_backward(x, b)
        ctx.spec = s
        return fn(x, b, s)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, b = ctx.saved_tensors
        need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.enable_grad():
            xr = x.detach().requires_grad_(need_x)
            br = None if b is None else b.detach().requires_grad_(need_b)
            y = _ref(xr, br, ctx.spec)
            wrt = [t for t, need in ((xr, need_x), (br, need_b)) if need]
            grads = list(torch.autograd.grad(y, wrt, grad)) if wrt else []
        gx = grads.pop(0) if need_x else None
        gb = grads.pop(0) if need_b else None
        return gx, gb, None, None


def _cuda_forward(x: torch.Tensor, b: torch.Tensor | None, s: Spec) -> torch.Tensor:
    alpha = 0.0 if s.alpha is None else s.alpha
    clamp = -1.0 if s.clamp is None else s.clamp
    return load_extension().bias_act(x, b, s.dim, s.act.code, alpha, s.gain, clamp)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """``y = clamp(act(x + b) * gain, -clamp, clamp)`` with the bias broadcast along ``dim``.

    1. add ``b[i]`` to every element whose index along ``dim`` is ``i`` (skipped when b is None);
    2. apply the activation ``act`` (with ``alpha`` for lrelu and elu);
    3. multiply by ``gain``;
    4. clamp to ``[-clamp, clamp]`` (skipped when clamp is None).

    Args:
        x: float16, bfloat16, float32 or float64 tensor of any shape and strides; the result has
            the same shape and dtype (contiguous on the CUDA path).
        b: ``[x.shape[dim]]`` bias, cast to x's dtype; default None (no bias).
        dim: the dimension of x the bias runs along (negative counts from the end); default 1.
        act: one of :data:`ACTIVATIONS` (linear, relu, lrelu, tanh, sigmoid, elu, selu,
            softplus, swish); default "linear".
        alpha: lrelu slope or elu scale; default None = the table's (0.2 for lrelu, 1.0 for elu).
            Other activations take none (ValueError).
        gain: output scale; default None = the table's (sqrt(2) for relu, lrelu, swish, else 1).
        clamp: symmetric output bound >= 0; default None (no clamp).
        impl: ``"auto"``, ``"cuda"`` or ``"ref"``; default "auto" (see :func:`kernels.upfirdn2d`).

    Returns:
        Tensor with x's shape and dtype.

    Raises:
        ValueError: bad arguments, or ``impl="cuda"`` for non-CUDA tensors.
        KernelBuildError: ``impl="cuda"`` and the CUDA extension cannot be built or loaded.
    """
    s = resolve(x, b, dim, act, alpha, gain, clamp)
    if select_impl(impl, x.device) == "ref":
        return _ref(x, b, s)
    if b is not None:
        b = b.to(device=x.device, dtype=x.dtype)
    return _BiasActFunction.apply(x, b, s, _cuda_forward)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = SQRT2,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias[c], negative_slope)`` with the bias on dim 1 (spec 7.2).

    Args:
        x: ``[N, C, ...]`` (e.g. NCHW feature maps or ``[B, C]`` linear outputs), floating.
        bias: ``[C]`` or None.
        negative_slope: slope for negative inputs; default 0.2.
        scale: output gain; default sqrt(2).
        clamp: optional symmetric bound on the output; default None.
        impl: ``"auto"``, ``"cuda"`` or ``"ref"``; default "auto".

    Returns:
        Tensor with x's shape and dtype. Same as ``bias_act(x, bias, 1, "lrelu", negative_slope,
        scale, clamp, impl)``.
    """
    return bias_act(x, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale, clamp=clamp, impl=impl)


def fused_leaky_relu_(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                      scale: float = SQRT2) -> torch.Tensor:
    """:func:`fused_leaky_relu` that may overwrite ``x``; use the returned tensor.

    For activations the caller owns and no gradient is wanted. For float32 on a CPU it runs three
    in-place passes and allocates nothing: measured on ``[8, 32, 512, 512]`` (the generator's last
    layers), 51 ms against 125 ms out of place. Otherwise it is :func:`fused_leaky_relu`: on CUDA
    the kernel writes a new tensor in one pass, PyTorch's in-place bf16 ops on a CPU are slower than
    its out-of-place ones (106 ms against 65 ms), and autograd must not see ``x`` overwritten. Same
    values as :func:`fused_leaky_relu` (the same operations in the same order).
    """
    tracked = torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad))
    if x.device.type != "cpu" or x.dtype != torch.float32 or tracked:
        return fused_leaky_relu(x, bias, negative_slope, scale)
    if bias is not None:
        x.add_(bias.to(dtype=x.dtype).reshape([-1 if i == 1 else 1 for i in range(x.ndim)]))
    F.leaky_relu_(x, negative_slope)
    return x.mul_(scale) if scale != 1 else x
