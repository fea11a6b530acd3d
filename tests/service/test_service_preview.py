"""POST /preview: the PNG sheet of `facestyle preview` for the same choices (the same pixels as
make_sheet), with the service's path and option checks: 403 outside its folders, 422 for bad
options or models, 401 without the token."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import load_model, make_random_checkpoint, save_checkpoint
from pipeline.daemon.journal import Journal
from pipeline.face.detect import make_detector
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision
from pipeline.service.app import create_app
from pipeline.service.config import PathPolicy, ServeConfig
from pipeline.service.runner import JobRunner, ProgressBoard
from pipeline.tools.preview import make_sheet
from tests.service.asgi import request

TOKEN = "preview-token-0123456789abcdef0123456789ab"


def post(app, path: str, payload: dict, token: str | None = TOKEN) -> tuple[int, dict, bytes]:
    """One request straight into the ASGI app: (status, headers, raw body)."""
    return request(app, "POST", path, json.dumps(payload).encode(), token or None)


@pytest.fixture
def app(tmp_path, face_photo):
    from tests.clips import face_clip

    root = tmp_path / "root"
    root.mkdir()
    face_clip(face_photo, root / "face.mp4", frames=6)
    save_checkpoint(make_random_checkpoint("tiny", 3), root / "a.pt")
    save_checkpoint(make_random_checkpoint("tiny", 4), root / "b.pt")
    journal = Journal(tmp_path / "journal.sqlite")
    runner = JobRunner(ServeConfig(state=tmp_path / "state", roots=(root,), devices=("cpu",)), journal,
                       ProgressBoard(), devices=[torch.device("cpu")])
    yield create_app(journal, runner, ProgressBoard(), PathPolicy((root,)), TOKEN), root
    journal.close()


def test_the_sheet_comes_back_as_png(app):
    api, root = app
    body = {"input": str(root / "face.mp4"), "model": f"{root / 'a.pt'},{root / 'b.pt'}", "strength": [0.5, 1.0],
            "at": [0.1, 0.3], "options": {"style_code": "per-frame"}}
    status, headers, raw = post(api, "/preview", body)
    assert status == 200, raw[:300]
    assert headers["content-type"] == "image/png"
    png = Image.open(io.BytesIO(raw))
    assert png.text["Columns"] == "source | a @ 0.5 | a @ 1 | b @ 0.5 | b @ 1"
    cfg = ConvertOptions(style_code="per-frame").to_config(torch.device("cpu"), Precision())
    want = make_sheet(root / "face.mp4", [("a", load_model(root / "a.pt")), ("b", load_model(root / "b.pt"))],
                      make_detector("dlib", max_side=720), cfg, [0.5, 1.0], [0.1, 0.3])
    assert np.array_equal(np.asarray(png.convert("RGB")), want.image)


@pytest.mark.parametrize("change, status, text", [
    ({"input": "/etc/passwd"}, 403, "outside the folders"),
    ({"model": "/etc/x.pt"}, 403, "outside the folders"),
    ({"options": {"style_code": "sometimes"}}, 422, "invalid choice"),
    ({"options": {"direction": "/etc/d.npy"}}, 403, "outside the folders"),
    ({"model": " , "}, 422, "give 1 to 8 models"),
    ({"at": [-1.0]}, 422, "seconds from the start"),
    ({"strength": [1.0] * 9}, 422, "bad request"),
])
def test_bad_requests_are_refused(app, change, status, text):
    api, root = app
    body = {"input": str(root / "face.mp4"), "model": str(root / "a.pt"), **change}
    code, _, raw = post(api, "/preview", body)
    assert code == status and text in json.loads(raw)["error"], raw


def test_the_token_is_required(app):
    api, root = app
    code, _, _ = post(api, "/preview", {"input": str(root / "face.mp4"), "model": str(root / "a.pt")}, token=None)
    assert code == 401
