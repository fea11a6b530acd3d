"""Hardware encoders and the ``--encoder`` routes: which encoder can run here, and with what options.

``--codec`` names a row of :data:`pipeline.media.codecs.CODECS`. Software rows and the NVENC, Quick
Sync and AMF rows open in PyAV's bundled FFmpeg (``--encoder pyav``, the default); VAAPI and
VideoToolbox rows exist only in a system ``ffmpeg`` (``--encoder ffmpeg``, see
:mod:`pipeline.media.ffmpeg_out`), which can also run every other row it was built with.

``--crf`` and ``--preset`` keep their x264 meaning and are mapped onto each hardware encoder's own
rate control (constant quality at the same number) and speed presets (:func:`hardware_options`).

A hardware encoder is checked once per process before any work (:func:`check_encoder`): it is
opened on a small frame; a machine without the hardware gets one :class:`UsageError` line that
names the software ``--codec`` to use instead.
"""
from __future__ import annotations

import functools
import logging
from fractions import Fraction
from typing import Protocol

import av
import av.logging

from pipeline.errors import UsageError
from pipeline.media.codecs import CODECS, PRESETS, Codec
from pipeline.media.media_info import av_reason

log = logging.getLogger(__name__)

ENCODER_ROUTES = ("pyav", "ffmpeg")

# x264 preset -> each API's preset (fastest first, as PRESETS)
_NVENC = ("p1", "p1", "p2", "p3", "p3", "p4", "p5", "p6", "p7", "p7")
_QSV = ("veryfast", "veryfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "veryslow")
_AMF = ("speed", "speed", "speed", "speed", "balanced", "balanced", "quality", "quality", "quality", "quality")


class _VideoOut(Protocol):
    codec: str
    crf: int
    preset: str
    encoder: str

    @property
    def pixel_format(self) -> str: ...


def hardware_options(encoder: str, crf: int, preset: str) -> dict[str, str]:
    """Encoder options for a hardware ``encoder`` at x264's ``crf`` and ``preset``.

    NVENC: variable bitrate capped by constant quality ``cq = crf`` and presets p1-p7; Quick Sync:
    ICQ ``global_quality = crf`` and its own preset names; AMF: constant QP ``crf`` and
    speed/balanced/quality; VAAPI: constant QP ``crf``; VideoToolbox: constant quality
    ``q = 100 - 2*crf`` (its scale is 1-100, higher is better).
    """
    speed = PRESETS.index(preset)
    api = encoder.rsplit("_", 1)[-1]
    if api == "nvenc":
        return {"rc": "vbr", "cq": str(crf), "b": "0", "preset": _NVENC[speed]}
    if api == "qsv":
        return {"global_quality": str(max(1, crf)), "preset": _QSV[speed]}
    if api == "amf":
        return {"rc": "cqp", "qp_i": str(crf), "qp_p": str(crf), "quality": _AMF[speed]}
    if api == "vaapi":
        return {"rc_mode": "CQP", "qp": str(max(1, crf))}
    if api == "videotoolbox":
        return {"q:v": str(max(1, min(100, 100 - 2 * crf)))}
    raise ValueError(f"{encoder} is not a hardware encoder")


def takes_device_frames(cfg: _VideoOut) -> bool:
    """Whether ``cfg``'s encoder can read frames straight from CUDA memory: an NVENC encoder in
    PyAV. PyAV 18.1's ``VideoFrame.from_dlpack`` wraps two CUDA planes (NV12, P010, P016) in a
    CUDA hardware frame without copying, and its encoder adopts that frame's hardware frames
    context when it opens, which NVENC needs (see :class:`pipeline.stages.video_out.VideoWriter`).
    Planar formats (yuv420p) it takes from host memory only; the ffmpeg route pipes bytes.
    """
    return cfg.encoder == "pyav" and CODECS[cfg.codec].encoder.endswith("_nvenc")


def check_encoder(cfg: _VideoOut) -> list[str]:
    """Check that ``cfg``'s codec can be encoded by ``cfg.encoder`` here; returns the pixel formats
    the encoder takes.

    Raises:
        UsageError: an unknown route; a VAAPI/VideoToolbox codec with ``--encoder pyav``; no ``ffmpeg``
            or an encoder that ffmpeg lacks (the message lists what it has); hardware that is not
            here (the message names the software codec to use).
    """
    spec = CODECS[cfg.codec]
    if cfg.encoder not in ENCODER_ROUTES:
        raise UsageError(f"unknown encoder {cfg.encoder!r} (choose from {', '.join(ENCODER_ROUTES)})")
    if cfg.encoder == "ffmpeg":
        from pipeline.media import ffmpeg_out

        formats = ffmpeg_out.check_encoder(spec.encoder)
        if spec.hardware and cfg.pixel_format in formats:  # a wrong --pix-fmt is said as such by the caller
            _ffmpeg_hardware(cfg.codec, cfg.pixel_format, tuple(sorted(hardware_options(
                spec.encoder, cfg.crf, cfg.preset).items())))
        return formats
    if spec.ffmpeg_only:
        raise UsageError(f"--codec {cfg.codec}: {spec.encoder} is not in PyAV's FFmpeg; use --encoder ffmpeg "
                         f"(a system ffmpeg built with {spec.hardware}) or --codec {spec.software}")
    try:
        formats = [f.name for f in av.Codec(spec.encoder, "w").video_formats or []]
    except av.error.FFmpegError as err:
        raise UsageError(f"encoder {spec.encoder} is not available in this FFmpeg build") from err
    if spec.hardware and cfg.pixel_format in formats:
        _pyav_hardware(cfg.codec, cfg.pixel_format)
    return formats


def unavailable(spec: Codec, codec: str, why: str) -> UsageError:
    """The one line for a hardware encoder that cannot run on this machine."""
    software = CODECS[spec.software]
    return UsageError(f"--codec {codec}: no usable {spec.hardware} encoder on this machine ({why}); use --codec "
                      f"{spec.software} ({software.encoder}, software) instead")


@functools.cache
def _pyav_hardware(codec: str, pix_fmt: str) -> None:
    """Open ``codec``'s encoder in PyAV on a 256x256 frame (once per process); UsageError if it cannot."""
    spec = CODECS[codec]
    ctx = av.CodecContext.create(spec.encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, pix_fmt, Fraction(1, 25)
    ctx.options = hardware_options(spec.encoder, 23, "medium")
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # the encoder logs why it cannot start (e.g. no libcuda)
    try:
        with av.logging.Capture() as logs:
            ctx.open()
    except (av.error.FFmpegError, OSError, ValueError) as err:
        said = [text.strip() for _, _, text in logs if text.strip()]
        why = said[-1] if said else av_reason(err) if isinstance(err, av.error.FFmpegError) else str(err)
        raise unavailable(spec, codec, why) from None
    finally:
        av.logging.set_level(level)
        del ctx
    log.info("%s: the %s encoder opens on this machine", codec, spec.hardware)


@functools.cache
def _ffmpeg_hardware(codec: str, pix_fmt: str, options: tuple[tuple[str, str], ...]) -> None:
    """Encode one synthetic frame with the system ffmpeg (once per process); UsageError if it cannot."""
    from pipeline.media import ffmpeg_out

    why = ffmpeg_out.probe_hardware(CODECS[codec].encoder, pix_fmt, dict(options))
    if why:
        raise unavailable(CODECS[codec], codec, why)
