"""Ray itself: connecting, the shared-storage probe, and the workers (actors that hold the model and
the detector, loaded once).

Placement: on every live node, ``GPUs / gpus_per_worker`` GPU workers, or one CPU worker (taking the
node's CPUs) when the node has no GPU; nodes with neither (a head started with ``--num-cpus 0``)
get none. A worker prefers its node but may be restarted elsewhere when the node is lost.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cluster.config import RAY_INSTALL_HINT, RayConfig
from pipeline.errors import FacestyleError, InputError, NoFaceError, UsageError

log = logging.getLogger(__name__)

MAX_RESTARTS = 4


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_INSTALL_HINT) from None
    return ray


@dataclass
class Connection:
    """A Ray session: ``owned`` when we started it (and so stop it)."""

    ray: Any
    owned: bool

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def connect(cfg: RayConfig) -> Connection:
    """Join (or, for ``local``, start) Ray; an already initialised session (tests) is used as is.

    Raises:
        UsageError: Ray missing, or no cluster at the address.
    """
    ray = import_ray()
    if ray.is_initialized():
        return Connection(ray, owned=False)
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "include_dashboard": False}
    try:
        if cfg.address == "local":              # a new instance, even when a cluster runs on this machine
            ray.init(address="local", _node_ip_address="127.0.0.1", **quiet)
        else:
            host = cfg.address.split("://")[-1].split(":")[0]
            loopback = {"_node_ip_address": "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {}
            ray.init(address=cfg.address, **loopback, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise UsageError(f"--ray {cfg.address}: cannot connect to a Ray cluster ({str(err).splitlines()[0]})") from err
    return Connection(ray, owned=True)


class Worker:
    """One worker: the model and the detector, opened once by :class:`pipeline.frontend.FrontEnd` on
    this worker's device; its methods run the passes of :mod:`pipeline.cluster.work` (the arguments
    are plain data, the paths shared)."""

    def __init__(self, options: Any) -> None:
        from pipeline.frontend import FrontEnd
        from pipeline.runtime.cpu_allocator import keep_freed_memory

        keep_freed_memory()                     # as the facestyle command does (a worker is a process of its own)
        front = FrontEnd.open(options)          # device "auto": this worker's GPU, else its CPU
        self.device = front.device
        self.cfg = front.config
        self.model = front.load_model()
        self.detector = front.make_detector()

    def ready(self) -> dict:
        return {"host": socket.gethostname(), "device": str(self.device), "pid": os.getpid()}

    def find_faces(self, src: Path, span: Any, first_index: int, out: Path) -> int:
        from pipeline.cluster.work import find_faces

        found = find_faces(src, self.cfg.video_in, span, self.detector, self.cfg.face.detect_every, first_index, out)
        return len(found)

    def code_chunk(self, src: Path, chunk: Any, plans: list, requests: list, out: Path) -> int:
        from pipeline.cluster.work import code_chunk

        return len(code_chunk(src, self.cfg.video_in, chunk, plans, requests, self.model, self.cfg, out))

    def render_chunk(self, src: Path, info: Any, chunk: Any, plans: list, codes: dict, segment: Path,
                     report: Path | None = None) -> int:
        from pipeline.cluster.work import render_chunk

        return render_chunk(src, info, self.cfg.video_in, chunk, plans, codes, self.model, self.cfg, segment,
                            report)

    def convert_file(self, src: Path, dst: Path, report: Path | None = None, replace_dst: bool = False) -> dict:
        """A plain ``convert`` of a whole file (a photo, or a clip of about one chunk); ``report``: a
        :class:`~pipeline.cluster.work.FrameReport` file for the frames written; ``replace_dst``: write
        ``dst`` even when it exists (a file in the job folder). A clip without a face comes back as
        ``{"no_face": message}`` (not an error: trying again would not help)."""
        from dataclasses import replace

        from pipeline.cluster.work import FrameReport
        from pipeline.convert import convert_file

        cfg = replace(self.cfg, video_out=replace(self.cfg.video_out, overwrite=True)) if replace_dst else self.cfg
        try:
            result = convert_file(src, dst, self.model, self.detector, cfg, FrameReport(report))
        except NoFaceError as err:
            return {"no_face": str(err)}
        return {"frames_in": result.frames_in, "frames_out": result.frames_out,
                "frames_with_face": result.frames_with_face, "damage": result.damage,
                "repairs": list(result.repairs)}


def start_workers(conn: Connection, cfg: RayConfig, options: Any) -> list:
    """Create the workers on the live nodes (see the module docstring) and wait until each has its
    model loaded.

    Raises:
        UsageError: no node can run a worker.
    """
    ray = conn.ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # the worker processes get the command's OpenMP setting (cli.py): spinning threads fight decode and encode
    env = {"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}}
    remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, runtime_env=env)(Worker)
    actors = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 0))
        where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
        if gpus >= cfg.gpus_per_worker:
            for _ in range(int(gpus // cfg.gpus_per_worker + 1e-9)):
                actors.append(remote.options(num_gpus=cfg.gpus_per_worker, num_cpus=0,
                                             scheduling_strategy=where).remote(options))
        elif cpus >= 1:
            actors.append(remote.options(num_cpus=cpus, scheduling_strategy=where).remote(options))
    if not actors:
        raise UsageError("the Ray cluster has no node with a GPU or a CPU to run a worker on")
    try:
        ready = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayError as err:
        for actor in actors:
            ray.kill(actor)
        raise _cause(err) from None
    log.info("%d workers: %s", len(actors), ", ".join(f"{r['host']}/{r['device']}" for r in ready))
    return actors


def _cause(err: Exception) -> Exception:
    """The facestyle error inside a Ray error (a worker that cannot open the model), else one line."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, FacestyleError):
        return cause
    text = str(getattr(err, "error_msg", "") or err)
    last = [line.strip() for line in text.splitlines() if line.strip()]
    found = [line for line in last if "Error:" in line]
    return InputError(f"a Ray worker could not start: {(found or last or ['unknown error'])[-1]}")


def probe_storage(conn: Connection, work_dir: Path, paths: list[Path]) -> None:
    """Check on every live node that ``paths`` exist with the same sizes and that ``work_dir`` is the
    same folder (a token written here is read there). The driver's own node needs no check (it wrote
    the token and measured the sizes), so on ``--ray local`` no probe task (no process) starts.

    Raises:
        InputError: a node sees other files (one line naming the node and the first path).
    """
    ray = conn.ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    work_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = work_dir / f".probe-{token}"
    probe.write_text(token)
    expect = {str(p): p.stat().st_size for p in paths}
    here = ray.get_runtime_context().get_node_id()
    try:
        task = ray.remote(num_cpus=0, max_retries=0)(_probe)
        refs = {node["NodeManagerAddress"] + "/" + node["NodeID"][:8]:
                task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(str(probe), token, expect)
                for node in ray.nodes() if node.get("Alive") and node["NodeID"] != here}
        for name, ref in refs.items():
            problem = ray.get(ref, timeout=120)
            if problem:
                raise InputError(f"node {name} does not see the same files ({problem}); sources, outputs, the "
                                 f"work folder and the model must be on shared storage at the same path")
    finally:
        probe.unlink(missing_ok=True)


def _probe(probe: str, token: str, expect: dict[str, int]) -> str | None:
    try:
        if Path(probe).read_text() != token:
            return f"work folder {Path(probe).parent}: another folder"
    except OSError:
        return f"work folder {Path(probe).parent}: not there"
    for path, size in expect.items():
        try:
            if os.path.getsize(path) != size:
                return f"{path}: other size"
        except OSError:
            return f"{path}: missing"
    return None
