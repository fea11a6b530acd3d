"""Settings of the job service, its state folder (journal, token, lock, address) and the rule for
which files a job may read and write."""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cluster.config import RayConfig
from pipeline.errors import FacestyleError, UsageError
from pipeline.option_fields import option
from pipeline.runtime.device import DEFAULT_THREADS, THREADS_HELP

DEFAULT_PORT = 8765
TOKEN_BYTES = 32


class PathNotAllowed(FacestyleError):
    """A job names a file outside the folders the service may read and write."""


def default_state_dir() -> Path:
    """``$FACESTYLE_STATE_DIR``, else ``$XDG_STATE_HOME/facestyle/serve`` (``~/.local/state/...``)."""
    env = os.environ.get("FACESTYLE_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "facestyle" / "serve"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """How ``facestyle serve`` runs.

    Attributes:
        host, port: where to listen (port 0: any free port; the chosen one goes to ``server.json``).
        state: folder for the journal, the token, the lock and ``server.json``.
        roots: folders jobs may read inputs from and write outputs to (subfolders included,
            symbolic links resolved first).
        token_file: the bearer token (default ``state/token``, created on first start, mode 0600).
        allow_remote: listen on a non-loopback address (needs an explicit ``token_file`` too).
        devices: one worker per device; jobs run one at a time on each.
        threads: CPU threads for inference (0: PyTorch's default).
        max_models: loaded models kept per worker (least recently used dropped first).
        max_attempts: a job interrupted this many times by a crash fails instead of running again.
        ray: with an address, every job runs on that Ray cluster (one at a time, each spread over all
            its workers) instead of the devices; ``devices`` then serves only ``POST /preview``.
    """

    host: str = option("127.0.0.1", "address to listen on (loopback only unless --allow-remote)")
    port: int = option(DEFAULT_PORT, "port (0: any free one, written to server.json)")
    state: Path = option(default_factory=default_state_dir,
                         help="folder for the job journal, the token, the lock and server.json")
    roots: tuple[Path, ...] = field(default_factory=lambda: (Path.home(),))
    token_file: Path | None = option(None, "use this token file instead of STATE/token")
    allow_remote: bool = option(False, "allow a non-loopback --host (needs --token-file; put TLS in front of it)")
    devices: tuple[str, ...] = ("auto",)
    threads: int = option(DEFAULT_THREADS, THREADS_HELP)
    max_models: int = option(2, "models kept loaded per device")
    max_attempts: int = 3
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise UsageError(f"refusing to listen on {self.host}: only loopback addresses unless --allow-remote "
                                 "is given (with --token-file)")
            if self.token_file is None:
                raise UsageError("--allow-remote needs an explicit --token-file (the clients must have it)")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port {self.port} is out of range")
        if not self.roots:
            raise UsageError("give at least one --root folder jobs may read and write")
        if not self.devices or self.max_models < 1:
            raise UsageError("need at least one device and --max-models >= 1")

    @property
    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else self.state / "token"

    @property
    def address_file(self) -> Path:
        return self.state / "server.json"

    @property
    def journal_path(self) -> Path:
        return self.state / "jobs.sqlite"


def load_or_create_token(path: Path, create: bool = True) -> str:
    """The token in ``path``; a new random one (mode 0600) when the file does not exist and ``create``."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise UsageError(f"no token file at {path}: start 'facestyle serve' once, or give --token") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        return token
    except OSError as e:
        raise UsageError(f"cannot read the token file {path}: {e.strerror or e}") from e
    if len(token) < 16:
        raise UsageError(f"the token in {path} is too short (16 characters at least)")
    return token


def write_address(path: Path, url: str) -> None:
    """Record where the service listens (clients on this machine find it there)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class PathPolicy:
    """Which files jobs may touch: inside ``roots``, never inside ``forbidden`` (the state folder)."""

    roots: tuple[Path, ...]
    forbidden: tuple[Path, ...] = ()

    @classmethod
    def of(cls, cfg: ServeConfig) -> PathPolicy:
        return cls(tuple(r.expanduser().resolve() for r in cfg.roots),
                   tuple(p.resolve() for p in (cfg.state, cfg.token_path)))

    def _allowed(self, path: Path) -> bool:
        inside = any(path == r or path.is_relative_to(r) for r in self.roots)
        return inside and not any(path == f or path.is_relative_to(f) for f in self.forbidden)

    def readable(self, name: str) -> Path:
        """The resolved input path. Raises PathNotAllowed (outside) or UsageError (relative)."""
        path = self._absolute(name, "input")
        resolved = path.resolve()
        if not self._allowed(resolved):
            raise PathNotAllowed(f"{name}: outside the folders this service may read ({self._roots()})")
        return resolved

    def writable(self, name: str) -> Path:
        """The output path (its folder resolved). Raises PathNotAllowed or UsageError."""
        path = self._absolute(name, "output")
        resolved = path.parent.resolve() / path.name
        if resolved.is_symlink():
            resolved = resolved.resolve()
        if not self._allowed(resolved):
            raise PathNotAllowed(f"{name}: outside the folders this service may write ({self._roots()})")
        return resolved

    @staticmethod
    def _absolute(name: str, what: str) -> Path:
        path = Path(name).expanduser()
        if not path.is_absolute():
            raise UsageError(f"{what} {name!r}: give an absolute path (the service does not share your working "
                             "folder)")
        return path

    def _roots(self) -> str:
        return ", ".join(str(r) for r in self.roots)
