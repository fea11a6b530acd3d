"""RGB -> YUV 4:2:0 on whatever device the pixels are on (BT.709, limited range).

The encoder wants YUV 4:2:0. Converting 1080p RGB on a CPU costs about 8 ms a frame; on a GPU it
is nearly free and the download shrinks from 3 to 1.5 bytes per pixel. The planes match what
:meth:`pipeline.stages.video_out.VideoWriter.write_yuv` expects (and what its own RGB path makes with
swscale, within one code value).

The planes leave the device in one of two ways (:meth:`pipeline.convert.ConvertConfig.nvenc_zero_copy`
decides): as host arrays through one copy into pinned memory (:func:`download`), or, for an
NVENC encoder in PyAV, not at all: an :class:`NV12` buffer that the encoder reads on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


NV12_PITCH = 256  # row pitch of NV12 buffers, in bytes (CUDA's own frame pools align rows so)


@dataclass(frozen=True, eq=False)
class NV12:
    """BT.709 limited-range 4:2:0 as NV12 in one buffer: ``height`` rows of luma, then ``height / 2``
    rows of interleaved U, V, each row ``pitch`` bytes (``buffer`` is uint8 ``[1.5 height, pitch]``).

    The layout NVENC reads from a CUDA pointer: it registers the luma pointer and its pitch and
    takes the chroma to start ``pitch * height`` bytes after it, so both planes must be one
    allocation (two separate tensors would not do). ``ready``: a CUDA event recorded after the
    planes were written, to wait on before another engine reads them (None on a CPU).
    """

    buffer: Tensor
    width: int
    height: int
    ready: object | None = None

    @property
    def y(self) -> Tensor:
        """``[height, width]`` view."""
        return self.buffer[: self.height, : self.width]

    @property
    def uv(self) -> Tensor:
        """``[height / 2, width / 2, 2]`` view (U, V interleaved)."""
        return self.buffer[self.height:, : self.width].unflatten(1, (self.width // 2, 2))

    def host_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The planes as host ``y``, ``u``, ``v`` arrays (as :func:`rgb_to_yuv420` gives them) through
        one device-to-host copy (:func:`download`); for an encoder that cannot take device frames."""
        uv = self.uv
        y, u, v = download([self.y, uv[..., 0], uv[..., 1]])
        return y, u, v


def rgb_to_nv12(rgb: Tensor, pitch: int = NV12_PITCH) -> NV12:
    """:func:`rgb_to_yuv420` written into one :class:`NV12` buffer on ``rgb``'s device (even sizes only)."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"NV12 needs an even size, got {w}x{h}")
    y, u, v = rgb_to_yuv420(rgb)
    stride = -(-w // pitch) * pitch
    buffer = torch.empty((h + h // 2, stride), dtype=torch.uint8, device=rgb.device)
    out = NV12(buffer, w, h)
    out.y.copy_(y)
    out.uv.copy_(torch.stack([u, v], dim=-1))
    if rgb.device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
        out = NV12(buffer, w, h, event)
    return out


def download(planes: list[Tensor]) -> list[np.ndarray]:
    """Device planes as host arrays with one copy: packed on the device, copied into one pinned
    (page-locked) host buffer, then split into views. On a CPU the planes are only packed."""
    flat = torch.cat([p.reshape(-1) for p in planes])
    if flat.device.type == "cuda":
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        torch.cuda.current_stream(flat.device).synchronize()
        flat = host
    out, k = [], 0
    arr = flat.numpy()
    for p in planes:
        n = p.numel()
        out.append(arr[k:k + n].reshape(tuple(p.shape)))
        k += n
    return out
