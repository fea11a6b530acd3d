"""`facestyle watch` as a service runs it: a subprocess on temporary folders with the tiny random
checkpoint. Good, corrupt, empty, faceless, slowly-written and renamed-in files; kill -9 in the middle
of a job and a restart; SIGTERM; sd_notify; `facestyle jobs`. Every good input yields exactly one
complete output, failures land in failed/ with reasons, nothing is half-written, and the journal
agrees with the folders."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.daemon.journal import Journal, JournalError
from tests.clips import make_clip

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX daemon (signals, flock)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "checkpoint", "random", "--preset", "tiny",
                           "-o", path, "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return path


class Daemon:
    """One `facestyle watch` process; stderr goes to a log file (read on failure)."""

    def __init__(self, tmp: Path, inbox: Path, outbox: Path, tiny: Path, *extra: str, env: dict | None = None):
        self.log = tmp / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self.outbox = outbox
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "cli.py"), "watch", str(inbox), "-o", str(outbox), "--model", str(tiny),
                 *extra], stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env={**os.environ, **(env or {})})

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}:\n"
                                     + self.text())
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def jobs(outbox: Path) -> dict[str, object]:
    """Jobs by input name ({} while the journal does not exist yet)."""
    try:
        with Journal(outbox / ".facestyle" / "journal.sqlite", readonly=True) as j:
            return {Path(job.input).name: job for job in j.jobs()}
    except JournalError:
        return {}


def outputs(outbox: Path) -> list[str]:
    """The finished outputs (hidden names, the partial files and the state folder, left out)."""
    return sorted(p.name for p in outbox.iterdir() if not p.name.startswith("."))


def partials(*folders: Path) -> list[Path]:
    return [p for f in folders if f.is_dir() for p in f.rglob("*partial*")]


def frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def write_slowly(src: Path, dst: Path, chunks: int = 8, pause: float = 0.25) -> None:
    """Copy ``src`` to ``dst`` in pieces with pauses, the file open throughout (a slow upload)."""
    data = src.read_bytes()
    step = -(-len(data) // chunks)
    with open(dst, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            time.sleep(pause)


def test_good_and_bad_files_and_systemd_notify(tmp_path, tiny, media_dir):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    photo = media_dir / "540.jpg"
    shutil.copy(photo, inbox / "present.jpg")                       # there before the daemon starts
    (inbox / ".hidden.jpg").write_bytes(photo.read_bytes())          # ignored names
    (inbox / "download.jpg.crdownload").write_bytes(photo.read_bytes())
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)       # a fake systemd
    name = f"@facestyle-test-{uuid.uuid4().hex}"
    notify.bind("\0" + name[1:])
    notify.settimeout(0.2)
    got: list[str] = []
    listening = threading.Event()

    def listen():
        while not listening.is_set():
            try:
                got.append(notify.recv(4096).decode())
            except TimeoutError:
                pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    daemon = Daemon(tmp_path, inbox, outbox, tiny, "--settle", "1", "--retries", "1", "--retry-delay", "0.2",
                    env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})   # file-system events (no --poll)
    try:
        daemon.wait_for(lambda: any(m.startswith("READY=1") for m in got), 180, "READY=1")
        assert got[0].startswith("STATUS=loading model"), got
        (inbox / "empty.mp4").write_bytes(b"")
        (inbox / "notes.txt").write_text("not a video\n" * 50)
        noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        (inbox / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + noise)
        make_clip(tmp_path / "noface.mp4", frames=3)                 # a video with no face in it
        os.rename(tmp_path / "noface.mp4", inbox / "noface.mp4")
        write_slowly(photo, inbox / "slow.jpg")                      # a slow upload: taken only when complete
        shutil.copy(photo, inbox / "incoming.jpg.part")              # renamed in when complete
        os.rename(inbox / "incoming.jpg.part", inbox / "renamed.jpg")
        failed = inbox / "failed"
        daemon.wait_for(lambda: sorted(j.state for j in jobs(outbox).values()) == ["done"] * 3 + ["failed"] * 4
                        and len(outputs(outbox)) == 3 and len(list(failed.glob("*.error.json"))) == 4,
                        300, "3 outputs and 4 failures")
        listing = subprocess.run([sys.executable, str(REPO / "cli.py"), "jobs", str(outbox)], capture_output=True,
                                 text=True, timeout=120)
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines()[-1] == "7 job(s): 0 queued, 0 running, 3 done, 4 failed, 0 cancelled"
        assert daemon.stop() == 0, daemon.text()
    finally:
        daemon.kill()
        listening.set()
        listener.join(timeout=10)
        notify.close()
    log = daemon.text()
    assert "Traceback" not in log and "SIGTERM" in log
    assert "WATCHDOG=1" in got and any(m.startswith("STATUS=") for m in got)
    assert any(m.startswith("STOPPING=1") for m in got)

    # Exactly one complete output per good input, the same size as the photo.
    assert outputs(outbox) == ["present_tiny.jpg", "renamed_tiny.jpg", "slow_tiny.jpg"]
    for out in outputs(outbox):
        assert cv2.imread(str(outbox / out)).shape == cv2.imread(str(photo)).shape
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["present.jpg", "renamed.jpg", "slow.jpg"]
    assert (inbox / "done" / "slow.jpg").read_bytes() == photo.read_bytes()
    bad = ["corrupt.mp4", "empty.mp4", "noface.mp4", "notes.txt"]
    assert sorted(p.name for p in failed.iterdir()) == sorted(bad + [f"{b}.error.json" for b in bad])
    assert sorted(p.name for p in inbox.iterdir() if p.is_file() and "lock" not in p.name) == \
        [".hidden.jpg", "download.jpg.crdownload"]
    assert partials(inbox, outbox) == []

    # The journal agrees with the folders.
    js = jobs(outbox)
    assert sorted(js) == sorted(["present.jpg", "renamed.jpg", "slow.jpg", *bad])
    for name in ("present.jpg", "renamed.jpg", "slow.jpg"):
        job = js[name]
        assert (job.state, job.attempts, job.error) == ("done", 1, None)
        assert Path(job.output) == outbox / f"{Path(name).stem}_tiny.jpg"
        assert job.result["moved_to"] == str(inbox / "done" / name)
    for name in bad:
        job = js[name]
        report = json.loads((failed / f"{name}.error.json").read_text())
        assert job.state == "failed" and job.attempts == 2                  # tried, retried once, given up
        assert report["error"] == job.error and report["attempts"] == 2 and report["job"] == job.id
    assert "empty" in js["empty.mp4"].error and "no face" in js["noface.mp4"].error
    assert js["slow.jpg"].input_size == photo.stat().st_size                # taken whole, not mid-upload


def test_kill_9_mid_job_restart_and_sigterm(tmp_path, tiny):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    n = 80                                    # long enough to catch mid-write (a few seconds)
    make_clip(inbox / "slow.mp4", frames=n, size=(320, 240))
    args = ("--poll", "0.2", "--settle", "0.5", "--no-face", "pass", "--on-stop", "requeue")

    def running(name):
        return lambda: getattr(jobs(outbox).get(name), "state", None) == "running" and partials(outbox)

    first = Daemon(tmp_path, inbox, outbox, tiny, *args)
    try:
        first.wait_for(running("slow.mp4"), 300, "the job to be running with its partial output")
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        first.kill()
    assert outputs(outbox) == [] and partials(outbox)                # killed mid-write: only a hidden partial
    with Journal(outbox / ".facestyle" / "journal.sqlite") as j:     # read-write: rolls back a cut transaction
        assert [(job.input, job.state) for job in j.jobs()] == [(str(inbox / "slow.mp4"), "running")]

    second = Daemon(tmp_path, inbox, outbox, tiny, *args)
    try:
        second.wait_for(lambda: "back in the queue" in second.text(), 120, "crash recovery")
        rival = subprocess.run([sys.executable, str(REPO / "cli.py"), "watch", str(inbox), "-o", str(outbox),
                                "--model", str(tiny)], capture_output=True, text=True, timeout=120)
        assert rival.returncode == 1 and "in use by another facestyle watch" in rival.stderr, rival.stderr
        second.wait_for(lambda: getattr(jobs(outbox).get("slow.mp4"), "state", None) == "done", 300, "the redo")
        assert outputs(outbox) == ["slow_tiny.mp4"] and partials(outbox) == []
        make_clip(tmp_path / "next.mp4", frames=6 * n, size=(320, 240))   # long: SIGTERM must land mid-job
        os.rename(tmp_path / "next.mp4", inbox / "next.mp4")
        second.wait_for(running("next.mp4"), 120, "the second job to be running")
        t0 = time.monotonic()
        assert second.stop(signal.SIGTERM, timeout=60) == 0, second.text()   # --on-stop requeue: no waiting
        assert time.monotonic() - t0 < 30
    finally:
        second.kill()
    assert "Traceback" not in second.text()
    js = jobs(outbox)
    assert (js["slow.mp4"].state, js["slow.mp4"].attempts) == ("done", 2)    # the killed attempt counts
    assert (js["next.mp4"].state, js["next.mp4"].attempts) == ("queued", 0)  # stopped, not failed
    assert outputs(outbox) == ["slow_tiny.mp4"] and partials(inbox, outbox) == []
    assert frames(outbox / "slow_tiny.mp4") == n
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["slow.mp4"] and (inbox / "next.mp4").exists()
