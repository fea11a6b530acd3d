"""inbox: notice files arriving in a folder and decide when each is complete.

- :func:`is_candidate`: hidden names, temporary and partial names (``.part``, ``.crdownload``,
  ``~`` backups, our own ``.partial`` files...) are never taken.
- :class:`InboxWatcher`: where the names come from. File-system events through watchdog
  (inotify, FSEvents...) with a full rescan every ``RESCAN_S`` as a safety net, or, with
  ``poll``, a listing of the folder every ``poll`` seconds (network shares send no events).
  Files moved or renamed into the folder count as new; files there at start are listed once.
- :class:`Settler`: the settle rule. A file is complete when its size and mtime have not
  changed for ``settle`` seconds, or, after the writer closed it (an inotify close-after-write
  event), for ``closed_settle`` seconds.
- Folder housekeeping: :func:`lock_folder` (one daemon per inbox and per state folder),
  :func:`free_name` (never overwrite: ``name-2.ext``), :func:`remove_stale_partials` (the
  hidden partial outputs a killed process left).
"""
from __future__ import annotations

import fcntl
import logging
import os
import queue
import re
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import FacestyleError

__all__ = ["Changes", "FileSig", "FolderInUse", "InboxWatcher", "Settler", "free_name", "is_candidate", "lock_folder",
           "remove_stale_partials", "signature"]

log = logging.getLogger(__name__)

RESCAN_S = 30.0  # event mode: list the folder this often anyway (missed or overflowed events)
_TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".!qb",
                  ".opdownload", ".aria2", ".swp", ".lock", ".error.json")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?$")  # atomic.reserve_temp's names


def is_candidate(name: str) -> bool:
    """Whether a file name may be an input: not hidden, temporary or partial."""
    low = name.lower()
    if not low or low.startswith((".", "~")) or low.endswith("~") or low in _IGNORED_NAMES:
        return False
    return not low.endswith(_TEMP_SUFFIXES) and ".partial." not in low


@dataclass(frozen=True)
class FileSig:
    """What identifies one version of a file: its size and modification time."""

    size: int
    mtime_ns: int


def signature(path: Path) -> FileSig | None:
    """The file's size and mtime, or None when it is gone or not a regular file."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return FileSig(st.st_size, st.st_mtime_ns)


def free_name(path: Path, taken: Collection[Path] = ()) -> Path:
    """``path`` if nothing is there (nor in ``taken``), else the first free ``<stem>-2<suffix>``,
    ``-3``..."""
    for n in range(1, 100_000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        if candidate not in taken and not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"{path}: no free name")


class FolderInUse(FacestyleError):
    """Another process holds the lock of a folder."""


def lock_folder(path: Path, what: str, holder_kind: str = "facestyle watch") -> int:
    """Hold an exclusive lock on ``path`` (released by the OS when the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise FolderInUse(f"{what} is in use by another {holder_kind} (pid {holder}); stop that one first") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the hidden ``.partial`` files in ``folder`` whose writing process is gone."""
    removed = []
    for path in folder.glob(".*.partial*") if folder.is_dir() else []:
        m = _PARTIAL.match(path.name)
        if m is None:
            continue
        pid = int(m["pid"])
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # its writer still runs (a `facestyle convert` into the same folder)
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@dataclass
class _Pending:
    sig: FileSig
    since: float
    closed: bool = False


class Settler:
    """Tracks files until they are complete (see the module docstring for the rule).

    Args:
        settle: seconds a file's size and mtime must stay the same.
        closed_settle: the same after a close-after-write event (at most ``settle``).
        clock: monotonic seconds.
    """

    def __init__(self, settle: float, closed_settle: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle = settle
        self.closed_settle = min(closed_settle, settle)
        self.clock = clock
        self._pending: dict[Path, _Pending] = {}
        self._taken: dict[Path, FileSig] = {}  # handed out already, with the version handed out

    def __len__(self) -> int:
        return len(self._pending)

    def seen(self, path: Path, closed: bool = False) -> None:
        """A name was listed or an event named it: start (or restart) watching it."""
        sig = signature(path)
        if sig is None:
            self.forget(path)
            return
        if self._taken.get(path) == sig:
            return
        self._taken.pop(path, None)
        entry = self._pending.get(path)
        if entry is None or entry.sig != sig:
            self._pending[path] = _Pending(sig, self.clock(), closed)
        elif closed:
            entry.closed = True

    def forget(self, path: Path) -> None:
        self._pending.pop(path, None)
        self._taken.pop(path, None)

    def keep_only(self, present: Iterable[Path]) -> None:
        """Drop every file not in ``present`` (a full listing of the folder)."""
        keep = set(present)
        for table in (self._pending, self._taken):
            for path in [p for p in table if p not in keep]:
                del table[path]

    def complete(self) -> list[tuple[Path, FileSig]]:
        """Look at every pending file again; return (and stop watching) those that are complete."""
        now, done = self.clock(), []
        for path, entry in list(self._pending.items()):
            sig = signature(path)
            if sig is None:
                del self._pending[path]
            elif sig != entry.sig:
                self._pending[path] = _Pending(sig, now)
            elif now - entry.since >= (self.closed_settle if entry.closed else self.settle):
                del self._pending[path]
                self._taken[path] = sig
                done.append((path, sig))
        return sorted(done, key=lambda item: (item[1].mtime_ns, str(item[0])))


@dataclass
class Changes:
    """What a watcher saw since the last call: named files (with whether a close-after-write event
    came) and, after a full listing, every candidate present."""

    named: list[tuple[Path, bool]]
    listing: set[Path] | None = None


class InboxWatcher:
    """Names of candidate files in ``folder``, from watchdog events or by polling.

    Args:
        folder: the inbox (not watched recursively: its subfolders are not inputs).
        poll: list the folder every ``poll`` seconds instead of using file-system events.
        clock: monotonic seconds.
    """

    def __init__(self, folder: Path, poll: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.poll = poll
        self.clock = clock
        self.interval = poll if poll is not None else RESCAN_S
        self._events: queue.SimpleQueue[tuple[Path, bool]] = queue.SimpleQueue()
        self._observer = None
        self._next_listing = float("-inf")
        self._listing_failed = False

    @property
    def mode(self) -> str:
        return "file-system events" if self.poll is None else f"polling every {self.poll:g} s"

    def start(self) -> None:
        """Start receiving events (event mode); falls back to polling every 2 s if that fails."""
        if self.poll is not None:
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.warning("watchdog is not installed; polling %s every 2 s", self.folder)
            self.poll = self.interval = 2.0
            return
        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                watcher._on_event(event)

        observer = Observer()
        try:
            observer.schedule(_Handler(), str(self.folder), recursive=False)
            observer.start()
        except OSError as err:  # e.g. inotify watch limit reached
            log.warning("cannot watch %s for events (%s); polling every 2 s", self.folder, err)
            self.poll = self.interval = 2.0
            return
        self._observer = observer

    def _on_event(self, event: object) -> None:
        if getattr(event, "is_directory", False):
            return
        kind = getattr(event, "event_type", "")
        path = getattr(event, "dest_path", "") if kind == "moved" else getattr(event, "src_path", "")
        if kind not in ("created", "modified", "moved", "closed") or not path:
            return
        path = Path(os.fsdecode(path))
        if path.parent == self.folder and is_candidate(path.name):
            self._events.put((path, kind == "closed"))

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def changes(self) -> Changes:
        """Drain the events; list the whole folder when it is time (always on the first call)."""
        named: dict[Path, bool] = {}  # a copy sends many events: look at each file once
        while True:
            try:
                path, closed = self._events.get_nowait()
            except queue.Empty:
                break
            named[path] = named.get(path, False) or closed
        listing = None
        now = self.clock()
        if now >= self._next_listing:
            self._next_listing = now + self.interval
            listing = self._list()
            for path in sorted(listing or ()):
                named.setdefault(path, False)
        return Changes(list(named.items()), listing)

    def _list(self) -> set[Path] | None:
        try:
            with os.scandir(self.folder) as entries:
                found = {self.folder / e.name for e in entries if is_candidate(e.name) and e.is_file()}
        except OSError as err:
            if not self._listing_failed:
                log.error("cannot list %s: %s", self.folder, err)
            self._listing_failed = True
            return None
        if self._listing_failed:
            log.info("%s can be listed again", self.folder)
        self._listing_failed = False
        return found
