"""watch: the watch-folder daemon. Files dropped into an inbox are converted into an outbox.

    watcher  = inbox.InboxWatcher(cfg.inbox, cfg.poll)        # names, from events or polling
    complete = inbox.Settler(cfg.settle).complete()           # size and mtime stable
    job      = journal.add(path, size, mtime)                 # exactly once per file version
    result   = convert(job.input, output, progress)           # by N workers, model loaded once
    INBOX/done/<name>  or  INBOX/failed/<name> + <name>.error.json

The journal (SQLite in the state folder, default ``OUTBOX/.facestyle``) is the queue: a worker
claims the oldest due job, so a job survives a crash or a restart. Outputs are written under a
hidden ``.partial`` name and renamed when complete (:mod:`pipeline.media.atomic`), so a kill -9 leaves
nothing half-written under an output name; on the next start the jobs left ``running`` go back to
the queue (or count as done when their output had already been renamed into place) and stale
partial files are deleted. A failed job is retried after ``retry_delay``, doubled each time, up
to ``retries`` times; then its input goes to ``failed/`` with a ``<name>.error.json`` saying why.

SIGTERM / SIGINT: stop taking jobs and finish the running ones (``on_stop="finish"``), or stop
them at the next frame and put them back in the queue (``"requeue"``; a second signal does this
in finish mode too). systemd: READY=1 once serving, WATCHDOG=1 pings, STATUS=, STOPPING=1.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.convert import ConvertResult, default_output
from pipeline.daemon.inbox import (
    FileSig,
    InboxWatcher,
    Settler,
    free_name,
    lock_folder,
    remove_stale_partials,
    signature,
)
from pipeline.daemon.journal import Job, Journal
from pipeline.daemon.sdnotify import Notifier
from pipeline.errors import FacestyleError
from pipeline.media.atomic import atomic_output
from pipeline.option_fields import option
from pipeline.progress import Progress

__all__ = ["Converter", "JobStopped", "WatchConfig", "WatchDaemon", "WatchError"]

log = logging.getLogger(__name__)

Converter = Callable[[Path, Path, Progress], ConvertResult]  # (input, output, progress) -> result
MAX_BACKOFF_S = 3600.0
ON_STOP = ("finish", "requeue")
WATCHING = "watching"


class WatchError(FacestyleError):
    """The daemon cannot start: the inbox is missing, or the outbox cannot be created or is the inbox."""


class JobStopped(BaseException):
    """Raised inside a conversion (from its progress callback) to stop it; not an error of the job."""


@dataclass(frozen=True)
class WatchConfig:
    """How the daemon watches and schedules.

    Attributes:
        inbox: folder to watch (must exist). outbox: where outputs go (created).
        tag: the model's tag in output names (``<stem>_<tag>.mp4``).
        options: recorded with every job (the convert options, as JSON).
        state: journal and lock folder (default ``outbox/.facestyle``).
        settle: seconds a file's size and mtime must stay unchanged before it is taken.
        poll: list the inbox every ``poll`` seconds instead of file-system events.
        workers: jobs converted at the same time. retries: extra attempts after a failure.
        retry_delay: seconds before the first retry, doubled for each further one.
        keep_inputs: leave converted inputs in the inbox instead of moving them to ``done/``.
        on_stop: ``"finish"`` the running jobs on SIGTERM, or ``"requeue"`` them.
        overwrite: replace an existing output instead of numbering the new one.
    """

    inbox: Path
    outbox: Path
    tag: str
    options: dict = field(default_factory=dict)
    state: Path | None = option(None, "folder for the job journal and the lock (default: OUTBOX/.facestyle; use a "
                                      "local disk when OUTBOX is a network share)", group=WATCHING)
    settle: float = option(5.0, "take a file once its size and mtime have not changed for this long",
                           metavar="SECONDS", group=WATCHING)
    poll: float | None = option(None, "list the inbox every SECONDS instead of waiting for file-system events "
                                      "(network shares)", metavar="SECONDS", group=WATCHING)
    workers: int = option(1, "jobs converted at the same time (one model)", group=WATCHING)
    retries: int = option(2, "retry a failed job this many times", group=WATCHING)
    retry_delay: float = option(30.0, "wait before the first retry, doubled for each further one", metavar="SECONDS",
                                group=WATCHING)
    keep_inputs: bool = option(False, "leave converted inputs in the inbox (the journal remembers them) instead of "
                                      "done/", group=WATCHING)
    on_stop: str = option("finish", "on SIGTERM/SIGINT: finish the running jobs, or stop them and put them back in "
                                    "the queue (a second signal always does the latter)", choices=ON_STOP,
                          group=WATCHING)
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("settle", "retry_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
        if self.poll is not None and self.poll <= 0:
            raise ValueError("--poll must be more than 0 seconds")
        if self.workers < 1 or self.retries < 0:
            raise ValueError("--workers must be 1 or more and --retries 0 or more")
        if self.on_stop not in ON_STOP:
            raise ValueError("--on-stop must be 'finish' or 'requeue'")

    @property
    def state_dir(self) -> Path:
        return self.state if self.state is not None else self.outbox / ".facestyle"


class _JobProgress:
    """Progress of one job: into the journal (at most once a second); raises JobStopped on request."""

    def __init__(self, journal: Journal, job_id: int, stop_now: threading.Event) -> None:
        self.journal, self.job_id, self.stop_now = journal, job_id, stop_now
        self.total: int | None = None
        self.frames, self.last = 0, time.monotonic()

    def start(self, name: str, total: int | None) -> None:
        self.total, self.frames = total, 0

    def check(self) -> None:
        """Raise JobStopped when the running jobs are to stop (a conversion on Ray asks about once a second)."""
        if self.stop_now.is_set():
            raise JobStopped

    def update(self, n: int = 1) -> None:
        self.check()
        self.frames += n
        now = time.monotonic()
        if self.total and now - self.last >= 1.0:
            self.last = now
            self.journal.update(self.job_id, progress=min(self.frames / self.total, 0.99))

    def finish(self, **summary: object) -> None:
        pass


class WatchDaemon:
    """The watch-folder daemon: ``with WatchDaemon(cfg) as d: d.run(make_converter)``.

    ``open`` (``__enter__``) checks the folders, takes the locks, opens the journal and recovers
    from a crash; load the model after it (so a second daemon fails fast), then ``run``.
    """

    def __init__(self, cfg: WatchConfig, *, notifier: Notifier | None = None) -> None:
        # Absolute paths: the journal keys inputs by path, whatever the working folder of the next start.
        cfg = replace(cfg, inbox=cfg.inbox.resolve(), outbox=cfg.outbox.resolve(),
                      state=None if cfg.state is None else cfg.state.resolve())
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.journal: Journal | None = None
        self.max_attempts = cfg.retries + 1
        self._locks: list[int] = []
        self._stop = threading.Event()      # take no new jobs
        self._stop_now = threading.Event()  # and stop the running ones
        self._wake = threading.Event()
        self._names = threading.Lock()
        self._reserved: set[Path] = set()
        self._crashed: BaseException | None = None
        self._moved: queue.SimpleQueue[Path] = queue.SimpleQueue()  # inputs the workers moved away
        self._signals: list[int] = []

    # -- start and stop --------------------------------------------------------------------------

    def open(self) -> WatchDaemon:
        """Check the folders, lock them, open the journal, recover from a previous crash.

        Raises:
            WatchError: the inbox is missing or the outbox is the inbox.
            FolderInUse: another daemon holds the inbox or the state folder.
            JournalError: the journal cannot be opened.
        """
        cfg = self.cfg
        if not cfg.inbox.is_dir():
            raise WatchError(f"{cfg.inbox}: inbox folder not found")
        try:
            cfg.outbox.mkdir(parents=True, exist_ok=True)
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WatchError(f"cannot create {err.filename}: {err.strerror}") from err
        if cfg.outbox.resolve() == cfg.inbox.resolve():
            raise WatchError("the outbox must not be the inbox (outputs would be taken as inputs)")
        self._locks.append(lock_folder(cfg.state_dir / "lock", f"state folder {cfg.state_dir}"))
        self._locks.append(lock_folder(cfg.inbox / ".facestyle-watch.lock", f"inbox {cfg.inbox}"))
        self.journal = Journal(cfg.state_dir / "journal.sqlite")
        self._recover()
        for folder in (cfg.outbox, cfg.inbox / "failed"):
            for path in remove_stale_partials(folder):
                log.info("removed %s (left by an interrupted run)", path)
        return self

    def _recover(self) -> None:
        for job in self.journal.jobs(["running"]):
            out = Path(job.output) if job.output else None
            if out is not None and out.is_file() and out.stat().st_mtime >= (job.started or 0) - 1:
                self.journal.finish(job.id, result={"recovered": True})
                log.info("job %d: %s was complete before the interruption", job.id, out)
        for job in self.journal.recover(self.max_attempts):
            log.warning("job %d: %s was interrupted; %s", job.id, Path(job.input).name,
                        "back in the queue" if job.state == "queued" else job.error)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()

    def __enter__(self) -> WatchDaemon:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_stop(self, now: bool = False) -> None:
        """Take no new jobs; with ``now``, also stop the running ones and put them back in the queue."""
        self._stop.set()
        if now:
            self._stop_now.set()
        self._wake.set()

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it: a handler that set an Event the main thread is waiting on could deadlock.
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            self._handle_signal(self._signals.pop(0))

    def _handle_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set() or self.cfg.on_stop == "requeue":
            log.warning("%s: stopping the running job(s) now; they go back to the queue", name)
            self.request_stop(now=True)
        else:
            log.warning("%s: finishing the running job(s), then stopping (again to stop them now)", name)
            self.request_stop()

    # -- the supervisor: watch, settle, queue ----------------------------------------------------

    def run(self, make_converter: Callable[[], Converter], *, handle_signals: bool = True) -> int:
        """Serve until asked to stop; returns 0, or 1 when a worker hit a bug.

        Args:
            make_converter: called once per worker (in this thread) for its converter; the
                converters share the model, each has its own detector.
            handle_signals: install SIGTERM/SIGINT handlers (only possible in the main thread).
        """
        if self.journal is None:
            raise RuntimeError("WatchDaemon.run needs open() first")
        cfg = self.cfg
        converters = [make_converter() for _ in range(cfg.workers)]
        watcher = InboxWatcher(cfg.inbox, cfg.poll)
        watcher.start()
        settler = Settler(cfg.settle)
        tick = max(0.05, min(0.5, cfg.settle / 4, cfg.poll or 0.5))
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if handle_signals else {}
        workers = [threading.Thread(target=self._work, args=(i, c), name=f"worker-{i}", daemon=True)
                   for i, c in enumerate(converters)]
        for t in workers:
            t.start()
        log.info("watching %s (%s; settle %g s) -> %s; %d worker(s), journal %s", cfg.inbox, watcher.mode,
                 cfg.settle, cfg.outbox, cfg.workers, self.journal.path)
        self.notifier.ready(self._status())
        next_status = 0.0
        try:
            while not self._stop.is_set():
                while not self._moved.empty():
                    settler.forget(self._moved.get())  # so a file put back under the same name is seen
                changes = watcher.changes()
                if changes.listing is not None:
                    settler.keep_only(changes.listing)
                for path, closed in changes.named:
                    settler.seen(path, closed)
                for path, sig in settler.complete():
                    self._admit(path, sig)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + 1.0
                    self.notifier.status(self._status())
                self.notifier.ping()
                time.sleep(tick)
                self._handle_signals()
        except BaseException:
            self.request_stop(now=True)
            raise
        finally:
            self.notifier.stopping("stopping: " + self._status())
            watcher.close()
            while any(t.is_alive() for t in workers):
                for t in workers:
                    t.join(timeout=tick)
                self.notifier.ping()
                self._handle_signals()  # a second signal stops the running jobs now
            for s, handler in old.items():
                signal.signal(s, handler)
            log.info("stopped (%s)", self._status())
        return 1 if self._crashed is not None else 0

    def _status(self) -> str:
        counts = self.journal.counts()
        return (f"{counts['running']} running, {counts['queued']} queued, {counts['done']} done, "
                f"{counts['failed']} failed")

    def _admit(self, path: Path, sig: FileSig) -> None:
        """A complete file: queue it, unless this version of it has a job already."""
        job = self.journal.find(str(path), sig.size, sig.mtime_ns)
        if job is None:
            job, _ = self.journal.add(str(path), size=sig.size, mtime_ns=sig.mtime_ns, options=self.cfg.options)
            log.info("job %d: queued %s (%d bytes)", job.id, path.name, sig.size)
            self._wake.set()
        elif job.state == "done" and not self.cfg.keep_inputs:
            log.info("job %d: %s was converted already (-> %s)", job.id, path.name, job.output)
            self._archive(job, path, "done")
        elif job.state == "failed" and job.result.get("moved_to"):
            self.journal.retry(job.id)
            log.info("job %d: %s is back in the inbox; trying again", job.id, path.name)
            self._wake.set()
        elif job.state == "failed":
            self._archive(job, path, "failed")  # failed before an interruption could move it

    # -- workers ---------------------------------------------------------------------------------

    def _work(self, index: int, convert: Converter) -> None:
        name = f"{os.getpid()}/{index}"
        try:
            while not self._stop.is_set():
                job = self.journal.claim(name)
                if job is None:
                    self._wake.wait(0.5)
                    self._wake.clear()
                else:
                    self._run_job(job, convert)
        except BaseException as err:  # a bug in the daemon, not in a job: stop (systemd restarts us)
            log.exception("worker %d: unexpected error; stopping", index)
            self._crashed = err
            self.request_stop(now=True)

    def _run_job(self, job: Job, convert: Converter) -> None:
        src = Path(job.input)
        sig = signature(src)
        if sig != FileSig(job.input_size, job.input_mtime_ns):
            why = "removed" if sig is None else "changed (the new version is a new job)"
            self.journal.fail(job.id, f"{src.name}: the input was {why} before it was converted")
            log.warning("job %d: %s was %s before it was converted", job.id, src.name, why)
            return
        dst = self._reserve_output(job, src)
        try:
            self.journal.update(job.id, output=str(dst))
            log.info("job %d: converting %s -> %s (attempt %d of %d)", job.id, src.name, dst.name, job.attempts,
                     self.max_attempts)
            error = None
            try:
                result = convert(src, dst, _JobProgress(self.journal, job.id, self._stop_now))
            except JobStopped:
                self.journal.requeue(job.id)
                log.warning("job %d: %s stopped; back in the queue", job.id, src.name)
                return
            except FacestyleError as err:
                error = str(err)
            except Exception as err:  # a bad input must not stop the daemon
                log.exception("job %d: %s: unexpected error", job.id, src.name)
                error = f"internal error: {type(err).__name__}: {err}"
        finally:
            with self._names:
                self._reserved.discard(dst)
        if error is None:
            self._succeeded(job, src, result)
        else:
            self._failed(job, src, error)

    def _reserve_output(self, job: Job, src: Path) -> Path:
        with self._names:
            want = Path(job.output) if job.output else default_output(src, self.cfg.tag, self.cfg.outbox)
            if self.cfg.overwrite and want not in self._reserved:
                dst = want
            else:
                dst = free_name(want, self._reserved)
            self._reserved.add(dst)
            return dst

    def _succeeded(self, job: Job, src: Path, result: ConvertResult) -> None:
        info = {k: v for k, v in result.as_dict().items() if k in ("frames_in", "frames_out", "frames_with_face",
                                                                    "seconds", "fps", "damage")}
        self.journal.finish(job.id, output=str(result.dst), result=info)
        log.info("job %d: done: %s -> %s (%d frames, %.1f s)", job.id, src.name, result.dst, result.frames_out,
                 result.seconds)
        if result.damage:
            log.warning("job %d: damaged input, converted what could be decoded: %s", job.id, result.damage)
        if not self.cfg.keep_inputs:
            self._archive(job, src, "done")

    def _failed(self, job: Job, src: Path, error: str) -> None:
        if job.attempts < self.max_attempts:
            delay = min(self.cfg.retry_delay * 2 ** (job.attempts - 1), MAX_BACKOFF_S)
            self.journal.fail(job.id, error, retry_at=self.journal.clock() + delay)
            log.warning("job %d: attempt %d of %d failed: %s; retrying in %g s", job.id, job.attempts,
                        self.max_attempts, error, delay)
            return
        job = self.journal.fail(job.id, error)
        log.error("job %d: failed: %s", job.id, error)
        self._archive(job, src, "failed")

    def _archive(self, job: Job, src: Path, kind: str) -> None:
        """Move a finished input to ``INBOX/done/`` or ``INBOX/failed/`` (with ``<name>.error.json``)."""
        if signature(src) != FileSig(job.input_size, job.input_mtime_ns):
            return  # gone, or replaced by a new version (a new job)
        folder = self.cfg.inbox / kind
        try:
            folder.mkdir(exist_ok=True)
            target = free_name(folder / src.name)
            if kind == "failed":
                self._write_error(job, src, target)
            os.rename(src, target)
            self._moved.put(src)
        except OSError as err:
            log.error("job %d: cannot move %s to %s/: %s", job.id, src.name, kind, err)
            return
        self.journal.update(job.id, result={"moved_to": str(target)})
        log.info("job %d: moved %s to %s", job.id, src.name, target)

    def _write_error(self, job: Job, src: Path, target: Path) -> None:
        report = {"input": src.name, "path": str(src), "moved_to": str(target), "error": job.error,
                  "attempts": job.attempts, "job": job.id, "options": job.options,
                  "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(job.finished or time.time())),
                  "journal": str(self.journal.path)}
        with atomic_output(target.with_name(target.name + ".error.json"), overwrite=True) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
