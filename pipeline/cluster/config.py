"""What a Ray run needs besides the convert options: where the cluster is, how clips are cut into
chunks, where the chunks and receipts live, and how each worker opens the model and the detector."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import UsageError

RAY_INSTALL_HINT = 'Ray is not installed: pip install -e ".[ray]"'


@dataclass(frozen=True)
class RayConfig:
    """Options of ``--ray``.

    Attributes:
        address: ``"local"`` (start Ray on this machine, bound to 127.0.0.1, and use all of its GPUs),
            ``"auto"`` (the cluster this machine belongs to, or ``RAY_ADDRESS``), or any address
            ``ray.init`` accepts (``host:port``, ``ray://host:10001``).
        chunk_seconds: a long clip is rendered in chunks of about this many seconds (a shot cut near
            the boundary is preferred).
        work_dir: folder for the chunks and their receipts; None: a hidden folder beside each output.
            Must be on storage every node sees at the same path.
        gpus_per_worker: GPUs each worker takes (0.5: two workers share a GPU); nodes without a GPU
            get one CPU worker each.
        retries: tries of a chunk after the first when it fails inside facestyle (a damaged region,
            a worker lost with its node is always redone).
        keep_work: keep the chunks after a successful run (default: the job folder is removed).
    """

    address: str = "local"
    chunk_seconds: float = 60.0
    work_dir: Path | None = None
    gpus_per_worker: float = 1.0
    retries: int = 2
    keep_work: bool = False

    def __post_init__(self) -> None:
        if not self.address:
            raise UsageError("--ray needs an address: local, auto, or host:port")
        if not self.chunk_seconds > 0:
            raise UsageError(f"--chunk-seconds must be > 0, got {self.chunk_seconds}")
        if not 0 < self.gpus_per_worker <= 64:
            raise UsageError(f"--gpus-per-worker must be > 0, got {self.gpus_per_worker}")
        if self.retries < 0:
            raise UsageError("retries must be >= 0")


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker opens what the driver opened: the same checkpoint file (shared storage), on its
    own device.

    Attributes:
        checkpoint: path of the checkpoint file (resolved by the driver).
        device: ``auto`` (each worker: CUDA when it has a GPU, else CPU), ``cpu``, ``cuda``.
        precision: ``fp32``, ``bf16`` or ``fp16``, resolved for each worker's device.
        threads: CPU threads for inference in each worker (0: what Ray gives the worker).
        detector: face detector backend; ``detector_options`` its keyword arguments.
        auto_batch: the batch sizes were automatic: each worker picks them for its own device.
    """

    checkpoint: str
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    detector: str = "dlib"
    detector_options: tuple[tuple[str, Any], ...] = ()
    auto_batch: bool = False


def worker_config(cfg: Any, spec: WorkerSpec, device: torch.device) -> Any:
    """The ``ConvertConfig`` for one worker: precision (and automatic batch sizes) for its device."""
    from pipeline.runtime.device import default_batch_pixels, default_batch_size, resolve_precision

    precision = resolve_precision(spec.precision, device)
    cfg = replace(cfg, precision=precision)
    if spec.auto_batch:
        batch, pixels = default_batch_size(device), default_batch_pixels(device, precision)
        cfg = replace(cfg, invert=replace(cfg.invert, batch_size=batch, batch_pixels=pixels),
                      generate=replace(cfg.generate, batch_size=batch, batch_pixels=pixels))
    return cfg
