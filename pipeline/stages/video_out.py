"""video_out: encode upright RGB (or ready YUV 4:2:0) frames and mux them with the source audio.

:class:`VideoWriter` is a context manager. ``write``/``write_yuv``/``write_nv12`` hand frames to an encode thread
through a bounded queue (PyAV releases the GIL while encoding), so producing and encoding
overlap and memory stays bounded. On leaving the ``with`` block the encoder is flushed, the
remaining audio is muxed and the file appears under its final name; if the block raises
(KeyboardInterrupt included) the partial file is deleted and nothing appears.

Decisions:
- Timestamps (:mod:`pipeline.media.timeline`): frames keep their source pts and time base, shifted by
  ``start`` when trimming, so variable frame rate stays variable and audio stays in sync.
- Rotation: ``video_in`` hands out upright pixels, so the output is written upright with no
  display matrix (every player shows it the same way).
- Audio and subtitles are carried over by :mod:`pipeline.media.remux` (remuxed, or re-encoded when the
  container cannot hold them) and cut to the written video: from ``start`` to the end of the last
  frame (or ``end``).
- Atomic output (:mod:`pipeline.media.atomic`): everything goes to a hidden
  ``.<name>.<tag>.partial<ext>`` beside the destination (same extension, so the same muxer) and
  is renamed at the end.
- Colour: RGB is converted with BT.709 limited range and the stream is tagged so; planes given
  to ``write_yuv`` must already be BT.709 limited range.
- Size: H.264/HEVC cannot hold odd sizes in 4:2:0/4:2:2, so the last row/column is cropped
  (``VideoWriter.frame_size`` is what is encoded; ``write_yuv`` planes must match it).
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.errors import OutputError, UsageError
from pipeline.media.atomic import check_destination, commit, output_error, reserve_temp
from pipeline.media.codecs import CODECS, COLOR_RANGE_LIMITED, COLORSPACE_BT709, DEFAULT_CODEC, PRESETS
from pipeline.media.image_out import write_image
from pipeline.media.media_info import FALLBACK_FPS, VideoInfo, av_reason
from pipeline.media.remux import Passthrough, close_quietly
from pipeline.media.remux import mux as _mux  # every packet reaches the file through this name (tests replace it)
from pipeline.media.writer import WriterBase
from pipeline.media.yuv import NV12
from pipeline.records import Frame, OutFrame
from pipeline.runtime.queues import POLL_S, drain, put_until

__all__ = ["VideoOutConfig", "VideoWriter", "check_destination", "write", "write_image"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class VideoOutConfig:
    """Encoding options.

    codec: "h264" (libx264), "hevc" (libx265), "prores" (prores_ks), "ffv1" or "vp9" (libvpx).
    crf/preset: quality and speed for h264/hevc (vp9 uses crf and maps preset to cpu-used).
    pix_fmt: None picks the codec's usual one (yuv420p; prores: yuv422p10le); checked against
        what the encoder supports.
    overwrite: replace an existing output; otherwise an existing file is an ``OutputError``.
    keep_audio: copy (or re-encode) the audio of ``audio_from``.
    threads: encoder threads (0 = automatic). queue_size: frames waiting for the encoder.
    encoder: "pyav" or "ffmpeg" (a system ffmpeg: :mod:`pipeline.media.ffmpeg_out`); hardware codecs
        are opened once here to check the hardware is present (:mod:`pipeline.media.encoders`).

    Raises:
        UsageError: unknown codec, preset or encoder, crf out of range, a pixel format the encoder
            lacks, hardware or an ffmpeg encoder that is not here.
    """

    codec: str = DEFAULT_CODEC
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str | None = None
    overwrite: bool = False
    keep_audio: bool = True
    threads: int = 0
    queue_size: int = 8
    encoder: str = "pyav"

    def __post_init__(self) -> None:
        spec = CODECS.get(self.codec)
        if spec is None:
            raise UsageError(f"unknown codec {self.codec!r} (choose from {', '.join(CODECS)})")
        if self.encoder != "pyav" or spec.hardware:  # the ffmpeg route and hardware encoders
            from pipeline.media.encoders import check_encoder

            formats = check_encoder(self)
        else:
            try:
                formats = [f.name for f in av.Codec(spec.encoder, "w").video_formats or []]
            except av.error.FFmpegError as err:
                raise UsageError(f"encoder {spec.encoder} is not available in this FFmpeg build") from err
        if self.pixel_format not in formats:
            raise UsageError(f"pixel format {self.pixel_format} is not supported by {spec.encoder} "
                              f"(choose from {', '.join(formats)})")
        if spec.crf_max is not None and not 0 <= self.crf <= spec.crf_max:
            raise UsageError(f"crf {self.crf} is out of range for {self.codec} (0-{spec.crf_max})")
        if self.preset not in PRESETS:
            raise UsageError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")

    @property
    def pixel_format(self) -> str:
        return self.pix_fmt or CODECS[self.codec].default_pix_fmt

    def encoder_options(self) -> dict[str, str]:
        spec = CODECS[self.codec]
        if spec.hardware:
            from pipeline.media.encoders import hardware_options

            return hardware_options(spec.encoder, self.crf, self.preset)
        if spec.encoder == "libx264":
            return {"crf": str(self.crf), "preset": self.preset}
        if spec.encoder == "libx265":
            return {"crf": str(self.crf), "preset": self.preset, "x265-params": "log-level=error"}
        if spec.encoder == "libvpx-vp9":
            speed = max(0, min(8, PRESETS.index(self.preset) * -1 + 7))  # medium -> 2
            return {"crf": str(self.crf), "b": "0", "cpu-used": str(speed), "row-mt": "1"}
        if spec.encoder == "prores_ks":
            return {"profile": "4444" if self.pixel_format.startswith("yuv444") else "hq"}
        return {}


def write(frames: Iterable[OutFrame | Frame], dst: str | os.PathLike, cfg: VideoOutConfig, like: VideoInfo,
          *, audio_from: str | os.PathLike | None = None, start: float | None = None,
          end: float | None = None, notes: list[str] | None = None) -> Path:
    """Write frames to ``dst``: output frames (RGB pixels or YUV 4:2:0 planes), or decoded frames
    as they are; a photo when ``like`` is one (RGB frames only). ``notes``, when given, gets one line
    for each carried stream that was repaired because ``audio_from`` was damaged.

    The size is taken from the first frame. Raises ``OutputError`` (see :class:`VideoWriter`).
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise OutputError(f"{dst}: nothing to write (no frames)")
    if like.is_image:
        return write_image(dst, first.pixels, overwrite=cfg.overwrite)
    device = _device_frames(first, cfg)
    with writer_class(cfg)(dst, cfg, like, audio_from, size=_size(first), start=start, end=end,
                           **({"device_frames": True} if device else {})) as writer:
        for frame in itertools.chain([first], it):
            if isinstance(frame, OutFrame) and frame.nv12 is not None:
                if device:
                    writer.write_nv12(frame.nv12, frame.pts)
                else:                                    # today's route: one copy to the host
                    writer.write_yuv(*fit_planes(frame.nv12.host_planes(), writer.frame_size), frame.pts)
            elif isinstance(frame, OutFrame) and frame.yuv is not None:
                writer.write_yuv(*fit_planes(frame.yuv, writer.frame_size), frame.pts)
            else:
                writer.write(frame.pixels, frame.pts)
    if notes is not None:
        notes.extend(writer.notes)
    return writer.dst


def _device_frames(first: OutFrame | Frame, cfg: VideoOutConfig) -> bool:
    """The zero-copy route: the frames come as NV12 in CUDA memory and the encoder reads them there
    (an NVENC encoder in PyAV); else any device planes are copied to the host first."""
    from pipeline.media.encoders import takes_device_frames

    return (isinstance(first, OutFrame) and first.nv12 is not None and first.nv12.buffer.device.type == "cuda"
            and takes_device_frames(cfg))


def writer_class(cfg: VideoOutConfig) -> type:
    """:class:`VideoWriter`, or ``pipeline.media.ffmpeg_out.FFmpegWriter`` (same interface) for ``--encoder ffmpeg``."""
    from pipeline.media.ffmpeg_out import FFmpegWriter

    return FFmpegWriter if cfg.encoder == "ffmpeg" else VideoWriter


def _size(frame: OutFrame | Frame) -> tuple[int, int]:
    return frame.size


def fit_planes(yuv: tuple[np.ndarray, np.ndarray, np.ndarray],
               size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4:2:0 planes of a frame cut to ``size`` (w, h): the encoded size can be a pixel smaller than
    the frame (even sizes for H.264), as :meth:`VideoWriter.write` cuts RGB frames."""
    w, h = size
    y, u, v = yuv
    return y[:h, :w], u[:(h + 1) // 2, :(w + 1) // 2], v[:(h + 1) // 2, :(w + 1) // 2]


class VideoWriter(WriterBase):
    """Encode frames to ``dst`` with the source's timing and audio; a context manager.

    Args:
        dst: output path; its extension picks the container (.mp4, .mov, .mkv, .webm, ...).
        cfg: encoding options.
        like: the source's :class:`VideoInfo` (time base, frame rate, creation time).
        audio_from: file whose audio (and subtitles) to carry over, usually the source; None for none.
        size: (w, h) of the pixels you will write; default the source's display size.
        start/end: the trim used when reading (seconds from the start of the clip); timestamps
            are shifted by ``start`` and audio is cut to match.
        device_frames: the frames come through :meth:`write_nv12` as CUDA NV12 buffers for an
            NVENC encoder, which reads them in place. The stream's format is then ``cuda`` and
            the encoder opens on the first frame (not with the header): PyAV hands it that frame's
            hardware frames context, which NVENC must have when it opens.

    Raises:
        OutputError: here, when ``dst`` exists without ``overwrite`` or its folder is missing;
            on ``open``/``__enter__``, when the folder is not writable or the container cannot
            hold the codec; from ``write``/``close``, when the disk is full or writing fails.
        InputError: on ``open``, when ``audio_from`` cannot be read.
    """

    def __init__(self, dst: str | os.PathLike, cfg: VideoOutConfig, like: VideoInfo,
                 audio_from: str | os.PathLike | None = None, size: tuple[int, int] | None = None,
                 *, start: float | None = None, end: float | None = None, device_frames: bool = False) -> None:
        super().__init__(dst, cfg, like, audio_from, size, start=start, end=end)
        self.device_frames = device_frames
        self._cuda = None                       # av.video.frame.CudaContext, made on the first CUDA frame
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abort = threading.Event()

    def open(self) -> None:
        """Create the partial file, the streams and the encode thread."""
        if self._tmp is not None:
            return
        self._tmp = reserve_temp(self.dst)
        try:
            out, video, passthrough = self._open_container(self._tmp)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
            raise
        self._thread = threading.Thread(target=self._encode_loop, args=(out, video, passthrough),
                                        daemon=True, name=f"video_out:{self.dst.name}")
        self._thread.start()

    def close(self) -> Path:
        """Flush, finish the file and move it into place; returns the final path."""
        if self._done:
            return self.dst
        if self._thread is None:
            raise RuntimeError("VideoWriter is not open (use it in a with block)")
        try:
            if self.frames_written == 0:
                raise OutputError(f"{self.dst}: nothing to write (no frames)")
            self._put(None)
            self._thread.join()
            if self._error is not None:
                raise self._error
            commit(self._tmp, self.dst, self.cfg.overwrite)
        except BaseException:
            self.abort()
            raise
        self._thread, self._tmp, self._done = None, None, True
        log.info("wrote %s (%d frames)", self.dst, self.frames_written)
        return self.dst

    def abort(self) -> None:
        """Stop encoding and delete the partial file. Idempotent."""
        self._abort.set()
        thread, self._thread = self._thread, None
        while thread is not None and thread.is_alive():
            drain(self._queue)
            try:
                self._queue.put_nowait(None)  # wake a thread waiting for frames
            except queue.Full:
                pass
            thread.join(timeout=POLL_S)
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __del__(self) -> None:
        if getattr(self, "_tmp", None) is not None:
            log.warning("%s: writer dropped without close(); discarding the partial file", self.dst)
            self.abort()

    # -- frames ----------------------------------------------------------------------------

    def write(self, pixels: np.ndarray, pts: int, time_base: Fraction | None = None) -> None:
        """Queue one frame: ``pixels`` [H, W, 3] uint8 RGB of ``size``; ``pts`` in ``time_base``
        (default the source's). The pixels are copied before this returns."""
        placed = self.rgb_frame(pixels, pts, time_base)
        if placed is not None:
            self._queue_frame(*placed)

    def write_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, pts: int,
                  time_base: Fraction | None = None) -> None:
        """Queue one frame given as BT.709 limited-range YUV 4:2:0 planes (uint8):
        ``y`` [H, W], ``u``/``v`` [ceil(H/2), ceil(W/2)], with (W, H) = ``frame_size``."""
        placed = self.yuv_frame(y, u, v, pts, time_base)
        if placed is not None:
            self._queue_frame(*placed)

    def write_nv12(self, planes: NV12, pts: int, time_base: Fraction | None = None) -> None:
        """Queue one frame given as BT.709 limited-range :class:`~pipeline.media.yuv.NV12` of
        ``frame_size``, without copying it: ``av.VideoFrame.from_dlpack`` wraps the buffer (a CUDA
        hardware frame when it is in CUDA memory; needs ``device_frames``). The encode thread waits
        for ``planes.ready`` before the encoder reads it."""
        if (planes.width, planes.height) != self.frame_size:
            raise ValueError(f"expected NV12 of {self.frame_size}, got {(planes.width, planes.height)}")
        if planes.buffer.device.type == "cuda" and not self.device_frames:
            raise ValueError("CUDA frames need a writer opened with device_frames=True")
        out_pts = self._timeline.place(pts, time_base)
        if out_pts is None:
            return
        on_gpu = {}
        if planes.buffer.device.type == "cuda":     # one FFmpeg CUDA context (the primary one) per writer
            if self._cuda is None:
                self._cuda = av.video.frame.CudaContext(device_id=planes.buffer.device.index or 0, primary_ctx=True)
            on_gpu = {"cuda_context": self._cuda}
        frame = av.VideoFrame.from_dlpack((planes.y, planes.uv), format="nv12", **on_gpu)
        frame.colorspace, frame.color_range = COLORSPACE_BT709, COLOR_RANGE_LIMITED
        if planes.ready is not None:
            frame.opaque = planes.ready
        self._queue_frame(frame, out_pts)

    def _queue_frame(self, frame: av.VideoFrame, out_pts: int) -> None:
        if self._thread is None:
            raise RuntimeError("VideoWriter is not open (use it in a with block)")
        frame.pts = out_pts
        frame.time_base = self.time_base
        self._put(frame)
        self.frames_written += 1

    def _put(self, item: av.VideoFrame | None) -> None:
        """Blocking put that re-raises the encode thread's error instead of waiting forever."""
        if not put_until(self._queue, item, lambda: self._error is not None):
            raise self._error

    # -- the encode thread -----------------------------------------------------------------

    def _open_container(self, tmp: Path) -> tuple:
        """Output container, video stream and audio passthrough, header written."""
        cfg, spec = self.cfg, CODECS[self.cfg.codec]
        options = {"movflags": "+faststart"} if tmp.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
        try:
            out = av.open(str(tmp), "w", container_options=options)
        except (av.error.FFmpegError, ValueError) as err:
            reason = (f"{self.dst.suffix} is not a video format I can write" if self.dst.suffix
                      else "no file extension to choose a video format by")
            raise OutputError(f"{self.dst}: {reason} (use .mp4, .mov, .mkv or .webm)") from err
        passthrough = None
        cannot_hold = OutputError(f"{self.dst}: a {self.dst.suffix} file cannot hold {cfg.codec} video "
                                  f"(use .mkv or .mov)")
        try:
            try:
                video = _add_video_stream(out, cfg, self.like, self.frame_size, self.device_frames)
            except ValueError as err:  # PyAV: the muxer refuses the codec outright
                raise cannot_hold from err
            if self.like.creation_time:
                out.metadata["creation_time"] = self.like.creation_time
            if self.audio_from is not None:
                passthrough = Passthrough(out, self.audio_from, self._timeline.origin_s, self._timeline.end_s, mux=_mux)
                self.notes.extend(passthrough.notes)
            try:
                if not self.device_frames:   # else the first mux writes the header (see device_frames)
                    out.start_encoding()
            except av.error.FFmpegError as err:
                # Muxers only vouch for some codecs (supported_codecs); others are tried.
                if spec.encoder not in out.supported_codecs:
                    raise cannot_hold from err
                raise output_error(err, self.dst) or OutputError(
                    f"{self.dst}: cannot start encoding with {spec.encoder} {cfg.pixel_format} "
                    f"{self.frame_size[0]}x{self.frame_size[1]} ({av_reason(err)})") from err
        except BaseException:
            if passthrough is not None:
                passthrough.close()
            close_quietly(out)
            raise
        return out, video, passthrough

    def _encode_loop(self, out: av.container.OutputContainer, video: av.video.stream.VideoStream,
                     passthrough: Passthrough | None) -> None:
        # One frame is held back so its duration is known when it is encoded (VFR-exact).
        held: av.VideoFrame | None = None
        timeline = self._timeline
        try:
            while not self._abort.is_set():
                frame = self._queue.get()
                if self._abort.is_set():
                    break
                if held is not None:
                    step = frame.pts - held.pts if frame is not None else timeline.last_duration()
                    self._encode(out, video, passthrough, held, step)
                if frame is None:
                    break
                held = frame
            if not self._abort.is_set():
                _mux(out, timeline.timed(video.encode(None)))
                if passthrough is not None:
                    passthrough.finish(timeline.end_seconds())
                out.close()
        except BaseException as err:
            mapped = output_error(err, self.dst)
            if mapped is not None:
                mapped.__cause__ = err
            self._error = mapped or err
            self._abort.set()
        finally:
            if passthrough is not None:
                passthrough.close()
            if self._abort.is_set():
                close_quietly(out)
                drain(self._queue)

    def _encode(self, out: av.container.OutputContainer, video: av.video.stream.VideoStream,
                passthrough: Passthrough | None, frame: av.VideoFrame, duration: int) -> None:
        t = self._timeline.source_seconds(frame.pts)
        if frame.opaque is not None:             # an NV12 frame in CUDA memory: wait until it is written
            frame.opaque.synchronize()
            frame.opaque = None
        if frame.format.name != video.pix_fmt and not self.device_frames:
            pts = frame.pts
            frame = frame.reformat(format=video.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts, frame.time_base = pts, self.time_base
        self._timeline.hold(frame.pts, duration)
        _mux(out, self._timeline.timed(video.encode(frame)))
        if passthrough is not None:
            passthrough.pump(t)


def _add_video_stream(out: av.container.OutputContainer, cfg: VideoOutConfig, like: VideoInfo,
                      size: tuple[int, int], device_frames: bool = False) -> av.video.stream.VideoStream:
    rate = like.fps if like.fps and like.fps > 0 else Fraction(FALLBACK_FPS)
    video = out.add_stream(CODECS[cfg.codec].encoder, rate=rate)
    video.width, video.height = size
    video.pix_fmt = "cuda" if device_frames else cfg.pixel_format
    video.codec_context.time_base = like.time_base
    video.time_base = like.time_base
    video.codec_context.thread_count = cfg.threads
    video.codec_context.colorspace = COLORSPACE_BT709
    video.codec_context.color_range = COLOR_RANGE_LIMITED
    video.options = cfg.encoder_options()
    return video
