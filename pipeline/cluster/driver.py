"""The driver: starts the workers, hands the jobs' tasks to idle workers, and copes with failures.

* A task that fails inside facestyle (a damaged region, a full disk) is tried again up to
  ``RayConfig.retries`` times, then its file fails with one line naming the chunk.
* A worker lost with its node (or killed) is not a failure of the task: the task goes back to the
  queue for any worker, and the lost worker is asked whether it is back (Ray restarts it, on another
  node if its own is gone) before it gets work again.
* Files of a folder run side by side: every idle worker takes the next task of any file.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
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


def convert_on_ray(pairs: Sequence[tuple[Path, Path]], options: ConvertOptions, rcfg: RayConfig,
                   progress: Progress | None = None, name: str | None = None) -> list[RayResult]:
    """Convert each ``(source, output)`` pair on the Ray cluster; one result per pair, in order.

    The driver plans and stitches (it loads no model); each worker opens the model named by
    ``options`` (resolved here to a checkpoint path on shared storage) on its own device.

    A file that fails has ``error`` set (and ``exception``, the original error); nothing is raised
    for it. ``progress`` gets one bar over all files; its ``done`` event carries the chunks report.

    Raises:
        UsageError: Ray is not installed, or no cluster at the address.
        InputError: a node does not see the same files (shared storage).
    """
    progress = progress or NullProgress()
    checkpoint = resolve_model(options.require_model(), progress=False)
    options = replace(options, model=str(checkpoint))
    cfg = options.to_config(torch.device("cpu"), Precision())        # the driver's passes need no device
    chosen = sorted((k, v) for k, v in options.as_dict().items() if k != "overwrite")
    model_id = (file_identity(checkpoint), repr(chosen))          # what the chunks depend on
    jobs: list[Job] = []
    for src, dst in pairs:
        try:
            jobs.append(make_job(Path(src), Path(dst), cfg, rcfg, model_id))
        except FacestyleError as err:
            job = Job(Path(src), Path(dst), cfg)
            job.fail(err)
            jobs.append(job)
    conn = connect(rcfg)
    actors: list = []
    try:
        live = [j for j in jobs if not j.finished]
        if live:
            work = [j.folder.path for j in live if isinstance(j, ClipJob)]
            probe_dir = work[0] if work else live[0].dst.parent
            probe_storage(conn, probe_dir, [checkpoint] + [j.src for j in live])
            actors = start_workers(conn, rcfg, options)
            total = sum((j.expected_frames() or 0) if isinstance(j, ClipJob) else 1 for j in live)
            progress.start(name or (live[0].src.name if len(live) == 1 else f"{len(live)} files"), total or None)
            Scheduler(conn, actors, rcfg).run(live, progress.update)
    finally:
        for actor in actors:            # now, not when the last handle goes (an error's traceback may hold one)
            conn.ray.kill(actor)
        conn.close()
    results = [j.result for j in jobs]
    summary = _summary(results)
    progress.finish(**summary)
    return results


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

    def run(self, jobs: list[Job], progress: Any) -> None:
        for job in jobs:
            self._guard(job, lambda job=job: job.start(progress))
        try:
            while not all(j.finished for j in jobs):
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
            for ref in list(self.busy):
                self.ray.cancel(ref, force=True)
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
