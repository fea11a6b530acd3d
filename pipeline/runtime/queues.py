"""queues: the hand-offs between the pipeline's threads and their callers.

``video_in`` and ``video_out`` each run a worker thread joined to the caller by a bounded
``queue.Queue``; :func:`run_ahead` does the same for any stage (face finding runs ahead of the
model this way). A blocking ``put`` on a full queue must not wait forever when the other side has
gone (closed reader, failed encoder), and closing must empty the queue so a blocked worker wakes.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["POLL_S", "drain", "put_until", "run_ahead"]

T = TypeVar("T")

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


class _Raised:
    """An exception of the worker, handed to the consumer to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def run_ahead(source: Iterable[T], depth: int, name: str) -> Iterator[T]:
    """Iterate ``source`` in a worker thread, up to ``depth`` items ahead of the consumer.

    The consumer gets the items in order, and the worker's exception (raised by ``source``) at the
    point where it happened. Closing the returned generator (``close()``, or dropping it) stops the
    worker after its current item; the worker closes ``source`` itself, in its own thread.

    Args:
        source: any iterable; it is only ever touched by the worker thread.
        depth: how many items may wait in the hand-off (>= 1).
        name: the thread's name (for debuggers and logs).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        it = iter(source)
        try:
            for item in it:
                if not put_until(q, item, stop.is_set):
                    return
            put_until(q, _END, stop.is_set)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put_until(q, _Raised(err), stop.is_set)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        worker = threading.Thread(target=work, daemon=True, name=name)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, _Raised):
                    raise item.error
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                drain(q)
                worker.join(timeout=POLL_S)
            drain(q)

    return consume()
