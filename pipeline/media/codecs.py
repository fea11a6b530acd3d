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
    """

    encoder: str
    suffix: str
    default_pix_fmt: str
    even_size: bool
    crf_max: int | None
    label: str


CODECS: dict[str, Codec] = {
    "h264": Codec("libx264", ".mp4", "yuv420p", True, 51, "H.264 (.mp4)"),
    "hevc": Codec("libx265", ".mp4", "yuv420p", True, 51, "HEVC / H.265 (.mp4)"),
    "prores": Codec("prores_ks", ".mov", "yuv422p10le", False, None, "ProRes (.mov)"),
    "ffv1": Codec("ffv1", ".mkv", "yuv420p", False, None, "FFV1 (.mkv)"),
    "vp9": Codec("libvpx-vp9", ".webm", "yuv420p", False, 63, "VP9 (.webm)"),
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
