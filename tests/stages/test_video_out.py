"""video_out: round trips keep timing, audio and metadata; failures leave nothing behind."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import OutputError, UsageError
from pipeline.stages import video_out
from pipeline.stages.video_in import VideoInConfig, probe, read
from pipeline.stages.video_out import VideoOutConfig, VideoWriter, check_destination, write, write_image
from tests.clips import (
    audio_span,
    frame_index,
    make_clip,
    top_is_red,
    upright_picture,
)

AAC_FRAME = 1024 / 48000
REPO = Path(__file__).resolve().parents[2]


def _roundtrip(src: Path, dst: Path, cfg: VideoOutConfig | None = None, **trim: float) -> Path:
    frames = read(src, VideoInConfig(**trim))
    return write(frames, dst, cfg or VideoOutConfig(preset="ultrafast"), frames.info,
                 audio_from=src, **trim)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# -- round trips -----------------------------------------------------------------------------

def test_roundtrip_keeps_frames_pts_audio_and_creation_time(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=20, fps=10, audio=True,
                    creation_time="2021-05-06T07:08:09.000000Z")
    out = _roundtrip(src, tmp_path / "out.mp4")
    a, b = probe(src), probe(out)
    assert (b.width, b.height, b.rotation, b.frame_count) == (a.width, a.height, 0, 20)
    assert b.time_base == a.time_base and b.fps == a.fps
    assert b.duration == pytest.approx(a.duration, abs=1e-3)
    assert b.creation_time == a.creation_time
    assert b.has_audio and b.audio_codec == "aac"
    before, after = list(read(src)), list(read(out))
    assert [f.pts for f in after] == [f.pts for f in before]
    assert [frame_index(f.pixels) for f in after] == list(range(20))
    (a0, a1), (b0, b1) = audio_span(src), audio_span(out)
    assert b1 - b0 == pytest.approx(a1 - a0, abs=AAC_FRAME)  # copied, not re-encoded
    assert b1 == pytest.approx(2.0, abs=AAC_FRAME)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_survives(tmp_path, ext):
    stamps = [0, 1, 3, 4, 7, 8, 12, 13, 14, 20]
    src = make_clip(tmp_path / "vfr.mkv", pts=stamps, time_base=Fraction(1, 30), audio=True)
    out = _roundtrip(src, tmp_path / f"out.{ext}")
    times = [f.time for f in read(out)]
    assert times == pytest.approx([s / 30 for s in stamps], abs=1e-3)
    if ext == "mkv":  # same time base: the very same timestamps
        assert [f.pts for f in read(out)] == [f.pts for f in read(src)]
    assert audio_span(out)[1] == pytest.approx(audio_span(src)[1], abs=AAC_FRAME)


def test_rotated_source_is_written_upright_without_a_rotation_tag(tmp_path):
    src = make_clip(tmp_path / "phone.mp4", size=(48, 64), rotation=90)
    out = _roundtrip(src, tmp_path / "out.mp4")
    info = probe(out)
    assert (info.rotation, info.width, info.height) == (0, 48, 64)
    frames = list(read(out))
    assert all(top_is_red(f.pixels) for f in frames)
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
        assert first.side_data.get("DISPLAYMATRIX") is None
        assert np.array_equal(first.to_ndarray(format="rgb24").shape, (64, 48, 3))


def test_trim_cuts_video_and_audio_together(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=30, fps=10, audio=True, options={"g": "6"})
    out = _roundtrip(src, tmp_path / "cut.mp4", start=1.0, end=2.0)
    frames = list(read(out))
    assert [frame_index(f.pixels) for f in frames] == list(range(10, 20))
    assert frames[0].time == pytest.approx(0.0) and frames[-1].time == pytest.approx(0.9)
    first, end = audio_span(out)
    assert end == pytest.approx(1.0, abs=AAC_FRAME)
    assert -2 * AAC_FRAME - 1e-6 <= first <= 0.0  # one packet of decoder preroll at most


@pytest.mark.parametrize(("codec", "ext", "pix_fmt"), [
    ("hevc", "mp4", "yuv420p"), ("prores", "mov", "yuv422p10le"), ("prores", "mkv", "yuv444p10le"),
    ("ffv1", "mkv", "yuv444p"), ("vp9", "webm", "yuv420p"), ("h264", "mov", "yuv420p10le"),
])
def test_output_codecs(tmp_path, codec, ext, pix_fmt):
    src = make_clip(tmp_path / "in.mp4", frames=6, audio=True)
    out = _roundtrip(src, tmp_path / f"out.{ext}", VideoOutConfig(codec=codec, pix_fmt=pix_fmt))
    info = probe(out)
    assert info.codec == {"h264": "h264", "hevc": "hevc", "prores": "prores", "ffv1": "ffv1",
                          "vp9": "vp9"}[codec]
    assert info.has_audio  # copied, or re-encoded where the container refuses AAC (webm)
    frames = list(read(out))
    assert [frame_index(f.pixels) for f in frames] == list(range(6))
    assert top_is_red(frames[0].pixels)


def test_audio_is_reencoded_when_the_container_refuses_it(tmp_path, caplog):
    src = make_clip(tmp_path / "in.mkv", frames=10, audio=True, audio_codec="pcm_s16le")
    with caplog.at_level("INFO"):
        out = _roundtrip(src, tmp_path / "out.m4v", start=0.25)
    assert probe(out).audio_codec == "aac"
    assert any("re-encoding" in r.message for r in caplog.records)
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
    # Frames at 0.3 .. 0.9 s are kept, so the video runs from the trim at 0.25 s to 1.0 s.
    # Audio is cut to the sample there, plus the AAC encoder's priming and padding.
    assert samples / 48000 == pytest.approx(0.75 + AAC_FRAME, abs=AAC_FRAME)


def test_subtitles_are_copied_where_the_container_allows(tmp_path, caplog):
    src = make_clip(tmp_path / "in.mkv", frames=10, subtitles=True)
    assert probe(_roundtrip(src, tmp_path / "out.mkv")).has_subtitles
    with caplog.at_level("WARNING"):
        assert not probe(_roundtrip(src, tmp_path / "out.mp4")).has_subtitles
    assert any("subtitles" in r.message for r in caplog.records)


def test_odd_size_is_cropped_only_where_the_codec_needs_it(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", size=(63, 47), codec="ffv1", frames=4)
    h264 = probe(_roundtrip(src, tmp_path / "out.mp4"))
    assert (h264.width, h264.height) == (62, 46)
    ffv1 = probe(_roundtrip(src, tmp_path / "out.mkv", VideoOutConfig(codec="ffv1")))
    assert (ffv1.width, ffv1.height) == (63, 47)


def test_write_yuv_planes(tmp_path):
    src = make_clip(tmp_path / "in.mp4", size=(63, 47), codec="libx264", pix_fmt="yuv444p", frames=5)
    info = probe(src)
    dst = tmp_path / "yuv.mkv"
    with VideoWriter(dst, VideoOutConfig(codec="ffv1"), info) as writer:
        assert writer.frame_size == (63, 47)
        for frame in read(src):
            rgb = av.VideoFrame.from_ndarray(frame.pixels, format="rgb24")
            yuv = rgb.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]
                       for p in yuv.planes)
            writer.write_yuv(y, u, v, frame.pts)
        with pytest.raises(ValueError):
            writer.write_yuv(y[:-2], u, v, frame.pts + 10_000)
    frames = list(read(dst))
    assert [frame_index(f.pixels) for f in frames] == list(range(5))
    assert all(top_is_red(f.pixels) for f in frames)


def test_write_rescales_foreign_time_bases_and_orders_timestamps(tmp_path, caplog):
    src = make_clip(tmp_path / "in.mkv", frames=4, codec="ffv1")  # time base 1/1000
    info = probe(src)
    dst = tmp_path / "out.mkv"
    with caplog.at_level("WARNING"):
        with VideoWriter(dst, VideoOutConfig(codec="ffv1"), info) as writer:
            for i, pts in enumerate([0, 9, 9, 27]):  # in 1/90 s; one duplicate
                writer.write(upright_picture(i, (64, 48)), pts, Fraction(1, 90))
    assert [f.pts for f in read(dst)] == [0, 100, 101, 300]
    assert any("not after" in r.message for r in caplog.records)


# -- configuration ---------------------------------------------------------------------------

def test_config_is_validated():
    with pytest.raises(UsageError, match="pixel format"):
        VideoOutConfig(codec="prores", pix_fmt="yuv420p")
    with pytest.raises(UsageError, match="unknown codec"):
        VideoOutConfig(codec="divx")
    with pytest.raises(UsageError, match="crf"):
        VideoOutConfig(crf=99)
    with pytest.raises(UsageError, match="preset"):
        VideoOutConfig(preset="warp")
    assert VideoOutConfig(codec="prores").pixel_format == "yuv422p10le"
    assert VideoOutConfig().pixel_format == "yuv420p"


def test_container_that_cannot_hold_the_codec(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    with pytest.raises(OutputError, match="cannot hold"):
        _roundtrip(src, tmp_path / "out.webm", VideoOutConfig(codec="ffv1"))
    assert not (tmp_path / "out.webm").exists() and _leftovers(tmp_path) == []


# -- failures leave nothing behind -----------------------------------------------------------

def test_existing_output_is_refused_before_any_work(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists") as caught:
        check_destination(dst, overwrite=False)
    with pytest.raises(OutputError, match="already exists") as caught:
        VideoWriter(dst, VideoOutConfig(), probe(src))
    assert "\n" not in str(caught.value)
    assert dst.read_bytes() == b"precious" and _leftovers(tmp_path) == []
    _roundtrip(src, dst, VideoOutConfig(overwrite=True))
    assert probe(dst).frame_count == 3


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_exception_inside_with_discards_the_partial_file(tmp_path, error):
    src = make_clip(tmp_path / "in.mp4", frames=10, audio=True)
    dst = tmp_path / "out.mp4"
    with read(src) as frames, pytest.raises(type(error)):     # (the reader's thread ends here too)
        with VideoWriter(dst, VideoOutConfig(), frames.info, audio_from=src) as writer:
            for frame in frames:
                writer.write(frame.pixels, frame.pts)
                if frame.index == 3:
                    assert len(_leftovers(tmp_path)) == 1  # hidden, same extension
                    assert _leftovers(tmp_path)[0].startswith(".out.")
                    assert _leftovers(tmp_path)[0].endswith(".partial.mp4")
                    raise error
    assert not dst.exists() and _leftovers(tmp_path) == []


def test_disk_full_is_one_line_and_cleans_up(tmp_path, monkeypatch):
    src = make_clip(tmp_path / "in.mp4", frames=20)
    calls = []

    def full_disk(out, packets):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        out.mux(packets)

    monkeypatch.setattr(video_out, "_mux", full_disk)
    dst = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="disk full") as caught:
        _roundtrip(src, dst)
    assert str(dst) in str(caught.value) and "\n" not in str(caught.value)
    assert not dst.exists() and _leftovers(tmp_path) == []


def test_file_size_limit_is_a_real_write_error(tmp_path):
    """A process whose files may not grow past 4 KiB: FFmpeg's own write fails (EFBIG)."""
    pytest.importorskip("resource", reason="needs POSIX resource limits")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from pipeline.errors import OutputError, UsageError
        from pipeline.stages.video_in import read
        from pipeline.stages.video_out import VideoOutConfig, write
        frames = read({str(tmp_path / "in.mkv")!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write(frames, {str(tmp_path / "out.mkv")!r}, VideoOutConfig(codec="ffv1"), frames.info)
        except OutputError as err:
            print(err)
            sys.exit(6)
    """)
    make_clip(tmp_path / "in.mkv", frames=30, size=(128, 96), codec="ffv1")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 6, run.stderr
    assert "out.mkv" in run.stdout and "too large" in run.stdout
    assert not (tmp_path / "out.mkv").exists() and _leftovers(tmp_path) == []


def test_unwritable_destinations(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    info = probe(src)
    (tmp_path / "afile").write_text("x")
    for dst in (tmp_path / "nowhere" / "out.mp4", tmp_path / "afile" / "out.mp4", tmp_path):
        with pytest.raises(OutputError) as caught:
            with VideoWriter(dst, VideoOutConfig(), info):
                pass
        assert "\n" not in str(caught.value)
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return  # root writes anywhere; the permission case cannot be staged
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            with VideoWriter(locked / "out.mp4", VideoOutConfig(), info):
                pass
    finally:
        locked.chmod(0o755)


def test_no_frames_is_an_error_and_leaves_nothing(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    dst = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(dst, VideoOutConfig(), probe(src)):
            pass
    assert not dst.exists() and _leftovers(tmp_path) == []


def test_encoder_queue_is_bounded(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3)
    writer = VideoWriter(tmp_path / "out.mp4", VideoOutConfig(queue_size=3), probe(src))
    assert writer._queue.maxsize == 3


# -- images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_write_image_is_atomic_and_respects_the_extension(tmp_path, ext):
    pixels = upright_picture(2, (40, 30))
    dst = write_image(tmp_path / f"out{ext}", pixels)
    back = cv2.imread(str(dst))[:, :, ::-1]
    assert back.shape == (30, 40, 3) and top_is_red(back)
    assert (dst.read_bytes()[:4] == b"\x89PNG") == (ext == ".png")
    with pytest.raises(OutputError, match="already exists"):
        write_image(dst, pixels)
    write_image(dst, pixels, overwrite=True)
    with pytest.raises(OutputError, match="not an image format"):
        write_image(tmp_path / "out.xyz", pixels)
    assert _leftovers(tmp_path) == []


def test_write_routes_photos_to_write_image(tmp_path):
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), upright_picture(1, (40, 30))[:, :, ::-1])
    frames = read(photo)
    out = write(frames, tmp_path / "out.png", VideoOutConfig(), frames.info)
    assert out.exists() and probe(out).is_image


# -- real footage ------------------------------------------------------------------------------

def test_real_clip_roundtrip(media_dir, tmp_path):
    src = media_dir / "529_2.mp4"
    if not src.exists():
        pytest.skip(f"{src} is missing")
    out = _roundtrip(src, tmp_path / "out.mp4", start=0.5, end=1.5)
    info = probe(out)
    assert (info.width, info.height) == (376, 352) and not info.has_audio
    frames = list(read(out))
    assert len(frames) == 15 and frames[0].time == pytest.approx(0.0, abs=1 / 15)


# ---- NV12 frames: the NVENC zero-copy route (CUDA) and its host fallback

class _Event:
    """Stands in for the CUDA event an NV12 buffer carries; counts the waits."""

    def __init__(self) -> None:
        self.waits = 0

    def synchronize(self) -> None:
        self.waits += 1


def _nv12(i: int, ready=None):
    import torch

    from pipeline.media.yuv import NV12, rgb_to_nv12

    made = rgb_to_nv12(torch.from_numpy(np.ascontiguousarray(upright_picture(i, (64, 48)))))
    return NV12(made.buffer, made.width, made.height, ready)


def test_nv12_frames_are_waited_for_and_written_like_planes(tmp_path):
    """write_nv12 (from_dlpack, no copy) waits on each buffer's event in the encode thread and writes
    the same pictures as write_yuv; a buffer of another size is refused."""
    from pipeline.media.yuv import NV12

    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=3, codec="ffv1", pix_fmt="bgr0")
    info = probe(src)
    events = [_Event() for _ in range(3)]
    with VideoWriter(tmp_path / "nv12.mkv", VideoOutConfig(codec="ffv1"), info) as writer:
        for i, event in enumerate(events):
            writer.write_nv12(_nv12(i, event), i)
        with pytest.raises(ValueError, match="expected NV12"):
            writer.write_nv12(NV12(_nv12(0).buffer, 62, 48), 3)
    with VideoWriter(tmp_path / "planes.mkv", VideoOutConfig(codec="ffv1"), info) as writer:
        for i in range(3):
            writer.write_yuv(*_nv12(i).host_planes(), i)
    assert [e.waits for e in events] == [1, 1, 1]
    decoded = {}
    for name in ("nv12", "planes"):
        with av.open(str(tmp_path / f"{name}.mkv")) as c:
            decoded[name] = [(f.pts, f.to_ndarray(format="yuv420p")) for f in c.decode(video=0)]
    assert len(decoded["nv12"]) == 3
    for (pa, a), (pb, b) in zip(decoded["nv12"], decoded["planes"], strict=True):
        assert pa == pb and np.array_equal(a, b)


def test_nv12_out_frames_on_a_cpu_take_the_host_copy_route(tmp_path):
    """write() with OutFrames carrying NV12 in host memory (or for an encoder that cannot read device
    frames) copies the planes down and writes them as write_yuv: same file as YUV OutFrames."""
    from pipeline.records import OutFrame

    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=3, codec="ffv1", pix_fmt="bgr0")
    info = probe(src)
    cfg = VideoOutConfig(codec="ffv1")
    nv12 = [OutFrame(i, 2 * i, i / 10, None, nv12=_nv12(i)) for i in range(3)]
    yuv = [OutFrame(i, 2 * i, i / 10, None, yuv=_nv12(i).host_planes()) for i in range(3)]
    assert nv12[0].size == (64, 48) and not video_out._device_frames(nv12[0], cfg)
    write(nv12, tmp_path / "nv12.mkv", cfg, info)
    write(yuv, tmp_path / "yuv.mkv", cfg, info)
    with av.open(str(tmp_path / "nv12.mkv")) as a, av.open(str(tmp_path / "yuv.mkv")) as b:
        fa, fb = list(a.decode(video=0)), list(b.decode(video=0))
    assert [f.pts for f in fa] == [f.pts for f in fb] and len(fa) == 3
    assert all(np.array_equal(x.to_ndarray(format="yuv420p"), y.to_ndarray(format="yuv420p"))
               for x, y in zip(fa, fb, strict=True))


def test_device_frames_writer_has_a_cuda_stream_opened_by_the_first_frame(tmp_path, monkeypatch):
    """device_frames (NVENC reading CUDA NV12): the stream's format is ``cuda`` and neither the
    encoder nor the header is opened with the writer; PyAV opens the encoder on the first frame, with
    that frame's hardware frames context. (The encoding itself needs an NVIDIA GPU.)"""
    monkeypatch.setattr("pipeline.media.encoders._pyav_hardware", lambda *a: None)   # no NVENC here
    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=1, codec="ffv1", pix_fmt="bgr0")
    info = probe(src)
    cfg = VideoOutConfig(codec="h264_nvenc")
    with av.open(str(tmp_path / "probe.mp4"), "w") as out:
        stream = video_out._add_video_stream(out, cfg, info, (64, 48), device_frames=True)
        assert stream.codec_context.pix_fmt == "cuda" and not stream.codec_context.is_open
    (tmp_path / "probe.mp4").unlink(missing_ok=True)
    for device_frames in (True, False):
        writer = VideoWriter(tmp_path / "out.mp4", cfg if device_frames else VideoOutConfig(codec="ffv1"), info,
                             device_frames=device_frames)
        writer.open()
        try:
            (partial,) = [p for p in tmp_path.iterdir() if ".partial" in p.name]
            assert (partial.stat().st_size == 0) == device_frames          # no header before the first frame
        finally:
            writer.abort()
    assert _leftovers(tmp_path) == []
