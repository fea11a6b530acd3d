"""The watch daemon in-process with a stub converter (no model): the job loop (done/, failed/, retries,
exactly once, stop, recovery, one daemon per inbox, systemd notifications). The inbox and sd_notify
have their own files; `facestyle watch` as a process is test_watch_process.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.convert import ConvertResult
from pipeline.daemon.inbox import FolderInUse
from pipeline.daemon.journal import Journal
from pipeline.daemon.sdnotify import Notifier
from pipeline.daemon.watch import WatchConfig, WatchDaemon, WatchError
from pipeline.errors import InputError
from pipeline.media.atomic import atomic_output
from tests.daemon.helpers import messages, notify_socket, wait_for


def stub_converter(frames=1, delay=0.0, calls=None):
    """Copies the input; inputs whose bytes contain b"bad" fail like a corrupt file, b"bug" like a bug."""
    def convert(src, dst, progress):
        data = src.read_bytes()
        if calls is not None:
            calls.append(src.name)
        if b"bad" in data:
            raise InputError(f"{src}: not a video or photo")
        if b"bug" in data:
            raise RuntimeError("stub exploded")
        progress.start(src.name, frames)
        with atomic_output(dst) as tmp:
            for _ in range(frames):
                tmp.write_bytes(data)
                progress.update(1)
                time.sleep(delay)
        return ConvertResult(src, dst, frames, frames, frames, 0.01)
    return convert


@pytest.fixture
def boxes(tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    return inbox, outbox


def config(boxes, **kw):
    inbox, outbox = boxes
    kw = {"settle": 0.2, "poll": 0.05, "retries": 1, "retry_delay": 0.05, **kw}
    return WatchConfig(inbox=inbox, outbox=outbox, tag="stub", options={"model": "stub"}, **kw)


@contextmanager
def daemon(cfg, converter, notifier=None):
    d = WatchDaemon(cfg, notifier=notifier or Notifier({}))
    d.open()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", d.run(lambda: converter, handle_signals=False)))
    t.start()
    try:
        yield d
    finally:
        d.request_stop()
        t.join(timeout=30)
        d.close()
        assert not t.is_alive() and result.get("rc") == 0


def states(cfg):
    with Journal(cfg.state_dir / "journal.sqlite", readonly=True) as j:
        return {Path(job.input).name: job for job in j.jobs()}


def outputs(outbox):
    return sorted(p.name for p in outbox.iterdir() if p.name != ".facestyle")


def test_good_and_bad_inputs_land_in_done_and_failed(boxes):
    inbox, outbox = boxes
    (inbox / "early.mp4").write_bytes(b"good 1")                  # there before the start
    cfg = config(boxes)
    calls = []
    with daemon(cfg, stub_converter(calls=calls)) as d:
        (inbox / "late.jpg").write_bytes(b"good 2")
        (inbox / "broken.mp4").write_bytes(b"bad bytes")
        (inbox / "crash.mp4").write_bytes(b"bug")
        (inbox / "skip.mp4.part").write_bytes(b"partial download")
        wait_for(lambda: len(list((inbox / "failed").glob("*.error.json"))) == 2
                 and len(outputs(outbox)) == 2, what="all jobs")
        assert d.journal.counts() == {"queued": 0, "running": 0, "done": 2, "failed": 2, "cancelled": 0}
    assert outputs(outbox) == ["early_stub.mp4", "late_stub.jpg"]
    assert (outbox / "late_stub.jpg").read_bytes() == b"good 2"
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["early.mp4", "late.jpg"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")) == ["skip.mp4.part"]
    jobs = states(cfg)
    assert calls.count("broken.mp4") == 2 and jobs["broken.mp4"].attempts == 2     # one retry
    report = json.loads((inbox / "failed" / "broken.mp4.error.json").read_text())
    assert report["error"] == jobs["broken.mp4"].error and "not a video" in report["error"]
    assert report["attempts"] == 2 and report["options"] == {"model": "stub"}
    assert jobs["crash.mp4"].error == "internal error: RuntimeError: stub exploded"
    assert jobs["late.jpg"].output == str(outbox / "late_stub.jpg")
    assert jobs["late.jpg"].result["moved_to"] == str(inbox / "done" / "late.jpg")
    assert "skip.mp4.part" not in jobs


def test_each_file_version_is_converted_once(boxes):
    inbox, outbox = boxes
    cfg = config(boxes, keep_inputs=True)
    calls = []
    (inbox / "a.mp4").write_bytes(b"v1")
    with daemon(cfg, stub_converter(calls=calls)):
        wait_for(lambda: outputs(outbox) == ["a_stub.mp4"])
    with daemon(cfg, stub_converter(calls=calls)) as d:              # restart: kept input, same version
        time.sleep(1.0)
        assert calls == ["a.mp4"]
        (inbox / "a.mp4").write_bytes(b"version 2")                   # a new version is a new job
        wait_for(lambda: d.journal.counts()["done"] == 2)
    assert calls == ["a.mp4", "a.mp4"] and outputs(outbox) == ["a_stub-2.mp4", "a_stub.mp4"]
    assert (outbox / "a_stub-2.mp4").read_bytes() == b"version 2" and (inbox / "a.mp4").exists()


def test_failed_input_put_back_is_tried_again(boxes):
    inbox, outbox = boxes
    cfg = config(boxes, retries=0)
    calls = []
    with daemon(cfg, stub_converter(calls=calls)) as d:
        (inbox / "x.mp4").write_bytes(b"bad")
        wait_for(lambda: (inbox / "failed" / "x.mp4").exists() and d.journal.jobs()[0].result.get("moved_to"))
        job = d.journal.jobs()[0]
        assert job.state == "failed" and job.attempts == 1 and calls == ["x.mp4"]
        os.rename(inbox / "failed" / "x.mp4", inbox / "x.mp4")       # same path, size and mtime
        wait_for(lambda: len(calls) == 2 and (inbox / "failed" / "x.mp4").exists()
                 and d.journal.get(job.id).state == "failed")
    assert len(states(cfg)) == 1 and not (inbox / "x.mp4").exists()


def test_stop_now_requeues_the_running_job_and_leaves_no_partial(boxes):
    inbox, outbox = boxes
    cfg = config(boxes, on_stop="requeue")
    (inbox / "long.mp4").write_bytes(b"slow")
    with daemon(cfg, stub_converter(frames=500, delay=0.01)) as d:
        wait_for(lambda: d.journal.counts()["running"] == 1)
        time.sleep(0.2)
        d.request_stop(now=True)
    job = states(cfg)["long.mp4"]
    assert (job.state, job.attempts) == ("queued", 0)
    assert outputs(outbox) == [] and (inbox / "long.mp4").exists()


def test_stop_finishes_the_running_job(boxes):
    inbox, outbox = boxes
    cfg = config(boxes)
    (inbox / "a.mp4").write_bytes(b"slow")
    with daemon(cfg, stub_converter(frames=30, delay=0.02)) as d:
        wait_for(lambda: d.journal.counts()["running"] == 1)
        d.request_stop()
    assert states(cfg)["a.mp4"].state == "done" and outputs(outbox) == ["a_stub.mp4"]


def test_recovery_after_a_crash(boxes):
    inbox, outbox = boxes
    cfg = config(boxes)
    outbox.mkdir()
    cfg.state_dir.mkdir()
    (inbox / "half.mp4").write_bytes(b"redo me")
    (inbox / "whole.mp4").write_bytes(b"was done")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = outbox / f".half_stub.{dead}-0123abcd.partial.mp4"
    stale.write_bytes(b"half-written")
    with Journal(cfg.state_dir / "journal.sqlite") as j:            # what a killed daemon leaves behind
        for name in ("half.mp4", "whole.mp4"):
            st = (inbox / name).stat()
            job, _ = j.add(str(inbox / name), size=st.st_size, mtime_ns=st.st_mtime_ns)
            j.claim()
            j.update(job.id, output=str(outbox / name.replace(".mp4", "_stub.mp4")))
    (outbox / "whole_stub.mp4").write_bytes(b"renamed into place before the kill")
    calls = []
    with daemon(cfg, stub_converter(calls=calls)):
        assert not stale.exists()
        wait_for(lambda: sorted(p.name for p in (inbox / "done").glob("*")) == ["half.mp4", "whole.mp4"]
                 if (inbox / "done").exists() else False)
    jobs = states(cfg)
    assert calls == ["half.mp4"] and jobs["half.mp4"].attempts == 2 and jobs["whole.mp4"].result["recovered"]
    assert outputs(outbox) == ["half_stub.mp4", "whole_stub.mp4"]


def test_input_gone_before_its_turn(boxes):
    inbox, outbox = boxes
    cfg = config(boxes)
    gate = threading.Event()

    def slow(src, dst, progress):
        gate.wait(10)
        return stub_converter()(src, dst, progress)

    (inbox / "first.mp4").write_bytes(b"1")
    with daemon(cfg, slow) as d:
        wait_for(lambda: d.journal.counts()["running"] == 1)
        (inbox / "second.mp4").write_bytes(b"2")
        wait_for(lambda: d.journal.counts()["queued"] == 1)
        (inbox / "second.mp4").unlink()
        gate.set()
        wait_for(lambda: d.journal.counts()["failed"] == 1)
    assert "removed before it was converted" in states(cfg)["second.mp4"].error


def test_one_daemon_per_inbox_and_state(boxes, tmp_path):
    cfg = config(boxes)
    with WatchDaemon(cfg, notifier=Notifier({})):
        with pytest.raises(FolderInUse, match="in use by another facestyle watch"):
            WatchDaemon(cfg, notifier=Notifier({})).open()
        other_state = config(boxes, state=tmp_path / "elsewhere")
        with pytest.raises(FolderInUse, match="inbox .* in use"):
            WatchDaemon(other_state, notifier=Notifier({})).open()
    with WatchDaemon(cfg, notifier=Notifier({})):                   # released on close
        pass
    with pytest.raises(WatchError, match="must not be the inbox"):
        WatchDaemon(WatchConfig(inbox=boxes[0], outbox=boxes[0], tag="t")).open()
    with pytest.raises(WatchError, match="not found"):
        WatchDaemon(WatchConfig(inbox=tmp_path / "nope", outbox=boxes[1], tag="t")).open()
    with pytest.raises(ValueError):
        WatchConfig(inbox=boxes[0], outbox=boxes[1], tag="t", on_stop="later")


def test_notifies_systemd(boxes, tmp_path):
    with notify_socket(tmp_path) as (name, sock):
        notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "100000"})
        with daemon(config(boxes), stub_converter(), notifier):
            assert sock.recv(4096).startswith(b"READY=1")
            time.sleep(0.3)
        got = messages(sock)
    assert got.count("WATCHDOG=1") >= 2 and any(m.startswith("STOPPING=1") for m in got)
