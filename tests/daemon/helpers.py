"""Helpers of the daemon tests: a settable clock, waiting for a condition, a fake systemd socket."""
from __future__ import annotations

import socket
import time
import uuid
from contextlib import contextmanager


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@contextmanager
def notify_socket(tmp_path, abstract=False):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"@facestyle-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify.sock")
    sock.bind("\0" + name[1:] if abstract else name)
    sock.settimeout(5)
    try:
        yield name, sock
    finally:
        sock.close()


def messages(sock):
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    sock.settimeout(5)
    return out
