"""``facestyle watch --ray`` and ``facestyle serve --ray`` on the simulated cluster (two one-GPU nodes),
as processes: a clip dropped into the inbox or submitted as a job comes out with the frames of a
plain ``facestyle convert``; the workers keep the model loaded from one job to the next; a cancelled
job stops its Ray work and leaves nothing behind; SIGTERM puts a running job back in the queue and
frees the cluster's GPUs; without Ray, ``--ray`` fails at once in one line."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.daemon.journal import Journal
from pipeline.service.client import Client, JobFailed
from tests.clips import face_clip

REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / "cli.py")
FRAMES = 20                 # 2 s at 10 frames/s: two chunks of about a second
JOB_OPTIONS = {"codec": "ffv1", "batch_size": 1}
FLAGS = ["--codec", "ffv1", "--batch-size", "1", "--threads", "1"]
RAY_FLAGS = ["--chunk-seconds", "1"]


@pytest.fixture(scope="module")
def root(face_photo, tiny_ckpt_path, tmp_path_factory) -> Path:
    """The folder the daemon and the service work in: the tiny model, a 2 s clip, a 6 s clip."""
    folder = tmp_path_factory.mktemp("ray_front")
    shutil.copy(tiny_ckpt_path, folder / "tiny.pt")
    face_clip(face_photo, folder / "face.mp4", frames=FRAMES)
    face_clip(face_photo, folder / "long.mp4", frames=60, audio=False)
    return folder


@pytest.fixture(scope="module")
def plain(root) -> Path:
    """``facestyle convert`` of face.mp4 with the same options, one process, no Ray."""
    out = root / "reference" / "plain.mp4"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, CLI, "convert", str(root / "face.mp4"), "-o", str(out), "--model",
                           str(root / "tiny.pt"), "--progress", "none", *FLAGS],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def assert_same(a: Path, b: Path) -> None:
    from tests.cluster.test_ray_convert import assert_same as same

    same(a, b)


def wait_until(predicate, proc: subprocess.Popen, log: Path, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.1)


def gpus_free(ray, want: float = 2.0, timeout: float = 30.0) -> bool:
    """Whether the cluster's GPUs are all free again within ``timeout`` (the workers were stopped)."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("GPU", 0) < want:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, CLI, *argv], stdout=err, stderr=subprocess.STDOUT, cwd=REPO)


def stop(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert code == 0, log.read_text()


def test_watch_on_ray_converts_like_convert_reuses_workers_and_requeues_on_sigterm(cluster, root, plain, face_photo,
                                                                                   tmp_path):
    sim, ray = cluster
    inbox, outbox, log = tmp_path / "in", tmp_path / "out", tmp_path / "watch.log"
    inbox.mkdir()
    daemon = start(["watch", str(inbox), "-o", str(outbox), "--model", str(root / "tiny.pt"), "--settle", "0.2",
                    "--poll", "0.1", "--on-stop", "requeue", "--ray", sim.address, *RAY_FLAGS, *FLAGS], log)
    try:
        shutil.copy(root / "face.mp4", tmp_path / "face.mp4")
        os.rename(tmp_path / "face.mp4", inbox / "face.mp4")             # appears complete
        out = outbox / "face_tiny.mp4"
        wait_until(lambda: (inbox / "done" / "face.mp4").exists(), daemon, log, "the first job")
        assert_same(plain, out)
        face_clip(face_photo, tmp_path / "second.mp4", frames=6)
        os.rename(tmp_path / "second.mp4", inbox / "second.mp4")
        wait_until(lambda: (inbox / "done" / "second.mp4").exists(), daemon, log, "the second job")
        shutil.copy(root / "long.mp4", tmp_path / "long.mp4")
        os.rename(tmp_path / "long.mp4", inbox / "long.mp4")
        wait_until(lambda: "job 3: converting long.mp4" in log.read_text(), daemon, log, "the third job")
    finally:
        stop(daemon, log)                                                       # --on-stop requeue: stops job 3
    assert gpus_free(ray)                                                       # its workers stopped on exit
    with Journal(outbox / ".facestyle" / "journal.sqlite", readonly=True) as journal:
        jobs = {Path(j.input).name: j for j in journal.jobs()}
    assert [jobs["face.mp4"].state, jobs["second.mp4"].state, jobs["long.mp4"].state] == ["done", "done", "queued"]
    assert (inbox / "long.mp4").exists() and not (outbox / "long_tiny.mp4").exists()
    assert jobs["face.mp4"].output == str(out) and jobs["face.mp4"].result["frames_out"] == FRAMES
    assert jobs["second.mp4"].result["frames_out"] == 6
    text = log.read_text()
    assert "reusing 2 worker(s) with the model loaded" in text                # not loaded again for job 2
    assert "job 3: long.mp4 stopped; back in the queue" in text
    assert not list(outbox.glob(".face_tiny*")) and not list(outbox.glob(".second_tiny*"))  # work folders removed



def test_serve_on_ray_runs_jobs_reports_progress_and_cancels(cluster, root, plain, tmp_path):
    sim, ray = cluster
    state, log = tmp_path / "state", tmp_path / "serve.log"
    service = start(["serve", "--port", "0", "--state", str(state), "--root", str(root), "--threads", "1",
                     "--ray", sim.address, *RAY_FLAGS], log)
    try:
        wait_until(lambda: (state / "server.json").exists(), service, log, "the service", timeout=120)
        client = Client(json.loads((state / "server.json").read_text())["url"], token_file=state / "token")
        assert client.pause(False)["devices"] == ["ray"]

        long_out = root / "long_cancelled.mp4"
        job = client.submit(root / "long.mp4", str(root / "tiny.pt"), long_out, **JOB_OPTIONS)
        wait_until(lambda: client.job(job["id"])["progress"] is not None, service, log, "the long job to run")
        cancelled = client.cancel(job["id"])
        if cancelled["state"] == "running":                     # still stopping its workers
            with pytest.raises(JobFailed):
                client.wait(job["id"], timeout=60)
        assert client.job(job["id"])["state"] == "cancelled"
        assert gpus_free(ray)                                   # its Ray work stopped: both GPUs free again
        assert not long_out.exists() and not list(root.glob(".long_cancelled*"))    # no output, no work folder
        assert not [p for p in root.iterdir() if "partial" in p.name]

        out = root / "face_job.mp4"
        job = client.submit(root / "face.mp4", str(root / "tiny.pt"), out, **JOB_OPTIONS)
        seen: list[dict] = []
        final = client.wait(job["id"], progress=seen.append, timeout=300)

        requeued = client.submit(root / "long.mp4", str(root / "tiny.pt"), root / "long_requeued.mp4", **JOB_OPTIONS)
        wait_until(lambda: client.job(requeued["id"])["progress"] is not None, service, log, "the job to run")
    finally:
        stop(service, log)                                      # SIGTERM: the running job goes back to the queue
    assert gpus_free(ray)
    with Journal(state / "jobs.sqlite", readonly=True) as journal:
        assert journal.get(requeued["id"]).state == "queued"
    assert not (root / "long_requeued.mp4").exists()
    assert list(root.glob(".long_requeued.mp4.facestyle-ray/*"))                 # kept: a restart resumes it
    assert final["state"] == "done" and final["result"]["frames_out"] == FRAMES
    assert final["result"]["chunks"]["total"] == final["result"]["chunks"]["rendered"] >= 2
    running = [j["progress"] for j in seen if j["state"] == "running" and j["progress"]]
    assert running and {p["total"] for p in running} == {FRAMES}
    frames = [p["frame"] for p in running]
    assert frames == sorted(frames) and seen[-1]["state"] == "done"
    assert_same(plain, out)
    assert "job 1 cancelled" in log.read_text()


@pytest.mark.parametrize("command", ["watch", "serve"])
def test_ray_option_without_ray_fails_at_once_in_one_line(command, tmp_path):
    argv = (["watch", str(tmp_path), "-o", str(tmp_path / "out"), "--model", "toonify"] if command == "watch" else
            ["serve", "--port", "0", "--state", str(tmp_path / "state"), "--root", str(tmp_path)])
    hide_ray = ("import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide_ray, CLI, *argv, "--ray", "local"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ['facestyle: error: Ray is not installed: pip install -e ".[ray]"']
    assert sorted(p.name for p in tmp_path.iterdir()) == []                   # nothing made before the check
