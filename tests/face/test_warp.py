"""pipeline.face.warp (kornia): the crops, the aligned face and the paste-back on tensors match the host
route (OpenCV crops and paste, Pillow alignment) within one code value, also on noise (the worst case),
at the frame border, shrinking and enlarging."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.face import align, warp
from pipeline.face.align import align_quad, apply_crop, crop_params, ffhq_quad
from pipeline.stages.paste import paste_face
from pipeline.tools.synthetic import face_landmarks

H, W = 540, 960
# (eye centre, eye distance, angle): centred, large, small, at the left/bottom edge, at the top-right corner
FACES = [((480, 270), 64, 0), ((480, 270), 150, 10), ((300, 200), 30, -20), ((60, 480), 90, 5),
         ((930, 40), 120, 0), ((480, 270), 37, 33)]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (H, W, 3), np.uint8)
    ramp = np.linspace(0, 255, W, dtype=np.float32)[None, :, None].repeat(H, 0).repeat(3, 2)
    noise[: H // 2] = ramp[: H // 2].astype(np.uint8)               # half smooth, half noise
    return noise


def _tensor(pixels: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1).to(device)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int))


@pytest.mark.parametrize(("centre", "eyes", "angle"), FACES)
def test_crops_match_opencv_within_one_level(frame, device, centre, eyes, angle):
    params = crop_params(face_landmarks(centre, eyes, angle_deg=angle), H, W)
    [crop] = warp.cut_crops(_tensor(frame, device), [params])
    assert crop.device.type == device and crop.shape == (3, params.crop_h, params.crop_w)
    assert _diff(warp.to_hwc_uint8(crop), apply_crop(frame, params)).max() <= 1


def test_crops_refuse_a_frame_of_another_size(frame):
    params = crop_params(face_landmarks((480, 270), 64), H + 2, W)
    with pytest.raises(ValueError, match="crop is for"):
        warp.cut_crops(_tensor(frame, "cpu"), [params])


def test_aligned_faces_match_the_official_alignment_within_one_level(frame, device):
    quads = [ffhq_quad(face_landmarks(c, e, angle_deg=a)) for c, e, a in FACES]
    got = warp.align_faces(_tensor(frame, device), quads)
    done = 0
    for quad, face in zip(quads, got, strict=True):
        assert (face is None) == warp.needs_host_align(quad, H, W)
        if face is not None:
            assert face.shape == (3, 256, 256)
            assert _diff(warp.to_hwc_uint8(face), align_quad(frame, quad)).max() <= 1
            done += 1
    assert done >= 3


def test_host_route_is_kept_where_the_official_alignment_pads_or_shrinks(frame, monkeypatch):
    """needs_host_align says yes exactly when align_quad pads (or shrinks)."""
    padded = []
    real = align._pad_and_blend
    monkeypatch.setattr(align, "_pad_and_blend", lambda *a: padded.append(1) or real(*a))
    for centre, eyes, angle in FACES:
        quad = ffhq_quad(face_landmarks(centre, eyes, angle_deg=angle))
        padded.clear()
        align_quad(frame, quad)
        assert warp.needs_host_align(quad, H, W) == bool(padded), (centre, eyes)
    assert warp.needs_host_align(ffhq_quad(face_landmarks((2000, 2000), 700)), 4000, 4000)   # shrinks first


@pytest.mark.parametrize(("centre", "eyes", "angle"), FACES)
@pytest.mark.parametrize("kind", ["noise", "smooth"])
def test_paste_matches_opencv_within_one_level(frame, device, centre, eyes, angle, kind):
    params = crop_params(face_landmarks(centre, eyes, angle_deg=angle), H, W)
    rng = np.random.default_rng(1)
    shape = (4 * params.crop_h, 4 * params.crop_w, 3)
    stylized = rng.integers(0, 256, shape, np.uint8) if kind == "noise" else \
        np.broadcast_to(np.linspace(0, 255, shape[1], dtype=np.float32)[None, :, None], shape).astype(np.uint8)
    want = frame.copy()
    paste_face(want, stylized, params, 0.08)
    got = torch.from_numpy(frame.copy()).to(device)
    warp.paste_faces(got, [_tensor(stylized, device)], [params], 0.08)
    assert _diff(got.cpu().numpy(), want).max() <= 1


def test_paste_enlarging_a_small_crop(device):
    """A window bigger than the stylized crop (a face much larger than the model's 4x): bilinear."""
    params = crop_params(face_landmarks((480, 270), 400), H, W)
    x0, _, x1, _ = params.window
    stylized = np.random.default_rng(2).integers(0, 256, (4 * params.crop_h, 4 * params.crop_w, 3), np.uint8)
    assert x1 - x0 > stylized.shape[1]
    base = np.full((H, W, 3), 77, np.uint8)
    want = base.copy()
    paste_face(want, stylized, params, 0.08)
    got = torch.from_numpy(base.copy()).to(device)
    warp.paste_faces(got, [_tensor(stylized, device)], [params], 0.08)
    assert _diff(got.cpu().numpy(), want).max() <= 1


def test_area_matrix_is_opencvs_area_average():
    m = warp.area_matrix(8, 4)
    np.testing.assert_allclose(m[0], [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    m = warp.area_matrix(5, 2)                        # each output covers 2.5 source pixels
    np.testing.assert_allclose(m, [[0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]])
    np.testing.assert_allclose(warp.area_matrix(2048, 723).sum(1), 1.0)
    with pytest.raises(ValueError):
        warp.area_matrix(4, 8)


@pytest.mark.parametrize(("h", "w"), [(1000, 900), (723, 1799), (5, 3)])
def test_area_resize_is_the_area_matrix_product(device, h, w):
    img = torch.rand(3, 2048, 1800, generator=torch.Generator().manual_seed(0)).to(device) * 255
    ay, ax = torch.as_tensor(warp.area_matrix(2048, h)), torch.as_tensor(warp.area_matrix(1800, w))
    want = ay @ img.double().cpu() @ ax.T
    got = warp.area_resize(img, h, w)
    assert got.dtype == img.dtype and (got.double().cpu() - want).abs().max() < 1e-3
