"""``--ray`` at the edges a plain run handles too, each against a plain ``facestyle convert`` on a
tiny clip with chunks of one second: an H.264 source whose B-frames cross every seam (and H.264
output played back), a variable frame rate, detection every third frame with the faceless frames
dropped."""
from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.cluster import RayConfig, convert_on_ray
from pipeline.tools.synthetic import Tone, write_clip
from tests.clips import decode_problems
from tests.cluster.test_ray_convert import assert_same, frames, options, plain

ONE_GOP = {"x264-params": "bframes=3:b-adapt=0:keyint=300:min-keyint=300:scenecut=0"}


@pytest.fixture(scope="module")
def still(face_photo) -> np.ndarray:
    pixels = cv2.cvtColor(cv2.imread(str(face_photo)), cv2.COLOR_BGR2RGB)
    h, w = (n - n % 2 for n in pixels.shape[:2])
    return pixels[:h, :w]


def drifting(still: np.ndarray, blank: range = range(0)):
    """The photo drifting right 2 px a frame; the frames in ``blank`` are flat grey (no face)."""
    grey = np.full_like(still, 128)
    return lambda i: grey if i in blank else np.roll(still, 2 * i, axis=1)


def run_ray(cluster, src: Path, out: Path, opts):
    [result] = convert_on_ray([(src, out)], opts, RayConfig(cluster[0].address, chunk_seconds=1.0))
    assert result.ok, result.error
    assert result.chunks["total"] >= 2
    return result


def packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(video=0) if p.size]


def seconds(path: Path) -> list[float]:
    """Each decoded frame's time, to the millisecond (the containers' time bases differ)."""
    with av.open(str(path)) as c:
        return [round(float(f.pts * f.time_base), 3) for f in c.decode(video=0)]


def test_h264_source_with_b_frames_across_seams(cluster, still, tiny_ckpt_path, tmp_path):
    src = write_clip(tmp_path / "bframes.mp4", drifting(still), frames=30, fps=10, options=ONE_GOP,
                     audio=Tone(amplitude=0.2))
    source = packets(src)
    assert sum(p.is_keyframe for p in source) == 1                     # every seam is inside the one GOP
    assert any(p.pts != p.dts for p in source)                          # reordered: B-frames
    opts = options(tiny_ckpt_path)
    run_ray(cluster, src, tmp_path / "ray.mkv", opts)
    assert_same(plain(src, opts, tmp_path), tmp_path / "ray.mkv")

    h264 = replace(options(tiny_ckpt_path), codec="h264")      # H.264 in .mp4 (plain's in .mkv): played back alike
    result = run_ray(cluster, src, tmp_path / "ray.mp4", h264)
    mine, theirs = frames(tmp_path / "ray.mp4"), frames(plain(src, h264, tmp_path))
    assert seconds(tmp_path / "ray.mp4") == seconds(plain(src, h264, tmp_path)) and len(mine) == 30
    assert sum(p.is_keyframe for p in packets(tmp_path / "ray.mp4")) == result.chunks["total"]
    assert not decode_problems(tmp_path / "ray.mp4")
    worst = max(np.abs(a.astype(int) - b.astype(int)).mean() for (_, a), (_, b) in zip(mine, theirs, strict=True))
    assert worst < 2.0                                                  # the same pictures, coded apart


def test_variable_frame_rate(cluster, still, tiny_ckpt_path, tmp_path):
    stamps = [0, 100, 150, 300, 330, 360, 500, 620, 700, 760, 900, 1000, 1040, 1200, 1290, 1400, 1550, 1600,
              1700, 1850, 1900, 2050, 2100, 2300]                     # ms
    src = write_clip(tmp_path / "vfr.mkv", drifting(still), pts=stamps, time_base=Fraction(1, 1000), fps=10,
                     audio=Tone(amplitude=0.2))
    opts = options(tiny_ckpt_path)
    run_ray(cluster, src, tmp_path / "ray.mkv", opts)
    out = tmp_path / "ray.mkv"
    assert_same(plain(src, opts, tmp_path), out)
    pts = [p for p, _ in frames(out)]
    assert len({b - a for a, b in zip(pts, pts[1:], strict=False)}) > 3   # still variable


def test_detect_every_third_frame_and_drop_lost(cluster, still, tiny_ckpt_path, tmp_path):
    src = write_clip(tmp_path / "gap.mp4", drifting(still, blank=range(9, 17)), frames=35, fps=10,
                     audio=Tone(amplitude=0.2))
    opts = options(tiny_ckpt_path, detect_every=3, drop_lost=True)
    result = run_ray(cluster, src, tmp_path / "ray.mkv", opts)
    assert result.frames_in == 35 and 19 <= result.frames_out < 35      # the faceless frames left out
    assert_same(plain(src, opts, tmp_path), tmp_path / "ray.mkv")
