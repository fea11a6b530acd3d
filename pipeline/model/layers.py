"""Generator building blocks: equalized linear, modulated conv (plain, dilated, upsampling), styled
conv and ToRGB, with the parameter names of the official checkpoints.

Modulation is applied to the activations rather than to a per-sample copy of the weight (the two
are equal up to rounding): ``conv(x * s, W) * d`` instead of ``conv(x, W * s * d)`` per sample. That
keeps one shared weight, so the convolution is a plain batched conv, not a grouped one, and no
weight is re-laid out per call. Constant blur kernels are recreated here rather than loaded.

Under bf16 autocast on a CPU (``--precision bf16``) the styled convs and ToRGBs take
:mod:`pipeline.model.fused`'s route instead (:meth:`ModulatedConv2d.forward_fused`): bias and
activation inside oneDNN's convolution, bf16 weights packed once and kept (about 110 MB for the
official generator and fusion blocks). float32 never takes it.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kernels import fused_leaky_relu, fused_leaky_relu_, upfirdn2d
from kernels.bias_act import SQRT2
from pipeline.model import fused

# outer([1, 3, 3, 1]) / 64: the StyleGAN2 resampling filter (x4 when it follows a x2 upsample)
_FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])
BLUR_4X4 = torch.outer(_FIR, _FIR) / 64.0
# [[1,2,1],[2,4,2],[1,2,1]] / 16: the blur StyleGANEX dilates to stand in for x2 upsampling
_BIN = torch.tensor([1.0, 2.0, 1.0])
BLUR_3X3 = torch.outer(_BIN, _BIN) / 16.0


FOLD_BLUR_MAX_CHANNELS = 16   # up-convs this narrow fold their blur into a 6x6 kernel (faster on CPU)


def upsample_rgb(x: Tensor) -> Tensor:
    """x2 upsampling of an RGB skip: ``upfirdn2d(x, outer([1,3,3,1])/64 * 4, up=2, pad=(2, 1))``.

    Written as one stride-2 transposed convolution with the 4x4 kernel on the channel diagonal (a
    small dense conv is several times faster on a CPU than the zero-stuffed depthwise form). With a
    symmetric kernel, transposed-conv padding 1 is exactly the upfirdn2d pad (2, 1).
    """
    c = x.shape[1]
    k = torch.zeros(c, c, 4, 4, device=x.device, dtype=x.dtype)
    k[range(c), range(c)] = (BLUR_4X4 * 4.0).to(k)
    return F.conv_transpose2d(x, k, stride=2, padding=1)                 # [B, C, 2H, 2W]


def dilated_blur(x: Tensor, dilation: int, padding: int) -> Tensor:
    """Depthwise 3x3 binomial blur with the given dilation and zero padding.

    Args:
        x: ``[B, C, H, W]``.
        dilation: spacing of the taps.
        padding: zero padding on every side.

    Returns:
        ``[B, C, H + 2*padding - 2*dilation, W + 2*padding - 2*dilation]``.
    """
    c = x.shape[1]
    k = BLUR_3X3.to(device=x.device, dtype=x.dtype).expand(c, 1, 3, 3)
    return F.conv2d(x, k, padding=padding, dilation=dilation, groups=c)


class EqualLinear(nn.Module):
    """Linear layer with the weight scaled at run time by ``lr_mul / sqrt(in_dim)``.

    ``y = x @ (W * lr_mul / sqrt(in))^T + b * lr_mul``, then ``sqrt(2) * leaky_relu(y, 0.2)`` when
    ``activation == "fused_lrelu"``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.scale
        b = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(F.linear(x, w), b)
        return F.linear(x, w, b)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution with StyleGANEX's dilated variants.

    Variants (``k`` = kernel size):
        * plain: zero-padded "same" correlation with dilation ``d``.
        * ``upsample`` and ``d == 1``: true x2 upsampling, stride-2 transposed conv then a 4x4 blur.
        * ``upsample`` and ``d > 1``: StyleGANEX's stand-in for upsampling at the dilated layers; the
          size is unchanged: blur with the 3x3 binomial dilated by ``d/2`` (full, zero padding ``d``),
          then a valid correlation with the spatially flipped kernel dilated by ``d/2``.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample, self.dilation = demodulate, upsample, dilation
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """``x`` ``[B, C_in, H, W]``, ``style`` ``[B, style_dim]`` -> ``[B, C_out, H', W']``.

        When every sample has the same style (one clip's shared codes) the modulation and
        demodulation are folded into one weight, as the official formula does per sample, and the
        batch runs as a plain convolution. Otherwise the activations are scaled instead.
        """
        shared = style.shape[0] == 1 or bool((style == style[:1]).all())
        s = self.modulation(style[:1] if shared else style)          # [1 or B, C_in]
        w = self.weight[0] * self.scale                              # [C_out, C_in, k, k]
        if shared:
            w = w * s[0][None, :, None, None]
            if self.demodulate:
                w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3)) + 1e-8)[:, None, None, None]
            return self._conv(x, w)
        out = self._conv(x * s[:, :, None, None], w)
        if self.demodulate:
            wsq = w.square().sum(dim=(2, 3))                                # [C_out, C_in]
            demod = torch.rsqrt(s.square() @ wsq.t() + 1e-8)                # [B, C_out]
            demod = demod[:, :, None, None].to(out.dtype)
            # a fresh conv output: scale it in place in fp32 (bf16 in-place ops are slower on a CPU)
            in_place = out.dtype == torch.float32 and not (torch.is_grad_enabled() and out.requires_grad)
            out = out.mul_(demod) if in_place else out * demod
        return out

    def forward_fused(self, x: Tensor, style: Tensor, bias: Tensor, lrelu: bool = True) -> Tensor:
        """bf16 CPU route (:func:`fused.on_route`): ``forward(x, style) + bias``, then with ``lrelu``
        ``sqrt(2) * leaky_relu(., 0.2)``; bf16 out.

        The gain is folded into the weight and bias (leaky ReLU is positively homogeneous). A shared
        style gets the modulated, demodulated bf16 weight, packed for oneDNN and kept while the style,
        parameters and input shape stay the same (a clip's first-frame codes), and the bias and
        activation run inside the last convolution. Per-sample styles scale the activations and use
        the kept ``W * scale``; demodulation, bias and gain then take one pass and the activation a
        second, in place.
        """
        gain, slope = (SQRT2, 0.2) if lrelu else (1.0, None)
        params = fused.versions(self.weight, self.modulation.weight, self.modulation.bias)
        if style.shape[0] == 1 or bool((style == style[:1]).all()):
            key = (style[:1], params)
            return self._fused_conv(x, lambda: (self._modulated(style[:1]) * gain).to(fused.BF16), key,
                                    bias * gain, slope)
        s = self.modulation(style)                                          # [B, C_in]
        x = x * s.to(fused.BF16)[:, :, None, None]
        make_w = lambda: (self.weight[0].detach() * self.scale).to(fused.BF16)  # noqa: E731
        if not self.demodulate:
            return self._fused_conv(x, make_w, params, bias * gain, slope)
        wsq = fused.memo(self, "_wsq", params, lambda: (self.weight[0].detach() * self.scale).square().sum(dim=(2, 3)))
        demod = torch.rsqrt(s.float().square() @ wsq.t() + 1e-8)           # [B, C_out]
        return fused.scale_bias_lrelu_(self._fused_conv(x, make_w, params), demod * gain, bias * gain, slope)

    def _modulated(self, style: Tensor) -> Tensor:
        """The weight modulated (and demodulated) by one style ``[1, style_dim]``, as :meth:`forward`
        makes it: ``[C_out, C_in, k, k]``."""
        w = self.weight[0] * self.scale * self.modulation(style)[0][None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3)) + 1e-8)[:, None, None, None]
        return w

    def _fused_conv(self, x: Tensor, make_w: Callable[[], Tensor], key: Any, bias: Tensor | None = None,
                    slope: float | None = None) -> Tensor:
        """:meth:`_conv` on the bf16 route, with the bf16 weight ``make_w()`` made once per ``key``.

        The last convolution gets its weight packed for oneDNN once per key and input shape (no
        reorder per call) and, with ``bias``, adds it and applies leaky ReLU ``slope`` (None: none).
        A true x2 upsampling keeps its transposed conv; the bias and activation go into the blur.
        """
        d = self.dilation
        if self.upsample and d == 1:
            w = fused.memo(self, "_weight", key, make_w)
            if bias is None or self.in_channel <= FOLD_BLUR_MAX_CHANNELS:
                out = self._conv(x, w)
                return out if bias is None else fused.scale_bias_lrelu_(out, None, bias, slope)
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)        # [B, C_out, 2H+1, 2W+1]
            k = (BLUR_4X4 * 4.0).to(out).expand(out.shape[1], 1, 4, 4)     # upfirdn2d's blur (symmetric)
            return fused.conv(out, k, bias, 1, groups=out.shape[1], slope=slope)   # [B, C_out, 2H, 2W]
        flip = self.upsample
        if flip:                                  # the dilated stand-in for upsampling (see _conv)
            d //= 2
            x = dilated_blur(x, d, padding=2 * d)                           # [B, C_in, H+2d, W+2d]
        padding = 0 if flip else (self.kernel_size - 1) // 2 * d
        w = fused.memo(self, "_packed", (key, x.shape),
                       lambda: fused.pack(make_w().flip(2, 3) if flip else make_w(), x.shape, padding, d))
        return fused.conv(x, w, bias, padding, d, slope=slope)

    def _conv(self, x: Tensor, w: Tensor) -> Tensor:
        """The (dilated / upsampling) convolution with a shared ``[C_out, C_in, k, k]`` weight."""
        d = self.dilation
        if not self.upsample:
            return F.conv2d(x, w, padding=(self.kernel_size - 1) // 2 * d, dilation=d)
        if d == 1:
            if self.in_channel <= FOLD_BLUR_MAX_CHANNELS:
                # blur(convT(x, W)) = convT(x, W * blur): one 6x6 transposed conv, cropped by 2
                k = (BLUR_4X4 * 4.0).to(w).view(1, 1, 4, 4)
                w6 = F.conv2d(w.reshape(-1, 1, 3, 3), k, padding=3).view(*w.shape[:2], 6, 6)
                return F.conv_transpose2d(x, w6.transpose(0, 1), stride=2, padding=2)
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)        # [B, C_out, 2H+1, 2W+1]
            return upfirdn2d(out, BLUR_4X4.to(out), pad=(1, 1), gain=4.0)   # [B, C_out, 2H, 2W]
        h = d // 2
        out = dilated_blur(x, h, padding=2 * h)                             # [B, C_in, H+d, W+d]
        return F.conv2d(out, w.flip(2, 3), dilation=h)                      # [B, C_out, H, W]


class NoiseInjection(nn.Module):
    """``x + weight * noise``; no noise given means zero noise (an exact no-op)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            return x
        if noise.shape[-2:] != x.shape[-2:]:
            noise = F.adaptive_avg_pool2d(noise, x.shape[-2:])
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU 0.2, gain sqrt(2)."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        """``inplace``: ``x`` may be overwritten (an activation nobody else holds)."""
        return fused_leaky_relu_(x, self.bias) if inplace else fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated conv, noise injection, fused leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, dilation=dilation)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None and fused.on_route(x):
            return self.conv.forward_fused(x, style, self.activate.bias)
        return self.activate(self.noise(self.conv(x, style), noise), inplace=True)   # a fresh conv output


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) plus bias, plus the previous RGB ``skip``.

    The previous RGB is upsampled x2 (``dilation == 1``) or, at the dilated layers, blurred with the
    3x3 binomial at dilation ``d/2`` (same size). ``upsample=False`` marks the first ToRGB, which has
    no previous RGB.
    """

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, dilation: int = 1) -> None:
        super().__init__()
        self.upsample, self.dilation = upsample, dilation
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        if fused.on_route(x):      # bias added by oneDNN; the RGB sum stays float32, as under autocast
            out = self.conv.forward_fused(x, style, self.bias.view(-1), lrelu=False).float()
        else:
            out = self.conv(x, style) + self.bias
        if skip is not None:
            if self.dilation == 1:
                skip = upsample_rgb(skip)
            else:
                h = self.dilation // 2
                skip = dilated_blur(skip, h, padding=h)
            out = out + skip
        return out
