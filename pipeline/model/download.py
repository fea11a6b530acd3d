"""The model cache: a checkpoint file made present, checked and marked, downloaded when missing.

:func:`ensure_cached` is what :func:`pipeline.model.registry.resolve_model` does for a model name:

1. a cached file whose ``<file>.ok`` marker matches its size and mtime is returned at once;
2. a cached file without a matching marker (placed by hand, or modified) is checked, then marked;
3. otherwise, holding ``<file>.lock``, the file is downloaded to ``<file>.partial`` (resuming an
   earlier partial download with an HTTP ``Range`` request, guarded by ``If-Range`` with the saved
   ETag), its length checked against ``Content-Length``, its structure checked strictly (keys and
   shapes on the meta device, no weights built), and only then renamed to ``<file>`` and marked.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.errors import CheckpointError, ModelNotAvailableError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20                # bytes per read
_ATTEMPTS = 3                   # tries of one download when each try makes progress before dropping
_USER_AGENT = "facestyle (+https://github.com/williamyang1991/StyleGANEX checkpoints)"


def format_size(n: int) -> str:
    """``1234567`` -> ``'1.2 MB'`` (decimal units, as download pages and the progress bar show them)."""
    value, units = float(n), ("B", "kB", "MB", "GB")
    i = 0
    while value >= 1000 and i < len(units) - 1:
        value, i = value / 1000, i + 1
    return f"{n} B" if i == 0 else f"{value:.1f} {units[i]}"


# -- the cache ---------------------------------------------------------------------------------

def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_ok(path: Path) -> bool:
    """True when ``path`` exists and its ``.ok`` marker records its current size and mtime."""
    try:
        return json.loads(_sidecar(path, ".ok").read_text()) == _stamp(path)
    except (OSError, ValueError):
        return False


def _write_marker(path: Path) -> None:
    marker, tmp = _sidecar(path, ".ok"), _sidecar(path, f".ok.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(_stamp(path)))
        tmp.replace(marker)
    except OSError as e:                    # a read-only cache still works, only slower
        log.warning("cannot write %s (%s); the file will be checked again next time", marker, e.strerror)


def check_checkpoint_file(path: Path, name: str) -> None:
    """Read ``path`` and check its keys and shapes strictly against the model its options describe.

    The model is built on the meta device (no memory, no weights), so this costs one read of the
    file (memory-mapped for zip checkpoints).

    Raises:
        CheckpointError: unreadable, not a StyleGANEX checkpoint, unsupported options, or a missing /
            unexpected / mis-shaped key.
    """
    import torch

    from pipeline.model.arch import arch_from_opts
    from pipeline.model.checkpoint import check_state_dict, read_checkpoint, split_checkpoint
    from pipeline.model.styleganex import StyleGANEX

    sd, opts = split_checkpoint(read_checkpoint(path), name)
    try:
        arch = arch_from_opts(opts)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{name}: unsupported options: {e}") from e
    with torch.device("meta"):
        expected = StyleGANEX(arch, opts).state_dict()
    check_state_dict(sd, expected, name)


def _not_available(name: str, url: str, path: Path, reason: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(f"model {name!r} is not cached and could not be downloaded ({reason}): "
                                  f"download {url} and save it as {path}")


def ensure_cached(name: str, url: str, path: Path, *, download: bool = True, progress: bool = True,
                  timeout: float = 30.0) -> Path:
    """The checked file ``path`` of model ``name``, downloaded from ``url`` when it is not there.

    Args:
        name: the model's name, for messages.
        url: where the file is downloaded from.
        path: the file in the cache (its folder is created on the first download).
        download: fetch a missing file (else :class:`ModelNotAvailableError`).
        progress: show a tqdm progress bar on stderr while downloading.
        timeout: seconds a connect or a read may stall before the download counts as failed.

    Raises:
        CheckpointError: the downloaded or cached file fails the structure check (a failed download
            is deleted, a file placed by hand is kept).
        ModelNotAvailableError: the file is missing and cannot be downloaded (the message names the
            URL and the exact path to save the file at).
    """
    from filelock import FileLock, Timeout

    filename, folder = path.name, path.parent
    if _marker_ok(path):
        return path
    if path.is_file():
        return _check_cached(path, name)
    if not download:
        raise _not_available(name, url, path, "downloads are turned off")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _not_available(name, url, path, f"cannot create {folder}: {e.strerror}") from e
    lock = FileLock(str(_sidecar(path, ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is downloading %s; waiting for it", filename)
        lock.acquire()
    except OSError as e:
        raise _not_available(name, url, path, f"cannot lock {lock.lock_file}: {e.strerror}") from e
    try:
        if _marker_ok(path):                        # the process we waited for finished it
            return path
        if path.is_file():
            return _check_cached(path, name)
        partial = _sidecar(path, ".partial")
        try:
            _download(url, partial, timeout, progress)
        except _DownloadError as e:
            raise _not_available(name, url, path, str(e)) from e
        try:
            check_checkpoint_file(partial, f"downloaded {filename}")
        except CheckpointError as e:
            partial.unlink(missing_ok=True)
            _sidecar(partial, ".etag").unlink(missing_ok=True)
            raise CheckpointError(f"{filename} downloaded from {url} is not a valid StyleGANEX checkpoint "
                                  f"and was deleted: {e}") from e
        partial.replace(path)                       # atomic: readers see no file or the whole file
        _sidecar(partial, ".etag").unlink(missing_ok=True)
        _write_marker(path)
        log.info("cached model %r at %s", name, path)
        return path
    finally:
        lock.release()


def _check_cached(path: Path, name: str) -> Path:
    """Check a cached file that has no valid marker (placed by hand or modified); keep it either way."""
    try:
        check_checkpoint_file(path, f"cached {path}")
    except CheckpointError as e:
        raise CheckpointError(f"{e} (delete it to download model {name!r} again)") from e
    _write_marker(path)
    return path


# -- the download -----------------------------------------------------------------------------

class _DownloadError(Exception):
    """Why a download failed, as the reason part of the user's one-line message."""


class _Interrupted(_DownloadError):
    """The transfer stopped early (kept in the partial file); ``progressed``: this try added bytes."""

    def __init__(self, reason: str, progressed: bool) -> None:
        super().__init__(reason)
        self.progressed = progressed


class _Restart(Exception):
    """The partial file cannot be resumed; start over from byte 0."""


def _download(url: str, partial: Path, timeout: float, progress: bool) -> None:
    """Fetch ``url`` into ``partial``, resuming what is there; ``partial`` is kept on failure.

    Raises:
        _DownloadError: with the reason for the user's message.
    """
    tries = restarts = 0
    while True:
        try:
            _fetch(url, partial, timeout, progress)
            return
        except _Restart as e:
            restarts += 1
            partial.unlink(missing_ok=True)
            _sidecar(partial, ".etag").unlink(missing_ok=True)
            if restarts > 1:
                raise _DownloadError("the server does not resume downloads consistently") from e
        except _Interrupted as e:
            tries += 1
            if not e.progressed or tries >= _ATTEMPTS:
                raise _DownloadError(f"{e}; run again to resume") from e
            log.warning("%s; resuming", e)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return _reason(e.reason) if isinstance(e.reason, BaseException) else str(e.reason)
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``'bytes 100-199/1000'`` -> ``(100, 1000)``; ``'bytes */1000'`` -> ``(None, 1000)``."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if m is None:
        return None, None
    start, total = m.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _fetch(url: str, partial: Path, timeout: float, progress: bool) -> None:
    """One HTTP request: append to (206) or rewrite (200) ``partial``, then check the length."""
    from tqdm import tqdm

    have = partial.stat().st_size if partial.is_file() else 0
    etag_file = _sidecar(partial, ".etag")
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        etag = etag_file.read_text().strip() if etag_file.is_file() else ""
        if etag and not etag.startswith("W/"):     # a changed file is then sent whole, not resumed
            headers["If-Range"] = etag
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and have:
                if _content_range(e.headers.get("Content-Range"))[1] == have:
                    return                          # the partial file was already complete
                log.warning("cannot resume %s (HTTP 416); starting over", partial.name)
                raise _Restart from e
            raise _DownloadError(_reason(e)) from e
    except (OSError, http.client.HTTPException) as e:
        raise _DownloadError(_reason(e)) from e
    name = partial.name.removesuffix(".partial")
    with resp:
        status = getattr(resp, "status", None) or 200          # file:// responses have no status
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None    # bytes in this response
        if status == 206 and have:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                log.warning("server resumed %s at byte %s, not %d; starting over", name, start, have)
                raise _Restart
            log.info("resuming %s from %s at %s", name, url, format_size(have))
        else:
            if have:
                log.warning("server sent all of %s (it ignores Range, or the file changed); starting over", name)
            have, total = 0, expected
            log.info("downloading %s from %s", name, url)
        try:
            if resp.headers.get("ETag"):
                etag_file.write_text(resp.headers["ETag"])
            with open(partial, "ab" if have else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, file=sys.stderr,
                    desc=name, disable=not progress, dynamic_ncols=True) as bar:
                got, error = _copy(resp, f, bar)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:                        # reading errors are caught in _copy: this is the disk
            raise _DownloadError(f"cannot write {partial}: {_reason(e)}") from e
    if error is not None or (expected is not None and got != expected):
        of = f" of {format_size(total)}" if total else ""
        raise _Interrupted(f"download stopped after {format_size(have + got)}{of} "
                           f"({error or 'connection closed early'})", progressed=got > 0)


def _copy(resp: Any, f: Any, bar: Any) -> tuple[int, str | None]:
    """Copy the response body to ``f``: (bytes copied, why the network stopped it early or None)."""
    got = 0
    while True:
        try:
            chunk = resp.read(_CHUNK)
        except http.client.IncompleteRead as e:
            f.write(e.partial)
            return got + len(e.partial), "connection closed early"
        except (OSError, http.client.HTTPException) as e:
            return got, _reason(e)
        if not chunk:
            return got, None
        f.write(chunk)
        got += len(chunk)
        bar.update(len(chunk))
