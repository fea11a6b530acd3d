"""The job API under Schemathesis: requests generated from the service's own OpenAPI schema, every
check Schemathesis has (no server error, only documented status codes, bodies and headers that match
the schema, 405 with ``Allow``, negative data rejected, auth not ignored...), and the stateful phase,
which follows the links from ``POST /jobs`` to the job routes so that generated calls reach real jobs.

The app runs in-process (ASGI) over a real journal and a real :class:`JobRunner`; only the worker's
conversion is a stub that takes a few steps, reports progress and honours cancel, so jobs go
queued -> running -> done within the test. The seed and the number of examples are fixed, so CI
runs the same cases every time; ``FACESTYLE_FUZZ_EXAMPLES`` raises the count for a longer run by hand.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hypothesis
import pytest

schemathesis = pytest.importorskip("schemathesis")
torch = pytest.importorskip("torch")

from schemathesis.config import SchemathesisConfig  # noqa: E402

from pipeline.convert import ConvertResult  # noqa: E402
from pipeline.daemon.journal import Job, Journal  # noqa: E402
from pipeline.service.app import create_app  # noqa: E402
from pipeline.service.config import PathPolicy, ServeConfig  # noqa: E402
from pipeline.service.runner import JobRunner, ProgressBoard, _JobProgress  # noqa: E402
from tests.service.asgi import request  # noqa: E402

TOKEN = "fuzz-token-0123456789abcdef0123456789abcdef"
SEED = 20240614
EXAMPLES = int(os.environ.get("FACESTYLE_FUZZ_EXAMPLES", "25"))
STATEFUL_STEPS = int(os.environ.get("FACESTYLE_FUZZ_STEPS", "10"))


def call(app, method: str, path: str, body: bytes = b"", token: str | None = TOKEN) -> tuple[int, dict, dict]:
    """One request straight into the ASGI app: (status, headers, JSON body)."""
    status, headers, raw = request(app, method, path, body, token)
    return status, headers, json.loads(raw)


def _stub_convert(runner: JobRunner, steps: int = 3, step_s: float = 0.005):
    """A conversion that takes ``steps`` frames, reports them and stops on cancel, writing nothing."""

    def convert(job: Job) -> ConvertResult:
        progress = _JobProgress(runner.board, runner.journal, job.id, runner.workers[0].stop_job)
        progress.start(Path(job.input).name, steps)
        for _ in range(steps):
            time.sleep(step_s)
            progress.update(1)          # raises JobCancelled once cancel was asked
        return ConvertResult(Path(job.input), Path(job.output), steps, steps, steps, steps * step_s)

    return convert


class JournalBox:
    """A journal the stateful test swaps for a fresh one at the start of each scenario, so that the
    answers (and so the links Hypothesis can follow) depend only on the scenario's own calls."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.round, self.added, self.cancelled = folder, 0, 0, 0
        self.target: Journal | None = None
        self.reset()

    def reset(self) -> None:
        if self.target is not None:
            self.target.close()
        self.round += 1
        self.target = Journal(self.folder / f"journal-{self.round}.sqlite")

    def add(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.added += 1
        return self.target.add(*args, **kwargs)

    def cancel(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.cancelled += 1
        return self.target.cancel(*args, **kwargs)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.target, name)


def _media(root: Path) -> Path:
    (root / "clip.mp4").write_bytes(b"\0" * 64)     # the stub never reads it; the app checks it exists
    return root


@pytest.fixture(scope="module")
def service_app(tmp_path_factory):
    """The app over a running runner whose worker runs the stub: jobs go queued -> running -> done."""
    root = _media(tmp_path_factory.mktemp("fuzz"))
    journal = Journal(root / "journal.sqlite")
    board = ProgressBoard()
    cfg = ServeConfig(state=root / "state", roots=(root,), devices=("cpu",))
    runner = JobRunner(cfg, journal, board, devices=[torch.device("cpu")])
    for worker in runner.workers:
        worker.convert = _stub_convert(runner)
    runner.start()
    app = create_app(journal, runner, board, PathPolicy((root,)), TOKEN, poll_s=0.01)
    yield app, root
    runner.stop(timeout=10)
    journal.close()


@pytest.fixture(scope="module")
def paused_app(tmp_path_factory):
    """The app over a runner that takes no job: every answer follows from the calls alone (jobs stay
    queued until cancelled), as a stateful test needs; the journal is fresh for each scenario."""
    root = _media(tmp_path_factory.mktemp("stateful"))
    box = JournalBox(root)
    board = ProgressBoard()
    runner = JobRunner(ServeConfig(state=root / "state", roots=(root,), devices=("cpu",)), box, board,
                       devices=[torch.device("cpu")])              # never started
    app = create_app(box, runner, board, PathPolicy((root,)), TOKEN, poll_s=0.01)
    yield app, root, box
    box.target.close()


def _config(**extra: object) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
        "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
        # A schema-valid body can still name a file that does not exist or lies outside the roots:
        # POST /jobs answers that with 403 or 422 (documented); no schema can describe the file system.
        "operations": [{"include-path": "/jobs", "include-method": "POST",
                        "checks": {"positive_data_acceptance": {"expected-statuses": [
                            "2xx", 401, 403, 404, 409, 422]}}}],
        **extra,
    })


def _with_real_jobs(schema, root: Path):  # noqa: ANN001, ANN202
    """Half of the well-formed job requests name the real clip, so that jobs get created. Only
    schema-valid parts are replaced: a negative case stays negative."""

    @schema.hook
    def map_body(ctx, body):  # noqa: ANN001, ANN202 - Schemathesis hook signature
        if ctx.operation is None or ctx.operation.path != "/jobs" or not isinstance(body, dict):
            return body
        if not set(body) <= {"input", "output", "model", "options"}:
            return body
        if not (isinstance(body.get("input"), str) and isinstance(body.get("model"), str)):
            return body
        if len(body["input"]) % 2:
            return body
        real = {**body, "input": str(root / "clip.mp4"), "model": "pixar"}
        if body.get("output") is None or isinstance(body["output"], str):
            real["output"] = None
        options = body.get("options", {})
        if isinstance(options, dict) and all(v is None or isinstance(v, str | int | float | bool)
                                             for v in options.values()):
            real["options"] = {}
        return real

    return schema


@pytest.fixture(scope="module")
def api_schema(service_app):
    app, root = service_app
    return _with_real_jobs(schemathesis.openapi.from_asgi("/openapi.json", app, config=_config()), root)


@pytest.fixture(scope="module")
def stateful_schema(paused_app):
    app, root, _ = paused_app
    # An event stream of a queued job stays open: take its first event and go on.
    config = _config(**{"max-stream-events": 1})
    return _with_real_jobs(schemathesis.openapi.from_asgi("/openapi.json", app, config=config), root)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_holds_under_generated_requests(case):
    case.call_and_validate()


def test_stateful_job_sequences_hold(stateful_schema, paused_app):
    box = paused_app[2]

    class Machine(stateful_schema.as_state_machine()):
        def setup(self) -> None:
            box.reset()

    Machine.run(settings=hypothesis.settings(max_examples=EXAMPLES, stateful_step_count=STATEFUL_STEPS,
                                             deadline=None, derandomize=True, database=None,
                                             suppress_health_check=list(hypothesis.HealthCheck)))
    assert box.added >= 1 and box.cancelled >= 1, "the scenarios never reached a real job"


def test_generated_jobs_were_really_created_and_run(service_app, api_schema):
    """The stateless fuzzing reached real jobs (the body hook works), and none of them broke the runner."""
    status, _, reply = call(service_app[0], "GET", "/jobs?limit=1000")
    assert status == 200
    counts = reply["counts"]
    if sum(counts.values()) == 0:
        pytest.skip("run with the other tests of this module")
    assert counts.get("done", 0) + counts.get("cancelled", 0) >= 1, counts
    assert counts.get("failed", 0) == 0, counts


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/jobs/18792883837689309167616", 422),            # once an OverflowError inside SQLite: 500
    ("POST", "/jobs/684595114152128832175735832576/cancel", 422),
    ("GET", "/jobs/9223372036854775807", 404),                 # the largest id SQLite holds: no such job
    ("GET", "/jobs/0/events", 422),
    ("GET", "/jobs?limit=9223372036854775808", 422),          # a LIMIT SQLite cannot hold: was a 500
    ("GET", "/jobs?limit=-1", 422),
])
def test_ids_out_of_range_are_client_errors(service_app, method, path, code):
    status, _, reply = call(service_app[0], method, path)
    assert status == code and reply["error"], reply


def test_wrong_method_says_which_are_allowed_and_bad_bytes_are_a_4xx(service_app):
    app = service_app[0]
    status, headers, reply = call(app, "TRACE", "/jobs")
    assert status == 405 and set(headers["allow"].split(", ")) >= {"GET", "POST"} and reply["error"]
    status, headers, _ = call(app, "DELETE", "/health", token=None)
    assert status == 405 and "GET" in headers["allow"]
    status, _, reply = call(app, "POST", "/jobs", body=b"\xff\xfe")
    assert status in (400, 422) and reply["error"]
    status, headers, _ = call(app, "GET", "/jobs", token="wrong")
    assert status == 401 and headers["www-authenticate"] == "Bearer"


def test_job_list_puts_the_queue_first_and_reads_only_the_newest_finished(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    runner = JobRunner(ServeConfig(state=tmp_path, roots=(tmp_path,), devices=("cpu",)), journal, ProgressBoard(),
                       devices=[torch.device("cpu")])             # never started: jobs stay where we put them
    app = create_app(journal, runner, ProgressBoard(), PathPolicy((tmp_path,)), TOKEN)
    ids = [journal.add(f"/in/{i}.mp4", size=None, mtime_ns=None, output=f"/out/{i}.mp4", options={})[0].id
           for i in range(7)]
    for job_id in ids[:5]:
        journal.claim(worker="w")
        journal.finish(job_id, result={})
    read = []
    original = journal.jobs

    def counting(states=None, limit=None):  # noqa: ANN001, ANN202
        rows = original(states, limit)
        read.append(len(rows))
        return rows

    journal.jobs = counting
    status, _, reply = call(app, "GET", "/jobs?limit=4")
    assert status == 200
    assert [j["id"] for j in reply["jobs"]] == [ids[5], ids[6], ids[4], ids[3]]
    assert sum(read) == 4 and reply["counts"]["done"] == 5
    status, _, reply = call(app, "GET", "/jobs?state=done&limit=2")
    assert [j["id"] for j in reply["jobs"]] == [ids[4], ids[3]]
    status, _, reply = call(app, "GET", "/jobs?state=nonsense")
    assert status == 200 and reply["jobs"] == []
    journal.close()
