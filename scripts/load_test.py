"""A bounded load test of the job service on loopback: prints figures, fails on any 5xx or broken connection.

    python scripts/load_test.py                                   # starts its own `facestyle serve`
    python scripts/load_test.py --clients 32 --listeners 8 --duration 60
    python scripts/load_test.py --state ~/.local/state/facestyle/serve --input /home/me/clip.mp4

For ``--duration`` seconds, ``--clients`` threads (each with one keep-alive connection) poll the
service (GET /jobs/{id}, GET /jobs, GET /queue) and submit jobs (POST /jobs: valid ones, and a few
invalid ones that must be refused with a 4xx), while ``--listeners`` threads follow jobs' event
streams (GET /jobs/{id}/events), dropping and reopening them every few seconds as an editor does.

The queue is paused first, so the submitted jobs stay queued: what is measured is the API, not the
conversions. At the end every job this run submitted is cancelled (which also ends the event
streams) and the queue is resumed if it was running before. Memory is the service's resident set
(VmRSS, read from /proc; so only for a service on this machine) before and after the load.

Exit status: 0 when no request got a 5xx or a connection error, 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    """What the threads measured (one lock for all of it: appends are cheap next to a request)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latency_ms: list[float] = field(default_factory=list)
    by_route: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # 5xx, connection errors, unexpected answers
    jobs: list[int] = field(default_factory=list)  # submitted by this run
    streams: int = 0  # event streams opened
    events: int = 0  # events received on them
    first_event_ms: list[float] = field(default_factory=list)

    def record(self, route: str, status: int, ms: float) -> None:
        with self.lock:
            self.latency_ms.append(ms)
            self.by_route.setdefault(route, []).append(ms)
            self.statuses[status] += 1
            if status >= 500:
                self.errors.append(f"{route}: {status}")

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


class Api:
    """One keep-alive connection to the service."""

    def __init__(self, url: str, token: str, timeout: float = 30.0, *, idle: bool = False) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.idle = idle  # used now and then: the server may have closed the keep-alive meanwhile
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.idle:
            self.conn.close()
        data = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()           # counted by the caller; the next call connects afresh
            raise
        return resp.status, json.loads(raw) if raw else {}

    def close(self) -> None:
        self.conn.close()


def client(api: Api, tally: Tally, stop: threading.Event, args: argparse.Namespace, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        roll = rng.random()
        with tally.lock:
            known = rng.choice(tally.jobs) if tally.jobs else None
        if roll < args.submit_share:
            bad = rng.random() < 0.2
            body = {"input": "relative/path.mp4" if bad else args.input, "model": "pixar",
                    "output": str(Path(args.out_dir) / f"load-{seed}-{n}.mp4")}
            route, method, path = "POST /jobs", "POST", "/jobs"
        elif roll < 0.6 and known is not None:
            route, method, path, body = "GET /jobs/{id}", "GET", f"/jobs/{known}", None
        elif roll < 0.85:
            route, method, path, body = "GET /jobs", "GET", "/jobs?limit=20", None
        else:
            route, method, path, body = "GET /queue", "GET", "/queue", None
        t0 = time.perf_counter()
        try:
            status, reply = api.call(method, path, body)
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as err:
            tally.fail(f"{route}: {type(err).__name__}: {err}")
            continue
        tally.record(route, status, (time.perf_counter() - t0) * 1000)
        if method == "POST":
            expected = 422 if bad else 201
            if status != expected:
                tally.fail(f"POST /jobs answered {status} ({reply.get('error')}), expected {expected}")
            elif status == 201:
                with tally.lock:
                    tally.jobs.append(reply["id"])
        elif status != 200:
            tally.fail(f"{route} answered {status} ({reply.get('error')})")


def listener(url: str, token: str, job_id: int, tally: Tally, stop: threading.Event, hold_s: float) -> None:
    """Follow a job's events; a stream that stays quiet for ``hold_s`` is dropped and reopened."""
    parts = urlsplit(url)
    while not stop.is_set():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=hold_s)
        t0 = time.perf_counter()
        try:
            conn.request("GET", f"/jobs/{job_id}/events", headers={"Authorization": f"Bearer {token}",
                                                                  "Accept": "text/event-stream"})
            resp = conn.getresponse()
            with tally.lock:
                tally.streams += 1
            if resp.status != 200:
                tally.fail(f"events answered {resp.status}")
                continue
            first = True
            for line in _lines(resp):
                if line.startswith("event:"):
                    with tally.lock:
                        tally.events += 1
                        if first:
                            tally.first_event_ms.append((time.perf_counter() - t0) * 1000)
                    first = False
                if stop.is_set():
                    break
        except TimeoutError:
            pass                              # a quiet stream: drop it, as an editor closing its panel
        except (OSError, http.client.HTTPException) as err:
            tally.fail(f"events: {type(err).__name__}: {err}")
        finally:
            conn.close()


def _lines(resp: http.client.HTTPResponse) -> Iterator[str]:
    while True:
        line = resp.readline()
        if not line:
            return
        yield line.decode().rstrip("\r\n")


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def own_service(threads: int) -> Iterator[tuple[str, str, int, Path]]:
    """A `facestyle serve` on an ephemeral loopback port with a scratch state folder and media root."""
    with tempfile.TemporaryDirectory(prefix="facestyle-load-") as tmp:
        root, state = Path(tmp) / "media", Path(tmp) / "state"
        root.mkdir()
        (root / "clip.mp4").write_bytes(b"\0" * 1024)        # only checked to exist: the queue stays paused
        log = open(Path(tmp) / "serve.log", "wb")
        proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--port", "0", "--state", str(state),
                                 "--root", str(root), "--threads", str(threads)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (state / "server.json").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the service did not start:\n" + (Path(tmp) / "serve.log").read_text())
                time.sleep(0.1)
            url = json.loads((state / "server.json").read_text())["url"]
            yield url, (state / "token").read_text().strip(), proc.pid, root
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            log.close()
            if code != 0:
                print(f"service exited with {code}:\n" + (Path(tmp) / "serve.log").read_text(), file=sys.stderr)


def run(url: str, token: str, pid: int | None, args: argparse.Namespace) -> int:
    admin = Api(url, token, idle=True)
    status, queue = admin.call("GET", "/queue")
    if status != 200:
        raise SystemExit(f"GET /queue answered {status}: {queue.get('error')} (wrong token?)")
    was_paused = queue["paused"]
    admin.call("POST", "/queue/pause")
    failed = False
    try:
        for n in range(args.rounds):
            if args.rounds > 1:
                print(f"-- round {n + 1} of {args.rounds}")
            tally = one_round(url, token, pid, args, admin)
            failed |= bool(tally.errors)
    finally:
        if not was_paused:
            admin.call("POST", "/queue/resume")
        admin.close()
    return 1 if failed else 0


def one_round(url: str, token: str, pid: int | None, args: argparse.Namespace, admin: Api) -> Tally:
    """Load for ``args.duration`` seconds, cancel what was submitted, print the figures."""
    tally = Tally()
    followed = []
    for i in range(args.listeners):               # one queued job per listener to follow
        status, job = admin.call("POST", "/jobs", {"input": args.input, "model": "pixar", "output": str(
            Path(args.out_dir) / f"load-followed-{time.time_ns()}-{i}.mp4")})
        if status != 201:
            raise SystemExit(f"cannot submit a job to follow: {status} {job.get('error')}")
        followed.append(job["id"])
        tally.jobs.append(job["id"])
    for _ in range(50):                            # warm up the routes before measuring memory
        admin.call("GET", "/jobs?limit=20")
    rss_before = rss_kib(pid)

    stop = threading.Event()
    apis = [Api(url, token) for _ in range(args.clients)]
    threads = [threading.Thread(target=client, args=(api, tally, stop, args, i), daemon=True)
               for i, api in enumerate(apis)]
    threads += [threading.Thread(target=listener, args=(url, token, followed[i], tally, stop, args.hold), daemon=True)
                for i in range(args.listeners)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(args.duration)
    stop.set()
    for t in threads[: args.clients]:
        t.join(timeout=60)
    elapsed = time.perf_counter() - t0
    rss_after = rss_kib(pid)

    cancelled = 0
    for job_id in list(tally.jobs):                # also ends the listeners' streams
        status, _ = admin.call("POST", f"/jobs/{job_id}/cancel")
        cancelled += status == 200
    for t in threads[args.clients:]:
        t.join(timeout=args.hold + 10)
    status, _ = admin.call("GET", "/health")
    if status != 200:
        tally.fail(f"GET /health after the load answered {status}")
    for api in apis:
        api.close()
    report(tally, elapsed, rss_before, rss_after, cancelled, args)
    return tally


def report(tally: Tally, elapsed: float, rss_before: int | None, rss_after: int | None, cancelled: int,
           args: argparse.Namespace) -> None:
    lat = sorted(tally.latency_ms)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    print(f"load: {args.clients} clients, {args.listeners} event listeners, {elapsed:.1f} s")
    print(f"requests: {len(lat)} ({len(lat) / elapsed:.0f}/s); latency ms: p50 {pct(50):.1f}, p90 {pct(90):.1f}, "
          f"p99 {pct(99):.1f}, max {lat[-1] if lat else float('nan'):.1f}, mean "
          f"{statistics.fmean(lat) if lat else float('nan'):.1f}")
    for route, times in sorted(tally.by_route.items()):
        times.sort()
        print(f"  {route}: {len(times)} requests, p50 {times[len(times) // 2]:.1f} ms, "
              f"p99 {times[min(len(times) - 1, int(0.99 * len(times)))]:.1f} ms")
    print("statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(tally.statuses.items())))
    first = sorted(tally.first_event_ms)
    print(f"event streams: {tally.streams} opened, {tally.events} events"
          + (f", first event p50 {first[len(first) // 2]:.1f} ms" if first else ""))
    print(f"jobs submitted: {len(tally.jobs)}, cancelled at the end: {cancelled}")
    if rss_before is not None and rss_after is not None:
        print(f"service memory (RSS): {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after "
              f"({(rss_after - rss_before) / 1024:+.1f} MiB)")
    else:
        print("service memory: unknown (not a process on this machine)")
    print(f"errors: {len(tally.errors)}")
    for line in Counter(tally.errors).most_common(10):
        print(f"  {line[1]} x {line[0]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16, help="concurrent polling/submitting clients")
    ap.add_argument("--listeners", type=int, default=4, help="concurrent event-stream listeners")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--submit-share", type=float, default=0.1, help="share of client requests that submit a job")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds a quiet event stream is held before reopening")
    ap.add_argument("--state", type=Path, help="state folder of a running service (server.json, token); "
                                               "default: start a service of our own")
    ap.add_argument("--input", help="with --state: an existing file inside the service's roots to submit")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the load on the same service (memory "
                                                          "that keeps growing round after round is a leak)")
    ap.add_argument("--threads", type=int, default=1, help="--threads of the service we start")
    args = ap.parse_args()
    if args.clients < 1 or args.listeners < 0 or args.duration <= 0 or args.rounds < 1:
        ap.error("need --clients >= 1, --listeners >= 0, --duration > 0 and --rounds >= 1")
    if args.state is not None:
        if not args.input:
            ap.error("--state needs --input (a file inside the service's roots)")
        info = json.loads((args.state / "server.json").read_text())
        args.out_dir = str(Path(args.input).resolve().parent)
        return run(info["url"], (args.state / "token").read_text().strip(), info.get("pid"), args)
    with own_service(args.threads) as (url, token, pid, root):
        args.input, args.out_dir = str(root / "clip.mp4"), str(root)
        return run(url, token, pid, args)


if __name__ == "__main__":
    sys.exit(main())
