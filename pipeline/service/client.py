"""A small client for ``facestyle serve`` (standard library only), for editor plugins and scripts::

    from pipeline.service import client
    job = client.submit("/media/take3.mp4", model="pixar", output="/media/take3_pixar.mov", codec="prores")
    done = client.wait(job["id"], progress=lambda j: print(j["progress"]))
    print(done["output"])
    client.cancel(job["id"])

The service is found at ``url``, else ``$FACESTYLE_SERVER``, else the address a local service wrote
to its state folder (``server.json``), else ``http://127.0.0.1:8765``. The token is ``token``, else
read from ``token_file``, else ``$FACESTYLE_TOKEN``, else the local service's token file.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import FacestyleError

DEFAULT_URL = "http://127.0.0.1:8765"
ProgressCallback = Callable[[dict], None]


class ServiceError(FacestyleError):
    """The service refused a request or cannot be reached; ``status`` is the HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JobFailed(FacestyleError):
    """The job ended failed or cancelled; ``job`` is its final state."""

    def __init__(self, job: dict) -> None:
        super().__init__(f"job {job['id']} {job['state']}: {job.get('error') or 'no reason given'}")
        self.job = job


def _state_dir() -> Path:
    from pipeline.service.config import default_state_dir  # the service's own rule

    return default_state_dir()


class Client:
    """One service. Methods return the service's JSON objects (dicts) and raise :class:`ServiceError`."""

    def __init__(self, url: str | None = None, token: str | None = None, token_file: str | os.PathLike | None = None,
                 timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("FACESTYLE_SERVER") or self._local_url() or DEFAULT_URL).rstrip("/")
        self.token = token or self._read_token(token_file)
        self.timeout = timeout

    @staticmethod
    def _local_url() -> str | None:
        try:
            return json.loads((_state_dir() / "server.json").read_text(encoding="utf-8"))["url"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _read_token(token_file: str | os.PathLike | None) -> str:
        if token_file is None and os.environ.get("FACESTYLE_TOKEN"):
            return os.environ["FACESTYLE_TOKEN"].strip()
        path = Path(token_file) if token_file is not None else _state_dir() / "token"
        try:
            return path.expanduser().read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ServiceError(f"cannot read the service token from {path}: {e.strerror or e} "
                               "(give token=/--token, or token_file=/--token-file)") from None

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                                              **({"Content-Type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise ServiceError(_reason(e), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServiceError(f"cannot reach the facestyle service at {self.url}: {reason} "
                               "(is 'facestyle serve' running?)") from None

    def health(self) -> dict:
        return self._request("GET", "/health")

    def submit(self, input: str | os.PathLike, model: str, output: str | os.PathLike | None = None,
               **options: Any) -> dict:
        """Queue ``input`` (made absolute) with ``model`` and convert options (``style_code="smoothed"``...).

        Returns the new job. Raises :class:`ServiceError` with the service's reason when it refuses.
        """
        if model and (os.sep in model or model.endswith((".pt", ".pth"))):
            model = os.path.abspath(os.path.expanduser(model))
        body = {"input": os.path.abspath(os.fspath(input)), "model": model,
                "output": None if output is None else os.path.abspath(os.fspath(output)), "options": options}
        return self._request("POST", "/jobs", body)

    def job(self, job_id: int) -> dict:
        return self._request("GET", f"/jobs/{int(job_id)}")

    def jobs(self, state: str | None = None, limit: int = 100) -> dict:
        query = f"?limit={int(limit)}" + (f"&state={state}" if state else "")
        return self._request("GET", f"/jobs{query}")

    def cancel(self, job_id: int) -> dict:
        """Cancel a queued job or stop a running one; returns the job (``cancelled``, or still
        ``running`` for a moment while it stops)."""
        return self._request("POST", f"/jobs/{int(job_id)}/cancel")

    def pause(self, paused: bool = True) -> dict:
        return self._request("POST", "/queue/pause" if paused else "/queue/resume")

    def events(self, job_id: int) -> Iterator[tuple[str, dict]]:
        """The job's server-sent events as ``(event, job)`` until its final event."""
        req = urllib.request.Request(f"{self.url}/jobs/{int(job_id)}/events",
                                     headers={"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"})
        try:
            resp = urllib.request.urlopen(req, timeout=max(self.timeout, 60.0))
        except urllib.error.HTTPError as e:
            raise ServiceError(_reason(e), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise ServiceError(f"cannot reach the facestyle service at {self.url}: {getattr(e, 'reason', e)}") from None
        with resp:
            event, data = "message", []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def wait(self, job_id: int, progress: ProgressCallback | None = None, timeout: float | None = None,
             raise_on_failure: bool = True) -> dict:
        """Follow a job until it ends; ``progress(job)`` is called on every change.

        Uses the event stream and falls back to polling if the stream breaks.

        Raises:
            JobFailed: it ended failed or cancelled (unless ``raise_on_failure`` is False).
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.job(job_id)
        try:
            for _, job in self.events(job_id):
                if progress is not None:
                    progress(job)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
        except ServiceError as e:
            if e.status:
                raise
        while job["state"] in ("queued", "running"):          # stream ended early: poll
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(0.5)
            job = self.job(job_id)
            if progress is not None:
                progress(job)
        if raise_on_failure and job["state"] != "done":
            raise JobFailed(job)
        return job


def _reason(e: urllib.error.HTTPError) -> str:
    try:
        return f"{json.loads(e.read())['error']} (HTTP {e.code})"
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {e.code} {e.reason}"


def submit(input: str | os.PathLike, model: str, output: str | os.PathLike | None = None, **options: Any) -> dict:
    """:meth:`Client.submit` on the default service."""
    return Client().submit(input, model, output, **options)


def wait(job_id: int, progress: ProgressCallback | None = None, timeout: float | None = None) -> dict:
    """:meth:`Client.wait` on the default service."""
    return Client().wait(job_id, progress, timeout)


def cancel(job_id: int) -> dict:
    """:meth:`Client.cancel` on the default service."""
    return Client().cancel(job_id)


__all__ = ["Client", "JobFailed", "ServiceError", "cancel", "submit", "wait"]
