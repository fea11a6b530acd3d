"""queues: the two hand-offs the decode and encode threads share with their callers.

``video_in`` and ``video_out`` each run a worker thread joined to the caller by a bounded
``queue.Queue``. A blocking ``put`` on a full queue must not wait forever when the other side has
gone (closed reader, failed encoder), and closing must empty the queue so a blocked worker wakes.
"""
from __future__ import annotations

import queue
from collections.abc import Callable

__all__ = ["POLL_S", "drain", "put_until"]

POLL_S = 0.1  # how often a blocked put (or a join while closing) checks whether to give up


def drain(q: queue.Queue) -> None:
    """Drop everything waiting in ``q`` without blocking."""
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def put_until(q: queue.Queue, item: object, stopped: Callable[[], bool], poll_s: float = POLL_S) -> bool:
    """Put ``item`` into the bounded ``q``, waiting for room, unless ``stopped()`` becomes true.

    Args:
        q: the queue.
        item: what to put.
        stopped: checked before each attempt (every ``poll_s`` seconds while the queue is full),
            e.g. ``event.is_set``.
        poll_s: how long one attempt waits for room.

    Returns:
        True when the item was queued; False when ``stopped()`` said to give up first.
    """
    while not stopped():
        try:
            q.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False
