"""detect/crop: a fixed synthetic face gives the crop geometry of spec 9.1 (eyes 64 px apart -> scale
1, a window of +-padding around the eyes, edges on multiples of 8), the crop pixels cut from the
frame, aligned faces only where asked, detection every N-th frame, faceless frames passed through."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.face.align import align_face
from pipeline.records import Frame, UncutFace
from pipeline.stages.detect_crop import FaceConfig, locate
from pipeline.tools.synthetic import FixedFaceDetector, MovingTexture, synthetic_face

W, H = 320, 240


def frames(n: int) -> list[Frame]:
    tex = MovingTexture((W, H), seed=3)
    return [Frame(i, i, i / 10, np.ascontiguousarray(tex.frame(i))) for i in range(n)]


def test_crop_geometry_and_pixels():
    det = FixedFaceDetector(synthetic_face(160, 100, 64.0))        # eyes 64 px apart: scale 1
    located = list(locate(frames(3), det, FaceConfig(padding=32), (W, H), 10))
    for rec in located:
        (face,) = rec.faces
        c = face.crop
        assert c.scale == pytest.approx(1.0) and (c.h, c.w) == (H, W)
        # x: round(160 -/+ 32) = 128, 192; y: round(100 -/+ 32) = 68 -> 64 (down to a multiple of 8), 132 -> 128
        assert (c.left, c.right, c.top, c.bottom) == (128, 192, 64, 128)
        assert np.array_equal(face.pixels, rec.frame.pixels[64:128, 128:192])
        assert face.track_id == located[0].faces[0].track_id
        np.testing.assert_allclose(face.landmarks, det.face.landmarks, atol=1e-3)   # a still face stays put


def test_aligned_faces_where_asked():
    det = FixedFaceDetector(synthetic_face(160, 100, 64.0))
    every = list(locate(frames(5), det, FaceConfig(padding=32), (W, H), 10))
    assert all(r.faces[0].aligned.shape == (256, 256, 3) for r in every)
    first = every[0]
    assert np.array_equal(first.faces[0].aligned, align_face(first.frame.pixels, first.faces[0].landmarks))
    third = list(locate(frames(5), det, FaceConfig(padding=32), (W, H), 10, aligned_every=3))
    assert [r.faces[0].aligned is not None for r in third] == [True, False, False, True, False]
    once = list(locate(frames(5), det, FaceConfig(padding=32), (W, H), 10, aligned_every=0))
    assert [r.faces[0].aligned is not None for r in once] == [True, False, False, False, False]


def test_detect_every_and_no_face():
    det = FixedFaceDetector(synthetic_face(160, 100, 64.0))
    located = list(locate(frames(5), det, FaceConfig(detect_every=2, padding=32), (W, H), 10))
    assert det.calls == 3                                           # frames 0, 2, 4; tracked in between
    assert all(len(r.faces) == 1 for r in located)
    nobody = FixedFaceDetector(synthetic_face(160, 100, 64.0), on=set())
    src = frames(3)
    out = list(locate(src, nobody, FaceConfig(), (W, H), 10))
    assert [r.faces for r in out] == [[], [], []] and [r.frame for r in out] == src


def test_all_faces_get_their_own_track():
    det = FixedFaceDetector(synthetic_face(80, 100, 40.0), synthetic_face(240, 100, 48.0))
    located = list(locate(frames(2), det, FaceConfig(faces="all", padding=32), (W, H), 10))
    assert [len(r.faces) for r in located] == [2, 2]
    assert len({f.track_id for f in located[0].faces}) == 2
    largest = list(locate(frames(2), det, FaceConfig(padding=32), (W, H), 10))
    assert largest[0].faces[0].crop.scale == pytest.approx(64 / 48)      # the larger face


def test_config_checks():
    with pytest.raises(ValueError):
        FaceConfig(faces="some")
    with pytest.raises(ValueError):
        FaceConfig(detect_every=0)


def test_without_cutting_the_faces_carry_the_same_geometry_only():
    """cut=False (the device route): same tracks, crop boxes and landmarks, nothing cut, and
    ``align_later`` exactly where the host route cuts an aligned face; a reader outside the stages
    still gets the host route's pictures (cut on first read)."""
    det = FixedFaceDetector(synthetic_face(160, 100, 64.0))
    host = list(locate(frames(5), det, FaceConfig(padding=32), (W, H), 10, aligned_every=3))
    geometry = list(locate(frames(5), det, FaceConfig(padding=32), (W, H), 10, aligned_every=3, cut=False))
    for a, b in zip(host, geometry, strict=True):
        (fa,), (fb,) = a.faces, b.faces
        assert isinstance(fb, UncutFace) and fb.frame_pixels is b.frame.pixels
        assert (fb.track_id, fb.crop) == (fa.track_id, fa.crop)
        np.testing.assert_array_equal(fb.landmarks, fa.landmarks)
        assert fb.cut("crop") is None and fb.cut("aligned") is None and fb.crop_shape == fa.pixels.shape[:2]
        assert fb.align_later == (fa.aligned is not None) == fb.wants_aligned
    assert [r.faces[0].align_later for r in geometry] == [True, False, False, True, False]
    first, second = host[0].faces[0], geometry[0].faces[0]
    assert np.array_equal(second.pixels, first.pixels) and np.array_equal(second.aligned, first.aligned)
    assert second.cut("crop") is second.pixels and geometry[1].faces[0].aligned is None
