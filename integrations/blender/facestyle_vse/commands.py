"""The ``facestyle`` command lines the add-on runs, the output names it picks, and the JSON progress
lines it reads back. Plain Python (no ``bpy``), so it is testable outside Blender.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

# container for each codec the operator offers: the stylized strip must be a file Blender can read
SUFFIXES = {"h264": ".mp4", "hevc": ".mp4", "vp9": ".webm", "prores": ".mov", "ffv1": ".mkv",
            # hardware encoders (Extra Options may pick others, e.g. --encoder ffmpeg --codec h264_vaapi)
            **{f"{kind}_{api}": ".mp4" for kind in ("h264", "hevc")
               for api in ("nvenc", "qsv", "amf", "vaapi", "videotoolbox")}}
ERROR_PREFIX = "facestyle: error:"
# options whose value the add-on fixes: a full-frame output (the strip must match the source size)
_DROPPED = {"--output-mode": 1, "-o": 1, "--output": 1, "--progress": 1, "-q": 0, "--quiet": 0}


@dataclass(frozen=True)
class ConvertOptions:
    """The convert options the operator exposes; ``extra`` are more flags, already split."""

    model: str
    style_code: str = "smoothed"
    strength: float = 1.0
    codec: str = "h264"
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Server:
    """Where ``facestyle submit`` sends the job; ``token_file`` is optional."""

    url: str
    token_file: str = ""


def find_executable(configured: str, environ: Mapping[str, str]) -> str | None:
    """The ``facestyle`` program: the preference, else ``$FACESTYLE_EXECUTABLE``, else ``facestyle``
    on PATH. A bare name is looked up on PATH; a path is returned if it is a file. None if not found."""
    for candidate in (configured.strip(), environ.get("FACESTYLE_EXECUTABLE", "").strip(), "facestyle"):
        if not candidate:
            continue
        path = os.path.expanduser(candidate)
        if os.sep in path or (os.altsep and os.altsep in path):
            return path if os.path.isfile(path) else None
        return shutil.which(path)
    return None


def split_extra(text: str) -> tuple[str, ...]:
    """Extra convert flags typed by the user (``--strength 0.8 --face all``), shell-split, without the
    ones the add-on sets itself (output path, output mode, progress format).

    Raises:
        ValueError: unbalanced quotes.
    """
    words = shlex.split(text)
    kept: list[str] = []
    skip = 0
    for word in words:
        if skip:
            skip -= 1
            continue
        name = word.split("=", 1)[0]
        if name in _DROPPED:
            skip = _DROPPED[name] if "=" not in word else 0
            continue
        kept.append(word)
    return tuple(kept)


def effective_codec(codec: str, extra: Sequence[str]) -> str:
    """The codec facestyle will use: the last ``--codec`` in ``extra`` wins over ``codec``."""
    for i, word in enumerate(extra):
        if word == "--codec" and i + 1 < len(extra):
            codec = extra[i + 1]
        elif word.startswith("--codec="):
            codec = word.split("=", 1)[1]
    return codec


def model_tag(model: str) -> str:
    """A short name for the model in output file names: ``pixar`` stays, ``/ckpt/toon.pt`` is ``toon``."""
    path = PurePath(model)
    return path.stem if (path.suffix or len(path.parts) > 1) else model


def output_path(src: Path, options: ConvertOptions, folder: Path | None = None) -> Path:
    """``<folder or src's folder>/<stem>_<model tag><suffix>``, the suffix given by the codec."""
    suffix = SUFFIXES.get(effective_codec(options.codec, options.extra), ".mp4")
    return (folder or src.parent) / f"{src.stem}_{model_tag(options.model)}{suffix}"


def unique_path(path: Path, taken: Iterable[Path] = ()) -> Path:
    """``path``, or ``<stem>_1<suffix>``, ``_2``... : the first name neither on disk nor in ``taken``."""
    taken = set(taken)
    candidate, n = path, 0
    while candidate.exists() or candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def build_command(executable: str, src: Path, dst: Path, options: ConvertOptions,
                  server: Server | None = None) -> list[str]:
    """The argument list: ``facestyle convert SRC -o DST ...`` or, with a server, ``facestyle submit
    SRC -o DST ... --server URL [--token-file F] --wait``; JSON progress lines on stdout either way."""
    cmd = [executable, "submit" if server else "convert", str(src), "-o", str(dst), "--model", options.model,
           "--style-code", options.style_code, "--strength", f"{round(options.strength, 4):g}",
           "--codec", options.codec, *options.extra]
    if server is not None:
        cmd += ["--server", server.url]
        if server.token_file:
            cmd += ["--token-file", server.token_file]
        cmd.append("--wait")
    return [*cmd, "--progress", "json"]


def parse_event(line: str) -> dict | None:
    """One progress line as a dict with an ``"event"`` key; None for anything else (log lines)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def error_line(stderr_lines: Sequence[str], returncode: int) -> str:
    """Why a run failed: the last ``facestyle: error:`` line of stderr, else its last line, else the
    exit code."""
    lines = [ln.strip() for ln in stderr_lines if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(ERROR_PREFIX):
            return ln
    return lines[-1] if lines else f"facestyle exited with code {returncode}"
