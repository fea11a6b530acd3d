"""Grouping streamed records into batches by the number of faces they carry, and the tensor
conversions at the model's edges (uint8 pixels <-> float images in [-1, 1])."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar("T")


def batches(items: Iterable[T], size: int, count: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive records whose ``count`` adds up to at least ``size`` (the last may hold fewer).

    Records that count 0 (no face) ride along with the batch they arrive in, keeping order.
    """
    if size < 1:
        raise ValueError("batch size must be >= 1")
    pending: list[T] = []
    n = 0
    for item in items:
        pending.append(item)
        n += count(item)
        if n >= size:
            yield pending
            pending, n = [], 0
    if pending:
        yield pending


def group_by_shape(arrays: Sequence[np.ndarray | Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Indices of same-shaped arrays (faces of different tracks can differ in crop size)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(tuple(a.shape), []).append(i)
    return groups


def to_images(pixels: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype) -> Tensor:
    """uint8 ``[H, W, 3]`` RGB pictures -> float ``[B, 3, H, W]`` in [-1, 1] (as ToTensor + Normalize(0.5))."""
    t = torch.from_numpy(np.stack(pixels)).to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).to(torch.float32)
    return ((t / 255.0 - 0.5) / 0.5).to(dtype)


def to_pixels(img: Tensor) -> np.ndarray:
    """float ``[B, 3, H, W]`` -> uint8 ``[B, H, W, 3]``: clamp to [-1, 1], ``floor((y + 1) * 127.5)``
    (the official conversion truncates, it does not round)."""
    y = ((img.float().clamp(-1, 1) + 1) * 127.5).floor().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()
