"""Grouping streamed records into batches by the number of faces they carry, and the tensor
conversions at the model's edges (uint8 pixels <-> float images in [-1, 1]), including the model
inputs cut on the device from the frame (:func:`face_images`, the device route of
:meth:`pipeline.convert.ConvertConfig.crop_device`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from pipeline.face.align import align_quad, ffhq_quad
from pipeline.face.warp import align_matrix, crop_matrix, needs_host_align, warp_many
from pipeline.records import FaceCrop, Located

T = TypeVar("T")
U = TypeVar("U")
ALIGNED_SIZE = 256  # the encoder's x2 side


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
    """Summed ``x1`` crop area of ``faces`` (:class:`~pipeline.records.FaceCrop`, cut or not): a batch's weight."""
    return sum(int(np.prod(f.crop_shape)) for f in faces)


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


def frame_on(located: Located, device: torch.device) -> Tensor:
    """``located``'s frame as uint8 ``[H, W, 3]`` on ``device``: uploaded once (from pinned memory,
    asynchronously, on CUDA) and kept on the record (``located.on_device``) for the later stages.
    Shared, not to be changed in place (on a CPU it is the frame's own memory)."""
    t = located.on_device
    if t is None or t.device != device:
        t = torch.from_numpy(located.frame.pixels)
        if device.type == "cuda":
            t = t.pin_memory()
        t = t.to(device, non_blocking=True)
        located.on_device = t
    return t


def face_images(faces: Sequence[tuple[Located, FaceCrop]], kind: str, device: torch.device,
                dtype: torch.dtype) -> Tensor:
    """The model inputs of same-shaped faces, float ``[N, 3, h, w]`` in [-1, 1] on ``device``:
    ``kind="crop"``: the ``x1`` crops; ``"aligned"``: the 256x256 aligned faces.

    A face that carries host pixels (the host route, or records built by another runner) goes up as
    in :func:`to_images`, so the host route is unchanged. The others
    (:class:`~pipeline.records.UncutFace`) are cut from their frame (:func:`frame_on`) on the device
    in one batched warp (:func:`pipeline.face.warp.warp_many`) and rounded to whole levels, as the
    host route's uint8 pixels are. An aligned face that only the host route cuts exactly
    (:func:`pipeline.face.warp.needs_host_align`: shrunk or padded first) is aligned on the host.
    """
    if kind not in ("crop", "aligned"):
        raise ValueError(f"kind must be 'crop' or 'aligned', got {kind!r}")
    host = [face.cut(kind) for _, face in faces]
    todo, matrices = [], []
    for i, (rec, face) in enumerate(faces):
        if host[i] is not None:
            continue
        if kind == "crop":
            matrices.append(crop_matrix(face.crop))
        else:
            quad = ffhq_quad(face.landmarks)
            h, w = rec.frame.pixels.shape[:2]
            if needs_host_align(quad, h, w, ALIGNED_SIZE):
                host[i] = align_quad(rec.frame.pixels, quad, ALIGNED_SIZE)
                continue
            matrices.append(align_matrix(quad, ALIGNED_SIZE))
        todo.append(i)
    if not todo:
        return to_images(host, device, dtype)
    size = faces[todo[0]][1].crop_shape if kind == "crop" else (ALIGNED_SIZE, ALIGNED_SIZE)
    cut = warp_many([frame_on(faces[i][0], device).permute(2, 0, 1) for i in todo], matrices, size)
    cut = cut.round_().clamp_(0, 255).div_(255.0).sub_(0.5).div_(0.5).to(dtype)   # as to_images
    if len(todo) == len(faces):
        return cut
    out = torch.empty((len(faces), *cut.shape[1:]), dtype=dtype, device=device)
    out[todo] = cut
    cut_here = set(todo)
    rest = [i for i in range(len(faces)) if i not in cut_here]
    out[rest] = to_images([host[i] for i in rest], device, dtype)
    return out


def to_pixel_tensor(img: Tensor) -> Tensor:
    """float ``[B, 3, H, W]`` -> uint8 ``[B, H, W, 3]`` on the same device: clamp to [-1, 1],
    ``floor((y + 1) * 127.5)`` (the official conversion truncates, it does not round)."""
    y = ((img.float().clamp(-1, 1) + 1) * 127.5).floor().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous()


def to_pixels(img: Tensor) -> np.ndarray:
    """:func:`to_pixel_tensor`, as a NumPy array in host memory."""
    return to_pixel_tensor(img).cpu().numpy()
