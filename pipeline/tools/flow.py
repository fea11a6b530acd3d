"""Optical-flow helpers of the flicker metrics (pure NumPy / OpenCV): backward warping, the
forward-backward consistency check and the working size flow is computed at."""
from __future__ import annotations

import functools

import cv2
import numpy as np

_FB_REL, _FB_ABS = 0.01, 0.5  # forward-backward consistency constants (pixels squared)



@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates x, y, each [h, w] float32 (cached: read-only)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def warp_backward(src: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = src(x + flow(x))``, bilinear; ``src`` [H, W] or [H, W, C], ``flow`` [H, W, 2] (dx, dy).

    Samples outside ``src`` repeat its border (callers mask them with :func:`consistent_mask`).
    """
    xs, ys = _grid(*flow.shape[:2])
    return cv2.remap(src, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistent_mask(flow: np.ndarray, other: np.ndarray) -> np.ndarray:
    """[H, W] bool: where ``flow`` (this frame -> the other) is trusted.

    ``other`` is the flow in the opposite direction, on the other frame's grid. A pixel is valid
    when ``x + flow(x)`` is inside the frame and
    ``|flow(x) + other(x + flow(x))|^2 < 0.01 (|flow(x)|^2 + |other(x + flow(x))|^2) + 0.5``.
    """
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    back = cv2.remap(other, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # [H, W, 2]
    round_trip = ((flow + back) ** 2).sum(-1)
    bound = _FB_REL * ((flow ** 2).sum(-1) + (back ** 2).sum(-1)) + _FB_ABS
    return inside & (round_trip < bound)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Flow [h, w, 2] in working pixels -> [H, W, 2] in pixels of ``size`` (W, H)."""
    h, w = flow.shape[:2]
    if (w, h) == size:
        return flow
    up = cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR)
    up[..., 0] *= size[0] / w
    up[..., 1] *= size[1] / h
    return up


def work_size(w: int, h: int, flow_size: int) -> tuple[int, int]:
    s = min(1.0, flow_size / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))
