"""sdnotify: the systemd notify protocol (``Type=notify``, ``WatchdogSec=``) in a few lines.

systemd passes a unix datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); a service sends it ``KEY=value`` lines: ``READY=1`` once it serves,
``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC``
(we send every half of it), ``STOPPING=1`` when it begins to shut down. Without the variable
every call is a no-op, so the daemon runs the same from a terminal.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Send notifications to systemd; a no-op when ``NOTIFY_SOCKET`` is absent.

    Args:
        env: where to read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default
            ``os.environ``; tests pass a dict).
        clock: monotonic seconds, for the watchdog interval.
    """

    def __init__(self, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET") or None
        if addr and addr.startswith("@"):
            addr = "\0" + addr[1:]
        self.address = addr
        self.clock = clock
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if addr and usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog_interval = max(int(usec) / 1e6 / 2, 0.01)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r (not a number)", usec)
        self._last_ping = float("-inf")
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when disabled or the send failed."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # never stall the daemon on a full socket: drop the message
                sock.connect(self.address)
                sock.send("\n".join(lines).encode())
        except OSError as err:
            log.debug("sd_notify %s: %s", lines, err)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """``STATUS=text``, sent only when it changed."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def ping(self) -> None:
        """``WATCHDOG=1`` if half the watchdog interval has passed since the last one."""
        if self.watchdog_interval is None:
            return
        now = self.clock()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")
