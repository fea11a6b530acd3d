"""Stitching: the segments of a clip, remuxed in order into one file without re-encoding.

Each segment was encoded by :func:`pipeline.stages.video_out.write` with the job's settings and the
plain run's timestamps (source pts shifted by ``--start``), so its packets go into the final file
unchanged; only the last frame of each segment gets its real duration back (up to the next
segment's first frame; the encoder of a segment could not know it). The audio (and subtitles) of the
source are carried over once by :class:`pipeline.media.remux.Passthrough`, cut where the plain run
cuts them, and the file appears atomically (:mod:`pipeline.media.atomic`). A damaged audio or
subtitle stream is repaired as the plain run repairs it, and the same notes say so.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import av

from pipeline.errors import OutputError
from pipeline.media.atomic import check_destination, commit, output_error, reserve_temp
from pipeline.media.media_info import VideoInfo, av_reason
from pipeline.media.remux import Passthrough, close_quietly, mux
from pipeline.media.timeline import Timeline
from pipeline.stages.video_out import VideoOutConfig

log = logging.getLogger(__name__)


def end_of_video(info: VideoInfo, pts: Sequence[int], start: float | None, end: float | None) -> float:
    """Source seconds where the plain run's video ends (and its audio is cut): the end of the last
    written frame, as :class:`~pipeline.media.timeline.Timeline` computes it for frames ``pts``."""
    timeline = Timeline(info, start, end)
    for p in pts:
        timeline.place(p)
    return timeline.end_seconds()


def stitch(segments: Sequence[Path], dst: Path, info: VideoInfo, cfg: VideoOutConfig, *,
           audio_from: Path | None, start: float | None, end: float | None, video_end: float,
           notes: list[str] | None = None) -> Path:
    """Remux ``segments`` (in order) into ``dst`` with the audio of ``audio_from``; see the module docstring.

    ``video_end``: source seconds where the video ends (:func:`end_of_video`). ``notes``, when given,
    gets one line per stream repaired because the source was damaged (as
    :func:`pipeline.stages.video_out.write`'s ``notes``).

    Raises:
        OutputError: no segments, or the file cannot be written.
    """
    if not segments:
        raise OutputError(f"{dst}: nothing to write (no frames)")
    target = _into_place(dst, cfg.overwrite, lambda tmp: _remux(segments, tmp, info, cfg, audio_from, start, end,
                                                                video_end, [] if notes is None else notes))
    log.info("stitched %d segments into %s", len(segments), target)
    return target


def publish(done: Path, dst: Path, overwrite: bool) -> Path:
    """Move a finished file (a clip converted whole in the job folder) to ``dst`` atomically, copied
    when the job folder is on another file system.

    Raises:
        OutputError: ``dst`` appeared meanwhile (without ``overwrite``), or it cannot be written.
    """
    def move(tmp: Path) -> None:
        try:
            os.replace(done, tmp)
        except OSError:
            shutil.copyfile(done, tmp)

    return _into_place(dst, overwrite, move)


def _into_place(dst: Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a partial file beside ``dst``, then rename it to ``dst`` (see
    :mod:`pipeline.media.atomic`); on any failure the partial file is removed."""
    target = check_destination(dst, overwrite)
    tmp = reserve_temp(target)
    try:
        write(tmp)
        commit(tmp, target, overwrite)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        mapped = output_error(err, target) if not isinstance(err, OutputError) else None
        if mapped is not None:
            raise mapped from err
        raise
    return target


def _first_pts(path: Path) -> int:
    with av.open(str(path)) as c:
        for packet in c.demux(c.streams.video[0]):
            if packet.pts is not None and packet.size:
                return packet.pts
    raise OutputError(f"{path}: segment has no video")


def _remux(segments: Sequence[Path], tmp: Path, info: VideoInfo, cfg: VideoOutConfig, audio_from: Path | None,
           start: float | None, end: float | None, video_end: float, notes: list[str]) -> None:
    options = {"movflags": "+faststart"} if tmp.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
    firsts = [_first_pts(s) for s in segments[1:]]
    timeline = Timeline(info, start, end)
    out = av.open(str(tmp), "w", container_options=options)
    passthrough = None
    try:
        with av.open(str(segments[0])) as first:
            template = first.streams.video[0]
            video = out.add_stream_from_template(template)
            video.time_base = template.time_base
        if info.creation_time:
            out.metadata["creation_time"] = info.creation_time
        if audio_from is not None and cfg.keep_audio:
            passthrough = Passthrough(out, audio_from, timeline.origin_s, timeline.end_s, mux=mux)
            notes.extend(passthrough.notes)
        out.start_encoding()
        for i, seg in enumerate(segments):
            with av.open(str(seg)) as src:
                stream = src.streams.video[0]
                packets = [p for p in src.demux(stream) if p.size and p.pts is not None]
                if not packets:
                    raise OutputError(f"{seg}: segment has no video")
                last = max(packets, key=lambda p: p.pts)
                if i + 1 < len(segments):
                    last.duration = firsts[i] - last.pts       # up to the next segment's first frame
                for packet in packets:
                    if passthrough is not None:
                        passthrough.pump(timeline.origin_s + float(packet.pts * packet.time_base))
                    packet.stream = video
                    mux(out, packet)
        if passthrough is not None:
            passthrough.finish(video_end)
        out.close()
    except av.error.FFmpegError as err:
        close_quietly(out)
        raise OutputError(f"{tmp}: cannot join the segments ({av_reason(err)})") from err
    except BaseException:
        close_quietly(out)
        raise
    finally:
        if passthrough is not None:
            passthrough.close()
