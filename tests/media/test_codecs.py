"""The codec table: every entry's encoder opens, takes its default pixel format, and fits the
container its suffix names; the crf range is the encoder's."""
from __future__ import annotations

from pathlib import Path

import av
import pytest

from pipeline.media.codecs import CODECS, DEFAULT_CODEC, PRESETS


def _encoder(name: str) -> av.Codec | None:
    try:
        return av.Codec(name, "w")
    except av.error.FFmpegError:
        return None


@pytest.mark.parametrize("name", list(CODECS))
def test_entry_is_consistent(name, tmp_path: Path):
    codec = CODECS[name]
    if codec.ffmpeg_only:
        pytest.skip(f"{codec.encoder} is in a system ffmpeg only (--encoder ffmpeg; tests/media/test_ffmpeg_out.py)")
    encoder = _encoder(codec.encoder)
    if encoder is None:
        pytest.skip(f"this FFmpeg has no {codec.encoder}")
    formats = {f.name for f in encoder.video_formats or ()}
    assert codec.default_pix_fmt in formats
    with av.open(str(tmp_path / f"x{codec.suffix}"), "w") as out:
        assert encoder.name in out.supported_codecs                    # the suffix's container holds it
        stream = out.add_stream(codec.encoder, rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, codec.default_pix_fmt
    assert codec.suffix in codec.label


def test_table_facts():
    assert DEFAULT_CODEC in CODECS and CODECS[DEFAULT_CODEC].encoder == "libx264"
    software = {n: c for n, c in CODECS.items() if not c.hardware}
    assert {n: c.suffix for n, c in software.items()} == {"h264": ".mp4", "hevc": ".mp4", "prores": ".mov",
                                                          "ffv1": ".mkv", "vp9": ".webm"}
    assert [n for n, c in software.items() if c.crf_max is not None] == ["h264", "hevc", "vp9"]
    assert all(c.encoder == n and c.suffix == ".mp4" and c.crf_max == 51 for n, c in CODECS.items() if c.hardware)
    assert PRESETS[0] == "ultrafast" and PRESETS.index("medium") == 5
