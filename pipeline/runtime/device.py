"""Where and in what precision the model runs."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipeline.errors import UsageError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Inference threads of a process (convert, watch, bench, serve): 0 leaves PyTorch's default.
DEFAULT_THREADS = 0
THREADS_HELP = "CPU threads for inference (0: PyTorch default)"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UsageError: CUDA asked for but not available, or an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name} asked for, but this PyTorch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The parameter dtype for ``fp32``/``fp16``/``bf16`` on ``device``.

    Raises:
        UsageError: fp16 on a CPU (emulated there, about 100x slower: use bf16), or an unknown name.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("fp16 on a CPU is emulated and about 100x slower; use --precision bf16 or fp32")
    return PRECISIONS[precision]


@dataclass(frozen=True)
class Precision:
    """How the model computes: ``params`` is the weight dtype; ``autocast`` (or None) the dtype that
    ``torch.autocast`` runs convolutions and matmuls in."""

    params: torch.dtype = torch.float32
    autocast: torch.dtype | None = None

    def context(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``fp32``/``fp16``/``bf16`` on ``device``.

    On CUDA the weights are cast (fp16/bf16). On a CPU, bf16 runs as autocast over fp32 weights
    (casting the whole model sends several ops to slow bf16 paths: measured 18 s vs 0.7 s per
    frame at a 128x128 crop).

    Raises:
        UsageError: fp16 on a CPU (emulated, about 100x slower: use bf16), or an unknown name.
    """
    params = resolve_dtype(precision, device)
    if params == torch.bfloat16 and device.type == "cpu":
        return Precision(torch.float32, torch.bfloat16)
    return Precision(params, None)


def default_batch_size(device: torch.device) -> int:
    """Faces per batch at most: 8 on a CPU, 16 on CUDA (both further limited by
    :func:`default_batch_pixels`)."""
    return 16 if device.type == "cuda" else 8


# Crop pixels per batch on a CPU. Measured (official-size toonify, 2 threads, s/frame at batch 1/2/4/8):
# fp32 128x128 0.52/-/0.49/0.42, 192x192 1.05/1.07/0.98, 256x256 1.72/1.64/2.11, 336x400 in the
# pipeline b4 1.9x slower than b1; bf16 128x128 0.24/-/0.15/0.13, 192x192 0.41/0.36/0.30,
# 256x256 0.60/0.58/0.52. Bigger batches of big crops outgrow the caches.
CPU_BATCH_PIXELS = {torch.float32: 128 * 128 * 8, torch.bfloat16: 256 * 256 * 4}

# Peak working memory of one generator call per x1 crop pixel (the output has 16 pixels per crop
# pixel and 32 channels at full size). Measured on a CPU (VmHWM over the call, official-size
# toonify): fp32 7.8-12 KiB (128x128 b4 12.0, 256x256 b1 11.9, b2 7.8); bf16 autocast 8.7-9.5 KiB
# (its convolutions still return some float32). Half-precision weights on CUDA halve the float32
# figure. CUDA_MEMORY_SHARE of the free memory is given to one batch, the rest is headroom for the
# caching allocator and the encoder.
GENERATE_BYTES_PER_CROP_PIXEL = {torch.float32: 12 * 1024, torch.float16: 6 * 1024, torch.bfloat16: 6 * 1024}
CUDA_MEMORY_SHARE = 0.5


def default_batch_pixels(device: torch.device, precision: Precision, free_bytes: int | None = None) -> int:
    """The most ``x1`` crop pixels per batch (0: no limit).

    On a CPU, what measured fastest: 8 crops of 128x128 in fp32, 4 of 256x256 in bf16 (so 2 of
    256x256 in fp32, 1 above about 362x362). On CUDA, what fits: half the free device memory
    (``free_bytes``, default ``torch.cuda.mem_get_info``) over the generator's peak bytes per crop
    pixel; an H200 with 130 GB free fits 40 crops of 512x512 in fp16 (the face count caps it at 16),
    a card with 4 GiB free one (or 5 of 256x256).
    """
    if device.type == "cpu":
        return CPU_BATCH_PIXELS.get(precision.autocast or precision.params, CPU_BATCH_PIXELS[torch.float32])
    if device.type != "cuda":
        return 0
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    per_pixel = GENERATE_BYTES_PER_CROP_PIXEL.get(precision.params, GENERATE_BYTES_PER_CROP_PIXEL[torch.float32])
    return max(1, int(CUDA_MEMORY_SHARE * free_bytes / per_pixel))
