"""facestyle runs as child processes: each :class:`Job` owns one, and two reader threads that turn its
stdout into progress events and keep the tail of its stderr. Blender's UI thread never blocks: it
calls :meth:`JobRegistry.poll`, which only drains queues. Plain Python (no ``bpy``).
"""
from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .commands import error_line, parse_event

CANCEL_GRACE_S = 10.0          # after an interrupt, how long facestyle gets to clean up before it is killed


class Job:
    """One ``facestyle`` run. ``state``: ``"new"``, ``"running"``, then ``"done"``, ``"failed"`` or
    ``"cancelled"``. ``target`` is whatever the caller needs to finish the job (it is not read here)."""

    def __init__(self, cmd: Sequence[str], dst: Path, target: object = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.cmd = list(cmd)
        self.dst = dst
        self.target = target
        self.env = dict(env) if env is not None else None
        self.state = "new"
        self.error = ""
        self.frame, self.total = 0, None
        self.fps: float | None = None
        self.eta_s: float | None = None
        self.summary: dict = {}                   # the "done" event
        self._events: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._proc: subprocess.Popen | None = None
        self._cancelled_at: float | None = None

    @property
    def name(self) -> str:
        return self.dst.name

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float | None:
        """Frames done / total, or None while the total is unknown."""
        return min(self.frame / self.total, 1.0) if self.total else None

    def start(self) -> None:
        """Start the process and its reader threads.

        Raises:
            OSError: the program could not be started (not found, not executable).
        """
        # a session of its own: Ctrl+C in Blender's terminal does not reach it, and cancel() can signal
        # the whole group (a wrapper script and the Python under it)
        extra = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32"
                 else {"start_new_session": True})
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                      bufsize=1, env=self.env, **extra)
        self.state = "running"
        err = threading.Thread(target=self._read_stderr, name=f"facestyle-stderr-{self.name}", daemon=True)
        out = threading.Thread(target=self._read_stdout, args=(err,), name=f"facestyle-{self.name}", daemon=True)
        err.start()
        out.start()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _read_stdout(self, stderr_reader: threading.Thread) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            event = parse_event(line)
            if event is not None:
                self._events.put(event)
        returncode = self._proc.wait()
        stderr_reader.join()
        self._events.put({"event": "exit", "returncode": returncode})

    def poll(self) -> None:
        """Apply the events the reader queued (never blocks); kill a cancelled run that outstays its grace."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._apply(event)
        if (self._cancelled_at is not None and not self.finished
                and time.monotonic() - self._cancelled_at > CANCEL_GRACE_S):
            self.kill()

    def _apply(self, event: dict) -> None:
        kind = event["event"]
        if kind in ("start", "progress"):
            self.total = event.get("total") or self.total
            self.frame = int(event.get("frame") or self.frame)
            self.fps, self.eta_s = event.get("fps", self.fps), event.get("eta_s", self.eta_s)
        elif kind == "done":
            self.summary = event
            self.frame = int(event.get("frames_out") or self.frame)
        elif kind == "exit":
            code = event["returncode"]
            if self._cancelled_at is not None:
                self.state, self.error = "cancelled", "cancelled"
            elif code != 0:
                self.state, self.error = "failed", error_line(list(self._stderr), code)
            elif not self.dst.is_file():
                self.state, self.error = "failed", f"facestyle finished but wrote no {self.dst}"
            else:
                self.state = "done"

    def cancel(self) -> None:
        """Interrupt the run: facestyle removes its partial output and exits; killed after a grace."""
        if self._proc is None or self._proc.poll() is not None or self._cancelled_at is not None:
            return                                   # not started, already ended (success stays success)
        self._cancelled_at = time.monotonic()
        self._signal(signal.SIGINT)

    def wait(self, timeout: float) -> bool:
        """Wait (blocking) up to ``timeout`` s for the process to end; True if it did."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """End the run at once (its partial output may stay behind)."""
        self._signal(signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        """Signal the process group (a wrapper script and the Python under it); on Windows, terminate."""
        if self._proc is None or self._proc.poll() is not None:
            return
        if sys.platform == "win32":
            self._proc.terminate()
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass


class JobRegistry:
    """The add-on's running jobs and what became of the finished ones (``history``: one dict each,
    newest last, for scripts and tests)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.history: list[dict] = []

    def start(self, job: Job) -> Job:
        """Start ``job`` and hold it. Raises OSError as :meth:`Job.start` does."""
        job.start()
        self.jobs.append(job)
        return job

    def active(self) -> list[Job]:
        return [j for j in self.jobs if not j.finished]

    def outputs(self) -> set[Path]:
        """Output paths of the jobs still running (not on disk yet: facestyle writes them at the end)."""
        return {j.dst for j in self.active()}

    def poll(self) -> list[Job]:
        """Advance every job; return the ones that finished since the last call (and drop them)."""
        for job in self.jobs:
            job.poll()
        finished = [j for j in self.jobs if j.finished]
        self.jobs = [j for j in self.jobs if not j.finished]
        return finished

    def record(self, job: Job, **details: object) -> dict:
        """Add a finished job to ``history``: source command, output, state, error and ``details``."""
        entry = {"cmd": job.cmd, "dst": str(job.dst), "state": job.state, "error": job.error,
                 "frames": job.frame, **details}
        self.history.append(entry)
        return entry

    def cancel_all(self) -> int:
        """Interrupt every running job; returns how many."""
        active = self.active()
        for job in active:
            job.cancel()
        return len(active)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and wait up to ``timeout`` s in all; kill what is left (add-on unloaded)."""
        self.cancel_all()
        deadline = time.monotonic() + timeout
        for job in self.jobs:
            if not job.wait(max(deadline - time.monotonic(), 0.0)):
                job.kill()
        self.jobs.clear()
