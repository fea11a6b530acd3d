"""timeline: where each written frame lands in the output video, and how long it lasts.

Decisions:
- Frames keep their source pts, shifted by ``start`` when trimming (source time ``start``
  becomes 0, so the first frame may begin a fraction of a frame later and audio stays in sync).
- The output time base is the source's, so variable frame rate stays variable (muxers with a
  fixed clock, e.g. Matroska's 1 ms, round it).
- Frames outside the trim window are dropped; a timestamp that is not after the previous one is
  moved one tick forward (with one warning), so output timestamps strictly increase.
- Each frame lasts until the next one; the last one as long as the one before it, but not past
  ``end``. Encoders reorder frames and lose durations, so :meth:`Timeline.timed` puts them back
  on the packets.
"""
from __future__ import annotations

import logging
from fractions import Fraction

import av

from pipeline.media.media_info import VideoInfo

__all__ = ["Timeline"]

log = logging.getLogger(__name__)


class Timeline:
    """Source timestamps -> output timestamps of one written video stream.

    Args:
        like: the source's :class:`VideoInfo` (time base, start time, frame rate).
        start/end: the trim used when reading (seconds from the start of the clip), or None.
        label: what log messages name (the destination).

    Attributes:
        time_base: of the source and of the output.
        origin_s: source seconds written at t=0.
        end_s: source seconds where the output must end (the trim end), or None.
        last_pts: output pts of the latest frame placed, or None.
        dropped: frames dropped because they lie outside the trim window.
    """

    def __init__(self, like: VideoInfo, start: float | None = None, end: float | None = None,
                 label: object = "") -> None:
        self.time_base: Fraction = like.time_base
        self.origin_s = like.start_time + (start or 0.0)
        self._origin_pts = round(Fraction(self.origin_s) / self.time_base)
        self.end_s = like.start_time + end if end is not None else None
        self._nominal_step = max(1, round(1 / (like.fps * like.time_base))) if like.fps else 1
        self._label = label
        self.last_pts: int | None = None
        self._step: int | None = None
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder
        self._reordered = False  # warned about a non-increasing timestamp already
        self.dropped = 0

    def place(self, pts: int, time_base: Fraction | None = None) -> int | None:
        """Source ``pts`` (in ``time_base``, default the source's) -> output pts, shifted by start
        and strictly increasing; None drops the frame (outside the trim window)."""
        if time_base is not None and time_base != self.time_base:
            pts = round(pts * Fraction(time_base) / self.time_base)
        out = pts - self._origin_pts
        seconds = float(out * self.time_base)
        if out < 0 or (self.end_s is not None and self.origin_s + seconds >= self.end_s - 1e-6):
            self.dropped += 1
            log.debug("%s: dropping a frame at %.3fs outside the trim range", self._label, seconds)
            return None
        if self.last_pts is not None and out <= self.last_pts:
            level = logging.DEBUG if self._reordered else logging.WARNING
            log.log(level, "%s: timestamp %d is not after %d; moved forward", self._label, out, self.last_pts)
            self._reordered = True
            out = self.last_pts + 1
        if self.last_pts is not None:
            self._step = out - self.last_pts
        self.last_pts = out
        return out

    def last_duration(self) -> int:
        """The last frame lasts as long as the one before it, but not past ``end``."""
        step = self._step or self._nominal_step
        if self.end_s is not None:
            room = round(Fraction(self.end_s - self.origin_s) / self.time_base) - self.last_pts
            step = max(1, min(step, room))
        return step

    def source_seconds(self, pts: int) -> float:
        """Output ``pts`` -> source seconds (where the audio for it is)."""
        return self.origin_s + float(pts * self.time_base)

    def end_seconds(self) -> float:
        """Source seconds where the written video ends: the end of the last frame placed."""
        return self.source_seconds(self.last_pts + self.last_duration())

    def hold(self, pts: int, duration: int) -> None:
        """Remember the duration of the frame at ``pts`` while it is inside the encoder."""
        self._durations[pts] = duration

    def timed(self, packets: list[av.Packet]) -> list[av.Packet]:
        """Give packets their frame's duration (encoders reorder frames and lose it)."""
        for packet in packets:
            packet.duration = self._durations.pop(packet.pts, packet.duration)
        return packets
