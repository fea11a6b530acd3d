"""queues: a blocked hand-off gives up when told to; closing empties the queue."""
from __future__ import annotations

import queue
import threading

from pipeline.queues import drain, put_until


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
