"""What every video writer shares (:class:`pipeline.stages.video_out.VideoWriter` through PyAV and
:class:`pipeline.media.ffmpeg_out.FFmpegWriter` through a system ffmpeg): the destination check,
the encoded size, the output timeline and the context-manager life cycle."""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipeline.media.atomic import check_destination
from pipeline.media.codecs import CODECS, COLOR_RANGE_LIMITED, COLORSPACE_BT709
from pipeline.media.media_info import VideoInfo
from pipeline.media.timeline import Timeline

log = logging.getLogger(__name__)


class WriterBase:
    """Base of the video writers; subclasses implement ``open``, ``close`` (-> the written path) and
    ``abort`` (nothing left behind).

    Args:
        dst: output path; its extension picks the container.
        cfg: a ``VideoOutConfig``.
        like: the source's :class:`VideoInfo` (time base, frame rate, creation time).
        audio_from: file whose audio (and subtitles) to carry over; None for none.
        size: (w, h) of the pixels you will write; default the source's display size.
        start/end: the trim used when reading (seconds); timestamps shift by ``start``.

    Raises:
        OutputError: ``dst`` exists without ``overwrite``, or its folder is missing.
    """

    def __init__(self, dst: str | os.PathLike, cfg: Any, like: VideoInfo,
                 audio_from: str | os.PathLike | None = None, size: tuple[int, int] | None = None,
                 *, start: float | None = None, end: float | None = None) -> None:
        self.dst = check_destination(dst, cfg.overwrite)
        self.cfg, self.like = cfg, like
        self.audio_from = Path(audio_from) if audio_from is not None and cfg.keep_audio else None
        self.notes: list[str] = []  # repairs of damaged audio/subtitles (see remux.Passthrough.notes)
        self.size = size or (like.width, like.height)
        w, h = self.size
        if CODECS[cfg.codec].even_size and cfg.pixel_format != "gray":
            w, h = w - w % 2, h - h % 2
        self.frame_size = (w, h)  # what is encoded
        if self.frame_size != self.size:
            log.warning("%s: %s cannot encode %dx%d in %s; cropping to %dx%d", self.dst, cfg.codec,
                        *self.size, cfg.pixel_format, *self.frame_size)
        self.time_base: Fraction = like.time_base
        self._timeline = Timeline(like, start, end, label=self.dst)
        self._tmp: Path | None = None
        self._done = False
        self.frames_written = 0

    @property
    def frames_dropped(self) -> int:
        """Frames not written because they lie outside the trim window."""
        return self._timeline.dropped

    def __enter__(self) -> WriterBase:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def rgb_frame(self, pixels: np.ndarray, pts: int,
                  time_base: Fraction | None = None) -> tuple[av.VideoFrame, int] | None:
        """``pixels`` [H, W, 3] uint8 RGB of ``size`` as a frame of ``frame_size`` and its output pts;
        None when the timeline drops it (outside the trim).

        Raises:
            ValueError: pixels of another shape or dtype.
        """
        w, h = self.size
        if pixels.shape != (h, w, 3) or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels of shape {(h, w, 3)}, got {pixels.dtype} {pixels.shape}")
        out_pts = self._timeline.place(pts, time_base)
        if out_pts is None:
            return None
        fw, fh = self.frame_size
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[:fh, :fw]), format="rgb24"), out_pts

    def yuv_frame(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, pts: int,
                  time_base: Fraction | None = None) -> tuple[av.VideoFrame, int] | None:
        """BT.709 limited-range 4:2:0 planes (uint8 ``y`` [H, W], ``u``/``v`` [ceil(H/2), ceil(W/2)],
        (W, H) = ``frame_size``) as a tagged yuv420p frame and its output pts; None when dropped.

        Raises:
            ValueError: a plane of another shape or dtype.
        """
        w, h = self.frame_size
        cw, ch = (w + 1) // 2, (h + 1) // 2
        for name, plane, shape in (("y", y, (h, w)), ("u", u, (ch, cw)), ("v", v, (ch, cw))):
            if plane.shape != shape or plane.dtype != np.uint8:
                raise ValueError(f"expected uint8 {name} plane of shape {shape}, got {plane.dtype} {plane.shape}")
        out_pts = self._timeline.place(pts, time_base)
        if out_pts is None:
            return None
        frame = av.VideoFrame(w, h, "yuv420p")
        for dst_plane, src in zip(frame.planes, (y, u, v), strict=True):
            rows = np.frombuffer(dst_plane, np.uint8).reshape(-1, dst_plane.line_size)
            rows[: src.shape[0], : src.shape[1]] = src
        frame.colorspace, frame.color_range = COLORSPACE_BT709, COLOR_RANGE_LIMITED
        return frame, out_pts

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError
