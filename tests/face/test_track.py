"""FaceTracker on synthetic landmark sequences (no detector, no images)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError, NoFaceError
from pipeline.face.align import crop_params, eye_centres
from pipeline.face.detect import Face
from pipeline.face.track import FaceTracker, TrackerConfig, robust_scale
from pipeline.tools.synthetic import face_landmarks

H, W = 720, 1280


def make_face(centre: tuple[float, float], eye_dist: float = 64.0, noise: float = 0.0,
              rng: np.random.Generator | None = None) -> Face:
    lm = face_landmarks(centre, eye_dist)
    if noise:
        lm = lm + (rng or np.random.default_rng()).normal(0.0, noise, lm.shape)
    x, y = centre
    box = (x - 1.1 * eye_dist, y - 0.9 * eye_dist, x + 1.1 * eye_dist, y + 1.9 * eye_dist)
    return Face(box=box, landmarks=lm, score=1.0)


def midpoint(lm: np.ndarray) -> np.ndarray:
    left, right = eye_centres(lm)
    return (left + right) / 2


def test_still_face_with_noise_keeps_crop_fixed():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(H, W)
    raw, smooth, windows = [], [], set()
    for _ in range(100):
        face = make_face((640.0, 330.0), noise=1.0, rng=rng)
        (tf,) = tracker.update([face])
        assert not tf.lost and tf.face is face and tf.frames_lost == 0
        raw.append(face.landmarks)
        smooth.append(tf.landmarks)
        windows.add((tf.crop.top, tf.crop.left, tf.crop.bottom, tf.crop.right))
    assert len(windows) == 1  # the crop never moves
    (top, left, bottom, right), = windows
    assert (bottom - top, right - left) == (512, 512)
    raw_jitter = np.diff(np.array(raw)[20:], axis=0).std()
    smooth_jitter = np.diff(np.array(smooth)[20:], axis=0).std()
    assert smooth_jitter < 0.35 * raw_jitter
    # The smoothed face stays on the true face.
    assert np.abs(midpoint(smooth[-1]) - (640.0, 330.0)).max() < 0.8


def test_moving_face_is_followed_with_bounded_lag():
    rng = np.random.default_rng(1)
    tracker = FaceTracker(H, W, TrackerConfig(fps=25.0))
    lefts = []
    for i in range(80):
        true = np.array([300.0 + 4.0 * i, 300.0 + 1.0 * i])  # 100 px/s right, 25 px/s down
        (tf,) = tracker.update([make_face(tuple(true), noise=0.7, rng=rng)])
        lefts.append(tf.crop.left)
        if i >= 10:
            assert np.abs(midpoint(tf.landmarks) - true).max() < 6.0  # lag stays small
            x0, y0, x1, y1 = tf.crop.window
            # The eye midpoint stays within one grid step (+ dead band + lag) of the window centre.
            assert abs((x0 + x1) / 2 - true[0]) < 8 * 1.25 + 6 + 1
            assert abs((y0 + y1) / 2 - true[1]) < 8 * 1.25 + 6 + 1
    assert lefts[-1] - lefts[0] >= 4.0 * 79 - 16
    assert all(b >= a for a, b in zip(lefts, lefts[1:], strict=False))  # never steps back
    assert all(v % 8 == 0 for v in lefts)


def test_crop_size_constant_and_clipped_to_frame():
    tracker = FaceTracker(H, W)
    sizes, tops = set(), []
    for i in range(60):
        eye_dist = 64.0 * (1 + i / 60)  # the face grows; the crop size must not
        (tf,) = tracker.update([make_face((300.0 - 6 * i, 200.0 - 4 * i), eye_dist=eye_dist)])
        c = tf.crop
        sizes.add((c.crop_h, c.crop_w, c.h, c.w, c.scale))
        assert 0 <= c.top and c.bottom <= c.h and 0 <= c.left and c.right <= c.w
        assert c.top % 8 == 0 and c.left % 8 == 0 and c.crop_h % 8 == 0 and c.crop_w % 8 == 0
        tops.append(c.top)
    assert len(sizes) == 1
    assert tops[-1] == 0 and tf.crop.left == 0  # pushed against the top-left corner


def test_first_frame_matches_official_crop():
    face = make_face((501.3, 333.7), eye_dist=58.0, noise=0.8, rng=np.random.default_rng(4))
    (tf,) = FaceTracker(H, W).update([face])
    assert tf.crop == crop_params(face.landmarks, H, W)  # unclipped: same window as spec 9.1


def test_small_frame_crop_is_frame_sized():
    tracker = FaceTracker(360, 360)
    (tf,) = tracker.update([make_face((180.0, 180.0), eye_dist=67.25)])
    c = tf.crop
    assert (c.h, c.w) == (343, 343) and (c.crop_h, c.crop_w) == (336, 336) and (c.top, c.left) == (0, 0)


def test_lost_frames_are_flagged_and_held_then_dropped():
    tracker = FaceTracker(H, W, TrackerConfig(fps=25.0, max_lost_s=0.5))
    face = make_face((500.0, 300.0))
    for _ in range(5):
        (tf,) = tracker.update([face])
    held = tf
    for k in range(1, 6):
        (tf,) = tracker.update([])
        assert tf.lost and tf.face is None and tf.frames_lost == k
        assert tf.crop == held.crop
        np.testing.assert_array_equal(tf.landmarks, held.landmarks)
    (tf,) = tracker.update([make_face((505.0, 300.0))])
    assert not tf.lost and tf.frames_lost == 0 and tf.track_id == 0
    for _ in range(12):
        out = tracker.update([])
    assert out[0].lost
    assert tracker.update([]) == []  # unseen for more than 0.5 s: dropped
    (tf,) = tracker.update([face])
    assert tf.track_id == 1 and not tf.lost


def test_skipped_detection_is_not_lost():
    tracker = FaceTracker(H, W)
    (first,) = tracker.update([make_face((500.0, 300.0))])
    for _ in range(4):
        (tf,) = tracker.update(None)
        assert not tf.lost and tf.face is None and tf.crop == first.crop
    assert tracker.update([])[0].lost
    (tf,) = tracker.update(None)
    assert tf.lost  # stays lost until a detection matches


def test_detection_every_n_frames_follows_motion():
    tracker = FaceTracker(H, W)
    for i in range(60):
        true = (300.0 + 5.0 * i, 300.0)
        (tf,) = tracker.update([make_face(true)] if i % 3 == 0 else None)
        assert not tf.lost
    assert abs(midpoint(tf.landmarks)[0] - true[0]) < 25.0


def test_two_faces_keep_stable_ids():
    rng = np.random.default_rng(2)
    tracker = FaceTracker(H, W, TrackerConfig(mode="all"))
    for i in range(40):
        a = make_face((300.0 + 2 * i, 300.0), noise=0.5, rng=rng)
        b = make_face((900.0 - 2 * i, 350.0), eye_dist=50.0, noise=0.5, rng=rng)
        faces = [b, a] if i % 2 else [a, b]  # detector order changes after the first frame
        out = tracker.update(faces)
        assert [tf.track_id for tf in out] == [0, 1]
        assert out[0].face is a and out[1].face is b
    assert out[0].crop.scale == pytest.approx(1.0, rel=0.02)  # each track has its own scale
    assert out[1].crop.scale == pytest.approx(64 / 50, rel=0.02)
    out = tracker.update([b])  # a leaves
    assert [(tf.track_id, tf.lost) for tf in out] == [(0, True), (1, False)]
    c = make_face((640.0, 100.0), eye_dist=40.0)
    out = tracker.update([c, b])
    assert [(tf.track_id, tf.lost) for tf in out] == [(0, True), (1, False), (2, False)]
    assert out[2].face is c


def test_largest_mode_sticks_to_its_face_and_keeps_clip_scale():
    tracker = FaceTracker(H, W, TrackerConfig(max_lost_s=0.2))
    big, small = make_face((400.0, 300.0), eye_dist=80.0), make_face((900.0, 300.0), eye_dist=40.0)
    (tf,) = tracker.update([small, big])
    assert tf.face is big and tracker.scale == pytest.approx(0.8)
    grown = make_face((900.0, 300.0), eye_dist=100.0)
    (tf,) = tracker.update([grown, big])
    assert tf.face is big  # the followed face does not switch to a larger newcomer
    for _ in range(7):
        tracker.update([grown])  # big is gone; after 0.2 s the track is dropped
    (tf,) = tracker.update([grown])
    assert tf.track_id == 1 and tf.face is grown
    assert tf.crop.scale == pytest.approx(0.8)  # one crop size per clip


def test_fixed_scale_and_robust_scale():
    faces = [make_face((400.0, 300.0), eye_dist=d) for d in (60.0, 64.0, 200.0)]
    scale = robust_scale(f.landmarks for f in faces)
    assert scale == pytest.approx(1.0)
    tracker = FaceTracker(H, W, TrackerConfig(scale=scale))
    (tf,) = tracker.update([faces[2]])
    assert tf.crop.scale == scale and (tf.crop.h, tf.crop.w) == (H, W)
    with pytest.raises(NoFaceError):
        robust_scale([])


def test_timestamps_and_config_validation():
    tracker = FaceTracker(H, W)
    for t in (0.0, 0.04, 0.04, 0.2):  # a repeated timestamp is tolerated
        (tf,) = tracker.update([make_face((500.0, 300.0))], t=t)
    assert not tf.lost
    with pytest.raises(InputError):
        TrackerConfig(mode="nearest")
    with pytest.raises(InputError):
        FaceTracker(0, 10)
