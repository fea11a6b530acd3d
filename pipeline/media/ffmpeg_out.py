"""``--encoder ffmpeg``: encode the video with a system ``ffmpeg`` process, for the encoders only that
build has (``h264_vaapi``, ``hevc_videotoolbox``...); everything else as in the PyAV route.

:class:`FFmpegWriter` has :class:`pipeline.stages.video_out.VideoWriter`'s interface:

1. frames are placed on the output timeline (:class:`~pipeline.media.timeline.Timeline`: source pts
   shifted by the trim start, strictly increasing, outside the trim dropped), converted to YUV 4:2:0
   BT.709 limited range exactly as the PyAV route converts them, and piped to ``ffmpeg`` as raw
   video in a NUT stream that carries every frame's pts (variable frame rate stays variable);
2. ``ffmpeg`` (its command built with ffmpeg-python) encodes them with timestamps passed through into
   a hidden NUT file beside the destination;
3. on ``close`` that video is muxed with PyAV into the hidden partial output together with the
   source's audio and subtitles (:class:`~pipeline.media.remux.Passthrough`, the same cut and repair
   as the PyAV route) and the creation time, and renamed into place. Frames are written upright
   (no display matrix), as in the PyAV route.

On failure or abort the ``ffmpeg`` process is stopped and both hidden files are deleted.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import ffmpeg
import numpy as np

from pipeline.errors import OutputError, UsageError
from pipeline.media.atomic import commit, output_error, reserve_temp
from pipeline.media.codecs import CODECS, COLOR_RANGE_LIMITED, COLORSPACE_BT709
from pipeline.media.media_info import VideoInfo, av_reason
from pipeline.media.remux import Passthrough, close_quietly
from pipeline.media.remux import mux as _mux
from pipeline.media.writer import WriterBase

log = logging.getLogger(__name__)

VAAPI_DEVICE = os.environ.get("FACESTYLE_VAAPI_DEVICE", "/dev/dri/renderD128")
_ENCODER_LINE = re.compile(r"^\s*V[.A-Z]{5}\s+(\S+)\s", re.MULTILINE)


def ffmpeg_path() -> str:
    """The ``ffmpeg`` on PATH. Raises UsageError when there is none."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise UsageError("--encoder ffmpeg: no ffmpeg on PATH (install FFmpeg, or use --encoder pyav)")
    return path


@functools.lru_cache(maxsize=8)
def video_encoders(path: str) -> tuple[str, ...]:
    """The video encoders of the ``ffmpeg`` at ``path`` (``ffmpeg -encoders``)."""
    proc = subprocess.run([path, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    return tuple(_ENCODER_LINE.findall(proc.stdout))


def check_encoder(encoder: str) -> list[str]:
    """Check that the system ffmpeg has ``encoder``; returns the pixel formats it takes.

    Raises:
        UsageError: no ffmpeg on PATH, or it lacks ``encoder`` (the message lists the table's
            encoders it has).
    """
    path = ffmpeg_path()
    have = video_encoders(path)
    if encoder not in have:
        ours = [name for name, c in CODECS.items() if c.encoder in have]
        raise UsageError(f"--encoder ffmpeg: {path} has no {encoder} encoder; with it you can use --codec "
                         f"{', '.join(ours) or '(none of ours)'}")
    if encoder.endswith("_vaapi"):  # it takes only GPU surfaces: these are what "format=...,hwupload" uploads
        return ["nv12", "p010le"]
    return list(_pixel_formats(path, encoder))


@functools.lru_cache(maxsize=32)
def _pixel_formats(path: str, encoder: str) -> tuple[str, ...]:
    proc = subprocess.run([path, "-hide_banner", "-h", f"encoder={encoder}"], capture_output=True, text=True,
                          timeout=60)
    match = re.search(r"Supported pixel formats:([^\n]*)", proc.stdout)
    return tuple(match.group(1).split()) if match else ()


def encode_args(codec: str, pix_fmt: str, options: dict[str, str], threads: int = 0) -> tuple[dict[str, Any], list]:
    """ffmpeg-python output keyword arguments and global arguments for ``codec`` (a CODECS name)."""
    spec = CODECS[codec]
    kwargs: dict[str, Any] = {"vcodec": spec.encoder, **options}
    glob: list[str] = []
    if spec.encoder.endswith("_vaapi"):  # frames go up to the VAAPI device in ffmpeg
        glob += ["-vaapi_device", VAAPI_DEVICE]
        kwargs["vf"] = f"format={pix_fmt},hwupload"
    else:
        kwargs["pix_fmt"] = pix_fmt
    kwargs.update(colorspace="bt709", color_range="tv")
    if threads:
        kwargs["threads"] = str(threads)
    return kwargs, glob


def command(path: str, codec: str, pix_fmt: str, options: dict[str, str], out: Path, threads: int = 0) -> list[str]:
    """The ffmpeg command: NUT raw video on stdin -> encoded NUT file ``out``, timestamps kept."""
    kwargs, glob = encode_args(codec, pix_fmt, options, threads)
    stream = ffmpeg.input("pipe:0", format="nut").output(
        str(out), format="nut", an=None, sn=None, vsync="passthrough", enc_time_base="-1",
        avoid_negative_ts="disabled", **kwargs)
    return stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error", *glob).overwrite_output().compile(
        cmd=path)


def probe_hardware(encoder: str, pix_fmt: str, options: dict[str, str]) -> str | None:
    """Encode one black 256x256 frame with the system ffmpeg; None if it worked, else ffmpeg's reason."""
    codec = next(name for name, c in CODECS.items() if c.encoder == encoder)
    kwargs, glob = encode_args(codec, pix_fmt, options)
    args = (ffmpeg.input("color=c=black:s=256x256:d=0.04", format="lavfi")
            .output("-", format="null", frames="1", **kwargs)
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error", *glob).compile(cmd=ffmpeg_path()))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[0] if lines else f"ffmpeg exited with {proc.returncode}"


class FFmpegWriter(WriterBase):
    """Encode frames to ``dst`` with a system ffmpeg; arguments, attributes and errors as
    :class:`pipeline.stages.video_out.VideoWriter` (``cfg`` is a ``VideoOutConfig``)."""

    def __init__(self, dst: str | os.PathLike, cfg: Any, like: VideoInfo,
                 audio_from: str | os.PathLike | None = None, size: tuple[int, int] | None = None,
                 *, start: float | None = None, end: float | None = None) -> None:
        super().__init__(dst, cfg, like, audio_from, size, start=start, end=end)
        self._pts: list[int] = []
        self._video: Path | None = None
        self._log: Any = None
        self._proc: subprocess.Popen | None = None
        self._pipe: Any = None
        self._raw: Any = None

    def open(self) -> None:
        """Reserve the hidden files and start ffmpeg."""
        if self._tmp is not None:
            return
        path = ffmpeg_path()
        self._tmp = reserve_temp(self.dst)
        self._video = self._tmp.with_name(self._tmp.name + ".video.nut")
        try:
            args = command(path, self.cfg.codec, self.cfg.pixel_format, self.cfg.encoder_options(), self._video,
                           self.cfg.threads)
            log.debug("ffmpeg: %s", " ".join(args))
            self._log = tempfile.TemporaryFile(mode="w+")
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
            self._pipe = av.open(self._proc.stdin, "w", format="nut")
            rate = self.like.fps if self.like.fps and self.like.fps > 0 else None
            self._raw = self._pipe.add_stream("rawvideo", rate=rate)
            self._raw.width, self._raw.height = self.frame_size
            self._raw.pix_fmt = "yuv420p"
            self._raw.time_base = self._raw.codec_context.time_base = self.time_base
        except BaseException:
            self.abort()
            raise

    def write(self, pixels: np.ndarray, pts: int, time_base: Fraction | None = None) -> None:
        """One frame of ``size``: uint8 RGB [H, W, 3]; converted as the PyAV route converts."""
        placed = self.rgb_frame(pixels, pts, time_base)
        if placed is not None:
            frame, out_pts = placed
            self._send(frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"), out_pts)

    def write_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, pts: int,
                  time_base: Fraction | None = None) -> None:
        """One frame as BT.709 limited-range YUV 4:2:0 planes of ``frame_size``."""
        placed = self.yuv_frame(y, u, v, pts, time_base)
        if placed is not None:
            self._send(*placed)

    def _send(self, frame: av.VideoFrame, out_pts: int) -> None:
        if self._pipe is None:
            raise RuntimeError("FFmpegWriter is not open (use it in a with block)")
        frame.pts, frame.time_base = out_pts, self.time_base
        frame.colorspace, frame.color_range = COLORSPACE_BT709, COLOR_RANGE_LIMITED
        try:
            for packet in self._raw.encode(frame):
                self._pipe.mux(packet)
        except (OSError, av.error.FFmpegError) as err:  # ffmpeg went away: say why it did
            raise self._failure(err) from err
        self._pts.append(out_pts)
        self.frames_written += 1

    def _failure(self, err: BaseException | None = None) -> OutputError:
        rc = self._proc.wait(timeout=30) if self._proc is not None else None
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().splitlines() if ln.strip()]
        why = lines[-1] if lines else (av_reason(err) if isinstance(err, av.error.FFmpegError) else str(err))
        return OutputError(f"{self.dst}: ffmpeg ({CODECS[self.cfg.codec].encoder}) failed (exit {rc}): {why}")

    def close(self) -> Path:
        """Finish encoding, mux the video with the audio, and move the file into place."""
        if self._done:
            return self.dst
        if self._pipe is None:
            raise RuntimeError("FFmpegWriter is not open (use it in a with block)")
        try:
            if self.frames_written == 0:
                raise OutputError(f"{self.dst}: nothing to write (no frames)")
            try:
                for packet in self._raw.encode(None):
                    self._pipe.mux(packet)
                self._pipe.close()
                self._pipe = None
                self._proc.stdin.close()
            except (OSError, av.error.FFmpegError) as err:
                raise self._failure(err) from err
            if self._proc.wait() != 0:
                raise self._failure()
            self._mux_final()
            commit(self._tmp, self.dst, self.cfg.overwrite)
        except BaseException:
            self.abort()
            raise
        self._video.unlink(missing_ok=True)
        self._tmp, self._done = None, True
        log.info("wrote %s with ffmpeg (%d frames)", self.dst, self.frames_written)
        return self.dst

    def _mux_final(self) -> None:
        """The encoded video and the carried audio/subtitles into the partial output file."""
        timeline, durations = self._timeline, {}
        for a, b in zip(self._pts, self._pts[1:], strict=False):
            durations[a] = b - a
        durations[self._pts[-1]] = timeline.last_duration()
        options = {"movflags": "+faststart"} if self._tmp.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
        passthrough = None
        try:
            with av.open(str(self._video)) as src:
                out = av.open(str(self._tmp), "w", container_options=options)
                try:
                    video = out.add_stream_from_template(src.streams.video[0])
                    video.time_base = self.time_base
                    if self.like.creation_time:
                        out.metadata["creation_time"] = self.like.creation_time
                    if self.audio_from is not None:
                        passthrough = Passthrough(out, self.audio_from, timeline.origin_s, timeline.end_s, mux=_mux)
                        self.notes.extend(passthrough.notes)
                    out.start_encoding()
                    for packet in src.demux(src.streams.video[0]):
                        if packet.size == 0 or packet.pts is None:
                            continue
                        packet.duration = durations.get(packet.pts, packet.duration)
                        packet.stream = video
                        _mux(out, packet)
                        if passthrough is not None:
                            passthrough.pump(timeline.source_seconds(packet.pts))
                    if passthrough is not None:
                        passthrough.finish(timeline.end_seconds())
                    out.close()
                except BaseException:
                    close_quietly(out)
                    raise
        except (av.error.FFmpegError, ValueError) as err:
            why = av_reason(err) if isinstance(err, av.error.FFmpegError) else str(err)
            raise output_error(err, self.dst) or OutputError(f"{self.dst}: cannot mux the ffmpeg-encoded video "
                                                             f"({why})") from err
        finally:
            if passthrough is not None:
                passthrough.close()

    def abort(self) -> None:
        """Stop ffmpeg and delete the hidden files. Idempotent."""
        if self._pipe is not None:
            close_quietly(self._pipe)
            self._pipe = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for path in (self._tmp, self._video):
            if path is not None:
                path.unlink(missing_ok=True)
        self._tmp = None

    def __del__(self) -> None:
        if getattr(self, "_tmp", None) is not None and not getattr(self, "_done", False):
            self.abort()
