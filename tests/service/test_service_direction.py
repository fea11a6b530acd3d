"""POST /jobs with ``direction``: a file inside the service's folders is accepted (as a string or a list,
stored with the job), one outside is refused with 403 before anything reads it, a bad file with 422."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.daemon.journal import Journal
from pipeline.service.app import create_app
from pipeline.service.config import PathPolicy, ServeConfig
from pipeline.service.runner import JobRunner, ProgressBoard
from tests.service.asgi import request

TOKEN = "direction-token-0123456789abcdef0123456789"


def post(app, path: str, payload: dict) -> tuple[int, dict]:
    """One request straight into the ASGI app: (status, JSON body)."""
    status, _, raw = request(app, "POST", path, json.dumps(payload).encode(), TOKEN)
    return status, json.loads(raw)


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"\0" * 64)
    np.save(root / "d.npy", np.ones(512, np.float32))
    np.save(root / "bad.npy", np.ones((3, 512), np.float32))
    np.save(tmp_path / "outside.npy", np.ones(512, np.float32))
    journal = Journal(tmp_path / "journal.sqlite")
    runner = JobRunner(ServeConfig(state=tmp_path / "state", roots=(root,), devices=("cpu",)), journal,
                       ProgressBoard(), devices=[torch.device("cpu")])
    yield create_app(journal, runner, ProgressBoard(), PathPolicy((root,)), TOKEN), root, journal
    journal.close()


def job(root, direction) -> dict:
    return {"input": str(root / "clip.mp4"), "model": "age", "options": {"direction": direction}}


def test_a_direction_inside_the_folders_is_taken(app):
    api, root, journal = app
    for n, direction in enumerate([f"{root / 'd.npy'}:0.5", [str(root / "d.npy"), f"{root / 'd.npy'}:-1"]]):
        body = job(root, direction)
        body["output"] = str(root / f"out{n}.mp4")
        status, out = post(api, "/jobs", body)
        assert status == 201, out
        assert journal.get(out["id"]).options["direction"] == direction


@pytest.mark.parametrize("name, status, text", [
    ("../outside.npy", 403, "outside the folders"),
    ("bad.npy", 422, "shape [3, 512]"),
    ("missing.npy", 422, "no such file"),
])
def test_bad_directions_are_refused(app, name, status, text):
    api, root, _ = app
    code, out = post(api, "/jobs", job(root, f"{root / name}:1"))
    assert code == status and text in out["error"], out
