"""Grouping streamed records into batches by the number of faces they carry, and the tensor
conversions at the model's edges (uint8 pixels <-> float images in [-1, 1])."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar("T")
U = TypeVar("U")


def batches(items: Iterable[T], size: int, count: Callable[[T], int], *, budget: int = 0,
            weight: Callable[[T], int] | None = None) -> Iterator[list[T]]:
    """Consecutive records whose ``count`` adds up to at least ``size`` (the last may hold fewer).

    Records that count 0 (no face) ride along with the batch they arrive in, keeping order. With
    ``budget > 0`` a batch also ends before a record whose ``weight`` would take the batch's total
    over ``budget`` (a record heavier than the budget on its own makes a batch of its own).
    """
    if size < 1:
        raise ValueError("batch size must be >= 1")
    if budget and weight is None:
        raise ValueError("a batch budget needs a weight function")
    pending: list[T] = []
    n = load = 0
    for item in items:
        w = weight(item) if budget else 0
        if pending and budget and load + w > budget:
            yield pending
            pending, n, load = [], 0, 0
        pending.append(item)
        n += count(item)
        load += w
        if n >= size:
            yield pending
            pending, n, load = [], 0, 0
    if pending:
        yield pending


def split_back(batch: Sequence[T], flat: Sequence[U], count: Callable[[T], int]) -> Iterator[tuple[T, list[U]]]:
    """Each record of ``batch`` with its own run of ``flat`` (the per-face results of the whole batch,
    in record order; a record owns ``count(record)`` of them)."""
    k = 0
    for rec in batch:
        n = count(rec)
        yield rec, list(flat[k:k + n])
        k += n


def crop_pixels(faces: Iterable) -> int:
    """Summed ``x1`` crop area of ``faces`` (anything with ``pixels`` ``[h, w, 3]``): a batch's weight."""
    return sum(f.pixels.shape[0] * f.pixels.shape[1] for f in faces)


def group_by_shape(arrays: Sequence[np.ndarray | Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Indices of same-shaped arrays (faces of different tracks can differ in crop size)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(tuple(a.shape), []).append(i)
    return groups


def to_images(pixels: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype) -> Tensor:
    """uint8 ``[H, W, 3]`` RGB pictures -> float ``[B, 3, H, W]`` in [-1, 1] (as ToTensor + Normalize(0.5)).

    The uint8 batch goes to a CUDA device from pinned (page-locked) memory, so the copy is
    asynchronous and the conversion to float runs on the device."""
    t = torch.from_numpy(np.stack(pixels))
    if device.type == "cuda":
        t = t.pin_memory()
    t = t.to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).to(torch.float32)
    return ((t / 255.0 - 0.5) / 0.5).to(dtype)


def to_pixel_tensor(img: Tensor) -> Tensor:
    """float ``[B, 3, H, W]`` -> uint8 ``[B, H, W, 3]`` on the same device: clamp to [-1, 1],
    ``floor((y + 1) * 127.5)`` (the official conversion truncates, it does not round)."""
    y = ((img.float().clamp(-1, 1) + 1) * 127.5).floor().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous()


def to_pixels(img: Tensor) -> np.ndarray:
    """:func:`to_pixel_tensor`, as a NumPy array in host memory."""
    return to_pixel_tensor(img).cpu().numpy()
