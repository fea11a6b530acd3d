"""`facestyle serve` as an editor meets it: a real service process on an ephemeral loopback port,
driven through the Python client and raw HTTP: auth, bad requests, progress events, cancel, restart."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest

from pipeline import make_random_checkpoint, save_checkpoint
from pipeline.daemon.journal import Journal
from pipeline.service.client import Client, JobFailed, ServiceError
from tests.test_cli_convert import face_clip

REPO = Path(__file__).resolve().parents[2]


class Service:
    """A `facestyle serve` subprocess with its own state folder and one media root."""

    def __init__(self, state: Path, root: Path) -> None:
        self.state, self.root = state, root
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Service:
        (self.state / "server.json").unlink(missing_ok=True)
        self.log = open(self.state.parent / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--port", "0", "--state",
                                      str(self.state), "--root", str(self.root), "--threads", "1"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self.state / "server.json").exists():
            assert self.proc.poll() is None, (self.state.parent / "serve.log").read_text()
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)
        self.url = json.loads((self.state / "server.json").read_text())["url"]
        return self

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc = None
        self.log.close()
        return code

    def client(self) -> Client:
        return Client(self.url, token_file=self.state / "token")

    def http(self, method: str, path: str, body: bytes | None = None, token: str | None = "own",
             content_type: str = "application/json") -> tuple[int, dict]:
        headers = {"Content-Type": content_type}
        if token == "own":
            token = (self.state / "token").read_text().strip()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            assert b"Traceback" not in raw
            return e.code, json.loads(raw)


@pytest.fixture(scope="module")
def media(tmp_path_factory, media_dir):
    root = tmp_path_factory.mktemp("media")
    face_clip(media_dir / "ILip77SbmOE.png", root / "face.mp4", frames=6)
    face_clip(media_dir / "ILip77SbmOE.png", root / "long.mp4", frames=60, audio=False)
    save_checkpoint(make_random_checkpoint("tiny", 3), root / "tiny.pt")
    return root


@pytest.fixture
def service(tmp_path, media):
    svc = Service(tmp_path / "state", media).start()
    yield svc
    svc.stop()


def frames_of(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_token_is_created_private_and_required(service):
    token_file = service.state / "token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token_file.read_text().strip()) >= 32
    assert service.http("GET", "/health", token=None) == (200, {"status": "ok", "version": "0.1.0"})
    code, body = service.http("GET", "/jobs", token=None)
    assert code == 401 and "token" in body["error"]
    code, body = service.http("GET", "/jobs", token="x" * 43)
    assert code == 401
    with pytest.raises(ServiceError) as err:
        Client(service.url, token="wrong-token-123456").jobs()
    assert err.value.status == 401


@pytest.mark.parametrize("body, code, words", [
    (b"{not json", 422, "bad request"),
    (b'["a list"]', 422, "bad request"),
    (b'{"model": "pixar"}', 422, "input"),
    (b'{"input": "/x.mp4", "model": "pixar", "surprise": 1}', 422, "surprise"),
])
def test_malformed_bodies_get_a_4xx_with_a_reason(service, body, code, words):
    status, reply = service.http("POST", "/jobs", body)
    assert status == code and words in reply["error"]


def test_bad_jobs_are_refused_with_a_reason(service, media, tmp_path):
    c = service.client()
    face, tiny = media / "face.mp4", media / "tiny.pt"
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(face.read_bytes())
    escape = media / "escape.mp4"
    escape.unlink(missing_ok=True)
    escape.symlink_to(outside)
    cases = [
        (dict(input=str(outside), model=str(tiny)), 403, "outside the folders this service may read"),
        (dict(input=str(escape), model=str(tiny)), 403, "outside the folders this service may read"),
        (dict(input=str(face), model=str(tiny), output=str(tmp_path / "o.mp4")), 403, "may write"),
        (dict(input=str(face), model=str(tiny), output=str(service.state / "token")), 403, "may write"),
        (dict(input=str(media / "missing.mp4"), model=str(tiny)), 422, "no such file"),
        (dict(input=str(face), model="no-such-model"), 422, "official model name"),
        (dict(input=str(face), model=str(tiny), options={"style_code": "bogus"}), 422, "invalid choice"),
        (dict(input=str(face), model=str(tiny), options={"no_such_option": 1}), 422, "unknown option"),
        (dict(input=str(face), model=str(tiny), options={"threads": 4}), 422, "belongs to the process"),
        (dict(input=str(face), model=str(tiny), options={"batch_size": "many"}), 422, "invalid int"),
        (dict(input=str(face), model=str(tiny), output=str(face)), 422, "replace the input"),
        (dict(input="face.mp4", model=str(tiny)), 422, "absolute path"),
    ]
    for body, code, words in cases:
        status, reply = service.http("POST", "/jobs", json.dumps({"options": {}, **body}).encode())
        assert (status, words in reply["error"]) == (code, True), (body, status, reply)
    assert service.http("GET", "/jobs/999")[0] == 404
    assert c.jobs()["jobs"] == []                                         # nothing was queued


def test_submit_follow_progress_and_get_the_output(service, media):
    c = service.client()
    out = media / "face_job.mp4"
    out.unlink(missing_ok=True)
    job = c.submit(media / "face.mp4", str(media / "tiny.pt"), out, style_code="smoothed", codec="ffv1")
    assert job["state"] == "queued" and job["output"] == str(out) and job["options"]["codec"] == "ffv1"
    seen = []
    final = c.wait(job["id"], progress=seen.append, timeout=300)
    assert final["state"] == "done" and final["result"]["frames_out"] == 6 and final["fraction"] == 1.0
    running = [j for j in seen if j["state"] == "running" and j["progress"]]
    assert running and all(j["progress"]["total"] == 6 for j in running)
    frames = [j["progress"]["frame"] for j in running]
    assert frames == sorted(frames) and frames[-1] >= 5
    assert seen[-1]["state"] == "done"
    assert frames_of(out) == 6
    listed = c.jobs()
    assert listed["counts"]["done"] == 1 and listed["jobs"][0]["id"] == job["id"]


def test_cancel_queued_and_running_jobs(service, media):
    c = service.client()
    c.pause(True)
    a = c.submit(media / "long.mp4", str(media / "tiny.pt"), media / "long_a.mp4", overwrite=True)
    b = c.submit(media / "face.mp4", str(media / "tiny.pt"), media / "face_b.mp4", overwrite=True)
    assert c.cancel(b["id"])["state"] == "cancelled"
    with pytest.raises(ServiceError) as err:
        c.cancel(b["id"])
    assert err.value.status == 409
    c.pause(False)
    for _ in range(600):
        j = c.job(a["id"])
        if j["progress"] and j["progress"]["frame"] >= 2:
            break
        time.sleep(0.1)
    assert j["state"] == "running"
    stopped = c.cancel(a["id"])
    assert stopped["state"] == "cancelled" and stopped["error"] == "cancelled"
    with pytest.raises(JobFailed, match="cancelled"):
        c.wait(a["id"], timeout=30)
    assert not (media / "long_a.mp4").exists() and not (media / "face_b.mp4").exists()
    assert not [p for p in media.iterdir() if "partial" in p.name]


def test_queue_and_interrupted_job_survive_a_restart(tmp_path, media):
    svc = Service(tmp_path / "state", media).start()
    c = svc.client()
    running = c.submit(media / "long.mp4", str(media / "tiny.pt"), media / "long_r.mp4", overwrite=True, end=3.0)
    for _ in range(600):
        j = c.job(running["id"])
        if j["progress"] and j["progress"]["frame"] >= 2:
            break
        time.sleep(0.1)
    c.pause(True)
    queued = c.submit(media / "face.mp4", str(media / "tiny.pt"), media / "face_r.mp4", overwrite=True)
    assert svc.stop() == 0                                            # SIGTERM: graceful
    with Journal(tmp_path / "state" / "jobs.sqlite", readonly=True) as journal:
        assert journal.get(running["id"]).state == "queued"           # stopped, back in the queue
        assert journal.get(queued["id"]).state == "queued"
    assert not (media / "long_r.mp4").exists()
    svc.start()                                                       # a fresh process, not paused
    try:
        c = svc.client()
        assert c.wait(queued["id"], timeout=300)["result"]["frames_out"] == 6
        assert c.wait(running["id"], timeout=300)["result"]["frames_out"] == 30
    finally:
        svc.stop()


def test_the_checked_in_openapi_schema_is_current(tmp_path):
    from pipeline.service.schema import openapi_schema

    checked_in = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert checked_in == openapi_schema(), "run: python -m pipeline.service.schema > docs/openapi.json"
    paths = checked_in["paths"]
    assert {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/jobs/{job_id}/events",
            "/queue", "/queue/pause", "/queue/resume"} <= set(paths)
    assert "security" in paths["/jobs"]["post"]


def test_refuses_a_public_address_without_the_flag_and_a_token(tmp_path):
    def serve(*extra):
        return subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--state", str(tmp_path / "s"),
                               "--root", str(tmp_path), *extra], capture_output=True, text=True, timeout=60)

    proc = serve("--host", "0.0.0.0")
    assert proc.returncode == 2 and "only loopback addresses unless --allow-remote" in proc.stderr
    proc = serve("--host", "0.0.0.0", "--allow-remote")
    assert proc.returncode == 2 and "--token-file" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s" / "token").exists()


def test_submit_command_waits_and_reports_like_convert(service, media):
    """The Blender add-on reads these lines: the same protocol as `facestyle convert --progress json`."""
    out = media / "face_cli.mp4"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "submit", str(media / "face.mp4"), "-o", str(out),
                           "--model", str(media / "tiny.pt"), "--overwrite", "--server", service.url, "--token-file",
                           str(service.state / "token"), "--wait", "--progress", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0] == {"event": "start", "file": "face.mp4", "total": 6}
    assert {e["event"] for e in events[1:-1]} <= {"progress"} and events[-1]["event"] == "done"
    assert events[-1]["dst"] == str(out) and events[-1]["frames_out"] == 6 and frames_of(out) == 6
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "submit", str(media / "face.mp4"), "-o", str(out),
                           "--model", str(media / "tiny.pt"), "--server", service.url, "--token-file",
                           str(service.state / "token"), "--wait"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("facestyle: error:") and "exists" in proc.stderr
