"""Crop parameters (spec 9.1) and FFHQ alignment (spec 9.2) on synthetic landmarks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.errors import InputError, NoFaceError
from pipeline.face import align
from pipeline.face.align import (
    CropParams,
    align_face,
    align_quad,
    aligned_to_frame,
    apply_crop,
    crop_params,
    crop_scale,
    crop_to_frame,
    crop_window,
    ffhq_quad,
    frame_to_aligned,
    frame_to_crop,
)
from pipeline.tools.synthetic import face_landmarks


def exact_landmarks(centre: tuple[float, float], eye_dist: float) -> np.ndarray:
    """Like :func:`~pipeline.tools.synthetic.face_landmarks` (upright), with the eye points at integer
    offsets so the eye centres are exactly ``centre -/+ (eye_dist / 2, 0)`` in floating point (use dyadic values)."""
    lm = face_landmarks(centre, eye_dist)
    offsets = np.array([(-9, 0), (-4, -4), (4, -4), (9, 0), (4, 4), (-4, 4)], dtype=np.float64)
    cx, cy = centre
    lm[36:42] = offsets + (cx - eye_dist / 2, cy)
    lm[42:48] = offsets + (cx + eye_dist / 2, cy)
    return lm


# ------------------------------------------------------------------------------------------
# crop_params


def test_crop_params_spec_example_scale_0953():
    # Spec 9.1 example: 360x360, scale 0.953 -> h = w = 343, crop 336x336. (Scale 0.953 means the
    # eye centres are 64 / 0.953 = 67.2 px apart; the spec's "65 px" gives scale 0.985, next test.)
    lm = exact_landmarks((180.0, 180.0), 67.25)
    p = crop_params(lm, 360, 360)
    assert p.scale == 64 / 67.25
    assert p.scale == pytest.approx(0.953, abs=2e-3)
    # h = w = round(360 * 0.95167) = round(342.60) = 343; cx = cy = 171.30:
    # left = max(round(-84.70), 0) = 0; right = min(round(427.30), 343) // 8 * 8 = 336.
    assert (p.h, p.w) == (343, 343)
    assert (p.top, p.bottom, p.left, p.right) == (0, 336, 0, 336)
    assert (p.crop_h, p.crop_w) == (336, 336)


def test_crop_params_eyes_65px_apart():
    lm = exact_landmarks((180.0, 180.0), 65.0)
    p = crop_params(lm, 360, 360)
    assert p.scale == 64 / 65
    assert (p.h, p.w) == (354, 354)  # round(354.46)
    assert (p.top, p.bottom, p.left, p.right) == (0, 352, 0, 352)  # 354 // 8 * 8


def test_crop_params_unclipped_is_512():
    lm = exact_landmarks((500.25, 400.75), 64.0)  # scale exactly 1
    p = crop_params(lm, 800, 1000)
    assert p.scale == 1.0 and (p.h, p.w) == (800, 1000)
    # left = round(244.25) = 244 -> 240; right = round(756.25) = 756 -> 752;
    # top = round(144.75) = 145 -> 144; bottom = round(656.75) = 657 -> 656.
    assert (p.left, p.right, p.top, p.bottom) == (240, 752, 144, 656)
    assert (p.crop_h, p.crop_w) == (512, 512)


def test_crop_params_clipped_at_border_and_multiples_of_8():
    lm = exact_landmarks((100.0, 90.0), 64.0)
    p = crop_params(lm, 600, 700)
    assert (p.left, p.top) == (0, 0)
    assert (p.right, p.bottom) == (352, 344)  # round(356) -> 352, round(346) -> 344
    lm = exact_landmarks((650.0, 560.0), 64.0)
    p = crop_params(lm, 600, 700)
    assert (p.right, p.bottom) == (696, 600)  # min(906, 700) -> 696, min(816, 600) -> 600
    assert (p.left, p.top) == (392, 304)  # round(394) -> 392, round(304) -> 304
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(100, 900, size=2)
        c = (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h)
        p = crop_params(face_landmarks(c, rng.uniform(20, 120)), int(h), int(w))
        for v in (p.top, p.bottom, p.left, p.right, p.crop_h, p.crop_w):
            assert v % 8 == 0
        assert 0 <= p.top < p.bottom <= p.h and 0 <= p.left < p.right <= p.w
        assert p.crop_h <= 512 and p.crop_w <= 512


def test_crop_params_round_half_to_even():
    lm = exact_landmarks((300.0, 300.0), 128.0)  # scale 0.5
    p = crop_params(lm, 685, 687)
    assert p.scale == 0.5
    assert (p.h, p.w) == (342, 344)  # round(342.5) = 342, round(343.5) = 344 (half to even)
    # Rounding before the floor to 8: cx - 256 = 7.5 rounds to 8 (truncation would give 0).
    lm = exact_landmarks((263.5 * 2, 300.0), 128.0)
    assert crop_params(lm, 700, 1200).left == 8


def test_crop_params_errors():
    with pytest.raises(InputError):
        crop_params(np.zeros((5, 2)), 100, 100)
    swapped = face_landmarks((50, 50), 30.0)
    swapped[36:48] = np.concatenate([swapped[42:48], swapped[36:42]])
    with pytest.raises(NoFaceError):
        crop_params(swapped, 100, 100)
    with pytest.raises(NoFaceError):
        crop_scale(face_landmarks((50, 50), 30.0, angle_deg=90))


def test_apply_crop_matches_resize_and_slice():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(360, 400, 3), dtype=np.uint8)
    p = crop_params(face_landmarks((190.0, 170.0), 70.0), 360, 400)
    out = apply_crop(frame, p)
    ref = cv2.resize(frame, (p.w, p.h), interpolation=cv2.INTER_LINEAR)[p.top:p.bottom, p.left:p.right]
    assert out.shape == (p.crop_h, p.crop_w, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(InputError):
        apply_crop(frame[:-1], p)


def test_crop_window_and_point_mapping():
    p = CropParams(frame_h=720, frame_w=1280, scale=0.8, h=576, w=1024, top=40, bottom=552, left=320, right=832)
    assert crop_window(p) == pytest.approx((400.0, 50.0, 1040.0, 690.0))
    assert p.window == crop_window(p)
    # Pixel centres: crop pixel 0 covers frame [400, 401.25), centre 400.625 -> index 400.125.
    np.testing.assert_allclose(crop_to_frame(p, np.array([0.0, 0.0])), (400.125, 50.125))
    pts = np.random.default_rng(2).uniform(0, 500, size=(7, 2))
    np.testing.assert_allclose(frame_to_crop(p, crop_to_frame(p, pts)), pts, atol=1e-9)


def test_crop_to_frame_on_image_content():
    # A horizontal/vertical ramp survives bilinear resizing exactly (away from the borders), so a
    # crop pixel's value tells where in the frame it came from.
    h, w = 300, 250
    yy, xx = np.mgrid[:h, :w]
    frame = np.stack([xx % 256, yy % 256, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    p = crop_params(face_landmarks((120.0, 140.0), 75.0), h, w)
    crop = apply_crop(frame, p).astype(np.float64)
    pts = np.array([(10.0, 12.0), (100.0, 50.0), (150.0, 200.0)])
    mapped = crop_to_frame(p, pts)
    for (u, v), (fx, fy) in zip(pts.astype(int), mapped, strict=True):
        assert crop[v, u, 0] == pytest.approx(fx, abs=0.6)
        assert crop[v, u, 1] == pytest.approx(fy, abs=0.6)


# ------------------------------------------------------------------------------------------
# FFHQ alignment


def _expected_aligned_eyes(eye_dist: float, mouth: float, size: int = 256) -> np.ndarray:
    """Hand-derived positions of the eye centres in the aligned image for an upright face.

    e2e = (d, 0), e2m = (0, m): x = e2e - rot(e2m) = (d + m, 0), rescaled to s = max(2d, 1.8m);
    the quad is a square of side 2s centred c = eye_avg + (0, 0.1 m). The eye centres sit at
    ``s -/+ d/2`` across and ``s - 0.1 m`` down, in units of 2s -> aligned pixels (centre-indexed).
    """
    d, m = eye_dist, mouth * eye_dist
    s = max(2 * d, 1.8 * m)
    k = size / (2 * s)
    y = (s - 0.1 * m) * k - 0.5
    return np.array([((s - d / 2) * k - 0.5, y), ((s + d / 2) * k - 0.5, y)])


def _blob_image(h: int, w: int, centres: np.ndarray, bg: int = 90) -> np.ndarray:
    img = np.full((h, w, 3), bg, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for cx, cy in centres:
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.5**2))
        img[..., 0] = np.maximum(img[..., 0], (bg + (255 - bg) * g).astype(np.uint8))
    return img


def _blob_centre(img: np.ndarray, around: np.ndarray, radius: int = 10, bg: int = 90) -> np.ndarray:
    x0, y0 = (np.round(around) - radius).astype(int)
    patch = np.clip(img[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1, 0].astype(np.float64) - bg - 5, 0, None)
    yy, xx = np.mgrid[:patch.shape[0], :patch.shape[1]]
    return np.array([(xx * patch).sum() / patch.sum() + x0, (yy * patch).sum() / patch.sum() + y0])


def test_ffhq_quad_upright_face():
    lm = face_landmarks((200.0, 150.0), 64.0, mouth=1.1)
    quad = ffhq_quad(lm)
    # d = 64, m = 70.4: s = max(128, 126.72) = 128; c = (200, 157.04).
    np.testing.assert_allclose(quad, [[72, 29.04], [72, 285.04], [328, 285.04], [328, 29.04]], atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 12.0, -25.0])
def test_align_face_puts_eyes_at_ffhq_positions(angle):
    eye_dist, mouth = 60.0, 1.15
    lm = face_landmarks((320.0, 260.0), eye_dist, angle_deg=angle, mouth=mouth)
    eyes = np.array(align.eye_centres(lm))
    img = _blob_image(560, 640, eyes)
    out = align_face(img, lm)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    expected = _expected_aligned_eyes(eye_dist, mouth)
    quad = ffhq_quad(lm)
    np.testing.assert_allclose(frame_to_aligned(quad, eyes), expected, atol=1e-9)
    for i in range(2):
        np.testing.assert_allclose(_blob_centre(out, expected[i]), expected[i], atol=0.35)
    np.testing.assert_allclose(aligned_to_frame(quad, expected), eyes, atol=1e-9)


def test_align_face_pads_near_border(monkeypatch):
    calls = []
    real = align._pad_and_blend
    monkeypatch.setattr(align, "_pad_and_blend", lambda *a: calls.append(a[1]) or real(*a))
    eye_dist, mouth = 50.0, 1.1
    lm = face_landmarks((40.0, 30.0), eye_dist, mouth=mouth)  # quad reaches ~60 px past the border
    eyes = np.array(align.eye_centres(lm))
    img = _blob_image(200, 220, eyes)
    out = align_face(img, lm)
    assert len(calls) == 1
    assert min(calls[0]) >= round(0.3 * 2 * 100)  # every side padded by >= rint(0.3 qsize)
    expected = _expected_aligned_eyes(eye_dist, mouth)
    for i in range(2):
        np.testing.assert_allclose(_blob_centre(out, expected[i]), expected[i], atol=0.5)
    # Outside the image the padding is blended towards the median colour, never black.
    assert out[:20, :20].min() > 60
    np.testing.assert_allclose(out[:10, :10].mean(axis=(0, 1)), (90, 90, 90), atol=3)


def test_align_face_no_padding_when_inside(monkeypatch):
    calls = []
    monkeypatch.setattr(align, "_pad_and_blend", lambda *a: calls.append(1))
    lm = face_landmarks((320.0, 260.0), 50.0)
    out = align_face(_blob_image(560, 640, np.array(align.eye_centres(lm))), lm, size=128)
    assert out.shape == (128, 128, 3) and not calls


def test_align_face_shrink_branch():
    # qsize = 4 * 300 = 1200 >= 4 * 256: the image is first shrunk by 2 with Lanczos.
    eye_dist, mouth = 300.0, 1.1
    lm = face_landmarks((800.0, 700.0), eye_dist, mouth=mouth)
    eyes = np.array(align.eye_centres(lm))
    img = np.full((1500, 1600, 3), 90, dtype=np.uint8)
    for cx, cy in eyes:
        cv2.circle(img, (round(cx), round(cy)), 12, (255, 90, 90), -1)
    out = align_face(img, lm)
    expected = _expected_aligned_eyes(eye_dist, mouth)
    for i in range(2):
        np.testing.assert_allclose(_blob_centre(out, expected[i], radius=6), expected[i], atol=1.0)


def test_align_quad_rejects_bad_pixels():
    lm = face_landmarks((50.0, 50.0), 20.0)
    with pytest.raises(InputError):
        align_face(np.zeros((100, 100), np.uint8), lm)
    with pytest.raises(InputError):
        align_quad(np.zeros((100, 100, 3), np.float32), ffhq_quad(lm))


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    for shape, sigma in [((40, 50, 3), 2.2), ((12, 9, 3), 6.0)]:
        img = (rng.random(shape) * 255).astype(np.float32)
        np.testing.assert_allclose(align._gaussian_blur(img, sigma),
                                   ndimage.gaussian_filter(img, [sigma, sigma, 0]), atol=1e-3)
