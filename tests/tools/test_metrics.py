"""Flicker metric on tiny synthetic clips: a textured square moving over a textured background."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import InputError, UsageError
from pipeline.face.detect import Face
from pipeline.tools.metrics import FlickerMeter, consistent_mask, flicker, warp_backward

W, H, N = 96, 80, 12
BOX = (14.0, 12.0, 84.0, 72.0)  # covers the square's whole path


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random RGB texture (trackable by optical flow), uint8 [h, w, 3]."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-6) * 50 + 128
    return np.clip(smooth, 0, 255).astype(np.uint8)


def scene(i: int) -> np.ndarray:
    """Frame i: a 32x32 textured square at (20 + 2i, 20 + i) over a dim static texture."""
    frame = (_texture(H, W, 1) // 2 + 40).astype(np.uint8)
    x, y = 20 + 2 * i, 20 + i
    frame[y : y + 32, x : x + 32] = _texture(32, 32, 2)
    return frame


def write(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        stream.options = {"crf": "4"}
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flicker")
    src = [scene(i) for i in range(N)]
    rng = np.random.default_rng(7)
    noisy = []
    for pixels in src:  # per-frame flicker: a random brightness shift plus a random smooth tint
        shift = rng.uniform(-20, 20) + cv2.resize(rng.uniform(-15, 15, (4, 4, 3)), (W, H))
        noisy.append(np.clip(pixels + shift, 0, 255).astype(np.uint8))
    made = {"input": write(root / "in.mp4", src),
            "flicker": write(root / "flicker.mp4", noisy),
            "frozen": write(root / "frozen.mp4", [src[0]] * N),
            "short": write(root / "short.mp4", src[:10]),
            "big": write(root / "big.mp4", [cv2.resize(p, (2 * W, 2 * H)) for p in src])}
    made["same"] = shutil.copy(made["input"], root / "same.mp4")
    return made


class NoDetector:
    def detect(self, pixels):
        raise AssertionError("the detector must not run when boxes are given")


def test_identical_output_matches_the_input_floor(clips):
    r = flicker(clips["input"], clips["same"], face_boxes=BOX, detector=NoDetector())
    assert (r.frames, r.pairs, r.skipped_pairs, r.region) == (N, N - 1, 0, "face")
    assert r.warp_error_output == pytest.approx(r.warp_error_input, rel=1e-6)
    assert r.warp_error_input < 6  # the flow explains the moving square
    assert r.responsiveness == pytest.approx(1.0, abs=1e-6)
    assert 0.3 < r.input_motion < 1.5  # the square (1/4 of the box) moves sqrt(5) px per frame
    assert "fixed box (14, 12, 84, 72)" in r.region_detail


def test_flickering_output_has_a_higher_warping_error(clips):
    r = flicker(clips["input"], clips["flicker"], face_boxes=BOX)
    assert r.warp_error_output > r.warp_error_input + 5
    assert r.excess_warp_error == pytest.approx(r.warp_error_output - r.warp_error_input)
    assert r.warp_error_output_p95 >= r.warp_error_output
    assert r.responsiveness > 0.6  # flicker, but the square still moves with the input


def test_frozen_output_is_not_responsive(clips):
    r = flicker(clips["input"], clips["frozen"], face_boxes=BOX)
    assert abs(r.responsiveness) < 0.1
    assert r.warp_error_output > r.warp_error_input


def test_frame_counts_must_match(clips):
    with pytest.raises(InputError, match=r"frame counts differ: .*in\.mp4 has 12 frames, .*short\.mp4 has 10$"):
        flicker(clips["input"], clips["short"], face_boxes=BOX)
    r = flicker(clips["input"], clips["short"], face_boxes=BOX, max_frames=6)
    assert (r.frames, r.pairs) == (6, 5)


def test_output_of_another_size_is_resized_to_the_input(clips):
    r = flicker(clips["input"], clips["big"], face_boxes=BOX, max_frames=6)
    assert (r.input_size, r.output_size) == ((W, H), (2 * W, 2 * H))
    assert r.warp_error_output < r.warp_error_input + 3  # same pictures, resampled twice
    assert r.responsiveness == pytest.approx(1.0, abs=0.1)
    assert any("resized" in n for n in r.notes)


def test_boxes_per_frame_and_whole_frame_fallback(clips):
    seen = []

    def boxes(index):
        seen.append(index)
        return BOX if index % 2 else None

    r = flicker(clips["input"], clips["same"], face_boxes=boxes, max_frames=6)
    assert seen == list(range(6))
    assert (r.pairs, r.skipped_pairs, r.region) == (3, 2, "face")  # frames 1, 3, 5 have a box

    r = flicker(clips["input"], clips["same"], face_boxes=lambda i: None, max_frames=4)
    assert (r.region, r.pairs) == ("frame", 3)
    assert "no face" in r.region_detail and any("whole frame" in n for n in r.notes)


def test_detector_runs_every_n_frames_and_boxes_grow(clips):
    class Stub:
        calls = 0

        def detect(self, pixels):
            Stub.calls += 1
            return [Face(box=(30, 20, 70, 60), landmarks=np.zeros((68, 2)))]

    r = flicker(clips["input"], clips["same"], detector=Stub(), detect_every=5)
    assert Stub.calls == 3  # frames 0, 5, 10
    assert r.region == "face" and "Stub every 5 frames" in r.region_detail


def test_report_as_dict_and_table(clips):
    r = flicker(clips["input"], clips["flicker"], face_boxes=BOX, max_frames=4)
    d = json.loads(json.dumps(r.as_dict()))
    assert d["pairs"] == 3 and d["input_size"] == [W, H] and "0-255" in d["units"]["warp_error"]
    table = r.as_table()
    assert "output" in table.splitlines()[0] and "warping error, mean" in table
    assert f"{r.warp_error_output:.2f}" in table


def test_bad_options():
    with pytest.raises(UsageError):
        FlickerMeter(flow_size=8)
    with pytest.raises(UsageError, match="x1 > x0"):
        flicker("in.mp4", "out.mp4", face_boxes=(10, 10, 5, 20))


def test_warp_and_consistency_by_hand():
    src = np.arange(20, dtype=np.float32).reshape(4, 5)  # value = 5 * y + x
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0] = 1.5  # sample 1.5 px to the right
    warped = warp_backward(src, flow)
    assert warped[1, 0] == pytest.approx(6.5) and warped[2, 2] == pytest.approx(13.5)
    # A shift and its exact inverse agree except where the sample leaves the frame.
    back = -flow
    mask = consistent_mask(flow, back)
    assert mask[:, :3].all() and not mask[:, 4].any()
    # A reverse flow that disagrees by 2 px (|.|^2 = 4 > 0.01 * (2.25 + 0.25) + 0.5) is occlusion.
    assert not consistent_mask(flow, np.full_like(flow, 0.5))[:, :3].any()


def test_meter_on_arrays_without_files():
    meter = FlickerMeter()
    with pytest.raises(InputError, match="at least 2"):
        meter.report()
    frames = [scene(i) for i in range(4)]
    for i, pixels in enumerate(frames):
        meter.add(pixels, frames[0], BOX if i == 3 else None)  # frozen output; a face on frame 3 only
    r = meter.report()
    assert (r.frames, r.pairs, r.skipped_pairs, r.region) == (4, 1, 2, "face")
    assert abs(r.responsiveness) < 0.1 and r.warp_error_output > r.warp_error_input
    with pytest.raises(InputError, match="uint8"):
        meter.add(frames[0].astype(np.float32), frames[0], None)


def test_default_detector_is_dlib(clips, monkeypatch):
    made = []

    class Empty:
        def detect(self, pixels):
            return []

    def fake_make(name, **kw):
        made.append((name, kw))
        return Empty()

    monkeypatch.setattr("pipeline.tools.metrics.make_detector", fake_make)
    r = flicker(clips["input"], clips["same"], max_frames=3)
    assert made == [("dlib", {"max_side": 640})]
    assert r.region == "frame" and r.pairs == 2  # no face anywhere: the whole frame
