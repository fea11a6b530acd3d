"""RGB -> YUV 4:2:0 on whatever device the pixels are on (BT.709, limited range).

The encoder wants YUV 4:2:0. Converting 1080p RGB on a CPU costs about 8 ms a frame; on a GPU it
is nearly free and the download shrinks from 3 to 1.5 bytes per pixel. The planes match what
:meth:`pipeline.stages.video_out.VideoWriter.write_yuv` expects (and what its own RGB path makes with
swscale, within one code value).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# BT.709 luma weights; chroma scales 1 / (2 (1 - Kb)) and 1 / (2 (1 - Kr))
KR, KB = 0.2126, 0.0722
KG = 1.0 - KR - KB


def rgb_to_yuv420(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """uint8 ``[H, W, 3]`` RGB -> uint8 planes ``y`` ``[H, W]``, ``u``, ``v`` ``[ceil(H/2), ceil(W/2)]``.

    Limited range (Y 16-235, U/V 16-240). Chroma is the mean of each 2x2 block (edge pixels repeat
    for odd sizes). Rounds to nearest. Runs on ``rgb``'s device.
    """
    if rgb.dim() != 3 or rgb.shape[2] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"expected uint8 [H, W, 3] RGB, got {rgb.dtype} {tuple(rgb.shape)}")
    x = rgb.permute(2, 0, 1).to(torch.float32) / 255.0                       # [3, H, W] in [0, 1]
    r, g, b = x[0], x[1], x[2]
    luma = KR * r + KG * g + KB * b
    y = 16.0 + 219.0 * luma
    h, w = luma.shape
    chroma = torch.stack([(b - luma) / (2 * (1 - KB)), (r - luma) / (2 * (1 - KR))])[None]   # [1, 2, H, W]
    chroma = F.pad(chroma, (0, w % 2, 0, h % 2), mode="replicate")
    uv = 128.0 + 224.0 * F.avg_pool2d(chroma, 2)[0]                           # [2, ceil(H/2), ceil(W/2)]
    to8 = lambda t: t.round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    return to8(y), to8(uv[0]), to8(uv[1])
