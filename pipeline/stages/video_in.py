"""video_in: decode a clip (or read a photo) into upright RGB frames, streaming.

``read(path, cfg)`` returns a :class:`FrameReader`: an iterator of :class:`Frame` that also
carries ``info`` (the :class:`VideoInfo` from ``probe``) and ``report`` (a :class:`DecodeReport`
of damage found while decoding). Decoding runs in its own thread on first ``next()`` and feeds a
bounded queue, so at most ``queue_size`` decoded frames wait in memory however long the clip is.
Errors raised in that thread are re-raised by ``next()`` in the caller. ``close()`` stops and
joins the thread; it runs at the end of the stream, on leaving ``with``, when a stage that did
``yield from reader`` is closed, and when the reader is garbage collected, so a consumer may stop
early without leaving anything running.

Damaged input: packets the decoder rejects are skipped and counted, frames FFmpeg flags as
corrupt are yielded and counted, and a demuxer error mid-file ends the stream early with
``report.truncated`` set. Nothing is raised for those; read ``report`` after iterating (a warning
is logged at the end when ``report.ok`` is false).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import InputError, UsageError
from pipeline.media.codecs import COLORSPACE_UNSPECIFIED
from pipeline.media.media_info import (
    VideoInfo,
    av_open,
    av_reason,
    demux_until_broken,
    is_image_path,
    open_input,
    orientation_of,
    probe,
    read_image,
    video_stream,
)
from pipeline.records import Frame
from pipeline.runtime.queues import POLL_S, drain, put_until

__all__ = ["DecodeReport", "Frame", "FrameReader", "VideoInConfig", "VideoInfo", "probe", "read"]

log = logging.getLogger(__name__)

_KEEP_ERRORS = 5  # decode error messages kept in the report


@dataclass(frozen=True)
class VideoInConfig:
    """Decoding options.

    start/end: seconds from the start of the clip; frames with ``start <= time < end`` are read
        (the decoder seeks to the key frame before ``start`` and drops frames before it).
    threads: decoder threads (0 = FFmpeg picks); frame and slice threading ("AUTO").
    queue_size: decoded frames that may wait for the consumer (the memory bound).
    hwaccel: an FFmpeg hardware device type ("cuda", "vaapi", ...) or None for software; when
        it cannot start, decoding falls back to software with a warning.

    Raises:
        UsageError: a negative start, or end not after start.
    """

    start: float | None = None
    end: float | None = None
    threads: int = 0
    queue_size: int = 4
    hwaccel: str | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.start < 0:
            raise UsageError(f"start must be >= 0 seconds, got {self.start}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise UsageError(f"end ({self.end}s) must be after start ({self.start}s)")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")


@dataclass
class DecodeReport:
    """What went wrong while decoding; filled by the decode thread, final after iteration."""

    path: Path
    frames: int = 0  # frames handed to the consumer
    damaged_packets: int = 0  # packets the decoder rejected (their frames are lost)
    corrupt_frames: int = 0  # frames FFmpeg flagged as corrupt (yielded anyway)
    missing_frames: int = 0  # packets the decoder accepted but returned no picture for
    truncated: bool = False  # the stream ends early (demuxer error, or short of the header's duration)
    errors: list[str] = field(default_factory=list)  # the first few error messages

    @property
    def ok(self) -> bool:
        return not (self.damaged_packets or self.corrupt_frames or self.missing_frames or self.truncated)

    def summary(self) -> str:
        """One line for logs and the user."""
        if self.ok:
            return f"{self.path}: {self.frames} frames, no damage"
        parts = []
        if self.damaged_packets:
            parts.append(f"{self.damaged_packets} damaged packets skipped")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} corrupt frames kept")
        if self.missing_frames:
            parts.append(f"{self.missing_frames} frames lost in decoding")
        if self.truncated:
            parts.append("stream ends early (truncated)")
        first = f"; first problem: {self.errors[0]}" if self.errors else ""
        return f"{self.path}: {self.frames} frames read, {', '.join(parts)}{first}"

    def _note(self, message: str) -> None:
        if len(self.errors) < _KEEP_ERRORS:
            self.errors.append(message)


class _End:
    """Queue item: the decode thread finished normally."""


@dataclass
class _Failed:
    """Queue item: the decode thread raised."""

    error: BaseException


def read(path: str | os.PathLike, cfg: VideoInConfig | None = None) -> FrameReader:
    """Stream the frames of a clip, or the single frame of a photo.

    Raises (here, before any decoding):
        InputError: the file is missing, empty, not a video/image, or has no video stream.
    Raises (from ``next()``):
        InputError: the file became unreadable after probing.
    """
    return FrameReader(path, cfg or VideoInConfig())


class FrameReader(Iterator[Frame]):
    """Iterator of :class:`Frame` backed by a decode thread; see the module docstring."""

    def __init__(self, path: str | os.PathLike, cfg: VideoInConfig) -> None:
        self.info: VideoInfo = probe(path)
        self.cfg = cfg
        if cfg.start and self.info.duration is not None and cfg.start >= self.info.duration:
            raise InputError(f"{self.info.path}: start {cfg.start:g}s is past the end of the clip "
                             f"({self.info.duration:.3f}s)")
        self.report = DecodeReport(self.info.path)
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        if self._thread is None:
            self._start()
        while True:  # a consumer in another thread (face finding runs ahead) must wake on close()
            try:
                item = self._queue.get(timeout=POLL_S)
                break
            except queue.Empty:
                if self._stop.is_set():
                    raise StopIteration from None
        if isinstance(item, Frame):
            return item
        self.close()
        if isinstance(item, _Failed):
            raise item.error
        if not self.report.ok:
            log.warning("%s", self.report.summary())
        raise StopIteration

    def _start(self) -> None:
        # The thread gets no reference to self, so dropping the reader lets __del__ stop it.
        args = (self.info, self.cfg, self.report, self._queue, self._stop)
        self._thread = threading.Thread(target=_decode_thread, args=args, daemon=True,
                                        name=f"video_in:{self.info.path.name}")
        self._thread.start()

    def close(self) -> None:
        """Stop the decode thread (if running) and drop queued frames. Idempotent."""
        self._done = True
        self._stop.set()
        thread, self._thread = self._thread, None
        while thread is not None and thread.is_alive():
            drain(self._queue)
            thread.join(timeout=POLL_S)
        drain(self._queue)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_thread", None) is not None:
            self.close()


def _decode_thread(info: VideoInfo, cfg: VideoInConfig, report: DecodeReport,
                   q: queue.Queue, stop: threading.Event) -> None:
    source = _image_frames(info) if is_image_path(info.path) else _video_frames(info, cfg, report)
    try:
        for frame in source:
            if not put_until(q, frame, stop.is_set):  # False: the reader was closed
                return
            report.frames += 1
        put_until(q, _End(), stop.is_set)
    except BaseException as err:  # handed to the consumer, which re-raises it
        put_until(q, _Failed(err), stop.is_set)
    finally:
        source.close()  # closes the container now, also when stopped early


def _image_frames(info: VideoInfo) -> Iterator[Frame]:
    yield Frame(index=0, pts=0, time=0.0, pixels=read_image(info.path))


def _open_decoder(info: VideoInfo, cfg: VideoInConfig) -> av.container.InputContainer:
    """Open for decoding; a hardware decoder that cannot start falls back to software."""
    if cfg.hwaccel:
        if cfg.hwaccel in av.codec.hwaccel.hwdevices_available():
            accel = av.codec.hwaccel.HWAccel(cfg.hwaccel, allow_software_fallback=True)
            try:
                return av_open(info.path, hwaccel=accel)
            except av.error.FFmpegError as err:
                log.warning("hwaccel %r failed (%s); decoding in software", cfg.hwaccel, av_reason(err))
        else:
            log.warning("hwaccel %r is not available here; decoding in software", cfg.hwaccel)
    return open_input(info.path)


def _video_frames(info: VideoInfo, cfg: VideoInConfig, report: DecodeReport) -> Iterator[Frame]:
    with _open_decoder(info, cfg) as container:
        stream = video_stream(container, info.path)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = cfg.threads
        tb = stream.time_base or info.time_base
        origin = stream.start_time or 0  # clip time 0, in tb
        if cfg.start:
            _seek(container, stream, origin + int(Fraction(cfg.start) / tb))
        # Untagged HD is BT.709 in practice; swscale would assume BT.601.
        src_cs = "ITU709" if info.height >= 720 or info.width >= 1280 else None
        index, last_pts, step = 0, None, _frame_step(info, tb)
        t = None
        for av_frame in _decoded(container, stream, report):
            pts = av_frame.pts
            if pts is None:  # no timestamp from the container: continue the cadence
                pts = origin if last_pts is None else last_pts + step
            last_pts = pts
            t = float((pts - origin) * tb)
            if cfg.start is not None and t < cfg.start - 1e-6:
                continue
            if cfg.end is not None and t >= cfg.end - 1e-6:
                return
            if av_frame.is_corrupt:
                report.corrupt_frames += 1
            yield Frame(index=index, pts=pts, time=t, pixels=_upright_rgb(av_frame, stream, src_cs))
            index += 1
        _check_length(info, t, report)


def _check_length(info: VideoInfo, last_time: float | None, report: DecodeReport) -> None:
    """Flag a stream that stops well short of the duration its header announces."""
    if info.duration is None or last_time is None or report.truncated:
        return
    interval = 1 / float(info.fps) if info.fps else 0.04
    shortfall = info.duration - (last_time + interval)
    if shortfall > max(2 * interval, 0.1):
        report.truncated = True
        report._note(f"frames stop at {last_time + interval:.3f}s, header says {info.duration:.3f}s")


def _frame_step(info: VideoInfo, tb: Fraction) -> int:
    return max(1, round(1 / (info.fps * tb))) if info.fps else 1


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
          target: int) -> None:
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError as err:  # unseekable: decode from the start and drop
        log.debug("seek failed (%s); decoding from the start", av_reason(err))


def _decoded(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
             report: DecodeReport) -> Iterator[av.VideoFrame]:
    """Decoded frames; bad packets are counted and skipped, a broken demux ends the stream."""
    def broken(err: av.error.FFmpegError) -> None:
        report.truncated = True
        report._note(f"demux: {av_reason(err)}")
        log.warning("%s: stream unreadable after this point (%s)", report.path, av_reason(err))

    sent = produced = 0
    for packet in demux_until_broken(container, stream, on_error=broken):
        try:
            frames = stream.decode(packet)
        except av.error.FFmpegError as err:
            report.damaged_packets += 1
            report._note(f"packet at pts {packet.pts}: {av_reason(err)}")
            log.debug("%s: skipping undecodable packet at pts %s", report.path, packet.pts)
            continue
        sent += packet.size > 0
        produced += len(frames)
        yield from frames
    if report.truncated:  # the flush packet never came: drain the decoder here
        try:
            frames = stream.decode(None)
        except av.error.FFmpegError as err:
            report._note(f"flush: {av_reason(err)}")
            frames = []
        produced += len(frames)
        yield from frames
    report.missing_frames += max(0, sent - produced)


def _upright_rgb(frame: av.VideoFrame, stream: av.video.stream.VideoStream,
                 src_colorspace: str | None) -> np.ndarray:
    """[H, W, 3] uint8 RGB, display matrix applied; any bit depth and chroma layout."""
    cs = src_colorspace if frame.colorspace == COLORSPACE_UNSPECIFIED else None
    rgb = frame.to_ndarray(format="rgb24", src_colorspace=cs) if cs else frame.to_ndarray(format="rgb24")
    turn = orientation_of(frame, stream)
    return np.ascontiguousarray(turn.apply(rgb))  # [H, W, 3]
