"""paste stage: stylized crops back into frames.

* ``full`` (default): each stylized crop is scaled back to its window in the original frame and
  blended in with a feathered edge (edges that touch the frame border are not feathered); frames
  without a face pass through unchanged.
* ``crop``: the stylized crop itself (4x the crop, as the official script writes). Frames where the
  face is lost show the last window of the original frame, scaled to the same size; frames before
  the first face are dropped (the output must have one size).

``paste(..., device=...)`` (full mode; :meth:`pipeline.convert.ConvertConfig.paste_device`
decides: on CUDA for 4:2:0 output) does the paste where the stylized crops are, with PyTorch: the
frame goes up once, the crops never come down, the blend and the RGB -> YUV 4:2:0 conversion run
there, and only the planes come back (1.5 bytes per pixel, one copy into pinned memory), so the CPU
is left with entropy coding; for an NVENC encoder they do not come back at all (NV12 on the device,
read there by the encoder).
When the crops were cut on the device too (:meth:`pipeline.convert.ConvertConfig.crop_device`), the
frame the invert stage uploaded is reused (a copy on the device, not a second upload).
Every frame, with a face or without, takes that path, so the whole clip has one colour conversion.
Same geometry and blend formula as the NumPy path; the resampling is OpenCV's area average
(shrinking) and bilinear (enlarging) done with tensors (:mod:`pipeline.face.warp`, kornia), within
one code value of OpenCV's.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from pipeline.face.align import CropParams, crop_window
from pipeline.media.yuv import download, rgb_to_nv12, rgb_to_yuv420
from pipeline.records import Generated, Located, OutFrame
from pipeline.runtime.batch import frame_on

log = logging.getLogger(__name__)
MODES = ("full", "crop")


@dataclass(frozen=True)
class PasteConfig:
    """``feather``: width of the soft edge as a fraction of the window's shorter side."""

    mode: str = "full"
    feather: float = 0.08

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"output mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.feather <= 0.5:
            raise ValueError("feather must be between 0 and 0.5")


@lru_cache(maxsize=16)
def _ramp(n: int, width: int, soft_start: bool, soft_end: bool) -> np.ndarray:
    """1-D weights: a raised-cosine rise over ``width`` samples at the soft ends, 1 inside."""
    w = np.ones(n, np.float32)
    if width > 0:
        t = (np.arange(width, dtype=np.float32) + 0.5) / width
        rise = 0.5 - 0.5 * np.cos(np.pi * t)
        if soft_start:
            w[:width] = np.minimum(w[:width], rise[: min(width, n)])
        if soft_end:
            w[n - width:] = np.minimum(w[n - width:], rise[::-1][-min(width, n):])
    return w


def feather_mask(h: int, w: int, feather: float, soft: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """``[h, w, 1]`` float32 blend weights; ``soft`` = (left, top, right, bottom) edges to feather."""
    width = int(round(feather * min(h, w)))
    wx = _ramp(w, width, soft[0], soft[2])
    wy = _ramp(h, width, soft[1], soft[3])
    return (wy[:, None] * wx[None, :])[:, :, None]


def _window(crop: CropParams) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = crop_window(crop)
    return (max(0, round(x0)), max(0, round(y0)), min(crop.frame_w, round(x1)), min(crop.frame_h, round(y1)))


def paste_face(pixels: np.ndarray, stylized: np.ndarray, crop: CropParams, feather: float) -> None:
    """Blend ``stylized`` (uint8 ``[4h, 4w, 3]``) into ``pixels`` (modified in place) at ``crop``'s window."""
    x0, y0, x1, y1 = _window(crop)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return
    shrink = w < stylized.shape[1]
    patch = cv2.resize(stylized, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    soft = (x0 > 0, y0 > 0, x1 < crop.frame_w, y1 < crop.frame_h)
    mask = feather_mask(h, w, feather, soft)
    region = pixels[y0:y1, x0:x1].astype(np.float32)
    pixels[y0:y1, x0:x1] = np.rint(region + (patch.astype(np.float32) - region) * mask).astype(np.uint8)


def paste_face_tensor(pixels: torch.Tensor, stylized: torch.Tensor, crop: CropParams, feather: float) -> None:
    """:func:`paste_face` on tensors (any device): uint8 ``[H, W, 3]`` ``pixels`` (modified in place)
    and uint8 ``[4h, 4w, 3]`` ``stylized``; kornia / matrix resampling that matches OpenCV's within one
    code value (:func:`pipeline.face.warp.paste_faces`)."""
    from pipeline.face.warp import paste_faces

    paste_faces(pixels, [stylized.permute(2, 0, 1)], [crop], feather)


def _paste_on_device(located: Located, images: list, cfg: PasteConfig, device: torch.device,
                     nv12: bool = False) -> OutFrame:
    """One output frame as YUV planes, pasted and converted on ``device``. The frame is the one the
    invert stage already uploaded to cut the crops when it did (:func:`frame_on`), copied there."""
    frame, faces = located.frame, located.faces
    pixels = frame_on(located, device).clone()
    located.on_device = None                         # the record's last use of it: let it go with the copy
    for face, image in zip(faces, images, strict=True):
        image = image if isinstance(image, torch.Tensor) else torch.from_numpy(image)
        paste_face_tensor(pixels, image, face.crop, cfg.feather)
    if nv12 and pixels.shape[0] % 2 == 0 and pixels.shape[1] % 2 == 0:
        return OutFrame(frame.index, frame.pts, frame.time, None, nv12=rgb_to_nv12(pixels))
    y, u, v = download(list(rgb_to_yuv420(pixels)))
    return OutFrame(frame.index, frame.pts, frame.time, None, yuv=(y, u, v))


def _host(image: np.ndarray | torch.Tensor) -> np.ndarray:
    return image.cpu().numpy() if isinstance(image, torch.Tensor) else image


def paste(items: Iterable[Generated], cfg: PasteConfig, device: torch.device | None = None, *,
          nv12: bool = False) -> Iterator[OutFrame]:
    """Output frames (same index, pts and time as the source frames).

    ``device``: paste there with PyTorch and hand out YUV 4:2:0 planes made there (full mode only),
    downloaded with one copy per frame through pinned memory; with ``nv12`` (an NVENC encoder, see
    :meth:`pipeline.convert.ConvertConfig.nvenc_zero_copy`) left there as one
    :class:`~pipeline.media.yuv.NV12` buffer per frame (frames of odd size are downloaded). None:
    NumPy on the host, RGB out.
    """
    if device is not None and cfg.mode == "full":
        with torch.inference_mode():
            for rec in items:
                located = rec.inverted.located
                yield _paste_on_device(located, rec.images, cfg, device, nv12)
        return
    last_crop: CropParams | None = None
    out_size: tuple[int, int] | None = None
    dropped = 0
    for rec in items:
        located = rec.inverted.located
        frame, faces = located.frame, located.faces
        if cfg.mode == "full":
            if not faces:
                yield OutFrame.of(frame)
                continue
            pixels = frame.pixels.copy()
            for face, image in zip(faces, rec.images, strict=True):
                paste_face(pixels, _host(image), face.crop, cfg.feather)
            yield OutFrame.of(frame, pixels)
            continue
        if faces:
            last_crop, image = faces[0].crop, _host(rec.images[0])
            out_size = (image.shape[1], image.shape[0])
        elif last_crop is not None:
            x0, y0, x1, y1 = _window(last_crop)
            image = cv2.resize(frame.pixels[y0:y1, x0:x1], out_size, interpolation=cv2.INTER_LINEAR)
        else:
            dropped += 1
            continue
        yield OutFrame.of(frame, image)
    if dropped:
        log.warning("crop output: %d frame(s) before the first face were dropped", dropped)
