"""Where and in what precision the model runs."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import UsageError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    """Frames per batch: 1 on CPU (measured fastest per frame there), 8 on CUDA."""
    return 8 if device.type == "cuda" else 1
