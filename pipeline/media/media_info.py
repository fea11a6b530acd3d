"""What is in a media file: ``probe`` and the helpers ``video_in`` / ``video_out`` share.

``probe(path)`` opens a clip or a photo, checks that it holds a decodable picture and returns a
:class:`VideoInfo`. Every problem a user can cause (missing, empty, a folder, a text file, an
audio-only file, a stream with no decodable frame) is raised as a one-line ``InputError``.

Orientation: phones store portrait video sideways plus a display matrix. FFmpeg hands that
matrix to every decoded frame as side data; :class:`Orientation` reads it (rotation and mirroring)
and turns pixels upright. The legacy ``rotate`` stream tag (clockwise degrees) is the fallback.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.errors import InputError

log = logging.getLogger(__name__)

# A clip whose container gives no frame rate is timed as if it ran at this rate.
FALLBACK_FPS = 25.0
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# FFmpeg opens any .txt as "ANSI art" video; those are text, not footage.
_TEXT_FORMATS = frozenset({"tty"})
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
_PROBE_PACKETS = 300  # packets to try before calling a stream undecodable


@dataclass(frozen=True)
class Orientation:
    """How to turn stored pixels upright: transpose first, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    @property
    def mirrored(self) -> bool:
        """True when the transform includes a mirror image (determinant -1)."""
        return self.transpose != (self.flip_rows != self.flip_cols)

    @property
    def degrees(self) -> int:
        """Counter-clockwise display rotation in [0, 360), ignoring any mirror."""
        if self.transpose:
            # Unmirrored: rows flipped = turn CCW 90, columns flipped = turn CW 90.
            return 90 if self.flip_rows != self.mirrored else 270
        flips = (self.flip_rows, self.flip_cols)
        return 180 if flips == (True, True) else 0

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Turn ``pixels`` [H, W, C] upright; returns a view when nothing needs copying."""
        out = pixels.transpose(1, 0, 2) if self.transpose else pixels
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return out

    @staticmethod
    def from_matrix(matrix: np.ndarray) -> Orientation:
        """From FFmpeg's 3x3 display matrix (9 int32, row-major, 16.16 fixed point).

        The matrix maps a stored pixel (x, y) to display (a*x + c*y, b*x + d*y); only the signs
        of the dominant terms matter for the eight axis-aligned orientations.
        """
        a, b, c, d = (int(v) for v in matrix[[0, 1, 3, 4]])
        if abs(a) + abs(d) >= abs(b) + abs(c):
            return Orientation(False, flip_rows=d < 0, flip_cols=a < 0)
        return Orientation(True, flip_rows=b < 0, flip_cols=c < 0)

    @staticmethod
    def from_degrees(ccw: int) -> Orientation:
        """A pure counter-clockwise rotation by a multiple of 90 degrees."""
        return {
            0: Orientation(),
            90: Orientation(True, flip_rows=True),
            180: Orientation(False, True, True),
            270: Orientation(True, flip_cols=True),
        }[round(ccw / 90) % 4 * 90]


def orientation_of(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> Orientation:
    """The frame's display matrix, else the stream's legacy ``rotate`` tag, else upright."""
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is not None and side.buffer_size >= 36:
        return Orientation.from_matrix(np.frombuffer(bytes(side), "<i4", count=9))
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return Orientation.from_degrees(-int(float(tag)))  # the tag is clockwise
        except ValueError:
            log.warning("ignoring unreadable rotate tag %r", tag)
    return Orientation()


@dataclass(frozen=True)
class VideoInfo:
    """A summary of one clip or photo.

    ``width``/``height`` are the display size (after rotation); ``rotation`` is the
    counter-clockwise angle (0, 90, 180, 270) the stored picture is turned for display and
    ``mirrored`` says the display matrix also mirrors it. ``time_base`` is the video stream's;
    ``start_time`` the seconds of its first timestamp (0 for most files; clip times are counted
    from it). ``fps`` is the average rate (None when unknown and for photos); ``frame_count`` is
    an estimate from the header; ``duration`` is seconds or None when unknown.
    """

    path: Path
    width: int
    height: int
    rotation: int
    fps: Fraction | None
    time_base: Fraction
    frame_count: int
    duration: float | None
    codec: str
    pix_fmt: str
    bit_depth: int
    has_audio: bool = False
    audio_codec: str | None = None
    has_subtitles: bool = False
    creation_time: str | None = None
    is_image: bool = False
    mirrored: bool = False
    start_time: float = 0.0
    container: str = ""


def check_input_file(path: str | os.PathLike) -> Path:
    """Raise ``InputError`` unless ``path`` is an existing, non-empty, readable file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a video or image file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: file is not readable (permission denied)")
    return p


def av_reason(err: BaseException) -> str:
    """A short reason from an FFmpeg error, without the file name and errno noise."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).splitlines()[0] if reason else type(err).__name__


def demux_until_broken(container: av.container.InputContainer, *streams: av.stream.Stream,
                       on_error: Callable[[av.error.FFmpegError], None] | None = None) -> Iterator[av.Packet]:
    """The packets of ``streams`` in file order, ending quietly where the demuxer breaks (a truncated
    or damaged file): ``on_error(err)`` is told why, and nothing after that point is read."""
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as err:
            if on_error is not None:
                on_error(err)
            return
        yield packet


def av_open(path: Path, **kwargs: object) -> av.container.InputContainer:
    """``av.open`` for reading, replacing undecodable metadata where PyAV has the option (< 19)."""
    try:
        return av.open(str(path), metadata_errors="replace", **kwargs)
    except TypeError:                               # PyAV 19 dropped metadata_errors (it always replaces)
        return av.open(str(path), **kwargs)


def open_input(path: Path, **kwargs: object) -> av.container.InputContainer:
    """``av.open`` for reading, with FFmpeg's failures turned into one-line ``InputError``."""
    try:
        container = av_open(path, **kwargs)
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: not a readable video or image ({av_reason(err)})") from err
    except OSError as err:
        raise InputError(f"{path}: cannot open ({err.strerror or err})") from err
    if container.format.name in _TEXT_FORMATS:
        container.close()
        raise InputError(f"{path}: not a video or image file (looks like text)")
    return container


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover art in music files does not count)."""
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context is None:
            raise InputError(f"{path}: video codec not supported by this FFmpeg build")
        if stream.codec_context.name in _TEXT_CODECS:
            raise InputError(f"{path}: not a video or image file (looks like text)")
        return stream
    kinds = sorted({s.type for s in container.streams})
    found = f" (it holds only {', '.join(kinds)})" if kinds else ""
    raise InputError(f"{path}: no video stream{found}")


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 path: Path) -> av.VideoFrame:
    """Decode the first frame; a stream that yields none is corrupt."""
    tried = 0
    try:
        for packet in container.demux(stream):
            tried += 1
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError:
                frames = []
            if frames:
                return frames[0]
            if tried >= _PROBE_PACKETS:
                break
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: corrupt video stream ({av_reason(err)})") from err
    what = "no video frames" if tried <= 1 else f"no decodable video frame in {tried} packets"
    raise InputError(f"{path}: {what} (empty or corrupt stream)")


def _stream_seconds(stream: av.video.stream.VideoStream, tb: Fraction) -> float | None:
    """The stream's own duration: the header field, else Matroska's DURATION tag."""
    if stream.duration:
        return float(stream.duration * tb)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        h, m, s = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except (AttributeError, ValueError):
        return None


def _bit_depth(pix_fmt: str) -> int:
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError):
        return 8


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path) -> np.ndarray:
    """A photo as ``pixels`` [H, W, 3] uint8 RGB, EXIF orientation applied (by OpenCV)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not a readable image (unknown format or corrupt file)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _probe_image(path: Path) -> VideoInfo:
    pixels = read_image(path)
    h, w = pixels.shape[:2]
    return VideoInfo(path=path, width=w, height=h, rotation=0, fps=None, time_base=Fraction(1),
                     frame_count=1, duration=None, codec=path.suffix.lower().lstrip("."),
                     pix_fmt="rgb24", bit_depth=8, is_image=True, container="image")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a clip or photo, checking that it has a decodable picture.

    Raises:
        InputError: missing, empty, a folder, not a video/image, no video stream (audio-only),
            or no decodable frame.
    """
    p = check_input_file(path)
    if is_image_path(p):
        return _probe_image(p)
    with open_input(p) as container:
        stream = video_stream(container, p)
        tb = stream.time_base or Fraction(1, 90000)
        fps = stream.average_rate or stream.guessed_rate or None
        duration = _stream_seconds(stream, tb)
        if duration is None and container.duration:
            duration = container.duration / av.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        count = stream.frames or (round(duration * fps) if duration and fps else 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        first = _first_frame(container, stream, p)
        turn = orientation_of(first, stream)
        w, h = (first.height, first.width) if turn.transpose else (first.width, first.height)
        fmt_name = container.format.name
        return VideoInfo(
            path=p, width=w, height=h, rotation=turn.degrees, fps=fps, time_base=tb,
            frame_count=count, duration=duration, codec=stream.codec_context.name,
            pix_fmt=first.format.name, bit_depth=_bit_depth(first.format.name),
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None and audio.codec_context else None,
            has_subtitles=bool(container.streams.subtitles),
            creation_time=container.metadata.get("creation_time") or stream.metadata.get("creation_time"),
            is_image=fmt_name == "image2" or fmt_name.endswith("_pipe"),
            mirrored=turn.mirrored, start_time=start, container=fmt_name,
        )
