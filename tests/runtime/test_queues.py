"""queues: a blocked hand-off gives up when told to; closing empties the queue; run_ahead works in
its own thread, keeps order, stays bounded, forwards errors and stops when closed."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from pipeline.runtime.queues import drain, put_until, run_ahead


def test_put_until_queues_when_there_is_room():
    q: queue.Queue = queue.Queue(maxsize=1)
    assert put_until(q, "a", lambda: False)
    assert q.get_nowait() == "a"


def test_put_until_gives_up_on_a_full_queue_once_stopped():
    q: queue.Queue = queue.Queue(maxsize=1)
    q.put("first")
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert not put_until(q, "second", stop.is_set, poll_s=0.01)
    assert q.get_nowait() == "first" and q.empty()


def test_drain_empties_without_blocking():
    q: queue.Queue = queue.Queue()
    for i in range(3):
        q.put(i)
    drain(q)
    assert q.empty()
    drain(q)  # already empty: returns at once


class _Source:
    """Counts what was pulled and from which thread; optionally fails at one item."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.pulled = 0
        self.threads: set[str] = set()
        self.closed = threading.Event()

    def __iter__(self):
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise KeyError(f"item {i}")
                self.pulled += 1
                yield i
        finally:
            self.closed.set()


def test_run_ahead_keeps_order_in_its_own_thread():
    src = _Source(50)
    assert list(run_ahead(src, 3, "worker")) == list(range(50))
    assert src.threads == {"worker"}
    assert src.closed.is_set()


def test_run_ahead_is_bounded_by_its_depth():
    src = _Source(100)
    it = run_ahead(src, 2, "worker")
    assert next(it) == 0
    time.sleep(0.2)                                   # let the worker run as far as it may
    assert src.pulled <= 1 + 2 + 1                    # the one handed on, the queue, one waiting to go in
    it.close()


def test_run_ahead_raises_the_workers_error_in_place():
    it = run_ahead(_Source(10, fail_at=4), 2, "worker")
    assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="item 4"):
        next(it)


def test_closing_run_ahead_stops_the_worker_and_closes_the_source():
    src = _Source(10**6)
    it = run_ahead(src, 4, "worker")
    assert next(it) == 0
    it.close()
    assert src.closed.wait(2)
    assert not any(t.name == "worker" for t in threading.enumerate())
    assert src.pulled < 100


def test_run_ahead_refuses_a_zero_depth():
    with pytest.raises(ValueError):
        run_ahead([], 0, "worker")
