"""The output codecs: one table that the encoder, the option choices, the benchmark and the editor
plugins all read (encoder name, container suffix, pixel formats, rate control)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Codec:
    """One ``--codec`` choice.

    Attributes:
        encoder: the FFmpeg encoder PyAV opens.
        suffix: the container a file of this codec gets when we pick its name (``.mp4`` ...).
        default_pix_fmt: the pixel format used when none is given.
        even_size: the encoder rejects odd sizes for chroma-subsampled formats.
        crf_max: the top of the crf range; ``None``: the codec has no crf.
        label: a short description for menus.
        hardware: the hardware behind a hardware encoder ("NVIDIA NVENC", ...); "" for software.
        software: for a hardware encoder, the ``--codec`` to use on a machine without that hardware.
        ffmpeg_only: the encoder is not in PyAV's bundled FFmpeg, only in a system ``ffmpeg``
            (``--encoder ffmpeg``); VAAPI and VideoToolbox.
    """

    encoder: str
    suffix: str
    default_pix_fmt: str
    even_size: bool
    crf_max: int | None
    label: str
    hardware: str = ""
    software: str = ""
    ffmpeg_only: bool = False


CODECS: dict[str, Codec] = {
    "h264": Codec("libx264", ".mp4", "yuv420p", True, 51, "H.264 (.mp4)"),
    "hevc": Codec("libx265", ".mp4", "yuv420p", True, 51, "HEVC / H.265 (.mp4)"),
    "prores": Codec("prores_ks", ".mov", "yuv422p10le", False, None, "ProRes (.mov)"),
    "ffv1": Codec("ffv1", ".mkv", "yuv420p", False, None, "FFV1 (.mkv)"),
    "vp9": Codec("libvpx-vp9", ".webm", "yuv420p", False, 63, "VP9 (.webm)"),
    # hardware encoders (crf and preset mapped to their own rate control: pipeline.media.encoders)
    **{f"{kind}_{api}": Codec(f"{kind}_{api}", ".mp4", fmt, True, 51, f"{label}, {vendor} (.mp4)", vendor,
                              "hevc" if kind == "av1" else kind, api in ("vaapi", "videotoolbox"))
       for api, vendor, fmt, kinds in (("nvenc", "NVIDIA NVENC", "yuv420p", ("h264", "hevc", "av1")),
                                       ("qsv", "Intel Quick Sync", "nv12", ("h264", "hevc", "av1")),
                                       ("amf", "AMD AMF", "yuv420p", ("h264", "hevc", "av1")),
                                       ("vaapi", "VAAPI", "nv12", ("h264", "hevc")),
                                       ("videotoolbox", "Apple VideoToolbox", "nv12", ("h264", "hevc")))
       for kind, label in (("h264", "H.264"), ("hevc", "HEVC / H.265"), ("av1", "AV1")) if kind in kinds},
}
DEFAULT_CODEC = "h264"

# FFmpeg's colour tags (AVCOL_SPC_*, AVCOL_RANGE_*): what we write is BT.709, limited range; a source
# tagged unspecified is read as BT.709 when it is HD (see pipeline.stages.video_in)
COLORSPACE_BT709 = 1
COLORSPACE_UNSPECIFIED = 2
COLOR_RANGE_LIMITED = 1

# x264/x265 speed presets, fastest first (vp9 maps them onto cpu-used)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
           "placebo")
