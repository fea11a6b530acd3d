"""The driver: starts the workers, hands the jobs' tasks to idle workers, and copes with failures.

* A task that fails inside facestyle (a damaged region, a full disk) is tried again up to
  ``RayConfig.retries`` times, then its file fails with one line naming the chunk.
* A worker lost with its node (or killed) is not a failure of the task: the task goes back to the
  queue for any worker, and the lost worker is asked whether it is back (Ray restarts it, on another
  node if its own is gone) before it gets work again.
* Files of a folder run side by side: every idle worker takes the next task of any file.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pipeline.cluster.actors import Connection, connect, probe_storage, start_workers
from pipeline.cluster.chunks import file_identity
from pipeline.cluster.config import RayConfig
from pipeline.cluster.jobs import ClipJob, Job, RayResult, Task, make_job
from pipeline.errors import FacestyleError, InputError
from pipeline.model.registry import resolve_model
from pipeline.options import ConvertOptions
from pipeline.progress import NullProgress, Progress
from pipeline.runtime.device import Precision

log = logging.getLogger(__name__)

MAX_LOST = 5              # a task whose worker was lost this many times fails
NO_WORKER_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0    # loaded workers must answer within this before a job reuses them
STOP_TIMEOUT_S = 30.0     # a stopped job's tasks must have ended within this


def convert_on_ray(pairs: Sequence[tuple[Path, Path]], options: ConvertOptions, rcfg: RayConfig,
                   progress: Progress | None = None, name: str | None = None) -> list[RayResult]:
    """Convert each ``(source, output)`` pair on the Ray cluster; one result per pair, in order.

    The driver plans and stitches (it loads no model); each worker opens the model named by
    ``options`` (resolved here to a checkpoint path on shared storage) on its own device. A
    process that converts job after job keeps a :class:`RaySession` open instead.

    A file that fails has ``error`` set (and ``exception``, the original error); nothing is raised
    for it. ``progress`` gets one bar over all files; its ``done`` event carries the chunks report.

    Raises:
        UsageError: Ray is not installed, or no cluster at the address.
        InputError: a node does not see the same files (shared storage).
    """
    with RaySession(rcfg) as session:
        return session.convert(pairs, options, progress, name)


@dataclass(frozen=True)
class _Prepared:
    """The options of a run as the workers get them (the model resolved to a checkpoint path), the
    driver's configuration, and what the chunks and the loaded workers depend on."""

    options: ConvertOptions
    cfg: Any                     # ConvertConfig
    checkpoint: Path
    model_id: tuple              # what a chunk's result depends on (its receipts name it)
    workers_key: str             # what a worker's loaded state depends on

    @classmethod
    def of(cls, options: ConvertOptions) -> _Prepared:
        checkpoint = resolve_model(options.require_model(), progress=False)
        options = replace(options, model=str(checkpoint))
        cfg = options.to_config(torch.device("cpu"), Precision())    # the driver's passes need no device
        chosen = sorted((k, v) for k, v in options.as_dict().items() if k != "overwrite")
        model_id = (file_identity(checkpoint), repr(chosen))
        return cls(options, cfg, checkpoint, model_id, repr((model_id, options.overwrite)))

    def jobs(self, pairs: Sequence[tuple[Path, Path]], rcfg: RayConfig) -> list[Job]:
        jobs: list[Job] = []
        for src, dst in pairs:
            try:
                jobs.append(make_job(Path(src), Path(dst), self.cfg, rcfg, self.model_id))
            except FacestyleError as err:
                job = Job(Path(src), Path(dst), self.cfg)
                job.fail(err)
                jobs.append(job)
        return jobs


@dataclass
class _Workers:
    """Workers started for one model and set of options, on the nodes alive then."""

    key: str
    actors: list
    nodes: frozenset


class RaySession:
    """One connection to a Ray cluster for a process that converts job after job (``facestyle watch``
    and ``serve`` with ``--ray``): Ray is joined (or, for ``local``, started) once; the workers keep
    their model loaded from one job to the next while the model and the options stay the same (and
    no node joined or left); :meth:`close` stops the workers, and Ray when this session started it.

        with RaySession(RayConfig("local")) as session:
            [result] = session.convert([(src, dst)], options, progress)

    Jobs run one at a time (each is spread over all the workers); calls from several threads wait
    for each other.
    """

    def __init__(self, rcfg: RayConfig) -> None:
        self.rcfg = rcfg
        self.conn: Connection | None = None
        self.workers: _Workers | None = None
        self._lock = threading.Lock()

    def open(self) -> RaySession:
        """Connect. Raises UsageError: Ray is not installed, or no cluster at the address."""
        if self.conn is None:
            self.conn = connect(self.rcfg)
        return self

    def __enter__(self) -> RaySession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, and Ray if this session started it."""
        with self._lock:
            self._stop_workers()
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def convert(self, pairs: Sequence[tuple[Path, Path]], options: ConvertOptions, progress: Progress | None = None,
                name: str | None = None, *, check: Callable[[], None] | None = None) -> list[RayResult]:
        """Convert ``(source, output)`` pairs as :func:`convert_on_ray` does, on this session's workers.

        Args:
            check: called about once a second while the job runs; an exception it raises (or one
                raised by ``progress.update``) stops the job: its running tasks are cancelled, the
                workers that ran them stopped (they are started afresh for the next job), nothing
                is written under an output name, and the exception is raised. The work folders
                are kept, so the same job run again renders only the missing chunks
                (:meth:`discard` removes them).

        Raises:
            UsageError: no node can run a worker. InputError: shared storage (see
            :func:`convert_on_ray`), or no worker left.
        """
        progress = progress or NullProgress()
        with self._lock:
            if self.conn is None:
                raise RuntimeError("RaySession.convert needs open() first")
            prepared = _Prepared.of(options)
            jobs = prepared.jobs(pairs, self.rcfg)
            live = [j for j in jobs if not j.finished]
            if live:
                work = [j.folder.path for j in live if isinstance(j, ClipJob)]
                probe_dir = work[0] if work else live[0].dst.parent
                probe_storage(self.conn, probe_dir, [prepared.checkpoint] + [j.src for j in live])
                actors = self._workers_for(prepared)
                total = sum((j.expected_frames() or 0) if isinstance(j, ClipJob) else 1 for j in live)
                progress.start(name or (live[0].src.name if len(live) == 1 else f"{len(live)} files"), total or None)
                scheduler = Scheduler(self.conn, actors, self.rcfg)
                try:
                    scheduler.run(live, progress.update, check)
                except BaseException:
                    self._stop_workers(running=list(scheduler.busy))
                    raise
        results = [j.result for j in jobs]
        progress.finish(**_summary(results))
        return results

    def discard(self, pairs: Sequence[tuple[Path, Path]], options: ConvertOptions) -> None:
        """Remove the work folders that :meth:`convert` of the same pairs and options left (a
        cancelled job: its chunks are of no further use)."""
        prepared = _Prepared.of(options)
        for job in prepared.jobs(pairs, self.rcfg):
            if not isinstance(job, ClipJob):
                continue
            shutil.rmtree(job.folder.path, ignore_errors=True)
            if self.rcfg.work_dir is None:
                with contextlib.suppress(OSError):
                    job.folder.path.parent.rmdir()     # the default hidden folder, when now empty
            log.info("%s: removed the work folder %s", job.src.name, job.folder.path)

    def _workers_for(self, prepared: _Prepared) -> list:
        """The workers for this model and these options: the loaded ones when they fit and answer,
        else a fresh set (the old one stopped first: it holds the GPUs)."""
        ray = self.conn.ray
        nodes = _alive_nodes(ray)
        held = self.workers
        if held is not None and held.key == prepared.workers_key and held.nodes == nodes:
            try:
                ray.get([a.ready.remote() for a in held.actors], timeout=READY_TIMEOUT_S)
                log.info("reusing %d worker(s) with the model loaded", len(held.actors))
                return held.actors
            except (ray.exceptions.RayError, TimeoutError) as err:
                log.info("a worker does not answer (%s); starting them afresh", str(err).splitlines()[0])
        self._stop_workers()
        actors = start_workers(self.conn, self.rcfg, prepared.options)
        self.workers = _Workers(prepared.workers_key, actors, nodes)
        return actors

    def _stop_workers(self, running: Sequence[Any] = ()) -> None:
        """Kill the workers now (not when the last handle goes: an error's traceback may hold one)
        and wait until the tasks in ``running`` have ended, so none still writes into a work folder."""
        held, self.workers = self.workers, None
        if held is None or self.conn is None:
            return
        ray = self.conn.ray
        for actor in held.actors:
            ray.kill(actor)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=STOP_TIMEOUT_S)


def _alive_nodes(ray: Any) -> frozenset:
    """The live nodes and their resources (a change means the workers should be placed again)."""
    return frozenset((n["NodeID"], float(n.get("Resources", {}).get("GPU", 0)),
                      float(n.get("Resources", {}).get("CPU", 0))) for n in ray.nodes() if n.get("Alive"))


def _summary(results: Sequence[RayResult]) -> dict:
    if len(results) == 1:
        return {k: v for k, v in results[0].as_dict().items() if k != "src"}
    chunks = {k: sum(r.chunks[k] for r in results) for k in ("total", "reused", "rendered")}
    return {"files": len(results), "failed": sum(not r.ok for r in results),
            "frames_out": sum(r.frames_out for r in results), "chunks": chunks}


class Scheduler:
    """Hands tasks to idle workers until every job is finished (see the module docstring)."""

    def __init__(self, conn: Connection, actors: list, rcfg: RayConfig) -> None:
        self.ray = conn.ray
        self.idle: deque = deque(actors)
        self.busy: dict[Any, tuple[Any, Task]] = {}       # ref -> (worker, task)
        self.pings: dict[Any, Any] = {}                   # ref of ready() -> worker coming back
        self.queue: deque[Task] = deque()
        self.rcfg = rcfg
        self.starved_since: float | None = None

    def run(self, jobs: list[Job], progress: Any, check: Callable[[], None] | None = None) -> None:
        """Run ``jobs`` to the end; ``check()`` is called between waits (about once a second) and
        what it raises stops the run (the running tasks are cancelled)."""
        for job in jobs:
            self._guard(job, lambda job=job: job.start(progress))
        try:
            while not all(j.finished for j in jobs):
                if check is not None:
                    check()
                for job in jobs:
                    self.queue.extend(job.take())
                self._dispatch()
                self._check_starved()
                refs = list(self.busy) + list(self.pings)
                if not refs:
                    if not self.queue:
                        break                              # nothing left that could finish a job
                    continue
                done, _ = self.ray.wait(refs, num_returns=1, timeout=1.0)
                for ref in done:
                    self._collect(ref)
        except BaseException:
            for ref in list(self.busy):      # an actor's task: a flag only; the caller kills the actors
                try:
                    self.ray.cancel(ref)
                except Exception as err:     # noqa: BLE001 - the actor may be gone already
                    log.debug("cannot cancel a task: %s", err)
            raise
        for job in jobs:
            if not job.finished:
                job.fail(InputError(f"{job.src}: no worker could finish this file"))

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            task = self.queue.popleft()
            if task.job.finished:
                task.job.outstanding -= 1
                continue
            worker = self.idle.popleft()
            ref = getattr(worker, task.method).remote(*task.args)
            self.busy[ref] = (worker, task)

    def _check_starved(self) -> None:
        if self.queue and not self.idle and not self.busy:
            self.starved_since = self.starved_since or time.monotonic()
            if time.monotonic() - self.starved_since > NO_WORKER_TIMEOUT_S:
                raise InputError(f"no Ray worker has been available for {NO_WORKER_TIMEOUT_S:.0f}s "
                                 f"(all lost with their nodes?)")
        else:
            self.starved_since = None

    def _collect(self, ref: Any) -> None:
        ray = self.ray
        if ref in self.pings:
            worker = self.pings.pop(ref)
            try:
                ray.get(ref)
                self.idle.append(worker)
                log.info("a lost worker is back")
            except ray.exceptions.RayError as err:
                log.warning("a lost worker did not come back: %s", str(err).splitlines()[0])
            return
        worker, task = self.busy.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayActorError as err:     # the worker (or its node) died: not the task's fault
            task.lost += 1
            log.warning("%s: %s: worker lost (%s); redoing it", task.job.src.name, task.what,
                        str(err).splitlines()[0])
            self.pings[worker.ready.remote()] = worker
            if task.lost >= MAX_LOST:
                lost = InputError(f"{task.job.src}: {task.what}: workers lost {task.lost} times")
                self._finish_task(task, None, lost)
            else:
                self.queue.appendleft(task)
            return
        except ray.exceptions.RayTaskError as err:
            self.idle.append(worker)
            cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else err
            task.attempts += 1
            if task.attempts <= self.rcfg.retries:
                log.warning("%s: %s failed (%s); trying again", task.job.src.name, task.what,
                            str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
                self.queue.append(task)
                return
            self._finish_task(task, None, cause)
            return
        self.idle.append(worker)
        self._finish_task(task, value, None)

    def _finish_task(self, task: Task, value: Any, error: BaseException | None) -> None:
        job = task.job
        if error is not None:
            job.outstanding -= 1
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            if isinstance(error, FacestyleError) and task.what not in message:
                try:
                    error = type(error)(f"{message} (in {task.what})")
                except TypeError:
                    pass
            elif not isinstance(error, FacestyleError):
                error = InputError(f"{job.src}: {task.what}: {type(error).__name__}: {message}")
            job.fail(error)
            return
        self._guard(job, lambda: job.task_done(task, value))

    @staticmethod
    def _guard(job: Job, step: Any) -> None:
        """Run a driver step of ``job``; a facestyle error fails that job only."""
        try:
            step()
        except FacestyleError as err:
            log.error("%s", err)
            job.fail(err)
