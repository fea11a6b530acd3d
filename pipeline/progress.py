"""Progress reporting for long work: a tqdm bar (frames/s, ETA), JSON lines for programs that
drive us, or nothing. The CLI picks one; stages never print."""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Protocol

from tqdm import tqdm


class Progress(Protocol):
    def start(self, name: str, total: int | None) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def finish(self, **summary: object) -> None: ...


class NullProgress:
    def start(self, name: str, total: int | None) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def finish(self, **summary: object) -> None:
        pass


class BarProgress:
    """A tqdm bar on stderr: frames done / total, frames/s and ETA."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None

    def start(self, name: str, total: int | None) -> None:
        self.bar = tqdm(total=total or None, desc=name, unit="frame", file=self.stream, dynamic_ncols=True,
                        smoothing=0.1)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self, **summary: object) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonProgress:
    """One JSON object per line on stdout: ``{"event": "progress", "file", "frame", "total", "fps",
    "eta_s"}`` at most every ``interval`` seconds, then ``{"event": "done", ...summary}``."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.5) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.name, self.total, self.done = "", None, 0
        self.t0 = self.last = 0.0

    def _emit(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def start(self, name: str, total: int | None) -> None:
        self.name, self.total, self.done = name, total, 0
        self.t0 = self.last = time.monotonic()
        self._emit({"event": "start", "file": name, "total": total})

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or (self.total and self.done >= self.total):
            self.last = now
            fps = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / fps if self.total and fps > 0 else None
            self._emit({"event": "progress", "file": self.name, "frame": self.done, "total": self.total,
                        "fps": round(fps, 3), "eta_s": None if eta is None else round(max(eta, 0.0), 1)})

    def finish(self, **summary: object) -> None:
        self._emit({"event": "done", "file": self.name, **summary})


def make_progress(kind: str) -> Progress:
    """``"bar"``, ``"json"`` or ``"none"``."""
    return {"bar": BarProgress, "json": JsonProgress, "none": NullProgress}[kind]()
