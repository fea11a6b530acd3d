"""Background workers of the job service: one per device, each running one job at a time with its
models loaded once, reporting progress to a :class:`ProgressBoard` and honouring cancel requests.

A job's life is recorded in the :class:`~pipeline.daemon.journal.Journal` (the same durable journal as the
watch-folder daemon), so the queue survives a restart: jobs a dead process left running go back
to the queue (``recover``), and a job stopped by a shutdown is put back without counting it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.convert import convert_file
from pipeline.daemon.journal import FINISHED, Job, Journal, JournalError
from pipeline.errors import FacestyleError
from pipeline.face.detect import Detector
from pipeline.frontend import FrontEnd, open_model
from pipeline.model import StyleGANEX
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision, resolve_device
from pipeline.service.config import ServeConfig

if TYPE_CHECKING:
    from pipeline.cluster.driver import RaySession

log = logging.getLogger(__name__)
RAY_WORKER = "ray"


class JobCancelled(BaseException):
    """Raised inside a running conversion to stop it (BaseException: no stage may swallow it)."""


class ProgressBoard:
    """The live progress of running jobs, with a change counter that event streams poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, dict] = {}
        self._version: dict[int, int] = {}

    def set(self, job_id: int, progress: dict | None) -> None:
        with self._lock:
            if progress is None:
                self._live.pop(job_id, None)
            else:
                self._live[job_id] = progress
            self._version[job_id] = self._version.get(job_id, 0) + 1

    def get(self, job_id: int) -> tuple[int, dict | None]:
        with self._lock:
            return self._version.get(job_id, 0), self._live.get(job_id)


class _JobProgress:
    """The :class:`~pipeline.progress.Progress` of one job: live figures, journal fraction, cancel point."""

    def __init__(self, board: ProgressBoard, journal: Journal, job_id: int, stop: threading.Event) -> None:
        self.board, self.journal, self.job_id, self.stop = board, journal, job_id, stop
        self.total: int | None = None
        self.done = 0
        self.t0 = self.saved = time.monotonic()

    def start(self, name: str, total: int | None) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self._publish(self.t0)

    def check(self) -> None:
        """Raise JobCancelled when the job is to stop (a job on Ray asks about once a second)."""
        if self.stop.is_set():
            raise JobCancelled

    def update(self, n: int = 1) -> None:
        self.check()
        self.done += n
        now = time.monotonic()
        self._publish(now)
        if self.total and now - self.saved >= 1.0:
            self.saved = now
            self.journal.update(self.job_id, progress=min(self.done / self.total, 0.99))

    def finish(self, **summary: object) -> None:
        pass

    def _publish(self, now: float) -> None:
        elapsed = max(now - self.t0, 1e-9)
        fps = self.done / elapsed if self.done else None
        eta = (self.total - self.done) / fps if fps and self.total else None
        self.board.set(self.job_id, {"frame": self.done, "total": self.total,
                                     "fps": None if fps is None else round(fps, 3),
                                     "eta_s": None if eta is None else round(max(eta, 0.0), 1)})


class _Models:
    """Loaded models of one worker, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[tuple, StyleGANEX] = OrderedDict()

    def get(self, name: str, device: torch.device, precision: Precision) -> StyleGANEX:
        key = (name, str(device), precision.params)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model = open_model(name, device, precision)
        self._models[key] = model
        while len(self._models) > self.size:
            self._models.popitem(last=False)
        return model


class _Worker:
    """Runs jobs on one device, one at a time."""

    def __init__(self, runner: JobRunner, device: torch.device | None, name: str | None = None) -> None:
        self.runner, self.device = runner, device
        self.name = name or str(device)
        self.models = _Models(runner.cfg.max_models)
        self.detectors: dict[tuple, Detector] = {}
        self.job_id: int | None = None
        self.stop_job = threading.Event()
        self.thread = threading.Thread(target=self.loop, name=f"facestyle-job-{self.name}", daemon=True)

    def loop(self) -> None:
        r = self.runner
        while not r.stopping.is_set():
            job = None if r.paused.is_set() else r.journal.claim(worker=self.name, device=self.name)
            if job is None:
                with r.wake:
                    r.wake.wait(timeout=1.0)
                continue
            self.run(job)

    def run(self, job: Job) -> None:
        r = self.runner
        self.stop_job.clear()
        self.job_id = job.id
        log.info("job %d: %s -> %s on %s", job.id, job.input, job.output, self.name)
        try:
            result = self.convert(job)
        except JobCancelled:
            self._stopped(job)
        except FacestyleError as e:
            log.warning("job %d failed: %s", job.id, e)
            r.journal.fail(job.id, str(e))
        except Exception as e:      # a bug: log it in full, keep the service up, tell the client in one line
            log.exception("job %d: internal error", job.id)
            r.journal.fail(job.id, f"internal error: {type(e).__name__}: {e}")
        else:
            r.journal.finish(job.id, output=str(result.dst), result=result.as_dict())
        finally:
            self.job_id = None
            r.board.set(job.id, None)

    def _stopped(self, job: Job) -> None:
        r = self.runner
        if r.stopping.is_set() and job.id not in r.cancelled:
            r.journal.requeue(job.id)
            log.info("job %d stopped by the shutdown: back in the queue", job.id)
        else:
            r.journal.cancel(job.id)
            log.info("job %d cancelled", job.id)

    def convert(self, job: Job):  # noqa: ANN201 - ConvertResult
        front = FrontEnd.open(ConvertOptions.from_mapping(job.options), device=self.device)
        model = self.models.get(front.options.require_model(), self.device, front.precision)
        key = (front.options.detector, front.options.detect_max_side)
        if key not in self.detectors:
            self.detectors[key] = front.make_detector()
        progress = _JobProgress(self.runner.board, self.runner.journal, job.id, self.stop_job)
        return convert_file(Path(job.input), Path(job.output), model, self.detectors[key], front.config, progress)


class _RayWorker(_Worker):
    """The one worker of a service on Ray: each job goes to the cluster through the service's
    :class:`~pipeline.cluster.driver.RaySession` (its workers keep the model loaded between jobs)."""

    def __init__(self, runner: JobRunner, session: RaySession) -> None:
        super().__init__(runner, None, RAY_WORKER)
        self.session = session

    def convert(self, job: Job):  # noqa: ANN201 - RayResult
        r = self.runner
        options = replace(ConvertOptions.from_mapping(job.options), threads=r.cfg.threads)
        pairs = [(Path(job.input), Path(job.output))]
        progress = _JobProgress(r.board, r.journal, job.id, self.stop_job)
        try:
            [result] = self.session.convert(pairs, options, progress, Path(job.input).name, check=progress.check)
        except JobCancelled:
            if job.id in r.cancelled:          # not the shutdown: the chunks rendered so far are of no use
                self.session.discard(pairs, options)
            raise
        if result.exception is not None:
            raise result.exception
        return result


class JobRunner:
    """Runs the journal's queued jobs in the background: one worker thread per device, or one that
    sends them to a Ray cluster (``session``)."""

    def __init__(self, cfg: ServeConfig, journal: Journal, board: ProgressBoard,
                 devices: list[torch.device] | None = None, session: RaySession | None = None) -> None:
        self.cfg, self.journal, self.board = cfg, journal, board
        self.devices = devices if devices is not None else [resolve_device(d) for d in cfg.devices]
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.wake = threading.Condition()
        self.cancelled: set[int] = set()
        self.workers = ([_RayWorker(self, session)] if session is not None else
                        [_Worker(self, d) for d in dict.fromkeys(self.devices)])

    @property
    def device_names(self) -> list[str]:
        """Where jobs run: the devices, or ``ray``."""
        return [w.name for w in self.workers]

    @property
    def preview_device(self) -> str:
        """Where ``POST /preview`` runs (in the request, on this machine): the first device."""
        return str(self.devices[0])

    def start(self) -> JobRunner:
        for job in self.journal.recover(max_attempts=self.cfg.max_attempts):
            log.warning("job %d was interrupted by a crash: %s", job.id,
                        "failed" if job.state == "failed" else "back in the queue")
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        for w in self.workers:
            w.thread.start()
        return self

    def notify(self) -> None:
        """A job was queued or the queue resumed: wake idle workers."""
        with self.wake:
            self.wake.notify_all()

    def pause(self, paused: bool) -> None:
        (self.paused.set if paused else self.paused.clear)()
        self.notify()

    def cancel(self, job_id: int, wait_s: float = 5.0) -> Job:
        """Cancel a queued job at once, or stop a running one (waits up to ``wait_s`` for it to stop).

        Raises:
            JournalError: no such job, or it has already finished.
        """
        job = self.journal.get(job_id)
        if job is None:
            raise JournalError(f"job {job_id}: no such job")
        if job.state in FINISHED:
            raise JournalError(f"job {job_id} has already finished ({job.state})")
        if job.state == "queued":
            try:
                return self.journal.cancel(job_id)
            except JournalError:          # a worker took it just now: stop it below
                pass
        self.cancelled.add(job_id)
        for w in self.workers:
            if w.job_id == job_id:
                w.stop_job.set()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            job = self.journal.get(job_id)
            if job is not None and job.state in FINISHED:
                break
            time.sleep(0.05)
        return self.journal.get(job_id)

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop taking jobs; a running job stops at its next frame and goes back to the queue."""
        self.stopping.set()
        for w in self.workers:
            w.stop_job.set()
        self.notify()
        for w in self.workers:
            w.thread.join(timeout)

