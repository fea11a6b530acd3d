"""The options of ``--ray``: where the cluster is, how clips are cut into chunks, where the chunks
and receipts live, and how many workers share a GPU. They are fields of :class:`RayConfig`, which
the command line (``convert``, ``watch``, ``serve``) adds as a ``ray`` option group."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.option_fields import option

RAY_INSTALL_HINT = 'Ray is not installed: pip install -e ".[ray]"'
RAY = "ray"


@dataclass(frozen=True)
class RayConfig:
    """Options of a run on Ray.

    Attributes:
        address: ``"local"`` (start Ray on this machine, bound to 127.0.0.1, and use all of its GPUs),
            ``"auto"`` (the cluster this machine belongs to, or ``RAY_ADDRESS``), or any address
            ``ray.init`` accepts (``host:port``, ``ray://host:10001``); None: no Ray.
        chunk_seconds: a long clip is rendered in chunks of about this many seconds (a shot cut near
            the boundary is preferred).
        work_dir: folder for the chunks and their receipts; None: a hidden folder beside each output.
            Must be on storage every node sees at the same path.
        gpus_per_worker: GPUs each worker takes (0.5: two workers share a GPU); nodes without a GPU
            get one CPU worker each.
        retries: tries of a chunk after the first when it fails inside facestyle (a damaged region);
            a chunk whose worker was lost with its node is always redone.
        keep_work: keep the job folder after a successful run (default: removed).
    """

    address: str | None = option(None, "run on Ray: local (this machine, all its GPUs), auto (the cluster this "
                                       "machine belongs to, or RAY_ADDRESS) or a cluster address host:port",
                                 flags=("--ray",), metavar="ADDRESS", group=RAY, job=False)
    chunk_seconds: float = option(60.0, "with --ray: render a long clip in chunks of about this many seconds",
                                  metavar="S", group=RAY, job=False)
    work_dir: Path | None = option(None, "with --ray: folder for chunks and receipts, on storage every node "
                                         "sees (default: a hidden folder beside each output)",
                                   metavar="DIR", group=RAY, job=False)
    gpus_per_worker: float = option(1.0, "with --ray: GPUs per worker (0.5: two workers share a GPU); nodes "
                                         "without a GPU run one CPU worker", metavar="F", group=RAY, job=False)
    retries: int = 2
    keep_work: bool = False

    def __post_init__(self) -> None:
        if self.address is not None and not self.address.strip():
            raise UsageError("--ray needs an address: local, auto, or host:port")
        if not self.chunk_seconds > 0:
            raise UsageError(f"--chunk-seconds must be > 0, got {self.chunk_seconds}")
        if not 0 < self.gpus_per_worker <= 64:
            raise UsageError(f"--gpus-per-worker must be > 0, got {self.gpus_per_worker}")
        if self.retries < 0:
            raise UsageError("retries must be >= 0")
