"""The StyleGANEX encoder: IR-SE50 backbone, FPN style heads, first-layer feature, skip features,
the fusion blocks the generator calls, and the translation net T for 1- and 19-channel inputs.

Module and parameter names follow the official checkpoints (``encoder.body.3.res_layer.1.weight``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model import fused
from pipeline.model.arch import C1, C2, C3, C21, C22, C128, UNITS_PER_STAGE, Arch
from pipeline.model.layers import EqualLinear


class SEModule(nn.Module):
    """Squeeze-excitation: channel gates from a global average (``fc1``/``fc2`` are 1x1 convs)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class IRSEUnit(nn.Module):
    """IR-SE bottleneck: ``SE(BN(conv_s(PReLU(conv(BN(x)))))) + shortcut(x)``; stride-2 outputs ceil(n/2)."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Style head: log2(spatial) stride-2 convs with LeakyReLU(0.01), global pooling, EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int, max_pooling: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c)
        self.max_pooling = max_pooling

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        x = F.adaptive_max_pool2d(x, 1) if self.max_pooling else F.adaptive_avg_pool2d(x, 1)
        return self.linear(x.flatten(1))                                # [B, out_c]


class AdaptiveInstanceNorm(nn.Module):
    """Instance norm (no affine, eps 1e-5) scaled and shifted by ``[gamma, beta] = style(label)``."""

    def __init__(self, channels: int, label_dim: int) -> None:
        super().__init__()
        self.style = nn.Linear(label_dim, channels * 2)

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        gamma, beta = self.style(label)[:, :, None, None].chunk(2, dim=1)
        return gamma * F.instance_norm(x, eps=1e-5) + beta


class FusionLayer(nn.Module):
    """Merges an encoder skip feature into the generator's feature map (spec 5.2, FusionLayer).

    ``x = lrelu(transform(feat))``; with ``use_att`` and an editing row ``e``, ``x`` is gated by
    ``tanh(relu(conv(AdaIN([out, |out - x|], MLP(e)))))``; then ``out = fusion_out([out, x])`` and,
    with ``use_skip_torgb``, ``skip = fusion_skip([skip, x])``.
    """

    def __init__(self, in_channel: int, out_channel: int, style_dim: int = 512,
                 use_skip_torgb: bool = False, use_att: int = 0) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Conv2d(in_channel, out_channel, 3, 1, 1), nn.LeakyReLU(0.01))
        self.fusion_out = nn.Conv2d(out_channel * 2, out_channel, 3, 1, 1)
        self.use_skip_torgb, self.use_att = use_skip_torgb, use_att
        if use_skip_torgb:
            self.fusion_skip = nn.Conv2d(3 + out_channel, 3, 3, 1, 1)
        if use_att:
            mlp: list[nn.Module] = [nn.Linear(style_dim, out_channel)]
            for _ in range(use_att):
                mlp += [nn.LeakyReLU(0.2), nn.Linear(out_channel, out_channel)]
            mlp.append(nn.LeakyReLU(0.2))
            self.linear = nn.Sequential(*mlp)
            self.norm = AdaptiveInstanceNorm(out_channel * 2, out_channel)
            self.conv = nn.Conv2d(out_channel * 2, 1, 3, 1, 1)

    def forward(self, feat: Tensor, out: Tensor, skip: Tensor | None,
                editing_w: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``feat`` [B, C_in, H, W], ``out`` [B, C_out, H, W], ``editing_w`` one W+ row [1 or B, style_dim]."""
        route = fused.on_route(out)
        x = fused.module_conv(self.transform[0], feat, slope=0.01) if route else self.transform(feat)
        if self.use_att and editing_w is not None:
            label = self.linear(editing_w)                               # [1 or B, C_out]
            z = self.norm(torch.cat([out, (out - x).abs()], dim=1), label)
            x = x * torch.tanh(F.relu(self.conv(z)))
        merged = torch.cat([out, x], dim=1)
        out = fused.module_conv(self.fusion_out, merged) if route else self.fusion_out(merged)
        if self.use_skip_torgb:
            skip = self.fusion_skip(torch.cat([skip, x], dim=1))
        return out, skip


class ResnetBlock(nn.Module):
    """``lrelu(x + conv(lrelu(conv(x))))``, LeakyReLU slope 0.01."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.LeakyReLU(0.01),
                                        nn.Conv2d(dim, dim, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.conv_block(x), 0.01)


class TranslationNet(nn.Module):
    """T: maps a sketch (1 channel) or a parsing mask (19) to the 64-channel stem output."""

    def __init__(self, in_channel: int, res_num: int = 2, width: int = 16, out_channel: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channel, width, 3, 2, 1), nn.LeakyReLU(0.01),
                                   nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.01)]
        layers += [ResnetBlock(width) for _ in range(res_num)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(width, width, 3, 2, 1, output_padding=1), nn.LeakyReLU(0.01)]
        layers += [nn.Conv2d(width, out_channel, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channel),
                   nn.PReLU(out_channel)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """GradualStyleEncoder with the StyleGANEX outputs.

    Three entry points, each computing only what it returns:
        * :meth:`features`: first-layer feature ``f`` and the skip features (units 0-20).
        * :meth:`codes`: the 18 W+ codes (whole backbone, FPN and style heads).
        * :meth:`features_and_codes`: both from one pass (when ``x2`` is not given).
    """

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        w = arch.widths
        e0, e1, e2, e3 = w.encoder
        self.arch = arch
        if arch.input_nc != 3:
            self.input_label_layer = TranslationNet(arch.input_nc, arch.res_num, w.translation, e0)
        self.input_layer = nn.Sequential(nn.Conv2d(3, e0, 3, 1, 1, bias=False), nn.BatchNorm2d(e0),
                                         nn.PReLU(e0))
        units: list[nn.Module] = []
        c_in = e0
        for n, depth in zip(UNITS_PER_STAGE, w.encoder, strict=True):
            for i in range(n):
                units.append(IRSEUnit(c_in, depth, 2 if i == 0 else 1))
                c_in = depth
        self.body = nn.Sequential(*units)
        spatial = [16] * 3 + [32] * 4 + [64] * 11
        self.styles = nn.ModuleList(GradualStyleBlock(w.head, w.style_dim, s, arch.max_pooling)
                                    for s in spatial)
        self.latlayer1 = nn.Conv2d(e2, w.head, 1)
        self.latlayer2 = nn.Conv2d(e1, w.head, 1)
        self.featlayer = nn.Conv2d(3 * e2, w.generator[0], 1)
        self.skiplayer = nn.Conv2d(3 * e2, 3, 1)
        if arch.n_fusion:
            self.fusion = nn.ModuleList(
                FusionLayer(c_enc, c_gen, w.style_dim, arch.use_skip_torgb, arch.use_att)
                for c_enc, c_gen in arch.fusion_channels()[:arch.n_fusion])

    def _trunk(self, x: Tensor, last_unit: int) -> dict[int, Tensor]:
        """Stem (or T) and IR-SE units 0..last_unit; returns the saved outputs by unit index (-1 = stem)."""
        x = self.input_label_layer(x) if x.shape[1] != 3 else self.input_layer(x)
        saved = {-1: x}
        for i in range(last_unit + 1):
            x = self.body[i](x)
            if i in (C128, C1, C21, C22, C2, C3):
                saved[i] = x
        return saved

    def _features(self, saved: dict[int, Tensor], with_skips: bool) -> tuple[Tensor, list[Tensor] | None]:
        f = self.featlayer(torch.cat([saved[C21], saved[C22], saved[C2]], dim=1))   # [B, C_gen, H/8, W/8]
        if not with_skips:
            return f, None
        s = saved
        return f, [s[C2], s[C2], s[C22], s[C21], s[C1], s[C128], s[-1]]

    def _codes(self, saved: dict[int, Tensor]) -> Tensor:
        c3 = saved[C3]
        p2 = self._upsample_add(c3, self.latlayer1(saved[C2]))
        p1 = self._upsample_add(p2, self.latlayer2(saved[C1]))
        maps = [c3] * 3 + [p2] * 4 + [p1] * 11
        return torch.stack([head(m) for head, m in zip(self.styles, maps, strict=True)], dim=1)

    @staticmethod
    def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def features(self, x: Tensor, with_skips: bool) -> tuple[Tensor, list[Tensor] | None]:
        """``x`` [B, C, H, W] -> ``f`` [B, C_gen, H/8, W/8] and the 7 skip features (or None)."""
        return self._features(self._trunk(x, C2), with_skips)

    def codes(self, x: Tensor) -> Tensor:
        """``x`` [B, C, H, W] (any size) -> W+ codes [B, 18, style_dim], without ``latent_avg``."""
        return self._codes(self._trunk(x, C3))

    def features_and_codes(self, x: Tensor, with_skips: bool) -> tuple[Tensor, list[Tensor] | None, Tensor]:
        saved = self._trunk(x, C3)
        f, skips = self._features(saved, with_skips)
        return f, skips, self._codes(saved)
