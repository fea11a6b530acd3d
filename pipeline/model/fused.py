"""The generator's bf16 route on a CPU: oneDNN convolutions with the bias and activation inside,
weights kept in bf16 and packed for oneDNN between calls.

Under ``--precision bf16`` on a CPU the model runs in bf16 autocast over float32 weights
(:func:`pipeline.runtime.device.resolve_precision`). What autocast alone leaves, and this route
removes (official-size generator, 128x128 crop, one thread, CPU time per frame at batch 1 / 4):

* every layer's bias, leaky ReLU and gain ran as separate passes over the conv output (5 %); here
  oneDNN applies them in the convolution's epilogue (``torch.ops.mkldnn._convolution_pointwise``)
  or, where a per-sample scale comes first, in one ``addcmul`` and one in-place activation;
* the modulated, demodulated weight was recomputed in float32 and cast to bf16 on every call
  (9 % / 3 %), although in ``first-frame`` mode every batch of a clip has the same style; here it
  is kept (:func:`memo`) until the style, the parameters or the input shape change;
* oneDNN re-laid out every weight into its blocked format on every call (a 512 -> 512 3x3 conv at
  16x16, batch 1: 6.4 ms of which 1.4 ms reorder); here the weight is packed once (:func:`pack`);
* the fusion blocks' fixed weights were cast to bf16 on every call.

Together: 553 -> 427 ms per frame at batch 1, 458 -> 409 at batch 4 (shared style), 468 -> 447 with
per-sample styles; what remains is convolution at 90-95 % of the measured one-core bf16 conv rate.
The kept weights cost about 110 MB for the official generator and fusion blocks (bf16, one copy
per module). Nothing here runs in float32 or with autograd: :func:`on_route` is false there and the modules keep
their plain code, so float32 results are unchanged bit for bit.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils import flop_counter

T = TypeVar("T")
BF16 = torch.bfloat16
_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None) \
    if torch.backends.mkldnn.is_available() and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight") else None


if _POINTWISE is not None:
    @flop_counter.register_flop_formula(_POINTWISE)
    def _pointwise_flops(x_shape: list[int], w_shape: list[int], *args: Any, out_shape: list[int],
                         **kwargs: Any) -> int:
        """FLOPs of the fused convolution for ``FlopCounterMode`` (``facestyle bench``): those of the
        convolution alone, as PyTorch counts ``conv2d`` (the epilogue is not counted there either)."""
        return flop_counter.conv_flop_count(x_shape, w_shape, out_shape)


def on_route(x: Tensor) -> bool:
    """True when ``x`` is computed on a CPU in bf16 autocast, without autograd, and oneDNN's fused
    convolution is available: the conditions of this module's route."""
    return (_POINTWISE is not None and x.device.type == "cpu" and not torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == BF16)


def conv(x: Tensor, w: Tensor, b: Tensor | None, padding: int = 0, dilation: int = 1, groups: int = 1,
         slope: float | None = None) -> Tensor:
    """bf16 ``conv2d(x, w, b, padding, dilation=dilation, groups=groups)``, then ``leaky_relu(., slope)``
    unless ``slope`` is None, as one oneDNN primitive (stride 1).

    Args:
        x: ``[B, C_in, H, W]``, any float dtype (cast to bf16; channels-last stays channels-last).
        w: ``[C_out, C_in / groups, kh, kw]``; b: ``[C_out]`` or None.

    Returns:
        ``[B, C_out, H', W']`` bf16, in the layout oneDNN chose for ``x`` (channels-last for
        channels-last input).
    """
    attr, scalars = ("none", []) if slope is None else ("leaky_relu", [slope])
    return _POINTWISE(x.to(BF16), w.to(BF16), None if b is None else b.to(BF16), [padding, padding], [1, 1],
                      [dilation, dilation], groups, attr, scalars, "")


def scale_bias_lrelu_(out: Tensor, scale: Tensor | None, bias: Tensor, slope: float | None = 0.2) -> Tensor:
    """``leaky_relu(out * scale + bias, slope)`` (no activation when ``slope`` is None) in two
    passes, the second in place.

    Args:
        out: ``[B, C, H, W]`` bf16, a fresh conv output nobody else holds.
        scale: ``[B, C]`` per-sample, per-channel factors (None: 1); bias: ``[C]``. Both are cast to
            ``out``'s dtype.
    """
    b = bias.to(out.dtype)[None, :, None, None]
    out = out + b if scale is None else torch.addcmul(b, out, scale.to(out.dtype)[:, :, None, None])
    return out if slope is None else torch.nn.functional.leaky_relu_(out, slope)


def versions(*tensors: Tensor | None) -> tuple[int, ...]:
    """The in-place version counters of ``tensors`` (-1 for None): part of a :func:`memo` key, so a
    cached weight is rebuilt after ``load_state_dict`` or any other in-place change."""
    return tuple(-1 if t is None else t._version for t in tensors)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and a.device == b.device and torch.equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# What memo keeps, per module: outside the modules, so that copying, pickling or saving a model
# (the MKLDNN tensors pack makes have no storage to serialize) never sees it; copies start empty.
_KEPT: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Any, Any]]] = weakref.WeakKeyDictionary()


def memo(owner: nn.Module, slot: str, key: Any, make: Callable[[], T]) -> T:
    """``make()``, kept for ``owner`` and reused while ``key`` stays equal (tensors compared by value).

    One value per ``(owner, slot)``: a new key replaces the old value. The value is held beside the
    module (not as a buffer or attribute), so it is neither saved, copied nor moved by ``.to()`` and
    goes away with the module; keys should hold the :func:`versions` of the parameters the value is
    made from.
    """
    slots = _KEPT.setdefault(owner, {})
    held = slots.get(slot)
    if held is not None and _same(held[0], key):
        return held[1]
    value = make()
    slots[slot] = (key, value)
    return value


def pack(w: Tensor, x_shape: torch.Size, padding: int, dilation: int = 1, groups: int = 1) -> Tensor:
    """``w`` in bf16, re-laid out (an MKLDNN tensor) the way oneDNN convolves inputs of ``x_shape``
    with it, so that :func:`conv` does not reorder the weight on every call."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(w.to(BF16).contiguous().to_mkldnn(), [padding, padding],
                                                     [1, 1], [dilation, dilation], groups, list(x_shape))


def module_conv(m: nn.Conv2d, x: Tensor, slope: float | None = None) -> Tensor:
    """:func:`conv` with a stride-1 ``nn.Conv2d``'s parameters: the weight packed (:func:`pack`) and
    the bias cast to bf16 once per parameter version and input shape."""
    if m.stride != (1, 1) or m.padding_mode != "zeros" or len(set(m.padding)) != 1 or len(set(m.dilation)) != 1:
        raise ValueError(f"module_conv takes stride-1, zero-padded, square convolutions, not {m}")
    p, d = m.padding[0], m.dilation[0]
    key = (versions(m.weight, m.bias), x.shape)
    w, b = memo(m, "_packed", key, lambda: (pack(m.weight.detach(), x.shape, p, d, m.groups),
                                            None if m.bias is None else m.bias.detach().to(BF16)))
    return conv(x, w, b, p, d, m.groups, slope)
