"""Crop and align faces from 68 dlib-order landmarks (pure arithmetic: no detector in here).

Two geometries, both from the StyleGANEX spec (section 9):

* :func:`crop_params` / :func:`apply_crop`: the video crop ``x1``. The frame is rescaled so the eye
  centres are 64 px apart and a window of up to ``2*padding`` px around the eye midpoint is cut
  (edges on multiples of 8, clipped to the frame). :func:`crop_window`, :func:`crop_to_frame` and
  :func:`frame_to_crop` map between the crop and the original frame, for paste-back.
* :func:`align_face`: the FFHQ-aligned 256x256 face ``x2`` (rotated, scaled square quad around the
  eyes and mouth). :func:`ffhq_quad` returns the quad alone; :func:`aligned_to_frame` and
  :func:`frame_to_aligned` map points between the aligned image and the frame.

Coordinates: ``(x, y)`` with x to the right and y down. *Point* coordinates are pixel indices (the
centre of pixel ``(i, j)`` is ``(i, j)``), as landmarks are. *Window* coordinates are pixel edges
(a ``W``-pixel-wide image spans ``[0, W]``).

Dependencies: numpy, OpenCV, and Pillow (only for the Lanczos shrink and the quad transform,
which must match ``PIL.Image.transform(..., QUAD, ..., BILINEAR)`` exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import InputError, NoFaceError

EYE_DISTANCE = 64.0  # px between the eye centres after rescaling (spec 9.1)
CROP_STEP = 8  # crop edges and sizes are multiples of this


def _landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise InputError(f"expected finite (68, 2) landmarks, got shape {lm.shape}")
    return lm


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of points 36-41 and of 42-47 (image-left eye first), each ``[2]`` float64."""
    lm = _landmarks(landmarks)
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


def crop_scale(landmarks: np.ndarray) -> float:
    """``64 / (horizontal distance between the eye centres)`` (spec 9.1 step 2).

    Raises:
        NoFaceError: the eye centres are not left-to-right apart (a degenerate or profile face).
    """
    left, right = eye_centres(landmarks)
    dx = float(right[0] - left[0])
    if dx < 1.0:
        raise NoFaceError(f"unusable face: the eye centres are {dx:.1f} px apart horizontally")
    return EYE_DISTANCE / dx


# --------------------------------------------------------------------------------------------
# Video crop (spec 9.1)


@dataclass(frozen=True)
class CropParams:
    """Where the video crop comes from.

    The frame (``frame_h`` x ``frame_w``) is resized to ``h`` x ``w`` (``cv2.resize``,
    INTER_LINEAR) and ``[top:bottom, left:right]`` of the result is the crop. ``scale`` is the
    nominal factor (``h = round(frame_h * scale)``); the exact per-axis factors are ``w / frame_w``
    and ``h / frame_h``.
    """

    frame_h: int
    frame_w: int
    scale: float
    h: int
    w: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def crop_h(self) -> int:
        """Crop height ``bottom - top`` (a multiple of 8)."""
        return self.bottom - self.top

    @property
    def crop_w(self) -> int:
        """Crop width ``right - left`` (a multiple of 8)."""
        return self.right - self.left

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The crop's ``(x0, y0, x1, y1)`` edges in original frame pixels; see :func:`crop_window`."""
        return crop_window(self)


def scaled_size(frame_h: int, frame_w: int, scale: float) -> tuple[int, int]:
    """``(h, w)`` of the rescaled frame: Python ``round`` (half to even) of the scaled sizes."""
    return round(float(frame_h) * scale), round(float(frame_w) * scale)


def crop_params(landmarks: np.ndarray, frame_h: int, frame_w: int, padding: int = 256) -> CropParams:
    """Crop parameters of the official StyleGANEX video cropper (spec 9.1).

    Args:
        landmarks: ``[68, 2]`` dlib-order points in frame pixels.
        frame_h, frame_w: size of the frame the landmarks belong to.
        padding: half the largest crop side, in rescaled pixels (256: crops up to 512x512).

    Returns:
        The frame is scaled so the eye centres are 64 px apart (``scale = 64 / dx``), ``h, w``
        rounded half to even; the window ``round(c -/+ padding)`` around the scaled eye midpoint
        ``c`` is clipped to ``[0, w]`` x ``[0, h]`` and each edge rounded down to a multiple of 8.

    Raises:
        InputError: bad landmarks or the crop would be empty (frame too small).
        NoFaceError: degenerate landmarks (see :func:`crop_scale`).
    """
    scale = crop_scale(landmarks)
    left_eye, right_eye = eye_centres(landmarks)
    cx, cy = (left_eye + right_eye) / 2.0 * scale
    h, w = scaled_size(frame_h, frame_w, scale)
    s = CROP_STEP
    left = max(round(cx - padding), 0) // s * s
    right = min(round(cx + padding), w) // s * s
    top = max(round(cy - padding), 0) // s * s
    bottom = min(round(cy + padding), h) // s * s
    if right <= left or bottom <= top:
        raise InputError(f"empty face crop ({right - left}x{bottom - top}) in a {frame_w}x{frame_h} frame "
                         f"rescaled to {w}x{h}")
    return CropParams(int(frame_h), int(frame_w), float(scale), h, w, top, bottom, left, right)


def apply_crop(pixels: np.ndarray, params: CropParams) -> np.ndarray:
    """Resize the frame to ``(w, h)`` with ``cv2.resize`` INTER_LINEAR, then cut the crop.

    Returns:
        ``[crop_h, crop_w, C]`` uint8 array (a new contiguous array).

    Raises:
        InputError: ``pixels`` does not have the frame size the parameters were made for.
    """
    if pixels.ndim != 3 or pixels.shape[:2] != (params.frame_h, params.frame_w):
        raise InputError(f"frame is {pixels.shape}, crop parameters are for "
                         f"{params.frame_h}x{params.frame_w}")
    resized = cv2.resize(pixels, (params.w, params.h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized[params.top:params.bottom, params.left:params.right])


def crop_window(params: CropParams) -> tuple[float, float, float, float]:
    """The crop's ``(x0, y0, x1, y1)`` pixel edges in the original frame (floats).

    Exact for ``cv2.resize``: it maps pixel edges linearly, by ``frame_w / w`` and ``frame_h / h``.
    """
    fx, fy = params.frame_w / params.w, params.frame_h / params.h
    return params.left * fx, params.top * fy, params.right * fx, params.bottom * fy


def crop_to_frame(params: CropParams, points: np.ndarray) -> np.ndarray:
    """Map ``[..., 2]`` ``(x, y)`` point coordinates in the crop to the original frame (float64)."""
    p = np.asarray(points, dtype=np.float64)
    fx, fy = params.frame_w / params.w, params.frame_h / params.h
    out = np.empty_like(p)
    out[..., 0] = (p[..., 0] + params.left + 0.5) * fx - 0.5
    out[..., 1] = (p[..., 1] + params.top + 0.5) * fy - 0.5
    return out


def frame_to_crop(params: CropParams, points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`crop_to_frame`: frame point coordinates to crop coordinates (float64)."""
    p = np.asarray(points, dtype=np.float64)
    fx, fy = params.frame_w / params.w, params.frame_h / params.h
    out = np.empty_like(p)
    out[..., 0] = (p[..., 0] + 0.5) / fx - 0.5 - params.left
    out[..., 1] = (p[..., 1] + 0.5) / fy - 0.5 - params.top
    return out


# --------------------------------------------------------------------------------------------
# FFHQ alignment (spec 9.2)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ alignment quad: ``[4, 2]`` float64 corners TL, BL, BR, TR in frame pixels.

    Its side is ``qsize = |quad[3] - quad[0]|``; the aligned image maps TL to its top-left corner.
    """
    lm = _landmarks(landmarks)
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2.0
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2.0
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # e2e - rot90(e2m)
    norm = math.hypot(*x)
    if norm < 1e-6:
        raise NoFaceError("unusable face: eye and mouth landmarks coincide")
    x = x / norm * max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian over H and W of a float HxWxC image, as ``scipy.ndimage.gaussian_filter``
    with ``sigma=[s, s, 0]`` (radius ``int(4 s + 0.5)``, 'reflect' = edge-repeating mirror)."""
    if sigma <= 0:
        return img.copy()
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    # np.pad 'symmetric' (edge-repeating mirror, any length) == scipy 'reflect'.
    r = radius
    src = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    out = np.empty(img.shape, dtype=np.float64)
    for ch in range(img.shape[2]):
        out[..., ch] = cv2.sepFilter2D(src[..., ch], cv2.CV_64F, k, k)[r:-r, r:-r]
    return out.astype(img.dtype)


def align_quad(pixels: np.ndarray, quad: np.ndarray, size: int = 256) -> np.ndarray:
    """Resample the square ``quad`` of a frame to a ``size`` x ``size`` image (spec 9.2 steps 3-6).

    Args:
        pixels: uint8 HxWx3 RGB frame.
        quad: ``[4, 2]`` corners TL, BL, BR, TR (from :func:`ffhq_quad`).
        size: output side.

    Steps: 1. shrink by ``s = floor(qsize / size / 2)`` when ``s > 1`` (Lanczos); 2. crop to the
    quad's bounding box grown by ``border = max(rint(0.1 qsize), 3)``; 3. when the quad reaches
    more than ``border - 4`` px beyond the image, reflect-pad by at least ``rint(0.3 qsize)`` and
    blend the padding towards a blur and the median colour; 4. bilinear quad transform (Pillow).

    Returns:
        ``[size, size, 3]`` uint8.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InputError(f"expected uint8 HxWx3 RGB pixels, got {pixels.dtype} {pixels.shape}")
    quad = np.array(quad, dtype=np.float64).reshape(4, 2)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    img = pixels

    # 1. Shrink (only for faces with qsize >= 4 * size).
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.shape[1] / shrink)), int(np.rint(img.shape[0] / shrink)))
        img = np.asarray(Image.fromarray(img).resize(rsize, Image.Resampling.LANCZOS))
        quad = quad / shrink
        qsize = qsize / shrink

    # 2. Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0 = int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min()))
    x1, y1 = int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max()))
    h, w = img.shape[:2]
    cx0, cy0 = max(x0 - border, 0), max(y0 - border, 0)
    cx1, cy1 = min(x1 + border, w), min(y1 + border, h)
    if cx1 - cx0 < w or cy1 - cy0 < h:
        img = img[cy0:cy1, cx0:cx1]
        quad = quad - (cx0, cy0)

    # 3. Pad.
    h, w = img.shape[:2]
    x0, y0 = int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min()))
    x1, y1 = int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max()))
    pad = [max(-x0 + border, 0), max(-y0 + border, 0), max(x1 - w + border, 0), max(y1 - h + border, 0)]
    if max(pad) > border - 4:
        p_l, p_t, p_r, p_b = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = _pad_and_blend(img, (p_l, p_t, p_r, p_b), qsize)
        quad = quad + (p_l, p_t)

    # 4. Quad transform; +0.5: Pillow samples pixel centres at half-integer coordinates.
    out = Image.fromarray(np.ascontiguousarray(img)).transform(
        (size, size), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
    return np.asarray(out)


def _pad_and_blend(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding into a blur and the median."""
    p_l, p_t, p_r, p_b = (max(int(p), 1) for p in pad)
    f = np.pad(img.astype(np.float32), ((p_t, p_b), (p_l, p_r), (0, 0)), mode="reflect")  # [H', W', 3]
    h, w = f.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    xx = xx.astype(np.float32)[..., None]
    yy = yy.astype(np.float32)[..., None]
    mask = np.maximum(1.0 - np.minimum(xx / p_l, (w - 1 - xx) / p_r),
                      1.0 - np.minimum(yy / p_t, (h - 1 - yy) / p_b))  # [H', W', 1]
    blur = qsize * 0.02
    f += (_gaussian_blur(f, blur) - f) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    f += (np.median(f, axis=(0, 1)) - f) * np.clip(mask, 0.0, 1.0)
    return np.uint8(np.clip(np.rint(f), 0, 255))


def align_face(pixels: np.ndarray, landmarks: np.ndarray, size: int = 256) -> np.ndarray:
    """FFHQ-align a face (spec 9.2): ``align_quad(pixels, ffhq_quad(landmarks), size)``.

    Args:
        pixels: uint8 HxWx3 RGB image (officially the rescaled first-frame crop).
        landmarks: ``[68, 2]`` dlib-order points in ``pixels`` coordinates.
        size: output side (256 for StyleGANEX's ``x2``).

    Returns:
        ``[size, size, 3]`` uint8 RGB.

    Raises:
        InputError: bad pixels or landmarks.
        NoFaceError: degenerate landmarks.
    """
    return align_quad(pixels, ffhq_quad(landmarks), size)


def aligned_to_frame(quad: np.ndarray, points: np.ndarray, size: int = 256) -> np.ndarray:
    """Map ``[..., 2]`` point coordinates of the aligned image back to the frame (float64).

    Exact for :func:`align_quad` unless its shrink step ran (``qsize >= 4 * size``), where the
    rounded shrunk size moves points by up to about one pixel.
    """
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    p = np.asarray(points, dtype=np.float64)
    u = (p[..., :1] + 0.5) / size
    v = (p[..., 1:2] + 0.5) / size
    return q[0] + u * (q[3] - q[0]) + v * (q[1] - q[0])


def frame_to_aligned(quad: np.ndarray, points: np.ndarray, size: int = 256) -> np.ndarray:
    """Inverse of :func:`aligned_to_frame`: frame points to aligned-image coordinates (float64)."""
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    basis = np.stack([q[3] - q[0], q[1] - q[0]], axis=1)  # columns: u axis, v axis
    uv = (np.asarray(points, dtype=np.float64) - q[0]) @ np.linalg.inv(basis).T
    return uv * size - 0.5
