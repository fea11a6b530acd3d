"""audio_repair: find damage in the streams :mod:`pipeline.media.remux` carries over, and re-encode
damaged audio so that the written file decodes cleanly.

A packet copied as it is carries its damage into the output: an editor that imports the file then
meets the same decode errors as the source had. So, before the output's streams are set up,
:func:`scan` decodes every audio and subtitle packet in the range that will be written (audio decodes
at hundreds of times real time; this is small next to the video work of a conversion). Then:

- audio with damaged packets is re-encoded by :class:`CleanAudio` instead of copied: undecodable
  packets are skipped and their time is filled with silence, so the audio stays in sync with the
  video; frames that decode in an odd format (damage can change the channel count) are converted;
- damaged subtitle packets are dropped one by one (each subtitle stands alone); the rest are copied;
- every repair is reported in one line (``notes``), which reaches the user's warning and the JSON
  result through ``ConvertResult.damage`` and ``ConvertResult.repairs``.

Data streams (timecode, GPS...) are never carried over, damaged or not.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.media.media_info import av_reason, demux_until_broken

__all__ = ["CleanAudio", "StreamDamage", "scan"]

log = logging.getLogger(__name__)

_SILENCE_BLOCK_S = 1.0  # silence is handed to the encoder in blocks of at most this length


@dataclass
class StreamDamage:
    """What :func:`scan` found in one stream."""

    index: int
    kind: str  # "audio" or "subtitle"
    packets: int = 0  # packets decoded
    bad_pts: set[int] = field(default_factory=set)  # pts of the packets the decoder rejected
    first_error: str | None = None

    @property
    def bad(self) -> int:
        return len(self.bad_pts)


def scan(path: Path, streams: Iterable[int], origin: float = 0.0, end: float | None = None) -> dict[int, StreamDamage]:
    """Decode every packet of the given audio and subtitle streams between ``origin`` and ``end``
    (source seconds) and note the ones the decoder rejects.

    A file whose demuxing breaks off (truncated) is scanned up to the break; the packets after it
    are never carried either. Returns only the streams with damage, by stream index.
    """
    found: dict[int, StreamDamage] = {}
    try:
        src = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:     # remux opened it a moment ago; note and go on
        log.debug("%s: cannot scan for damage (%s)", path, av_reason(err))
        return {}
    try:
        chosen = [s for s in src.streams if s.index in set(streams) and s.type in ("audio", "subtitle")]
        if not chosen:
            return {}
        reports = {s.index: StreamDamage(s.index, s.type) for s in chosen}
        if origin > 0:
            try:
                src.seek(int(origin * av.time_base), backward=True)
            except av.error.FFmpegError:
                pass
        past_end: set[int] = set()
        for packet in demux_until_broken(src, *chosen):   # truncated: nothing after the break is carried
            if packet.size == 0 or packet.pts is None:
                continue
            if end is not None and packet.pts * packet.time_base > end:
                past_end.add(packet.stream.index)
                if len(past_end) == len(chosen):     # every stream is past the trim: stop reading
                    break
                continue
            report = reports[packet.stream.index]
            report.packets += 1
            try:
                frames = packet.stream.decode(packet)
                corrupt = any(getattr(f, "is_corrupt", False) for f in frames)
            except av.error.FFmpegError as err:
                corrupt = True
                report.first_error = report.first_error or f"packet at {float(packet.pts * packet.time_base):.3f}s: " \
                                                           f"{av_reason(err)}"
            if corrupt:
                report.bad_pts.add(packet.pts)
        found = {i: r for i, r in reports.items() if r.bad}
    finally:
        src.close()
    for r in found.values():
        log.debug("%s: stream %d (%s): %d of %d packets damaged", path, r.index, r.kind, r.bad, r.packets)
    return found


class CleanAudio:
    """Decode one audio stream and re-encode it without gaps or damage.

    Output samples are counted from ``origin`` (output t=0). Each decoded frame is placed at its own
    timestamp: a gap before it (skipped packets, or a hole in the source) is filled with silence, an
    overlap is cut off, and samples before ``origin`` or from ``limit`` on are dropped exactly. The
    encoder always gets one continuous run of samples in its own format, layout and rate.

    Args:
        src: the source audio stream (decoded here).
        dst: the output audio stream (an encoder, added to the output before ``start_encoding``).
        origin: source seconds written at t=0.
    """

    def __init__(self, src: av.audio.stream.AudioStream, dst: av.audio.stream.AudioStream, origin: float) -> None:
        self.src, self.dst, self.origin = src, dst, Fraction(origin)
        ctx = dst.codec_context
        self.rate = ctx.sample_rate
        self.format, self.layout = ctx.format.name, ctx.layout.name
        self.tolerance = max(1, self.rate // 1000)         # 1 ms: timestamps rounded by the source
        self.next: int | None = None          # output sample where the next frame should start
        self.written = 0                       # samples handed to the encoder
        self.skipped = 0                       # packets that could not be decoded
        self.silence = 0                       # samples of silence put in their place
        self._resamplers: dict[tuple, av.AudioResampler] = {}

    def send(self, packet: av.Packet, limit: float | None) -> Iterator[av.Packet]:
        """Encoded packets for one source packet (none while the encoder fills its frame)."""
        if self.next is None and packet.pts is not None:      # a damaged first packet still marks the start
            self.next = max(0, self._sample_at(packet.pts * packet.time_base))
        try:
            frames = self.src.decode(packet)
        except av.error.FFmpegError as err:
            self.skipped += 1
            log.debug("skipping undecodable audio packet at pts %s (%s)", packet.pts, av_reason(err))
            return
        for frame in frames:
            yield from self._place(frame, limit)

    def flush(self, limit: float | None) -> Iterator[av.Packet]:
        """Drain the decoder and the encoder."""
        try:
            frames = self.src.decode(None)
        except av.error.FFmpegError as err:
            log.debug("audio decoder flush failed (%s)", av_reason(err))
            frames = []
        for frame in frames:
            yield from self._place(frame, limit)
        yield from self.dst.encode(None)

    def _sample_at(self, seconds: Fraction) -> int:
        return round((Fraction(seconds) - self.origin) * self.rate)

    def _place(self, frame: av.AudioFrame, limit: float | None) -> Iterator[av.Packet]:
        if getattr(frame, "is_corrupt", False):
            return
        if frame.pts is None or frame.time_base is None:
            first = self.next or 0
        else:
            first = self._sample_at(frame.pts * frame.time_base)
        samples = self._conform(frame)                      # [channels, n] in the encoder's format
        n = samples.shape[-1] // self._per_sample(samples)
        if self.next is None:
            self.next = max(0, first)
        gap = first - self.next
        if gap > self.tolerance:
            yield from self._silence(gap, limit)
        elif gap < -self.tolerance or first < 0:   # overlaps what was written, or starts before the trim
            samples = self._cut(samples, -gap, n)
            n -= min(-gap, n)
        stop = None if limit is None else self._sample_at(Fraction(limit))
        if stop is not None:
            keep = max(0, min(n, stop - self.next))
            samples = samples[:, : keep * self._per_sample(samples)]
            n = keep
        if n > 0:
            yield from self._encode(samples, n)

    def _silence(self, count: int, limit: float | None) -> Iterator[av.Packet]:
        stop = None if limit is None else self._sample_at(Fraction(limit))
        if stop is not None:
            count = min(count, stop - self.next)
        block = max(1, int(self.rate * _SILENCE_BLOCK_S))
        channels = len(av.AudioLayout(self.layout).channels)
        planar = av.AudioFormat(self.format).is_planar
        dtype = _DTYPES[av.AudioFormat(self.format).packed.name]
        fill = 128 if dtype == np.uint8 else 0
        while count > 0:
            n = min(count, block)
            shape = (channels, n) if planar else (1, n * channels)
            self.silence += n
            count -= n
            yield from self._encode(np.full(shape, fill, dtype), n)

    def _encode(self, samples: np.ndarray, n: int) -> Iterator[av.Packet]:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=self.format, layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts = self.next
        frame.time_base = Fraction(1, self.rate)
        self.next += n
        self.written += n
        yield from self.dst.encode(frame)

    def _conform(self, frame: av.AudioFrame) -> np.ndarray:
        """The frame's samples in the encoder's format, layout and rate (planar [channels, n], packed [1, n*ch])."""
        if (frame.format.name, frame.layout.name, frame.sample_rate) == (self.format, self.layout, self.rate):
            return frame.to_ndarray()
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = self._resamplers[key] = av.AudioResampler(self.format, self.layout, self.rate)
        frame.pts = None                                      # we place samples ourselves
        parts = [f.to_ndarray() for f in resampler.resample(frame)]
        if not parts:
            return np.zeros((1, 0), _DTYPES[av.AudioFormat(self.format).packed.name])
        return np.concatenate(parts, axis=1)

    def _per_sample(self, samples: np.ndarray) -> int:
        return 1 if av.AudioFormat(self.format).is_planar else len(av.AudioLayout(self.layout).channels)

    def _cut(self, samples: np.ndarray, head: int, n: int) -> np.ndarray:
        per = self._per_sample(samples)
        return samples[:, min(head, n) * per :]


_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}
