"""atomic: write an output file so that it appears whole under its final name, or not at all.

Every output (video, image, checkpoint) takes the same three steps:

1. :func:`check_destination` refuses, before any work, an existing file (unless ``overwrite``),
   a folder, or a missing parent folder.
2. :func:`reserve_temp` creates a hidden ``.<stem>.<pid>-<tag>.partial<ext>`` file beside the
   destination: the same folder (so the final rename stays on one file system) and the same
   extension (so muxers and image writers pick the same format).
3. :func:`commit` moves it into place. Without ``overwrite`` it never replaces a file that
   appeared in the meantime (a hard link fails if the name is taken).

:func:`atomic_output` runs the three as a ``with`` block and deletes the temporary file when the
block raises (KeyboardInterrupt included). Writers whose lifetime is not one block (the video
encoder thread) call the steps themselves.

File-system failures a user can fix (disk full, quota, permissions, read-only) become one-line
:class:`~pipeline.errors.OutputError`\\ s that name the destination: :func:`output_error`.
"""
from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import OutputError

__all__ = ["atomic_output", "check_destination", "commit", "output_error", "reason", "reserve_temp"]

_DISK_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
}


def reason(err: BaseException) -> str:
    """A short, one-line reason for a write failure.

    The wording of the table above for the ``errno`` values a user can fix, else the OS's own
    ``strerror``, else the first line of the message (``torch.save`` raises multi-line
    ``RuntimeError``\\ s).
    """
    if isinstance(err, OSError):
        known = _DISK_REASONS.get(err.errno or 0)
        if known or err.strerror:
            return known or err.strerror
    lines = str(err).splitlines()
    return lines[0] if lines else type(err).__name__


def output_error(err: BaseException, dst: Path) -> OutputError | None:
    """A one-line ``OutputError`` for write failures a user can fix; None for anything else.

    Args:
        err: what the write raised. An ``OutputError`` is returned as it is; an ``OSError`` whose
            ``errno`` is in the disk-error table becomes ``"<dst>: cannot write (disk full)"``.
        dst: the destination to name in the message.
    """
    if isinstance(err, OutputError):
        return err
    known = _DISK_REASONS.get(getattr(err, "errno", None) or 0) if isinstance(err, OSError) else None
    return OutputError(f"{dst}: cannot write ({known})") if known else None


def _exists(dst: Path, option: str) -> OutputError:
    return OutputError(f"{dst}: already exists (use {option} to replace it)")


def check_destination(dst: str | os.PathLike, overwrite: bool, *, option: str = "overwrite") -> Path:
    """Refuse an existing output (without overwrite), a folder, or a missing parent folder.

    Args:
        dst: the output path.
        overwrite: whether an existing file may be replaced.
        option: how the caller's user spells "overwrite" (``"--overwrite"`` on the command line);
            named in the message for an existing file.

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        OutputError: with one line naming ``dst`` and the reason.
    """
    target = Path(dst)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for the output")
    if target.exists() and not overwrite:
        raise _exists(target, option)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: folder {target.parent} does not exist")
    return target


def reserve_temp(dst: Path) -> Path:
    """Create the hidden, empty partial file beside ``dst`` (same extension) and return its path.

    The name is unique per call (process id and a random tag), so concurrent writers of the same
    destination do not share a temporary file.

    Raises:
        OutputError: the folder is not writable (permissions, read-only, disk full).
    """
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{dst.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise OutputError(f"{dst}: cannot write in {dst.parent} ({reason(err)})") from err
    return tmp


def commit(tmp: Path, dst: Path, overwrite: bool, *, option: str = "overwrite") -> None:
    """Move the finished ``tmp`` to ``dst``; without ``overwrite`` never replace a file that
    appeared meanwhile. On success ``tmp`` is gone; on failure the caller deletes it.

    Raises:
        OutputError: ``dst`` appeared meanwhile (without ``overwrite``), or the rename failed.
    """
    try:
        if overwrite:
            os.replace(tmp, dst)
            return
        try:
            os.link(tmp, dst)  # fails if dst exists, atomically
        except FileExistsError:
            raise _exists(dst, option) from None
        except OSError:  # no hard links here (FAT, some network shares)
            if dst.exists():
                raise _exists(dst, option) from None
            os.replace(tmp, dst)
            return
        tmp.unlink()
    except OSError as err:
        raise OutputError(f"{dst}: cannot move the finished file into place ({reason(err)})") from err


@contextmanager
def atomic_output(dst: str | os.PathLike, overwrite: bool = False, *,
                  option: str = "overwrite") -> Iterator[Path]:
    """``with atomic_output(dst) as tmp:`` write ``tmp``; on leaving it becomes ``dst``.

    The destination is checked first (:func:`check_destination`); if the block raises, the
    temporary file is deleted and ``dst`` is left as it was.

    Raises:
        OutputError: from :func:`check_destination`, :func:`reserve_temp` or :func:`commit`.
    """
    target = check_destination(dst, overwrite, option=option)
    tmp = reserve_temp(target)
    try:
        yield tmp
        commit(tmp, target, overwrite, option=option)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
