"""The model cache and download (against a local HTTP server only): cache hits, resume, checks, errors."""
from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from pipeline import CheckpointError, ModelNotAvailableError, make_random_checkpoint
from pipeline.model import download
from pipeline.model.registry import (
    MODELS,
    RegistryConfig,
    resolve_model,
)

PIXAR = "styleganex_toonify_pixar.pt"


@pytest.fixture(scope="module")
def ckpt_bytes(tiny_ckpt_path) -> bytes:
    return tiny_ckpt_path.read_bytes()


class Server:
    """What the local server serves and how it misbehaves, and the requests it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "normal"            # normal | ignore_range | 404
        self.drops = 0                  # how many next responses stop half-way through the body
        self.etag_salt = ""             # change it to make the served file "new"
        self.requests: list[dict] = []
        self.url = ""

    def etag(self, data: bytes) -> str:
        return f'"{hashlib.sha1(data).hexdigest()}{self.etag_salt}"'


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, headers: dict, body: bytes, rec: dict) -> None:
            rec["status"] = status
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), "Connection": "close", **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.close_connection = True
            if state.drops > 0 and status in (200, 206):
                state.drops -= 1
                body = body[: len(body) // 2]
            self.wfile.write(body)

        def do_GET(self) -> None:
            rec = {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")}
            state.requests.append(rec)
            data = state.files.get(self.path.rsplit("/", 1)[-1])
            if state.mode == "404" or data is None:
                return self._reply(404, {"Content-Type": "text/plain"}, b"Entry not found", rec)
            etag = state.etag(data)
            rng, if_range = rec["range"], rec["if_range"]
            if rng and state.mode != "ignore_range" and if_range in (None, etag):
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    return self._reply(416, {"Content-Range": f"bytes */{len(data)}"}, b"", rec)
                return self._reply(206, {"ETag": etag, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
                                   data[start:], rec)
            return self._reply(200, {"ETag": etag}, data, rec)

    return Handler


@pytest.fixture
def server(ckpt_bytes):
    state = Server()
    state.files[PIXAR] = ckpt_bytes
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/mirror/pretrained_models"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def config(server, tmp_path) -> RegistryConfig:
    return RegistryConfig(model_dir=tmp_path / "models", base_url=server.url, timeout=10)


def _resolve(name: str, config: RegistryConfig, **kw) -> Path:
    return resolve_model(name, config, progress=False, **kw)


def _leftovers(folder: Path) -> list[str]:
    """Files in the cache other than lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_env_is_read_at_call_time(server, tmp_path, monkeypatch, ckpt_bytes):
    monkeypatch.setenv("FACESTYLE_MODEL_DIR", str(tmp_path / "env-models"))
    monkeypatch.setenv("FACESTYLE_MODEL_URL", server.url)
    path = resolve_model("pixar", progress=False)
    assert path == tmp_path / "env-models" / PIXAR
    assert path.read_bytes() == ckpt_bytes


# -- download and cache -------------------------------------------------------------------------

def test_download_then_cache_hit(server, config, ckpt_bytes):
    path = _resolve("pixar", config)
    assert path == config.model_dir / PIXAR
    assert path.read_bytes() == ckpt_bytes
    assert [(r["path"], r["range"]) for r in server.requests] == [(f"/mirror/pretrained_models/{PIXAR}", None)]
    assert _leftovers(config.model_dir) == [PIXAR, PIXAR + ".ok"]
    assert _resolve("pixar", config) == path
    assert _resolve("toonify-pixar", config, download=False) == path
    assert len(server.requests) == 1                    # cache hits make no request


def test_cached_file_is_not_checked_again(server, config, monkeypatch):
    path = _resolve("pixar", config)

    def fail(*args):
        raise AssertionError("checked again")

    monkeypatch.setattr(download, "check_checkpoint_file", fail)
    assert _resolve("pixar", config) == path


def test_hand_placed_file_is_checked_and_marked(config, ckpt_bytes, monkeypatch):
    config.model_dir.mkdir()
    path = config.model_dir / PIXAR
    path.write_bytes(ckpt_bytes)
    assert _resolve("pixar", config, download=False) == path
    assert (config.model_dir / (PIXAR + ".ok")).exists()
    path.write_bytes(b"not a checkpoint")               # modified: size/mtime no longer match the marker
    with pytest.raises(CheckpointError, match="delete it"):
        _resolve("pixar", config, download=False)
    assert path.exists()                                # a file the user placed is never deleted


def test_resume_from_partial(server, config, ckpt_bytes, capsys):
    config.model_dir.mkdir()
    half = len(ckpt_bytes) // 2
    (config.model_dir / (PIXAR + ".partial")).write_bytes(ckpt_bytes[:half])
    path = resolve_model("pixar", config, progress=True)
    assert PIXAR in capsys.readouterr().err             # the tqdm bar, on stderr
    assert [(r["range"], r["status"]) for r in server.requests] == [(f"bytes={half}-", 206)]
    assert path.read_bytes() == ckpt_bytes
    assert _leftovers(config.model_dir) == [PIXAR, PIXAR + ".ok"]


def test_complete_partial_is_finished_without_download(server, config, ckpt_bytes):
    config.model_dir.mkdir()
    (config.model_dir / (PIXAR + ".partial")).write_bytes(ckpt_bytes)  # e.g. killed before the rename
    assert _resolve("pixar", config).read_bytes() == ckpt_bytes
    assert [r["status"] for r in server.requests] == [416]


def test_server_ignoring_range_restarts(server, config, ckpt_bytes):
    server.mode = "ignore_range"
    config.model_dir.mkdir()
    (config.model_dir / (PIXAR + ".partial")).write_bytes(b"x" * 1000)
    path = _resolve("pixar", config)
    assert [(r["range"], r["status"]) for r in server.requests] == [("bytes=1000-", 200)]
    assert path.read_bytes() == ckpt_bytes


def test_dropped_connection_is_resumed(server, config, ckpt_bytes):
    server.drops = 1
    path = _resolve("pixar", config)
    assert path.read_bytes() == ckpt_bytes
    first, second = server.requests
    assert first["range"] is None
    assert second["range"] == f"bytes={len(ckpt_bytes) // 2}-"
    assert second["if_range"] == server.etag(ckpt_bytes) and second["status"] == 206


def test_repeated_drops_keep_partial_and_a_changed_file_restarts(server, config, ckpt_bytes):
    server.drops = 100
    with pytest.raises(ModelNotAvailableError, match="run again to resume") as err:
        _resolve("pixar", config)
    message = str(err.value)
    assert "\n" not in message and config.url_for(MODELS["pixar"]) in message
    assert str(config.model_dir / PIXAR) in message
    assert len(server.requests) == 3
    partial = config.model_dir / (PIXAR + ".partial")
    assert 0 < partial.stat().st_size < len(ckpt_bytes)
    assert not (config.model_dir / PIXAR).exists()

    server.drops, server.etag_salt = 0, "-v2"          # the file changed on the server since
    path = _resolve("pixar", config)
    last = server.requests[-1]
    assert last["range"] is not None and last["if_range"] is not None and last["status"] == 200
    assert path.read_bytes() == ckpt_bytes


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["text", "truncated", "foreign", "missing_key"])
def test_corrupt_download_is_deleted(server, config, ckpt_bytes, kind):
    if kind == "text":
        body = b"<html>Sign in to continue</html>\n"
    elif kind == "truncated":
        body = ckpt_bytes[: len(ckpt_bytes) // 3]
    elif kind == "foreign":
        body = _torch_bytes({"weights": torch.zeros(3)})
    else:
        ckpt = make_random_checkpoint("tiny", seed=0)
        del ckpt["state_dict"]["decoder.conv1.conv.weight"]
        body = _torch_bytes(ckpt)
    server.files[PIXAR] = body
    with pytest.raises(CheckpointError, match=re.escape(PIXAR)) as err:
        _resolve("pixar", config)
    assert "\n" not in str(err.value)
    if kind == "missing_key":
        assert "decoder.conv1.conv.weight" in str(err.value)
    assert _leftovers(config.model_dir) == []


# -- errors ---------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_actionable(err: ModelNotAvailableError, config: RegistryConfig, reason: str) -> None:
    message = str(err)
    assert "\n" not in message
    assert reason in message
    assert f"download {config.url_for(MODELS['pixar'])} and save it as {config.model_dir / PIXAR}" in message


def test_http_404(server, config):
    server.mode = "404"
    with pytest.raises(ModelNotAvailableError) as err:
        _resolve("pixar", config)
    _assert_actionable(err.value, config, "HTTP 404")
    assert _leftovers(config.model_dir) == []


def test_connection_refused(tmp_path):
    config = RegistryConfig(tmp_path / "models", f"http://127.0.0.1:{_closed_port()}/pretrained_models", timeout=5)
    with pytest.raises(ModelNotAvailableError) as err:
        _resolve("pixar", config)
    _assert_actionable(err.value, config, "refused")


def test_download_off(server, config):
    with pytest.raises(ModelNotAvailableError) as err:
        _resolve("pixar", config, download=False)
    _assert_actionable(err.value, config, "downloads are turned off")
    assert server.requests == []


# -- concurrency --------------------------------------------------------------------------------

def test_concurrent_resolves_download_once(server, config, ckpt_bytes):
    barrier = threading.Barrier(2)
    results: list = []

    def work() -> None:
        barrier.wait()
        try:
            results.append(_resolve("pixar", config))
        except Exception as e:  # reported by the assertion below
            results.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [config.model_dir / PIXAR] * 2
    assert len(server.requests) == 1
    assert (config.model_dir / PIXAR).read_bytes() == ckpt_bytes
