"""The StyleGANEX generator: StyleGAN2 (1024, 18 W+ rows) whose shallow layers run at H/8 with
dilated convolutions, fed the encoder's first-layer feature instead of the 4x4 constant.

Layer plan (spec 5.2): ``conv1`` (dilation 8) and ``to_rgb1`` on the feature; then for nominal
resolutions 8 ... 1024 an up-conv, a conv and a ToRGB. At 8, 16 and 32 the "upsampling" is simulated
with dilation and the map stays at H/8; from 64 on it is a true x2. Output: RGB ``[B, 3, 4H, 4W]``
for an ``H x W`` input crop, not clamped.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.model.arch import CONV1_DILATION, LOG_SIZE, N_STYLES, Arch, conv_dilation, up_dilation
from pipeline.model.encoder import FusionLayer
from pipeline.model.layers import EqualLinear, StyledConv, ToRGB


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    """The 4x4 learned constant of StyleGAN2 (kept for checkpoint compatibility and plain mode)."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Generator(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        w = arch.widths
        ch, sd = w.generator, w.style_dim
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(sd, sd, lr_mul=0.01, activation="fused_lrelu") for _ in range(arch.n_mlp)])
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], 3, sd, dilation=CONV1_DILATION)
        self.to_rgb1 = ToRGB(ch[0], sd, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for i in range(3, LOG_SIZE + 1):
            c_in, c_out = ch[i - 3], ch[i - 2]
            self.convs.append(StyledConv(c_in, c_out, 3, sd, upsample=True, dilation=up_dilation(i)))
            self.convs.append(StyledConv(c_out, c_out, 3, sd, dilation=conv_dilation(i)))
            self.to_rgbs.append(ToRGB(c_out, sd, dilation=up_dilation(i)))

    def mapping(self, z: Tensor) -> Tensor:
        """Mapping network: ``z`` [B, style_dim] -> ``w`` [B, style_dim]."""
        return self.style(z)

    def forward(self, w_plus: Tensor, feature: Tensor, skips: Sequence[Tensor] | None = None,
                fusion: Sequence[FusionLayer] | None = None, editing_w: Tensor | None = None,
                noise: Sequence[Tensor | None] | None = None) -> Tensor:
        """Render an image.

        Args:
            w_plus: ``[B or 1, 18, style_dim]`` W+ codes (``latent_avg`` already added); a batch of 1
                is broadcast over the feature batch.
            feature: ``[B, C, h, w]`` first-layer feature (``h = H/8`` of the crop).
            skips: the encoder's 7 skip features, used by the first ``len(fusion)`` fusion blocks.
            fusion: the encoder's fusion blocks (None: no skip connections).
            editing_w: ``[1 or B, 18, style_dim]`` editing direction, added to every W+ row; fusion
                block k's attention reads row ``2k + 1``.
            noise: 17 noise maps (conv1, convs.0..15) or None for zero noise.

        Returns:
            ``[B, 3, 8h, 8w]`` RGB, unclamped.
        """
        if editing_w is not None:
            w_plus = w_plus + editing_w
        if w_plus.shape[1] != N_STYLES:
            raise ValueError(f"w_plus has {w_plus.shape[1]} rows, expected {N_STYLES}")
        w_plus = w_plus.expand(feature.shape[0], -1, -1)
        noise = list(noise) if noise is not None else [None] * (1 + len(self.convs))
        out = self.conv1(feature, w_plus[:, 0], noise[0])
        rgb = self.to_rgb1(out, w_plus[:, 1])
        n_fusion = len(fusion) if (fusion is not None and skips is not None) else 0
        for k, to_rgb in enumerate(self.to_rgbs):
            if k < n_fusion:
                e = editing_w[:, 2 * k + 1] if editing_w is not None else None
                out, rgb = fusion[k](skips[k], out, rgb, e)
            i = 2 * k + 1
            out = self.convs[2 * k](out, w_plus[:, i], noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, w_plus[:, i + 1], noise[2 * k + 2])
            rgb = to_rgb(out, w_plus[:, i + 2], rgb)
        return rgb
