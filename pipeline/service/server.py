"""``facestyle serve``: bind, take the state folder's lock, run the API until SIGINT/SIGTERM, then
stop the workers (a running job goes back to the queue) and clean up."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator

import uvicorn

from pipeline.daemon.inbox import lock_folder
from pipeline.daemon.journal import Journal
from pipeline.errors import OutputError, UsageError
from pipeline.service.app import create_app
from pipeline.service.config import PathPolicy, ServeConfig, load_or_create_token, write_address
from pipeline.service.runner import JobRunner, ProgressBoard

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(cfg: ServeConfig, announce: Callable[[str], None] | None = None) -> int:
    """Run the service until a signal stops it; returns the exit code.

    Raises:
        UsageError: the address is taken or not allowed. FolderInUse: another service uses the state folder.
    """
    try:
        cfg.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise OutputError(f"cannot create the state folder {cfg.state}: {e.strerror or e}") from e
    lock = lock_folder(cfg.state / "serve.lock", f"state folder {cfg.state}", "facestyle serve")
    try:
        token = load_or_create_token(cfg.token_path)
        sock = _bind(cfg.host, cfg.port)
        url = url_of(sock, cfg.host)
        with _ray_session(cfg) as session, Journal(cfg.journal_path) as journal:
            board = ProgressBoard()
            runner = JobRunner(cfg, journal, board, session=session)
            app = create_app(journal, runner, board, PathPolicy.of(cfg), token)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                   timeout_graceful_shutdown=2))
            runner.start()
            write_address(cfg.address_file, url)
            (announce or _announce)(f"facestyle serve: listening on {url} (devices: {', '.join(runner.device_names)}; "
                                    f"token in {cfg.token_path}; jobs may use {', '.join(map(str, cfg.roots))})")
            try:
                with _signals_noted():
                    server.run(sockets=[sock])      # SIGINT/SIGTERM: uvicorn shuts down, then re-raises to us
            finally:
                log.info("stopping: a running job goes back to the queue")
                runner.stop()
                cfg.address_file.unlink(missing_ok=True)
                sock.close()
    finally:
        os.close(lock)
    return 0


def _ray_session(cfg: ServeConfig) -> contextlib.AbstractContextManager:
    """With ``--ray``: the connection to the cluster for the service's lifetime (UsageError when Ray is
    missing or the cluster cannot be reached); else nothing."""
    if cfg.ray.address is None:
        return contextlib.nullcontext()
    from pipeline.cluster.driver import RaySession

    return RaySession(cfg.ray).open()


@contextlib.contextmanager
def _signals_noted() -> Iterator[None]:
    """Uvicorn re-raises the signal that stopped it; note it here so the workers can still be stopped
    cleanly (the running job back in the queue) instead of the process dying on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: noted.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if noted:
            log.info("stopped by signal %d", noted[-1])


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
