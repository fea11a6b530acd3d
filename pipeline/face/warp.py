"""The face crops, the aligned face and the paste-back as kornia warps on tensors, on any device.

The host route cuts crops with OpenCV (:func:`pipeline.face.align.apply_crop`: the whole frame
resized with ``cv2.resize`` INTER_LINEAR, then cut), aligns with Pillow
(:func:`pipeline.face.align.align_quad`) and pastes with OpenCV
(:func:`pipeline.stages.paste.paste_face`). Here the same geometry is one affine warp per face
(``kornia.geometry.transform.warp_affine``, bilinear, border pixels repeated), computed only over
the crop, so on a GPU the frame goes up once and the crops never exist on the host. Results match
the host route within one code value (fixed-point rounding in OpenCV and Pillow); tested in
``tests/face/test_warp.py``.

1. :func:`crop_matrix` / :func:`cut_crops`: ``cv2.resize`` maps pixel edges linearly, so crop pixel
   ``u`` samples frame position ``(u + left + 0.5) * frame_w / w - 0.5`` (and likewise in y).
2. :func:`align_matrix` / :func:`align_faces`: Pillow's QUAD transform of a square quad is affine:
   output pixel ``(u, v)`` samples ``TL + (TR - TL) (u + 0.5) / size + (BL - TL) (v + 0.5) / size``.
   Faces for which the host route first shrinks (Lanczos) or pads and blends the frame
   (:func:`needs_host_align`) are not done here (None): the caller uses the host route for them.
3. :func:`paste_faces`: the stylized crop resized to its window as the host route resizes it (when
   shrinking, OpenCV's area average from running sums, :func:`area_resize`; bilinear when
   enlarging) and blended with the same feathered mask.

Tensors: ``frame`` is ``[3, H, W]`` (uint8 or float, values 0-255); results are float32 0-255.
"""
from __future__ import annotations

import functools

import kornia.geometry.transform as KT
import numpy as np
import torch

from pipeline.face.align import CropParams, crop_window

_DTYPE = torch.float32


def crop_matrix(params: CropParams) -> np.ndarray:
    """``[2, 3]`` affine map from frame pixel indices to crop pixel indices (step 1)."""
    sx, sy = params.frame_w / params.w, params.frame_h / params.h
    return np.array([[1 / sx, 0.0, 0.5 / sx - 0.5 - params.left],
                     [0.0, 1 / sy, 0.5 / sy - 0.5 - params.top]])


def _region(frame: torch.Tensor, matrix: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The part of ``frame`` ([3, H, W]) that warping by ``matrix`` to ``size`` reads (the output
    grid's bounding box in the frame, one pixel of margin, clipped to the frame) as float32, and
    ``matrix`` shifted to that part's origin."""
    _, fh, fw = frame.shape
    h, w = size
    lin, shift = np.asarray(matrix, dtype=np.float64)[:, :2], np.asarray(matrix, dtype=np.float64)[:, 2]
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    src = (corners - shift) @ np.linalg.inv(lin).T                                   # output -> frame
    x0 = min(max(int(np.floor(src[:, 0].min())) - 1, 0), fw - 1)
    y0 = min(max(int(np.floor(src[:, 1].min())) - 1, 0), fh - 1)
    x1 = max(min(int(np.ceil(src[:, 0].max())) + 2, fw), x0 + 1)
    y1 = max(min(int(np.ceil(src[:, 1].max())) + 2, fh), y0 + 1)
    moved = np.hstack([lin, (shift + lin @ np.array([x0, y0], dtype=np.float64))[:, None]])
    return frame[:, y0:y1, x0:x1].to(_DTYPE), moved


def warp_many(frames: list[torch.Tensor], matrices: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """``frames[i]`` ([3, H, W], uint8 or float 0-255; frames may differ) warped by ``matrices[i]``
    (frame -> output) to ``size`` (h, w), bilinear, border pixels repeated, all in one kornia call:
    ``[N, 3, h, w]`` float32 on the frames' device.

    Only the region each warp reads is converted to float (a crop of a 1080p frame, not the frame),
    padded to the largest region by repeating its edge (which is the frame's edge wherever a sample
    can reach past it)."""
    parts = [_region(f, m, size) for f, m in zip(frames, matrices, strict=True)]
    rh, rw = max(p.shape[1] for p, _ in parts), max(p.shape[2] for p, _ in parts)
    same = [p if p.shape[1:] == (rh, rw) else
            torch.nn.functional.pad(p[None], (0, rw - p.shape[2], 0, rh - p.shape[1]), mode="replicate")[0]
            for p, _ in parts]
    src = same[0][None] if len(same) == 1 else torch.stack(same)
    m = torch.as_tensor(np.stack([mm for _, mm in parts]), dtype=_DTYPE, device=src.device)
    return KT.warp_affine(src, m, size, mode="bilinear", padding_mode="border", align_corners=True)


def cut_crops(frame: torch.Tensor, crops: list[CropParams]) -> list[torch.Tensor]:
    """The video crops of ``frame`` ([3, H, W]) as ``[3, crop_h, crop_w]`` float32 0-255, same device."""
    for params in crops:
        if frame.shape[1:] != (params.frame_h, params.frame_w):
            raise ValueError(f"frame is {tuple(frame.shape)}, crop is for {params.frame_h}x{params.frame_w}")
    return [warp_many([frame], [crop_matrix(params)], (params.crop_h, params.crop_w))[0] for params in crops]


def needs_host_align(quad: np.ndarray, frame_h: int, frame_w: int, size: int = 256) -> bool:
    """True when :func:`pipeline.face.align.align_quad` would shrink (a face over ~4x ``size``) or
    pad and blend (the quad near or past the frame edge): those faces take the host route."""
    quad = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    if int(np.floor(qsize / size * 0.5)) > 1:
        return True
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0 = int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min()))
    x1, y1 = int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max()))
    cx0, cy0 = max(x0 - border, 0), max(y0 - border, 0)
    w, h = min(x1 + border, frame_w) - cx0, min(y1 + border, frame_h) - cy0
    x0, y0, x1, y1 = x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0
    pad = [max(-x0 + border, 0), max(-y0 + border, 0), max(x1 - w + border, 0), max(y1 - h + border, 0)]
    return max(pad) > border - 4


def align_matrix(quad: np.ndarray, size: int = 256) -> np.ndarray:
    """``[2, 3]`` affine map from frame pixel indices to aligned-face pixel indices (step 2)."""
    tl, bl, _, tr = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    a, b = (tr - tl) / size, (bl - tl) / size
    inverse = np.array([[a[0], b[0], tl[0] + 0.5 * (a[0] + b[0])],
                        [a[1], b[1], tl[1] + 0.5 * (a[1] + b[1])]])       # aligned -> frame
    lin = np.linalg.inv(inverse[:, :2])
    return np.hstack([lin, -lin @ inverse[:, 2:]])


def align_faces(frame: torch.Tensor, quads: list[np.ndarray], size: int = 256) -> list[torch.Tensor | None]:
    """The ``size`` x ``size`` aligned faces of ``frame`` ([3, H, W]) for each quad (TL, BL, BR, TR),
    float32 0-255; None where :func:`needs_host_align` says the host route must do it."""
    h, w = frame.shape[1:]
    todo = [i for i, q in enumerate(quads) if not needs_host_align(q, h, w, size)]
    out: list[torch.Tensor | None] = [None] * len(quads)
    if todo:
        warped = warp_many([frame] * len(todo), [align_matrix(quads[i], size) for i in todo], (size, size))
        for j, i in enumerate(todo):
            out[i] = warped[j]
    return out


@functools.lru_cache(maxsize=32)
def area_matrix(n_src: int, n_dst: int) -> np.ndarray:
    """``[n_dst, n_src]`` weights of a shrink by area (``cv2.INTER_AREA``): output pixel ``j`` covers
    source interval ``[j s, (j + 1) s)``, ``s = n_src / n_dst``, each source pixel weighted by its overlap."""
    if n_dst > n_src:
        raise ValueError("area_matrix shrinks only")
    scale = n_src / n_dst
    edges = np.arange(n_dst + 1) * scale                                                # output edges
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_src)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0.0, None)
    return overlap / scale


def area_resize(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``img`` [C, H, W] shrunk to [C, h, w] by area average, as :func:`area_matrix` weighs it, in
    O(pixels): per axis, the running sum (float64) is read at the fractional output edges."""
    out = img.to(torch.float64)
    for axis, m in ((1, h), (2, w)):
        n = out.shape[axis]
        zero = torch.zeros_like(out.narrow(axis, 0, 1))
        cs = torch.cat([zero, out.cumsum(axis)], axis)                                  # n + 1 edges
        edges = torch.arange(m + 1, dtype=torch.float64, device=out.device) * (n / m)
        k = edges.floor().clamp(max=n - 1).long()
        shape = [1, 1, 1]
        shape[axis] = m + 1
        frac = (edges - k).view(shape)
        lo, hi = cs.index_select(axis, k), cs.index_select(axis, k + 1)
        at = lo + (hi - lo) * frac                                                      # sum below each edge
        out = (at.narrow(axis, 1, m) - at.narrow(axis, 0, m)) / (n / m)
    return out.to(img.dtype)


def _ramp(n: int, width: int, soft_start: bool, soft_end: bool, device: torch.device) -> torch.Tensor:
    from pipeline.stages.paste import _ramp as host_ramp  # one definition of the feather profile

    return torch.from_numpy(host_ramp(n, width, soft_start, soft_end)).to(device)


def paste_faces(pixels: torch.Tensor, stylized: list[torch.Tensor], crops: list[CropParams],
                feather: float) -> None:
    """Blend each stylized crop (``[3, 4h, 4w]``, 0-255) into ``pixels`` (uint8 ``[H, W, 3]``,
    modified in place) at its crop's window, as :func:`pipeline.stages.paste.paste_face` does."""
    for image, crop in zip(stylized, crops, strict=True):
        x0, y0, x1, y1 = crop_window(crop)
        x0, y0 = max(0, round(x0)), max(0, round(y0))
        x1, y1 = min(crop.frame_w, round(x1)), min(crop.frame_h, round(y1))
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        src = image.to(pixels.device, _DTYPE)                                           # [3, 4h, 4w]
        if w < image.shape[2]:   # cv2 INTER_AREA: each output pixel averages the source area it covers
            patch = area_resize(src, h, w)                                              # [3, h, w]
        else:
            patch = KT.resize(src[None], (h, w), interpolation="bilinear", align_corners=False)[0]
        patch = patch.permute(1, 2, 0).clamp(0, 255)                                    # [h, w, 3]
        width = int(round(feather * min(h, w)))
        mask = (_ramp(h, width, y0 > 0, y1 < crop.frame_h, pixels.device)[:, None]
                * _ramp(w, width, x0 > 0, x1 < crop.frame_w, pixels.device)[None, :])[:, :, None]
        region = pixels[y0:y1, x0:x1].to(_DTYPE)
        pixels[y0:y1, x0:x1] = torch.round(region + (patch - region) * mask).to(torch.uint8)


def to_hwc_uint8(img: torch.Tensor) -> np.ndarray:
    """A ``[3, h, w]`` float 0-255 tensor as a host uint8 ``[h, w, 3]`` array (rounded)."""
    return img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


__all__ = ["align_faces", "align_matrix", "crop_matrix", "cut_crops", "needs_host_align", "paste_faces",
           "to_hwc_uint8", "warp_many"]
