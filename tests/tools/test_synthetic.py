"""The synthetic inputs: face landmarks with the geometry asked for, the fixed detector, the moving
texture, and the one clip writer (frame count, timestamps, rotation, audio, audio-only)."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.errors import UsageError
from pipeline.face.align import crop_scale, eye_centres
from pipeline.tools.synthetic import (
    FixedFaceDetector,
    MovingTexture,
    Tone,
    face_landmarks,
    make_synthetic_clip,
    synthetic_face,
    write_clip,
)


def test_template_eye_centres_and_mouth():
    lm = face_landmarks((100.0, 50.0), 40.0)
    assert lm.shape == (68, 2)
    left, right = eye_centres(lm)
    np.testing.assert_allclose(left, (80.0, 50.0), atol=1e-9)
    np.testing.assert_allclose(right, (120.0, 50.0), atol=1e-9)
    np.testing.assert_allclose((lm[48] + lm[54]) / 2, (100.0, 94.0), atol=1e-9)    # 1.1 eye distances below


def test_turned_landmarks_turn_the_eyes_counter_clockwise():
    lm = face_landmarks((0.0, 0.0), 10.0, angle_deg=90)
    left, right = eye_centres(lm)
    # on screen (y down) a counter-clockwise quarter turn takes the right eye from +x to -y (up)
    np.testing.assert_allclose(right, (0.0, -5.0), atol=1e-9)
    np.testing.assert_allclose(left, (0.0, 5.0), atol=1e-9)


def test_synthetic_face_has_the_eye_distance_asked_for():
    face = synthetic_face(160, 100, 90.0)
    left, right = eye_centres(face.landmarks)
    assert np.allclose(right - left, (90.0, 0.0))
    assert crop_scale(face.landmarks) == pytest.approx(64 / 90)
    assert face.landmarks[48:55, 1].min() > left[1]              # mouth below the eyes
    assert face.box == (70.0, 10.0, 250.0, 280.0) and face.score == 1.0


def test_fixed_detector_reports_its_faces_on_the_chosen_calls():
    a, b = synthetic_face(40, 40, 24), synthetic_face(120, 40, 24)
    det = FixedFaceDetector(a, b, on={0, 2})
    pixels = np.zeros((8, 8, 3), np.uint8)
    assert [len(det.detect(pixels)) for _ in range(4)] == [2, 0, 2, 0]
    assert det.calls == 4 and det.face is a
    assert FixedFaceDetector(a).detect(pixels) == [a]


def test_moving_texture_moves():
    tex = MovingTexture((48, 32))
    a, b = tex.frame(0), tex.frame(1)
    assert a.shape == (32, 48, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, tex.base[:32, :48])          # views of one picture: frame i is
    np.testing.assert_array_equal(b, tex.base[1:33, 3:51])        # offset by (3i, i) until it turns back


def _decoded(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
        return frames, v.time_base, [s.layout.name for s in c.streams.audio], c.streams.video[0]


def test_write_clip_keeps_pictures_and_variable_timestamps(tmp_path):
    pictures = [np.full((16, 24, 3), 30 * i, np.uint8) for i in range(4)]
    pts = [0, 1, 4, 5]
    path = write_clip(tmp_path / "vfr.mkv", pictures.__getitem__, codec="ffv1", pix_fmt="bgr0", pts=pts,
                      time_base=Fraction(1, 20), audio=Tone(hz=(440.0, 660.0)))
    frames, tb, audio, _ = _decoded(path)
    assert [p * tb for p, _ in frames] == [Fraction(p, 20) for p in pts]
    for (_, got), want in zip(frames, pictures, strict=True):
        np.testing.assert_array_equal(got, want)                  # ffv1 in bgr0 is lossless
    assert audio == ["stereo"]


def test_write_clip_rotation_is_stored_turned(tmp_path):
    upright = np.zeros((16, 32, 3), np.uint8)
    upright[:4] = 255                                             # a white band at the top
    path = write_clip(tmp_path / "r.mp4", lambda i: upright, frames=2, rotation=90)
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (16, 32)                    # stored on its side


def test_audio_only_and_the_benchmark_clip(tmp_path):
    voice = write_clip(tmp_path / "voice.m4a", None, audio=Tone(seconds=0.5))
    with av.open(str(voice)) as c:
        assert not c.streams.video and c.streams.audio[0].layout.name == "mono"
    clip = make_synthetic_clip(tmp_path / "bench.mp4", 3, (48, 32))
    frames, _, audio, v = _decoded(clip)
    assert len(frames) == 3 and frames[0][1].shape == (32, 48, 3) and audio == ["stereo"]
    with pytest.raises(UsageError, match="even"):
        make_synthetic_clip(tmp_path / "odd.mp4", 3, (47, 32))
    with pytest.raises(UsageError, match="pictures or audio"):
        write_clip(tmp_path / "nothing.mp4", None)
