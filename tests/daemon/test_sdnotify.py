"""sd_notify: READY, STATUS, the watchdog interval and its pacing, path and abstract sockets, off."""
from __future__ import annotations

import pytest

from pipeline.daemon.sdnotify import Notifier
from tests.daemon.helpers import Clock, messages, notify_socket


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify(tmp_path, abstract):
    clock = Clock()
    with notify_socket(tmp_path, abstract) as (name, sock):
        n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"}, clock=clock)
        assert n.enabled and n.watchdog_interval == 1.0
        n.ready("idle")
        assert sock.recv(4096) == b"READY=1\nSTATUS=idle"
        n.ping()
        n.ping()                                   # too soon: not sent again
        clock.t = 1.0
        n.ping()
        n.status("busy")
        n.status("busy")
        n.stopping()
        assert messages(sock) == ["WATCHDOG=1", "WATCHDOG=1", "STATUS=busy", "STOPPING=1"]
    other_pid = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval is None
    off = Notifier({})
    assert not off.enabled and off.send("READY=1") is False
    off.ping()
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")}).send("READY=1") is False
