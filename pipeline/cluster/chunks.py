"""Cutting a clip into chunks, and the work folder where chunks leave their segments and receipts.

Two kinds of span:

* face-finding spans: fixed stretches of time ``[start + k*S, start + (k+1)*S)``, planned before any
  frame is decoded (from the probed duration);
* render chunks: ranges of frame indices planned after face finding, when every frame's time and the
  shot cuts are known. A boundary moves to a shot cut within a fifth of a chunk of it (a new keyframe
  there is invisible), and a last chunk shorter than a quarter of a chunk joins the one before.

Frames are selected by time exactly as :mod:`pipeline.stages.video_in` trims (``start <= t < end``),
so neighbouring spans share no frame and miss none.

Receipts: each rendered chunk leaves ``chunk_NNNN.json`` beside its segment with its frame count,
first and last timestamp and the segment's SHA-256; a receipt is valid when it names the same job key
and frames and the segment still has that checksum.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SNAP_FRACTION = 0.2   # a boundary moves to a shot cut at most this fraction of a chunk away
MIN_LAST_FRACTION = 0.25


@dataclass(frozen=True)
class Span:
    """A stretch of a clip read by one task: frames with ``start <= time < end`` (None: open)."""

    start: float | None
    end: float | None


@dataclass(frozen=True)
class Chunk:
    """A render chunk: frames ``first`` .. ``stop - 1`` (indices among the frames of the job).

    ``span`` selects exactly those frames by time; ``pts``/``times`` of the first and last frame are
    what the receipt records.
    """

    number: int
    first: int
    stop: int
    span: Span
    first_pts: int
    last_pts: int
    first_time: float
    last_time: float

    @property
    def frames(self) -> int:
        return self.stop - self.first


def find_spans(start: float | None, end: float | None, duration: float | None, seconds: float) -> list[Span]:
    """Face-finding spans of about ``seconds`` over ``[start, end)`` of a clip ``duration`` long."""
    t0 = start or 0.0
    t1 = min(end, duration) if end is not None and duration is not None else (end if end is not None else duration)
    if t1 is None or t1 - t0 <= seconds * 1.25:
        return [Span(start, end)]
    count = max(1, round((t1 - t0) / seconds))
    cuts = [t0 + (t1 - t0) * k / count for k in range(1, count)]
    bounds = [start, *cuts, end]
    return [Span(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def plan_chunks(pts: Sequence[int], times: Sequence[float], cuts: Sequence[bool], seconds: float,
                start: float | None, end: float | None) -> list[Chunk]:
    """Render chunks of about ``seconds`` over frames with the given times; ``cuts[i]``: frame ``i``
    starts a new shot. ``start``/``end`` are the job's trim (the first and last chunk keep them)."""
    n = len(times)
    if n == 0:
        return []
    bounds = [0]
    t_first = times[0]
    k = 1
    while True:
        target_t = t_first + k * seconds
        i = _first_at(times, target_t, bounds[-1] + 1)
        if i >= n:
            break
        i = _snap_to_cut(times, cuts, i, seconds * SNAP_FRACTION, bounds[-1] + 1)
        if i > bounds[-1]:
            bounds.append(i)
        k = max(k + 1, int((times[i] - t_first) / seconds) + 1)
    if len(bounds) > 1 and times[-1] - times[bounds[-1]] < seconds * MIN_LAST_FRACTION:
        bounds.pop()                                  # a short tail joins the chunk before
    bounds.append(n)
    chunks = []
    for number, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        span = Span(start if a == 0 else times[a], end if b == n else times[b])
        chunks.append(Chunk(number, a, b, span, int(pts[a]), int(pts[b - 1]), float(times[a]), float(times[b - 1])))
    return chunks


def _first_at(times: Sequence[float], t: float, lo: int) -> int:
    i = lo
    while i < len(times) and times[i] < t:
        i += 1
    return i


def _snap_to_cut(times: Sequence[float], cuts: Sequence[bool], i: int, reach: float, lo: int) -> int:
    """The shot cut nearest to frame ``i`` within ``reach`` seconds (not before ``lo``), else ``i``."""
    best, best_d = i, None
    j = i
    while j > lo and times[i] - times[j - 1] <= reach:
        j -= 1
    while j < len(times) and times[j] - times[i] <= reach:
        if cuts[j] and j >= lo and (best_d is None or abs(times[j] - times[i]) < best_d):
            best, best_d = j, abs(times[j] - times[i])
        j += 1
    return best


def job_key(*parts: object) -> str:
    """A short hash of everything the chunks of a job depend on."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def file_identity(path: Path) -> tuple[str, int, int]:
    """``(absolute path, size, mtime_ns)``: a changed source or checkpoint invalidates old chunks."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class WorkFolder:
    """The job folder: ``<work_dir>/<output name>.<job key>/`` with segments, receipts and the
    intermediate results (face finding, codes) that a rerun reuses."""

    path: Path
    key: str

    @classmethod
    def for_output(cls, dst: Path, work_dir: Path | None, key: str) -> WorkFolder:
        base = work_dir if work_dir is not None else dst.parent / f".{dst.name}.facestyle-ray"
        return cls(Path(base) / f"{dst.name}.{key}", key)

    def segment(self, chunk: Chunk, suffix: str) -> Path:
        return self.path / f"chunk_{chunk.number:04d}{suffix}"

    def receipt_path(self, chunk: Chunk) -> Path:
        return self.path / f"chunk_{chunk.number:04d}.json"

    def file(self, name: str) -> Path:
        return self.path / name

    def write_receipt(self, chunk: Chunk, segment: Path) -> None:
        receipt = {"key": self.key, **asdict(chunk), "segment": segment.name, "sha256": sha256_of(segment)}
        write_atomic_text(self.receipt_path(chunk), json.dumps(receipt, indent=1))

    def valid_receipt(self, chunk: Chunk, segment: Path) -> bool:
        try:
            receipt = json.loads(self.receipt_path(chunk).read_text())
        except (OSError, ValueError):
            return False
        expect = {"key": self.key, **json.loads(json.dumps(asdict(chunk))), "segment": segment.name}
        if any(receipt.get(k) != v for k, v in expect.items()):
            log.info("%s: receipt does not match this job; rendering the chunk again", self.receipt_path(chunk))
            return False
        try:
            return segment.is_file() and sha256_of(segment) == receipt.get("sha256")
        except OSError:
            return False


def write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
