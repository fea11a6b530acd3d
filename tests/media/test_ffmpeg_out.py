"""--encoder ffmpeg (a system ffmpeg, the command built with ffmpeg-python) against the PyAV route:
the same decoded frames with ffv1, the same frame count and timestamps with libx264, and audio,
variable frame rate, trim, rotation, creation time and the atomic rename as in the PyAV route;
hardware encoders that are not here fail with one line. Run with Debian's ffmpeg (CI installs it)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.errors import OutputError, UsageError
from pipeline.media import encoders, ffmpeg_out
from pipeline.media.codecs import CODECS
from pipeline.stages.video_in import VideoInConfig, probe, read
from pipeline.stages.video_out import VideoOutConfig, VideoWriter, write, writer_class
from tests.clips import audio_span, frame_index, make_clip, top_is_red

AAC_FRAME = 1024 / 48000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="no ffmpeg on PATH (apt-get install ffmpeg; .ci/run installs it)")


def _both(src: Path, tmp_path: Path, ext: str, **cfg) -> tuple[Path, Path]:
    """``src`` written by the PyAV route and by the ffmpeg route, same options."""
    outs = []
    for route in ("pyav", "ffmpeg"):
        frames = read(src, VideoInConfig())
        outs.append(write(frames, tmp_path / f"{route}.{ext}", VideoOutConfig(encoder=route, **cfg), frames.info,
                          audio_from=src))
    return outs[0], outs[1]


def _decoded(path: Path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="yuv420p")) for f in c.decode(video=0)]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".nut"))


@needs_ffmpeg
def test_ffv1_both_routes_decode_to_identical_frames(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=12, fps=10, audio=True, creation_time="2021-05-06T07:08:09.000000Z")
    a, b = _both(src, tmp_path, "mkv", codec="ffv1")
    fa, fb = _decoded(a), _decoded(b)
    assert len(fa) == len(fb) == 12
    assert [p for p, _ in fa] == [p for p, _ in fb]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(fa, fb, strict=True))
    ia, ib = probe(a), probe(b)
    assert (ib.time_base, ib.audio_codec, ib.creation_time) == (ia.time_base, ia.audio_codec, ia.creation_time)
    assert audio_span(b) == pytest.approx(audio_span(a), abs=1e-6)
    assert _leftovers(tmp_path) == []


@needs_ffmpeg
def test_libx264_same_frame_count_and_timestamps_with_vfr_audio(tmp_path):
    stamps = [0, 1, 3, 4, 7, 8, 12, 13, 14, 20]
    src = make_clip(tmp_path / "vfr.mkv", pts=stamps, time_base=Fraction(1, 30), audio=True)
    a, b = _both(src, tmp_path, "mp4", preset="ultrafast")
    ra, rb = list(read(a)), list(read(b))
    assert len(ra) == len(rb) == len(stamps)
    assert [f.pts for f in rb] == [f.pts for f in ra]
    assert [f.time for f in rb] == pytest.approx([s / 30 for s in stamps], abs=1e-3)
    assert [frame_index(f.pixels) for f in rb] == list(range(len(stamps)))
    with av.open(str(b)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    assert probe(b).has_audio
    assert audio_span(b)[1] == pytest.approx(audio_span(a)[1], abs=AAC_FRAME)
    assert _leftovers(tmp_path) == []


@needs_ffmpeg
def test_trim_and_rotation_as_in_the_pyav_route(tmp_path):
    src = make_clip(tmp_path / "phone.mp4", frames=30, fps=10, size=(48, 64), rotation=90, audio=True,
                    options={"g": "6"})
    frames = read(src, VideoInConfig(start=1.0, end=2.0))
    out = write(frames, tmp_path / "cut.mp4", VideoOutConfig(encoder="ffmpeg", preset="ultrafast"), frames.info,
                audio_from=src, start=1.0, end=2.0)
    got = list(read(out))
    assert [frame_index(f.pixels) for f in got] == list(range(10, 20))
    assert got[0].time == pytest.approx(0.0) and got[-1].time == pytest.approx(0.9)
    assert all(top_is_red(f.pixels) for f in got) and probe(out).rotation == 0
    assert audio_span(out)[1] == pytest.approx(1.0, abs=AAC_FRAME)


@needs_ffmpeg
def test_yuv_planes_and_writer_choice(tmp_path):
    like = probe(make_clip(tmp_path / "in.mkv", frames=3, size=(34, 20)))
    cfg = VideoOutConfig(codec="ffv1", encoder="ffmpeg")
    assert writer_class(cfg) is ffmpeg_out.FFmpegWriter and writer_class(VideoOutConfig()) is VideoWriter
    rng = np.random.default_rng(0)
    planes = [(rng.integers(16, 235, (20, 34), np.uint8), rng.integers(16, 240, (10, 17), np.uint8),
               rng.integers(16, 240, (10, 17), np.uint8)) for _ in range(3)]
    with ffmpeg_out.FFmpegWriter(tmp_path / "y.mkv", cfg, like) as writer:
        for i, (y, u, v) in enumerate(planes):
            writer.write_yuv(y, u, v, i * 100, Fraction(1, 1000))
    decoded = _decoded(tmp_path / "y.mkv")
    assert [p for p, _ in decoded] == [0, 100, 200]
    for (_, got), (y, u, v) in zip(decoded, planes, strict=True):  # lossless: the planes as given
        assert np.array_equal(got[:20], y)
        assert np.array_equal(got[20:25].reshape(10, 17), u) and np.array_equal(got[25:].reshape(10, 17), v)


@needs_ffmpeg
def test_failure_inside_the_block_leaves_nothing(tmp_path):
    like = probe(make_clip(tmp_path / "in.mp4", frames=3))
    with pytest.raises(RuntimeError), ffmpeg_out.FFmpegWriter(tmp_path / "out.mp4", VideoOutConfig(
            encoder="ffmpeg"), like) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8), 0)
        raise RuntimeError("stop")
    assert not (tmp_path / "out.mp4").exists() and _leftovers(tmp_path) == []


@needs_ffmpeg
def test_ffmpeg_that_dies_is_one_line_and_leaves_nothing(tmp_path):
    like = probe(make_clip(tmp_path / "in.mp4", frames=3))
    writer = ffmpeg_out.FFmpegWriter(tmp_path / "out.mp4", VideoOutConfig(encoder="ffmpeg"), like)
    with pytest.raises(OutputError, match=r"ffmpeg \(libx264\) failed"):
        with writer:
            writer._proc.kill()
            writer._proc.wait()
            for i in range(50):
                writer.write(np.zeros((48, 64, 3), np.uint8), i * 512)
    assert not (tmp_path / "out.mp4").exists() and _leftovers(tmp_path) == []


def test_no_ffmpeg_or_missing_encoder_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(ffmpeg_out.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="no ffmpeg on PATH"):
        VideoOutConfig(encoder="ffmpeg")
    monkeypatch.setattr(ffmpeg_out.shutil, "which", lambda name: "/opt/ffmpeg")
    monkeypatch.setattr(ffmpeg_out, "video_encoders", lambda path: ("libx264", "ffv1"))
    with pytest.raises(UsageError, match=r"/opt/ffmpeg has no h264_videotoolbox encoder; with it you can use "
                                         r"--codec h264, ffv1$"):
        VideoOutConfig(codec="h264_videotoolbox", encoder="ffmpeg")


@needs_ffmpeg
def test_pixel_formats_of_the_system_ffmpeg():
    assert "yuv420p" in ffmpeg_out.check_encoder("libx264")
    if "h264_vaapi" in ffmpeg_out.video_encoders(shutil.which("ffmpeg")):   # frames are uploaded from nv12
        assert CODECS["h264_vaapi"].default_pix_fmt in ffmpeg_out.check_encoder("h264_vaapi")


def test_vaapi_needs_the_ffmpeg_route():
    with pytest.raises(UsageError, match="h264_vaapi is not in PyAV's FFmpeg; use --encoder ffmpeg"):
        VideoOutConfig(codec="h264_vaapi")
    with pytest.raises(UsageError, match="unknown encoder 'gst'"):
        VideoOutConfig(encoder="gst")


@pytest.mark.parametrize("codec", [n for n, c in CODECS.items() if c.hardware and not c.ffmpeg_only])
def test_hardware_codec_without_hardware_names_the_software_codec(codec):
    """On this machine (no NVENC, Quick Sync or AMF device) each hardware codec is refused in one line."""
    try:
        VideoOutConfig(codec=codec)
    except UsageError as err:
        text = str(err)
        assert "\n" not in text and f"--codec {codec}: no usable {CODECS[codec].hardware} encoder" in text
        assert text.endswith(f"use --codec {CODECS[codec].software} ({CODECS[CODECS[codec].software].encoder}, "
                             f"software) instead")
    else:
        pytest.skip(f"{codec} opens here: this machine has the hardware")


@needs_ffmpeg
def test_cli_hardware_codec_is_exit_2_and_leaves_nothing(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    for extra in (["--codec", "h264_nvenc"], ["--codec", "h264_vaapi", "--encoder", "ffmpeg"]):
        proc = subprocess.run([sys.executable, "-m", "cli", "convert", str(src), "-o", str(tmp_path / "o.mp4"),
                               "--model", "none.pt", *extra], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2])
        if proc.returncode == 0:
            pytest.skip("this machine has the hardware")
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert "use --codec h264 (libx264, software) instead" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_rate_control_mapping():
    assert encoders.hardware_options("h264_nvenc", 18, "medium") == {"rc": "vbr", "cq": "18", "b": "0",
                                                                     "preset": "p4"}
    assert encoders.hardware_options("hevc_nvenc", 30, "ultrafast")["preset"] == "p1"
    assert encoders.hardware_options("av1_nvenc", 30, "veryslow")["preset"] == "p7"
    assert encoders.hardware_options("h264_qsv", 0, "placebo") == {"global_quality": "1", "preset": "veryslow"}
    assert encoders.hardware_options("hevc_amf", 22, "slow") == {"rc": "cqp", "qp_i": "22", "qp_p": "22",
                                                                 "quality": "quality"}
    assert encoders.hardware_options("h264_vaapi", 20, "fast") == {"rc_mode": "CQP", "qp": "20"}
    assert encoders.hardware_options("h264_videotoolbox", 18, "fast") == {"q:v": "64"}
    with pytest.raises(ValueError):
        encoders.hardware_options("libx264", 18, "medium")


def test_hardware_rows_open_in_pyav_or_are_ffmpeg_only():
    for name, spec in CODECS.items():
        if not spec.hardware:
            continue
        assert spec.software in CODECS and not CODECS[spec.software].hardware
        if not spec.ffmpeg_only:
            formats = [f.name for f in av.Codec(spec.encoder, "w").video_formats]
            assert spec.default_pix_fmt in formats, name
