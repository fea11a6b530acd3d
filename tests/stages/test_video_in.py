"""video_in: probing, streaming decode, orientation, trimming, damage reports, bad inputs."""
from __future__ import annotations

import gc
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import InputError, UsageError
from pipeline.media.media_info import Orientation
from pipeline.stages.video_in import DecodeReport, Frame, VideoInConfig, probe, read
from tests.clips import (
    frame_index,
    garble,
    make_audio_only,
    make_clip,
    top_is_red,
    truncate,
    upright_picture,
)


def _encoder_available(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except av.error.FFmpegError:
        return False
    return True


def _source_pts(path) -> list[int]:
    with av.open(str(path)) as c:
        return sorted(p.pts for p in c.demux(video=0) if p.pts is not None)


# -- probe ---------------------------------------------------------------------------------

def test_probe_describes_clip(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=10, fps=10, audio=True,
                    creation_time="2021-05-06T07:08:09.000000Z")
    info = probe(src)
    assert (info.width, info.height, info.rotation, info.mirrored) == (64, 48, 0, False)
    assert info.fps == 10 and info.frame_count == 10
    assert info.duration == pytest.approx(1.0)
    assert isinstance(info.time_base, Fraction)
    assert (info.codec, info.pix_fmt, info.bit_depth) == ("h264", "yuv420p", 8)
    assert info.has_audio and info.audio_codec == "aac" and not info.has_subtitles
    assert info.creation_time == "2021-05-06T07:08:09.000000Z"
    assert not info.is_image and info.start_time == 0.0


def test_probe_subtitles(tmp_path):
    info = probe(make_clip(tmp_path / "s.mkv", subtitles=True))
    assert info.has_subtitles and not info.has_audio


# -- decoding --------------------------------------------------------------------------------

def test_read_yields_upright_rgb_frames_with_source_pts(tmp_path):
    src = make_clip(tmp_path / "a.mp4", frames=12, fps=10)
    reader = read(src)
    frames = list(reader)
    assert [f.index for f in frames] == list(range(12))
    assert [f.pts for f in frames] == _source_pts(src)
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(12)])
    assert [frame_index(f.pixels) for f in frames] == list(range(12))
    for f in frames:
        assert isinstance(f, Frame)
        assert f.pixels.shape == (48, 64, 3) and f.pixels.dtype == np.uint8
        assert f.pixels.flags.c_contiguous
    assert top_is_red(frames[0].pixels)
    assert reader.report.ok and reader.report.frames == 12


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_clip_is_read_upright(tmp_path, rotation):
    src = make_clip(tmp_path / "r.mp4", size=(64, 48), rotation=rotation)
    info = probe(src)
    assert info.rotation == rotation
    assert (info.width, info.height) == (64, 48)  # display size
    frames = list(read(src))
    assert all(f.pixels.shape == (48, 64, 3) for f in frames)
    assert all(top_is_red(f.pixels) for f in frames)
    assert [frame_index(f.pixels) for f in frames] == list(range(10))


def test_orientation_matches_numpy_rotations():
    a = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    for deg in (0, 90, 180, 270):
        turn = Orientation.from_degrees(deg)
        assert np.array_equal(turn.apply(a), np.rot90(a, deg // 90))
        assert turn.degrees == deg and not turn.mirrored
    # FFmpeg display matrices (16.16 fixed point) as av_display_rotation_set writes them.
    one = 1 << 16
    ccw90 = Orientation.from_matrix(np.array([0, -one, 0, one, 0, 0, 0, 0, 1 << 30]))
    assert np.array_equal(ccw90.apply(a), np.rot90(a, 1))
    hflip = Orientation.from_matrix(np.array([-one, 0, 0, 0, one, 0, 0, 0, 1 << 30]))
    assert np.array_equal(hflip.apply(a), a[:, ::-1]) and hflip.mirrored and hflip.degrees == 0


def test_variable_frame_rate_keeps_source_pts(tmp_path):
    stamps = [0, 1, 3, 4, 7, 8, 12, 13, 14, 20]
    src = make_clip(tmp_path / "v.mkv", pts=stamps, time_base=Fraction(1, 30))
    frames = list(read(src))
    tb = probe(src).time_base
    assert [f.time for f in frames] == pytest.approx([s / 30 for s in stamps], abs=1e-3)
    assert [f.pts for f in frames] == [round(s / 30 / tb) for s in stamps]
    assert [frame_index(f.pixels) for f in frames] == list(range(len(stamps)))


_LAYOUTS = [
    ("libx264", "yuv420p", "mp4", 8),
    ("libx264", "yuv420p10le", "mp4", 10),
    ("libx264", "yuv422p", "mp4", 8),
    ("libx264", "yuv444p", "mp4", 8),
    ("libx265", "yuv420p10le", "mp4", 10),
    ("mpeg4", "yuv420p", "mp4", 8),
    ("libvpx-vp9", "yuv444p", "webm", 8),
    ("prores_ks", "yuv422p10le", "mov", 10),
    ("prores_ks", "yuv444p10le", "mov", 12),  # the ProRes 4444 decoder outputs 12 bits
    ("mjpeg", "yuvj422p", "mkv", 8),
    ("ffv1", "yuv444p", "mkv", 8),
]


@pytest.mark.parametrize(("encoder", "pix_fmt", "ext", "depth"), _LAYOUTS,
                         ids=[f"{e}-{p}" for e, p, _, _ in _LAYOUTS])
def test_codecs_bit_depths_and_chroma_layouts(tmp_path, encoder, pix_fmt, ext, depth):
    if not _encoder_available(encoder):
        pytest.skip(f"this PyAV build cannot encode {encoder}")
    src = make_clip(tmp_path / f"c.{ext}", frames=6, codec=encoder, pix_fmt=pix_fmt)
    info = probe(src)
    assert info.bit_depth == depth and info.pix_fmt.startswith(pix_fmt[:7])
    frames = list(read(src))
    assert len(frames) == 6
    assert all(f.pixels.dtype == np.uint8 and f.pixels.shape == (48, 64, 3) for f in frames)
    assert [frame_index(f.pixels) for f in frames] == list(range(6))
    assert top_is_red(frames[0].pixels)
    red = frames[0].pixels[:4].reshape(-1, 3).mean(axis=0)
    assert red == pytest.approx([255, 0, 0], abs=25)


@pytest.mark.parametrize(("encoder", "pix_fmt"), [("ffv1", "yuv420p"), ("mjpeg", "yuvj420p"),
                                                  ("libx264", "yuv444p")])
def test_odd_frame_size(tmp_path, encoder, pix_fmt):
    src = make_clip(tmp_path / "odd.mkv", size=(63, 47), codec=encoder, pix_fmt=pix_fmt, frames=4)
    assert (probe(src).width, probe(src).height) == (63, 47)
    frames = list(read(src))
    assert [f.pixels.shape for f in frames] == [(47, 63, 3)] * 4
    assert top_is_red(frames[0].pixels)


@pytest.mark.parametrize("device", ["cuda", "no-such-device"])
def test_hwaccel_falls_back_to_software(tmp_path, device):
    src = make_clip(tmp_path / "a.mp4", frames=5)
    frames = list(read(src, VideoInConfig(hwaccel=device)))  # GPU decode where there is one
    assert [frame_index(f.pixels) for f in frames] == list(range(5))
    assert top_is_red(frames[0].pixels)


# -- trimming --------------------------------------------------------------------------------

def test_start_end_trim(tmp_path):
    src = make_clip(tmp_path / "t.mp4", frames=30, fps=10, options={"g": "8"})
    frames = list(read(src, VideoInConfig(start=1.25, end=2.0)))
    assert [frame_index(f.pixels) for f in frames] == list(range(13, 20))
    assert [f.index for f in frames] == list(range(7))
    assert frames[0].time == pytest.approx(1.3)
    assert [f.pts for f in frames] == _source_pts(src)[13:20]


def test_trim_config_is_checked(tmp_path):
    with pytest.raises(UsageError):
        VideoInConfig(start=2.0, end=1.0)
    with pytest.raises(UsageError):
        VideoInConfig(start=-1.0)
    src = make_clip(tmp_path / "t.mp4", frames=10, fps=10)
    with pytest.raises(InputError, match="past the end"):
        read(src, VideoInConfig(start=5.0))


# -- images ----------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_image_is_one_frame(tmp_path, ext):
    pixels = upright_picture(3, (40, 30))
    path = tmp_path / f"photo{ext}"
    cv2.imwrite(str(path), pixels[:, :, ::-1])
    info = probe(path)
    assert info.is_image and (info.width, info.height) == (40, 30) and info.frame_count == 1
    frames = list(read(path))
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].pts == 0
    error = np.abs(frames[0].pixels.astype(int) - pixels)
    if ext == ".png":
        assert error.max() == 0
    else:  # lossy, and chroma subsampling smears the red edge
        assert error.mean() < 4 and top_is_red(frames[0].pixels)


# -- bad input -------------------------------------------------------------------------------

def _bad_inputs(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello world\n" * 50)
    (tmp_path / "notes.mp4").write_text("hello world\n" * 50)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "folder").mkdir()
    make_audio_only(tmp_path / "voice.m4a")
    return ["missing.mp4", "empty.mp4", "notes.txt", "notes.mp4", "broken.png", "folder", "voice.m4a"]


def test_bad_inputs_raise_one_line_input_error(tmp_path):
    for name in _bad_inputs(tmp_path):
        path = tmp_path / name
        for call in (probe, read):
            with pytest.raises(InputError) as caught:
                call(path)
            message = str(caught.value)
            assert name in message and "\n" not in message, message


def test_audio_only_says_so(tmp_path):
    with pytest.raises(InputError, match="no video stream.*audio"):
        probe(make_audio_only(tmp_path / "voice.m4a"))


def test_truncated_mp4_without_index_is_input_error(tmp_path):
    src = truncate(make_clip(tmp_path / "t.mp4", frames=20), 0.6)  # moov is at the end
    with pytest.raises(InputError):
        probe(src)


# -- damage ----------------------------------------------------------------------------------

def test_truncated_tail_yields_what_decodes_and_reports_it(tmp_path, caplog):
    src = truncate(make_clip(tmp_path / "t.mkv", frames=30, options={"g": "5"}), 0.6)
    reader = read(src)
    with caplog.at_level("WARNING"):
        frames = list(reader)
    assert 0 < len(frames) < 30
    assert [frame_index(f.pixels) for f in frames] == list(range(len(frames)))
    report = reader.report
    assert isinstance(report, DecodeReport)
    assert report.truncated and not report.ok and report.frames == len(frames)
    assert "\n" not in report.summary() and "truncated" in report.summary()
    assert any("truncated" in r.message for r in caplog.records)


def test_garbled_packets_are_skipped_and_counted(tmp_path):
    src = make_clip(tmp_path / "g.mp4", frames=30, options={"g": "5"})
    garble(src, 0.3, 400)  # inside mdat; the index (moov, at the end) stays intact
    reader = read(src)
    frames = list(reader)
    assert len(frames) > 0
    assert not reader.report.ok
    assert reader.report.damaged_packets + reader.report.corrupt_frames + reader.report.missing_frames > 0


# -- threading and memory --------------------------------------------------------------------

def test_queue_bounds_decoded_frames(tmp_path):
    src = make_clip(tmp_path / "long.mkv", frames=60, codec="ffv1")
    reader = read(src, VideoInConfig(queue_size=2))
    assert reader._queue.maxsize == 2
    first = next(reader)
    deadline = time.monotonic() + 5
    while not reader._queue.full() and time.monotonic() < deadline:
        time.sleep(0.01)  # let the decoder run ahead as far as it can
    # Frames handed over minus frames consumed never exceed the queue bound.
    assert reader.report.frames - 1 <= 2
    rest = list(reader)
    assert first.index == 0 and len(rest) == 59


def test_close_early_stops_the_decode_thread(tmp_path):
    src = make_clip(tmp_path / "long.mkv", frames=40, codec="ffv1")
    with read(src, VideoInConfig(queue_size=1)) as reader:
        for frame in reader:
            if frame.index == 2:
                break
        thread = reader._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
    assert list(reader) == []  # closed readers are exhausted


def test_dropped_reader_stops_its_thread(tmp_path):
    src = make_clip(tmp_path / "long.mkv", frames=40, codec="ffv1")

    def stage(frames):  # a downstream iterator transform that is abandoned early
        for frame in frames:
            yield frame.index

    reader = read(src, VideoInConfig(queue_size=1))
    gen = stage(reader)
    next(gen)
    thread = reader._thread
    gen.close()
    del gen, reader
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_closing_a_yield_from_stage_closes_the_reader(tmp_path):
    src = make_clip(tmp_path / "long.mkv", frames=40, codec="ffv1")
    reader = read(src, VideoInConfig(queue_size=1))

    def stage(frames):
        yield from frames

    gen = stage(reader)
    next(gen)
    thread = reader._thread
    gen.close()  # PEP 380: closes the sub-iterator, i.e. FrameReader.close()
    assert not thread.is_alive() and reader._thread is None


def test_errors_in_the_decode_thread_reach_the_caller(tmp_path):
    src = make_clip(tmp_path / "gone.mp4")
    reader = read(src)  # probed now; decoding starts on the first next()
    src.unlink()
    with pytest.raises(InputError, match="not found|cannot open|not a readable"):
        next(reader)
    assert reader._thread is None
    with pytest.raises(StopIteration):
        next(reader)


# -- real footage ------------------------------------------------------------------------------

def test_real_clip(media_dir):
    path = media_dir / "529_2.mp4"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    info = probe(path)
    assert (info.width, info.height) == (376, 352) and info.codec == "h264"
    reader = read(path, VideoInConfig(start=0.5, end=1.5))
    frames = list(reader)
    assert len(frames) == 15 and reader.report.ok
    assert all(f.pixels.shape == (352, 376, 3) for f in frames)
    assert frames[0].time == pytest.approx(0.5, abs=1 / 15)
    assert frames[1].pixels.std() > 10  # a real picture, not a blank frame


def test_real_photo(media_dir):
    path = media_dir / "540.jpg"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    frames = list(read(path))
    assert len(frames) == 1 and frames[0].pixels.shape == (352, 400, 3)
