"""remux: carry the audio and subtitle streams of a file into an output, cut to the written video.

:class:`Passthrough` is driven by the video writer: after each video frame it is ``pump``\\ ed up
to that frame's time, so audio and video packets interleave in the file, and ``finish`` ends it at
the end of the last frame.

Decisions:
- Streams are remuxed without re-encoding when the output container accepts their codec;
  otherwise audio is re-encoded (AAC, or Opus for WebM) and subtitles are dropped with a warning.
- Cutting: packets are kept from ``origin`` to the end of the written video (or ``end``), to the
  packet, so audio and video lengths agree within one audio frame. Containers that allow negative
  timestamps (mp4/mov) keep the one audio packet that starts before the cut as decoder preroll;
  re-encoded audio is cut to the sample.
- Times are source seconds; ``origin`` (the trim start) is written at t=0.
- Damage is never copied (:mod:`pipeline.media.audio_repair`): audio with undecodable packets is
  re-encoded with silence in their place, damaged subtitle packets are dropped; ``notes`` says so.
- Packets reach the file through the ``mux`` callable the writer passes in, the same one its
  video packets take.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av

from pipeline.media.audio_repair import CleanAudio, scan
from pipeline.media.media_info import av_reason, open_input

__all__ = ["Mux", "Passthrough", "close_quietly", "mux"]

log = logging.getLogger(__name__)

Mux = Callable[[av.container.OutputContainer, av.Packet | list[av.Packet]], None]  # how packets reach the file


def mux(out: av.container.OutputContainer, packets: av.Packet | list[av.Packet]) -> None:
    """Write packets to ``out`` (the default ``mux`` of :class:`Passthrough`)."""
    out.mux(packets)


def close_quietly(container: av.container.Container) -> None:
    """Close a container that is being discarded, ignoring (and logging) errors."""
    try:
        container.close()
    except (av.error.FFmpegError, OSError, ValueError) as err:
        log.debug("ignoring error while discarding output: %s", av_reason(err))


class Passthrough:
    """The audio and subtitle streams of a file, remuxed (or re-encoded) into an output and cut to
    the written video.

    Args:
        out: the output container, before ``start_encoding`` (streams are added to it here).
        src: the file to take audio and subtitles from.
        origin: source seconds written at t=0 (the trim start).
        end: source seconds where the output ends, if known now (the trim end); None otherwise.
        mux: how packets reach the file.

    Raises:
        InputError: ``src`` cannot be opened.
    """

    def __init__(self, out: av.container.OutputContainer, src: Path, origin: float,
                 end: float | None, *, mux: Mux = mux) -> None:
        self.src = open_input(src)
        self.origin, self.end = origin, end
        self.routes: dict[int, _Route] = {}
        accepted = out.supported_codecs
        # mp4/mov keep a packet that starts before the cut (decoder preroll, hidden by an edit
        # list); Matroska would shift every stream to make its negative timestamp non-negative.
        preroll = bool(out.format.flags & av.format.Flags.ts_negative.value)
        carried = [s for s in list(self.src.streams.audio) + list(self.src.streams.subtitles) if s.codec_context]
        damage = scan(src, [s.index for s in carried], origin, end)
        self.notes: list[str] = []  # one line per stream repaired because its source was damaged
        for stream in carried:
            name = stream.codec_context.name
            hurt = damage.get(stream.index)
            if (not accepted or name in accepted) and not (hurt and stream.type == "audio"):
                copy = out.add_stream_from_template(stream)
                self.routes[stream.index] = _Route(stream, copy, origin, mux, preroll=preroll,
                                                   drop=hurt.bad_pts if hurt else ())
                if hurt:
                    self._note(src, f"{hurt.bad} damaged {name} subtitle packets dropped (stream {stream.index})")
            elif stream.type == "audio":
                if hurt:
                    codec = name if name in (accepted or [name]) and _can_encode(name) else \
                        next((c for c in ("aac", "libopus") if c in accepted), out.default_audio_codec)
                    self._note(src, f"audio re-encoded to {codec} instead of copied: {hurt.bad} of {hurt.packets} "
                                    f"packets undecodable, silence in their place ({hurt.first_error})")
                else:
                    codec = next((c for c in ("aac", "libopus") if c in accepted), out.default_audio_codec)
                    log.info("%s: %s audio does not fit this container; re-encoding to %s", src, name, codec)
                self.routes[stream.index] = _Route(stream, _audio_encoder(out, stream, codec), origin, mux,
                                                   preroll=True, encode=True)
            else:
                log.warning("%s: dropping %s subtitles (the output container cannot hold them)", src, name)
        self.packets = None
        self.pending: av.Packet | None = None
        if self.routes:
            if origin > 0:
                try:
                    self.src.seek(int(origin * av.time_base), backward=True)
                except av.error.FFmpegError as err:
                    log.debug("audio seek failed (%s); reading from the start", av_reason(err))
            streams = [s for s in self.src.streams if s.index in self.routes]
            self.packets = self.src.demux(*streams)

    def _note(self, src: Path, note: str) -> None:
        log.info("%s: damaged input: %s", src, note)  # the result carries it to the user
        self.notes.append(note)

    def pump(self, until: float, limit: float | None = None) -> None:
        """Mux packets that start before ``until``; skip those before ``origin``."""
        limit = self.end if limit is None else limit
        while self.packets is not None:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self.packets = None
                break
            if packet.pts is None or packet.size == 0:
                continue
            start = float(packet.pts * packet.time_base)
            if start >= until:
                self.pending = packet
                break
            if limit is not None and start >= limit:
                continue
            self.routes[packet.stream.index].send(packet, start, limit)

    def finish(self, end: float) -> None:
        """Mux everything that starts before ``end``, then flush re-encoders."""
        self.pump(end, limit=end)
        for route in self.routes.values():
            route.flush(end)

    def close(self) -> None:
        """Close the source file. Idempotent."""
        self.packets = None
        close_quietly(self.src)


class _Route:
    """One source stream into one output stream: remuxed packets (less those in ``drop``, by pts),
    or decoded and re-encoded by :class:`~pipeline.media.audio_repair.CleanAudio`."""

    def __init__(self, src: av.stream.Stream, dst: av.stream.Stream, origin: float, mux: Mux, *,
                 preroll: bool, encode: bool = False, drop: Iterable[int] = ()) -> None:
        self.src, self.dst, self.origin, self.mux = src, dst, origin, mux
        self.preroll = preroll and src.type == "audio"
        self.clean = CleanAudio(src, dst, origin) if encode else None
        self.drop = set(drop)

    def send(self, packet: av.Packet, start: float, limit: float | None) -> None:
        duration = float((packet.duration or 0) * packet.time_base)
        if not self.preroll and start < self.origin - 1e-9:
            return
        if start + 2 * duration <= self.origin + 1e-9:
            return  # before the trim; the one packet just before it is kept as decoder preroll
        if self.clean is not None:
            self.mux(self.dst.container, list(self.clean.send(packet, limit)))
            return
        if packet.pts in self.drop:
            return
        shift = round(Fraction(self.origin) / packet.time_base)
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self.dst
        self.mux(self.dst.container, packet)

    def flush(self, limit: float | None) -> None:
        if self.clean is not None:
            self.mux(self.dst.container, list(self.clean.flush(limit)))


def _audio_encoder(out: av.container.OutputContainer, src: av.audio.stream.AudioStream,
                   codec: str) -> av.audio.stream.AudioStream:
    rate = src.codec_context.sample_rate or 48000
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    stream = out.add_stream(codec, rate=rate)
    stream.layout = _layout_name(src.codec_context.layout)
    return stream


def _can_encode(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _layout_name(layout: av.AudioLayout | None) -> str:
    """A named channel layout encoders accept ("1 channels" from raw PCM is not one)."""
    if layout is None:
        return "stereo"
    if not layout.name.endswith("channels"):
        return layout.name
    return _DEFAULT_LAYOUTS.get(len(layout.channels), "stereo")
