"""journal: a durable job journal in SQLite, shared by the watch-folder daemon and any other job runner.

One row per job: an input (with its size and mtime, so the same file is taken exactly once; jobs
added without them, as the job service does, are never merged), an output, the options it runs
with (JSON), a state, attempts, the last error, progress, a result (JSON) and timestamps. States
move only along::

    queued -> running -> done
       ^         |
       +---------+-----> failed      (retry later: back to queued with a not_before time)
    queued, running ---> cancelled   (asked for by a user)

Every change is one committed SQLite transaction (``synchronous=FULL``), so a process killed at
any point leaves the journal as it was after the last change; :meth:`Journal.recover` puts the
jobs such a process left ``running`` back in the queue. A claim is atomic (``BEGIN IMMEDIATE``),
so several workers, threads or processes, never take the same job. Readers in other processes
(``facestyle jobs``) open the file read-only.

Times are wall-clock seconds since the epoch (they outlive the process).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.errors import FacestyleError

__all__ = ["STATES", "Job", "Journal", "JournalError", "format_jobs"]

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    input          TEXT    NOT NULL,
    input_size     INTEGER,
    input_mtime_ns INTEGER,
    output         TEXT,
    options        TEXT    NOT NULL DEFAULT '{}',
    state          TEXT    NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    progress       REAL,
    result         TEXT    NOT NULL DEFAULT '{}',
    worker         TEXT,
    not_before     REAL    NOT NULL DEFAULT 0,
    created        REAL    NOT NULL,
    updated        REAL    NOT NULL,
    started        REAL,
    finished       REAL,
    UNIQUE (input, input_size, input_mtime_ns)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, not_before, id);
"""


class JournalError(FacestyleError):
    """The journal cannot be opened or used (missing, not a journal, newer schema, bad transition)."""


@dataclass(frozen=True)
class Job:
    """One row of the journal. ``options`` and ``result`` are the decoded JSON objects."""

    id: int
    input: str
    input_size: int | None
    input_mtime_ns: int | None
    output: str | None
    options: dict = field(default_factory=dict)
    state: str = "queued"
    attempts: int = 0
    error: str | None = None
    progress: float | None = None
    result: dict = field(default_factory=dict)
    worker: str | None = None
    not_before: float = 0.0
    created: float = 0.0
    updated: float = 0.0
    started: float | None = None
    finished: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


_COLUMNS = [f.name for f in Job.__dataclass_fields__.values()]


class Journal:
    """The job journal in one SQLite file; safe to share between threads.

    Args:
        path: the database file (created with its schema unless ``readonly``).
        readonly: open an existing journal for reading only (no lock needed, no file created).
        clock: wall-clock seconds, for timestamps and ``not_before``.

    Raises:
        JournalError: the file is missing (``readonly``), not a journal, or from a newer version.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.readonly = readonly
        self._lock = threading.RLock()
        if readonly and not self.path.is_file():
            raise JournalError(f"{self.path}: no job journal here")
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro" if readonly else str(self.path)
            self._db = sqlite3.connect(uri, uri=readonly, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._setup()
        except sqlite3.DatabaseError as err:
            raise JournalError(f"{self.path}: not a usable job journal ({err})") from err

    def _setup(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path}: journal written by a newer facestyle (schema {version})")
        if self.readonly:
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone():
                return
            raise JournalError(f"{self.path}: not a job journal (no jobs table)")
        self._db.execute("PRAGMA synchronous = FULL")
        with self._transaction() as db:
            if version == 1:                     # v1: signature NOT NULL, no 'cancelled' state
                db.execute("ALTER TABLE jobs RENAME TO jobs_v1")
                db.execute("DROP INDEX IF EXISTS jobs_by_state")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if version == 1:
                db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM jobs_v1")
                db.execute("DROP TABLE jobs_v1")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Hold the lock; SQLite failures (disk full, file deleted, locked) become JournalError."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as err:
                raise JournalError(f"{self.path}: {err}") from err

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _row(self, row: sqlite3.Row | None) -> Job | None:
        if row is None:
            return None
        values = dict(row)
        values["options"] = json.loads(values["options"] or "{}")
        values["result"] = json.loads(values["result"] or "{}")
        return Job(**values)

    def _query(self, sql: str, args: Iterable[object] = ()) -> list[Job]:
        with self._errors():
            return [self._row(r) for r in self._db.execute(sql, tuple(args)).fetchall()]

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def find(self, input: str, size: int = -1, mtime_ns: int = -1) -> Job | None:
        """The job of this exact input (path, size, mtime), or None (jobs without a signature never match)."""
        rows = self._query("SELECT * FROM jobs WHERE input = ? AND input_size = ? AND input_mtime_ns = ?",
                           (str(input), size, mtime_ns))
        return rows[0] if rows else None

    def jobs(self, states: Iterable[str] | None = None, limit: int | None = None) -> list[Job]:
        """Jobs in the given states (all by default), newest first."""
        states = tuple(states or STATES)
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id DESC"
        return self._query(sql + (" LIMIT ?" if limit is not None else ""),
                           (*states, *((limit,) if limit is not None else ())))

    def queue(self) -> list[Job]:
        """Running jobs, then queued ones in the order they will run."""
        return self._query("SELECT * FROM jobs WHERE state IN ('running', 'queued') "
                           "ORDER BY state = 'queued', not_before, id")

    def history(self, limit: int | None = None) -> list[Job]:
        """Finished jobs (done, failed, cancelled), the most recent first."""
        return self._query("SELECT * FROM jobs WHERE state IN ('done', 'failed', 'cancelled') "
                           "ORDER BY finished DESC, id DESC"
                           + (" LIMIT ?" if limit is not None else ""), (limit,) if limit is not None else ())

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, zero included)."""
        with self._errors():
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {state: n for state, n in rows}

    def next_due(self) -> float | None:
        """The earliest ``not_before`` of the queued jobs (None when the queue is empty)."""
        with self._errors():
            return self._db.execute("SELECT MIN(not_before) FROM jobs WHERE state = 'queued'").fetchone()[0]

    # -- changing ------------------------------------------------------------------------------

    def add(self, input: str, *, size: int | None = -1, mtime_ns: int | None = -1, output: str | None = None,
            options: dict | None = None) -> tuple[Job, bool]:
        """Queue a job for ``input`` unless one exists for the same (path, size, mtime).

        ``size=None, mtime_ns=None`` always queues a new job (a request, not a file to take once).

        Returns:
            ``(job, created)``: the new job, or the existing one with ``created`` False.
        """
        now = self.clock()
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (input, input_size, input_mtime_ns, output, options, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(input), size, mtime_ns, output, json.dumps(options or {}, sort_keys=True), now, now))
            created = cur.rowcount == 1
            row_id = cur.lastrowid
        job = self.get(row_id) if created else self.find(input, size, mtime_ns)
        assert job is not None
        return job, created

    def claim(self, worker: str = "", device: str | None = None) -> Job | None:
        """Take the oldest queued job that is due: it becomes ``running`` with one more attempt.

        ``device``: only a job whose ``options["device"]`` is this one, ``"auto"`` or unset.
        """
        now = self.clock()
        only = "" if device is None else " AND COALESCE(json_extract(options, '$.device'), 'auto') IN ('auto', ?)"
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' AND not_before <= ?" + only +
                             " ORDER BY not_before, id LIMIT 1", (now, *(() if device is None else (device,)))
                             ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, started = ?, "
                       "updated = ?, progress = NULL, finished = NULL WHERE id = ?", (worker, now, now, row[0]))
        return self.get(row[0])

    def update(self, job_id: int, *, output: str | None = None, progress: float | None = None,
               result: dict | None = None) -> None:
        """Set the output or progress of a job, or merge keys into its result."""
        with self._transaction() as db:
            if output is not None:
                db.execute("UPDATE jobs SET output = ? WHERE id = ?", (output, job_id))
            if progress is not None:
                db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (progress, job_id))
            if result is not None:
                self._merge_result(db, job_id, result)
            db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (self.clock(), job_id))

    def finish(self, job_id: int, *, output: str | None = None, result: dict | None = None) -> Job:
        """running -> done."""
        return self._move(job_id, ("running",), "done", error=None, output=output, result=result,
                          progress=1.0, finished=True)

    def fail(self, job_id: int, error: str, *, retry_at: float | None = None, result: dict | None = None) -> Job:
        """running -> failed, or back to queued (due at ``retry_at``) to be tried again."""
        if retry_at is not None:
            return self._move(job_id, ("running",), "queued", error=error, not_before=retry_at, result=result)
        return self._move(job_id, ("running",), "failed", error=error, result=result, finished=True)

    def requeue(self, job_id: int) -> Job:
        """running -> queued without counting the attempt (the job was stopped, not failed)."""
        return self._move(job_id, ("running",), "queued", attempts=-1)

    def retry(self, job_id: int) -> Job:
        """failed (or done) -> queued with the attempts reset, to run it again."""
        return self._move(job_id, ("failed", "done"), "queued", error=None, attempts=0, not_before=0.0)

    def cancel(self, job_id: int, reason: str = "cancelled") -> Job:
        """queued or running -> cancelled (a running job's runner must stop it: see the caller)."""
        return self._move(job_id, ("queued", "running"), "cancelled", error=reason, finished=True)

    def recover(self, max_attempts: int | None = None) -> list[Job]:
        """Put the jobs a dead process left ``running`` back in the queue.

        The interrupted attempt counts: a job whose attempts reach ``max_attempts`` this way (an
        input that crashes the process every time) fails instead of looping forever.

        Returns:
            The jobs changed, in their new state.
        """
        changed = []
        for job in self._query("SELECT * FROM jobs WHERE state = 'running' ORDER BY id"):
            if max_attempts is not None and job.attempts >= max_attempts:
                changed.append(self._move(job.id, ("running",), "failed", finished=True,
                                          error=f"interrupted {job.attempts} time(s): the process was killed "
                                                "or crashed during this job"))
            else:
                changed.append(self._move(job.id, ("running",), "queued", error=job.error))
        return changed

    def _move(self, job_id: int, from_states: tuple[str, ...], state: str, *, error: str | None | bool = False,
              output: str | None = None, result: dict | None = None, progress: float | None = None,
              not_before: float | None = None, attempts: int | None = None, finished: bool = False) -> Job:
        now = self.clock()
        sets, args = ["state = ?", "updated = ?", "worker = NULL"], [state, now]
        if error is not False:
            sets.append("error = ?")
            args.append(error)
        for column, value in (("output", output), ("progress", progress), ("not_before", not_before)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if attempts == -1:
            sets.append("attempts = MAX(attempts - 1, 0)")
        elif attempts is not None:
            sets.append("attempts = ?")
            args.append(attempts)
        sets.append("finished = ?")
        args.append(now if finished else None)
        marks = ",".join("?" * len(from_states))
        with self._transaction() as db:
            cur = db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND state IN ({marks})",
                             (*args, job_id, *from_states))
            if cur.rowcount != 1:
                job = self.get(job_id)
                raise JournalError(f"job {job_id}: cannot become {state} from "
                                   f"{job.state if job else 'nothing (no such job)'}")
            if result is not None:
                self._merge_result(db, job_id, result)
        job = self.get(job_id)
        assert job is not None
        return job

    @staticmethod
    def _merge_result(db: sqlite3.Connection, job_id: int, result: dict) -> None:
        row = db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        merged = json.loads(row[0] or "{}") if row else {}
        merged.update(result)
        db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(merged, sort_keys=True), job_id))


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def format_jobs(queue: list[Job], history: list[Job], counts: dict[str, int]) -> str:
    """A table for people: the queue (running, then queued), then the history, then the counts."""
    lines = [f"{'ID':>5}  {'STATE':7}  {'TRIES':>5}  {'UPDATED':19}  {'INPUT':30}  RESULT"]
    for job in [*queue, *history]:
        if job.state == "running":
            detail = f"{job.progress:.0%}" if job.progress is not None else "started"
        elif job.state == "done":
            detail = f"-> {job.output}"
        elif job.state in ("failed", "cancelled") or job.error:
            detail = ("retrying: " if job.state == "queued" else "") + (job.error or "")
        else:
            detail = ""
        lines.append(f"{job.id:>5}  {job.state:7}  {job.attempts:>5}  {_when(job.updated):19}  "
                     f"{Path(job.input).name:30}  {detail}")
    total = sum(counts.values())
    lines.append(f"{total} job(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    return "\n".join(lines)
