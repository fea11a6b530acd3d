"""The HTTP/JSON API of the job service (FastAPI): submit, list, status, cancel, live progress as
server-sent events, pause/resume, health. Every route but ``/health`` and the schema needs the
bearer token; every error is a JSON ``{"error": "..."}`` with a 4xx status (a bug gives a 500 whose
body says only that: the traceback goes to the service's log, never to the client).
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from pipeline import __version__
from pipeline.convert import default_output
from pipeline.daemon.journal import FINISHED, STATES, Job, Journal, JournalError
from pipeline.errors import FacestyleError, UsageError
from pipeline.model.registry import find_model
from pipeline.options import ConvertOptions
from pipeline.runtime.device import resolve_device
from pipeline.service.config import PathNotAllowed, PathPolicy
from pipeline.service.preview import add_route as add_preview_route
from pipeline.service.runner import JobRunner, ProgressBoard

log = logging.getLogger(__name__)
OptionValue = str | int | float | bool | list[str] | None


class JobRequest(BaseModel):
    """A conversion to run: the same options as ``facestyle convert`` (Python spelling)."""

    model_config = ConfigDict(extra="forbid")
    input: str = Field(description="absolute path of the video or photo to convert")
    output: str | None = Field(None, description="absolute output path (default: <input>_<model>.mp4 beside it)")
    model: str = Field(description="official model name (see 'facestyle models') or a checkpoint path")
    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="convert options by their Python names, e.g. "
        '{"style_code": "smoothed", "strength": 0.8, "codec": "prores"}')


class Progress(BaseModel):
    frame: int
    total: int | None
    fps: float | None
    eta_s: float | None


class JobOut(BaseModel):
    id: int
    state: str = Field(description="queued, running, done, failed or cancelled")
    input: str
    output: str | None
    model: str | None
    options: dict[str, Any]
    progress: Progress | None = Field(description="live figures while running")
    fraction: float | None = Field(description="share of the frames done (0-1), when the total is known")
    error: str | None
    result: dict[str, Any]
    attempts: int
    created: float
    started: float | None
    finished: float | None


class JobList(BaseModel):
    jobs: list[JobOut]
    counts: dict[str, int]


class QueueOut(BaseModel):
    paused: bool
    devices: list[str]
    counts: dict[str, int]


class Health(BaseModel):
    status: str
    version: str


class ErrorOut(BaseModel):
    error: str


# Every status a route can answer besides its success (400: a body that is not even text; 500: a bug).
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut}
                                           for code in (400, 401, 403, 404, 409, 422, 500)}
# Job ids are SQLite integers: anything outside 1 .. 2**63-1 is a 422, never an overflow deeper down.
JobId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="a job's id, as POST /jobs answered it")]
ListLimit = Annotated[int, Query(ge=0, le=100_000, description="list at most this many jobs")]


def job_out(job: Job, live: dict | None) -> JobOut:
    options = {k: v for k, v in job.options.items() if k != "model"}
    fraction = job.progress
    if live is not None and live.get("total"):
        fraction = min(live["frame"] / live["total"], 1.0)
    return JobOut(id=job.id, state=job.state, input=job.input, output=job.output, model=job.options.get("model"),
                  options=options, progress=Progress(**live) if live is not None and job.state == "running" else None,
                  fraction=fraction, error=job.error, result=job.result, attempts=job.attempts, created=job.created,
                  started=job.started, finished=job.finished)


def create_app(journal: Journal, runner: JobRunner, board: ProgressBoard, policy: PathPolicy, token: str,
               poll_s: float = 0.2) -> FastAPI:
    """The API over a journal and a runner (both started and stopped by the caller)."""
    app = FastAPI(title="facestyle job service", version=__version__,
                  description="Submit face-stylization jobs from an editor, follow their progress, cancel them. "
                              "Authenticate with 'Authorization: Bearer <token>' (the token is in the service's "
                              "state folder).", docs_url=None, redoc_url=None)
    bearer = HTTPBearer(auto_error=False)

    def authorized(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:                  # Starlette lists one route's methods; a path may have several
            headers["Allow"] = _allowed_methods(request)
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "bad request: " + "; ".join(parts)}, 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (details are in the service's log)"}, 500)

    def get_job(job_id: int) -> Job:
        job = journal.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Is the service up (no token needed)."""
        return Health(status="ok", version=__version__)

    @app.post("/jobs", status_code=201, response_model=JobOut, responses=_ERRORS, tags=["jobs"],
              dependencies=[Depends(authorized)])
    def submit(req: JobRequest) -> JobOut:
        """Queue a conversion. The paths are checked now: they must be absolute and inside the service's
        folders; the options are checked exactly as the command line checks them."""
        _check_direction_paths(req.options.get("direction"), policy)
        options = _check_options(req, runner)
        try:
            src = policy.readable(req.input)
            model = _check_model(req.model, policy)
            dst = policy.writable(req.output) if req.output else _default_output(src, req.model, policy)
        except PathNotAllowed as e:
            raise HTTPException(403, str(e)) from None
        except UsageError as e:
            raise HTTPException(422, str(e)) from None
        if not src.is_file():
            raise HTTPException(422, f"{req.input}: no such file (a job converts one video or photo)")
        if dst == src:
            raise HTTPException(422, "the output would replace the input")
        if not dst.parent.is_dir():
            raise HTTPException(422, f"{dst.parent}: output folder does not exist")
        if dst.exists() and not options.get("overwrite"):
            raise HTTPException(409, f"{dst} exists (set the option overwrite: true to replace it)")
        job, _ = journal.add(str(src), size=None, mtime_ns=None, output=str(dst), options={"model": model, **options})
        runner.notify()
        return job_out(job, None)

    @app.get("/jobs", response_model=JobList, responses=_ERRORS, tags=["jobs"], dependencies=[Depends(authorized)])
    def list_jobs(state: str | None = None, limit: ListLimit = 100) -> JobList:
        """Running and queued jobs first, then the most recent finished ones."""
        order = {"running": 0, "queued": 1}
        states = [state] if state else list(STATES)
        active = [s for s in states if s in order]
        finished = [s for s in states if s not in order]
        # The journal keeps every finished job: read only the newest `limit` of them, not the whole history.
        jobs = journal.jobs(active) if active else []
        jobs.sort(key=lambda j: (order[j.state], j.id))
        if finished and len(jobs) < limit:
            jobs += journal.jobs(finished, limit=limit - len(jobs))
        return JobList(jobs=[job_out(j, board.get(j.id)[1]) for j in jobs[:limit]], counts=journal.counts())

    @app.get("/jobs/{job_id}", response_model=JobOut, responses=_ERRORS, tags=["jobs"],
             dependencies=[Depends(authorized)])
    def status(job_id: JobId) -> JobOut:
        """A job's state and, while it runs, its progress (frame, total, frames/s, ETA)."""
        return job_out(get_job(job_id), board.get(job_id)[1])

    @app.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=_ERRORS, tags=["jobs"],
              dependencies=[Depends(authorized)])
    def cancel(job_id: JobId) -> JobOut:
        """Cancel a queued job, or stop a running one (its partial output is deleted)."""
        get_job(job_id)
        try:
            job = runner.cancel(job_id)
        except JournalError as e:
            raise HTTPException(409, str(e)) from None
        return job_out(job, board.get(job_id)[1])

    @app.get("/jobs/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
             tags=["jobs"], dependencies=[Depends(authorized)])
    async def events(job_id: JobId, request: Request) -> EventSourceResponse:
        """Server-sent events: ``progress`` (the job, as GET /jobs/{id}) whenever it changes, then one
        final ``done``, ``failed`` or ``cancelled`` event, and the stream ends."""
        get_job(job_id)

        async def stream():  # noqa: ANN202 - async generator of SSE dicts
            last = None
            while not await request.is_disconnected():
                job = journal.get(job_id)
                version, live = board.get(job_id)
                key = (job.state, version, job.progress)
                if key != last:
                    last = key
                    final = job.state in FINISHED
                    yield {"event": job.state if final else "progress",
                           "data": json.dumps(job_out(job, live).model_dump())}
                    if final:
                        return
                await asyncio.sleep(poll_s)

        return EventSourceResponse(stream(), ping=15)

    def check_preview_options(model: str, options: dict[str, OptionValue]) -> dict[str, OptionValue]:
        _check_direction_paths(options.get("direction"), policy)
        return _check_options(JobRequest(input="-", model=model, options=options), runner)

    add_preview_route(app, policy, authorized, _ERRORS, lambda: runner.preview_device, _check_model,
                      check_preview_options)

    @app.get("/queue", response_model=QueueOut, responses=_ERRORS, tags=["service"],
             dependencies=[Depends(authorized)])
    def queue() -> QueueOut:
        return QueueOut(paused=runner.paused.is_set(), devices=runner.device_names, counts=journal.counts())

    @app.post("/queue/pause", response_model=QueueOut, responses=_ERRORS, tags=["service"],
              dependencies=[Depends(authorized)])
    def pause() -> QueueOut:
        """Start no further jobs (the running ones finish; jobs can still be submitted)."""
        runner.pause(True)
        return queue()

    @app.post("/queue/resume", response_model=QueueOut, responses=_ERRORS, tags=["service"],
              dependencies=[Depends(authorized)])
    def resume() -> QueueOut:
        runner.pause(False)
        return queue()

    return app


def _allowed_methods(request: Request) -> str:
    """The methods of every route on the request's path, for the ``Allow`` header of a 405."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _check_options(req: JobRequest, runner: JobRunner) -> dict[str, OptionValue]:
    options = {k.replace("-", "_"): v for k, v in req.options.items() if v is not None}
    if "model" in options:
        raise HTTPException(422, "give the model as 'model', not as an option")
    try:
        ConvertOptions.from_mapping({"model": req.model, **options}).check()
    except FacestyleError as e:
        raise HTTPException(422, f"options: {e}") from None
    if options.get("device", ConvertOptions.device) != ConvertOptions.device:
        try:
            name = str(resolve_device(str(options["device"])))
        except FacestyleError as e:
            raise HTTPException(422, f"options: {e}") from None
        if name not in runner.device_names:
            raise HTTPException(422, f"options: device {name} is not one this service runs on "
                                     f"({', '.join(runner.device_names)})")
        options["device"] = name
    return options


def _check_direction_paths(value: OptionValue, policy: PathPolicy) -> None:
    """Direction files (``direction``: ``FILE[:STRENGTH]`` or a list) must lie inside the service's
    folders, checked before anything reads them: 403 outside, 422 relative."""
    from pipeline.stages.directions import split_direction

    for text in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        try:
            policy.readable(split_direction(text)[0])
        except PathNotAllowed as e:
            raise HTTPException(403, str(e)) from None
        except UsageError as e:
            raise HTTPException(422, f"options: direction: {e}") from None


def _check_model(name: str, policy: PathPolicy) -> str:
    """An official model name stays a name; a checkpoint path must be a readable file inside the roots."""
    if find_model(name) is not None:
        return name
    if not Path(name).expanduser().is_absolute():
        raise UsageError(f"model {name!r}: neither an official model name (see 'facestyle models') nor an "
                         "absolute checkpoint path")
    path = policy.readable(name)
    if not path.is_file():
        raise UsageError(f"model {name!r}: neither an official model name (see 'facestyle models') nor a file")
    return str(path)


def _default_output(src: Path, model: str, policy: PathPolicy) -> Path:
    tag = Path(model).stem if Path(model).suffix else model
    return policy.writable(str(default_output(src, tag)))
