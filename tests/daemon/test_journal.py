"""The job journal: exactly-once keys, atomic claims, state moves, retries, crash recovery."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.daemon.journal import Journal, JournalError, format_jobs

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "j.sqlite", clock=Clock()) as j:
        yield j


def test_one_job_per_path_size_mtime(journal):
    a, created = journal.add("/in/a.mp4", size=10, mtime_ns=5, options={"model": "pixar"})
    assert created and a.state == "queued" and a.attempts == 0 and a.options == {"model": "pixar"}
    again, created = journal.add("/in/a.mp4", size=10, mtime_ns=5)
    assert not created and again.id == a.id
    newer, created = journal.add("/in/a.mp4", size=12, mtime_ns=6)
    assert created and newer.id != a.id
    assert journal.find("/in/a.mp4", 10, 5).id == a.id and journal.find("/in/a.mp4", 10, 6) is None
    assert journal.counts() == {"queued": 2, "running": 0, "done": 0, "failed": 0, "cancelled": 0}


def test_claim_finish_and_result(journal):
    a, _ = journal.add("a")
    b, _ = journal.add("b")
    job = journal.claim("w1")
    assert (job.id, job.state, job.attempts, job.worker, job.started) == (a.id, "running", 1, "w1", 1000.0)
    journal.update(job.id, output="out/a.mp4", progress=0.5, result={"x": 1})
    done = journal.finish(job.id, result={"frames_out": 4})
    assert done.state == "done" and done.output == "out/a.mp4" and done.progress == 1.0 and done.error is None
    assert done.result == {"x": 1, "frames_out": 4} and done.finished == 1000.0 and done.worker is None
    assert journal.claim("w1").id == b.id
    assert journal.claim("w1") is None
    with pytest.raises(JournalError, match="cannot become done from done"):
        journal.finish(a.id)


def test_retry_with_backoff_then_fail(journal):
    clock = journal.clock
    job, _ = journal.add("a")
    journal.claim()
    queued = journal.fail(job.id, "disk full", retry_at=clock.t + 30)
    assert queued.state == "queued" and queued.error == "disk full" and queued.attempts == 1
    assert journal.claim() is None and journal.next_due() == clock.t + 30   # not before the backoff
    clock.t += 30
    assert journal.claim().attempts == 2
    failed = journal.fail(job.id, "still full")
    assert failed.state == "failed" and failed.error == "still full" and failed.finished == clock.t
    again = journal.retry(job.id)
    assert again.state == "queued" and again.attempts == 0 and again.error is None


def test_requeue_does_not_count_the_attempt(journal):
    job, _ = journal.add("a")
    journal.claim()
    assert journal.requeue(job.id).attempts == 0
    assert journal.claim().attempts == 1


def test_recover_requeues_or_fails_after_too_many_interruptions(journal):
    a, _ = journal.add("a")
    b, _ = journal.add("b")
    journal.claim()
    journal.claim()
    journal.fail(b.id, "boom", retry_at=0)   # b: attempt 1 failed, back in the queue
    journal.claim()                          # b: attempt 2 running
    changed = {j.id: j for j in journal.recover(max_attempts=2)}
    assert changed[a.id].state == "queued" and changed[a.id].attempts == 1
    assert changed[b.id].state == "failed" and "interrupted 2 time(s)" in changed[b.id].error


def test_claims_are_exclusive_across_threads(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        for i in range(40):
            j.add(f"f{i}")
    claimed: list[int] = []
    lock = threading.Lock()

    def worker():
        with Journal(path) as mine:          # a connection each, as separate processes would have
            while (job := mine.claim()) is not None:
                with lock:
                    claimed.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == list(range(1, 41))


def test_committed_changes_survive_kill_9(tmp_path):
    path = tmp_path / "j.sqlite"
    code = ("import os, signal, sys; from pipeline.daemon.journal import Journal\n"
            f"j = Journal({str(path)!r}); j.add('a'); j.add('b'); job = j.claim('w')\n"
            "j.update(job.id, output='o.mp4', progress=0.3)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == -9
    with Journal(path) as j:
        running = j.jobs(["running"])
        assert [(r.input, r.output, r.progress) for r in running] == [("a", "o.mp4", 0.3)]
        assert [r.state for r in j.recover()] == ["queued"]
        assert j.counts()["queued"] == 2


def test_readonly_reader_and_bad_files(tmp_path):
    with pytest.raises(JournalError, match="no job journal"):
        Journal(tmp_path / "missing.sqlite", readonly=True)
    with Journal(tmp_path / "j.sqlite") as writer:
        writer.add("a")
        with Journal(tmp_path / "j.sqlite", readonly=True) as reader:
            assert [j.input for j in reader.jobs()] == ["a"]
            with pytest.raises(JournalError):
                reader.add("b")
    (tmp_path / "text.sqlite").write_text("hello, not a database" * 100)
    with pytest.raises(JournalError, match="not a usable job journal"):
        Journal(tmp_path / "text.sqlite")
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(JournalError, match="no jobs table"):
        Journal(tmp_path / "other.sqlite", readonly=True)
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalError, match="newer facestyle"):
        Journal(tmp_path / "j.sqlite")


def test_queue_history_and_table(journal):
    for name in "abc":
        journal.add(f"/in/{name}.mp4")
    a = journal.claim()
    journal.finish(a.id, output="/out/a_pixar.mp4")
    b = journal.claim()
    journal.fail(b.id, "/in/b.mp4: no face found")
    journal.claim()
    journal.add("/in/d.mp4")
    assert [j.input[-5:] for j in journal.queue()] == ["c.mp4", "d.mp4"]
    assert [j.input[-5:] for j in journal.history()] == ["b.mp4", "a.mp4"]
    table = format_jobs(journal.queue(), journal.history(), journal.counts())
    assert "-> /out/a_pixar.mp4" in table and "no face found" in table and "started" in table
    assert table.splitlines()[-1] == "4 job(s): 1 queued, 1 running, 1 done, 1 failed, 0 cancelled"


def test_requests_without_a_signature_are_never_merged_and_can_be_cancelled(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        a, created_a = journal.add("/in/a.mp4", size=None, mtime_ns=None, output="/out/1.mp4")
        b, created_b = journal.add("/in/a.mp4", size=None, mtime_ns=None, output="/out/2.mp4")
        assert created_a and created_b and a.id != b.id and b.output == "/out/2.mp4"
        assert journal.find("/in/a.mp4") is None
        gone = journal.cancel(a.id)
        assert gone.state == "cancelled" and gone.finished is not None and gone.error == "cancelled"
        assert journal.claim().id == b.id                      # the cancelled job never runs
        assert journal.cancel(b.id, "stopped by the user").state == "cancelled"
        with pytest.raises(JournalError, match="cannot become cancelled from cancelled"):
            journal.cancel(b.id)
        assert journal.counts()["cancelled"] == 2
        assert [j.id for j in journal.history()] == [b.id, a.id]


def test_a_version_1_journal_is_migrated_with_its_jobs(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, input TEXT NOT NULL,
            input_size INTEGER NOT NULL DEFAULT -1, input_mtime_ns INTEGER NOT NULL DEFAULT -1,
            output TEXT, options TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, error TEXT, progress REAL, result TEXT NOT NULL DEFAULT '{}',
            worker TEXT, not_before REAL NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL,
            started REAL, finished REAL, UNIQUE (input, input_size, input_mtime_ns));
        CREATE INDEX jobs_by_state ON jobs (state, not_before, id);
        INSERT INTO jobs (input, input_size, input_mtime_ns, state, created, updated)
            VALUES ('/in/x.mp4', 7, 8, 'done', 1, 2), ('/in/y.mp4', 3, 4, 'queued', 1, 1);
        PRAGMA user_version = 1;
    """)
    db.close()
    with Journal(path) as journal:
        assert journal.find("/in/x.mp4", 7, 8).state == "done"
        assert journal.add("/in/y.mp4", size=3, mtime_ns=4)[1] is False      # the key survives
        job = journal.claim()
        assert job.input == "/in/y.mp4"
        assert journal.cancel(job.id).state == "cancelled"                     # the new state is allowed
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
