"""paste: the feathered blend at hand-computed pixels, hard edges at the frame border, the tensor
path against the NumPy one, and the stage in full and crop mode (pass-through, dropped frames,
the lost face's window, YUV planes from the on-device route)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.face.align import CropParams
from pipeline.media.yuv import rgb_to_yuv420
from pipeline.records import FaceCrop, Frame, Generated, Inverted, Located
from pipeline.stages.paste import PasteConfig, feather_mask, paste, paste_face, paste_face_tensor

# A 60x40 frame at scale 1; the crop is x in [16, 40), y in [8, 24): a 24x16 window.
CROP = CropParams(frame_h=40, frame_w=60, scale=1.0, h=40, w=60, top=8, bottom=24, left=16, right=40)


def rise(k: int, width: int) -> float:
    """The raised-cosine weight of the k-th sample of a soft edge ``width`` samples wide."""
    return 0.5 - 0.5 * math.cos(math.pi * (k + 0.5) / width)


def test_feather_mask_values():
    m = feather_mask(10, 12, 0.2, (True, True, True, True))         # width round(0.2 * 10) = 2
    assert m.shape == (10, 12, 1) and m.dtype == np.float32
    r0, r1 = rise(0, 2), rise(1, 2)                                 # 0.1464, 0.8536
    assert m[0, 0, 0] == pytest.approx(r0 * r0)
    assert m[1, 5, 0] == pytest.approx(r1)
    assert m[9, 11, 0] == pytest.approx(r0 * r0)                     # the far corner mirrors the near one
    assert m[5, 6, 0] == 1.0
    hard = feather_mask(10, 12, 0.2, (False, True, True, True))     # left edge on the frame border
    assert hard[5, 0, 0] == 1.0 and hard[0, 0, 0] == pytest.approx(r0)
    assert np.all(feather_mask(6, 6, 0.0, (True,) * 4) == 1.0)


def test_paste_face_blends_at_hand_computed_pixels():
    pixels = np.zeros((40, 60, 3), np.uint8)
    stylized = np.full((64, 96, 3), 200, np.uint8)                  # 4x the 16x24 crop, uniform
    paste_face(pixels, stylized, CROP, feather=0.25)                # soft edge: round(0.25 * 16) = 4 px
    assert pixels[8, 16, 0] == round(200 * rise(0, 4) ** 2)         # corner: 0.29 -> 0
    assert pixels[9, 21, 0] == round(200 * rise(1, 4))              # 61.7 -> 62
    assert pixels[11, 19, 1] == round(200 * rise(3, 4) * rise(3, 4))
    assert pixels[16, 28].tolist() == [200, 200, 200]               # inside: the stylized face
    assert not pixels[:8].any() and not pixels[24:].any()           # outside the window: untouched
    assert not pixels[:, :16].any() and not pixels[:, 40:].any()


def test_window_on_the_frame_border_has_a_hard_edge():
    crop = CropParams(frame_h=40, frame_w=60, scale=1.0, h=40, w=60, top=8, bottom=24, left=0, right=24)
    pixels = np.zeros((40, 60, 3), np.uint8)
    paste_face(pixels, np.full((64, 96, 3), 200, np.uint8), crop, feather=0.25)
    assert pixels[16, 0, 0] == 200                                  # left edge = frame edge: not feathered
    assert pixels[16, 23, 0] == round(200 * rise(0, 4))             # right edge: feathered


def test_tensor_paste_matches_the_numpy_paste():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    for size in ((64, 96), (8, 12)):                                # shrink (area) and enlarge (bilinear)
        stylized = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        a = base.copy()
        paste_face(a, stylized, CROP, 0.25)
        b = torch.from_numpy(base.copy())
        paste_face_tensor(b, torch.from_numpy(stylized), CROP, 0.25)
        diff = np.abs(a.astype(int) - b.numpy().astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.5, size
    uniform = np.full((64, 96, 3), 90, np.uint8)
    a, b = base.copy(), torch.from_numpy(base.copy())
    paste_face(a, uniform, CROP, 0.25)
    paste_face_tensor(b, torch.from_numpy(uniform), CROP, 0.25)
    assert np.array_equal(a, b.numpy())


def record(i: int, with_face: bool, value: int = 200) -> Generated:
    pixels = np.full((40, 60, 3), 10 * i, np.uint8)
    frame = Frame(index=i, pts=3 * i, time=i / 10, pixels=pixels)
    faces = [FaceCrop(0, CROP, np.zeros((68, 2)), np.zeros((16, 24, 3), np.uint8))] if with_face else []
    images = [np.full((64, 96, 3), value, np.uint8)] if with_face else []
    return Generated(Inverted(Located(frame, faces), [None] * len(faces)), images)


def test_full_mode_pastes_and_passes_faceless_frames_through():
    recs = [record(0, True), record(1, False), record(2, True)]
    out = list(paste(recs, PasteConfig(feather=0.25)))
    assert [(o.index, o.pts, o.time) for o in out] == [(0, 0, 0.0), (1, 3, 0.1), (2, 6, 0.2)]
    assert out[1].pixels is recs[1].inverted.located.frame.pixels  # untouched, not copied
    expected = np.full((40, 60, 3), 20, np.uint8)
    paste_face(expected, np.full((64, 96, 3), 200, np.uint8), CROP, 0.25)
    assert np.array_equal(out[2].pixels, expected)
    assert recs[2].inverted.located.frame.pixels[16, 28, 0] == 20   # the source frame is not modified
    assert all(o.yuv is None for o in out)


def test_crop_mode_drops_frames_before_the_first_face_and_holds_the_window(caplog):
    recs = [record(0, False), record(1, True), record(2, False)]
    out = list(paste(recs, PasteConfig(mode="crop")))
    assert [o.index for o in out] == [1, 2]
    assert out[0].pixels.shape == (64, 96, 3) and np.all(out[0].pixels == 200)
    assert out[1].pixels.shape == (64, 96, 3) and np.all(out[1].pixels == 20)   # frame 2's window, scaled
    assert "1 frame(s) before the first face were dropped" in caplog.text


def test_on_device_route_gives_yuv_planes_of_the_same_picture():
    recs = [record(0, True), record(1, False)]
    host = list(paste(recs, PasteConfig(feather=0.25)))
    dev = list(paste(recs, PasteConfig(feather=0.25), device=torch.device("cpu")))
    for h, d in zip(host, dev, strict=True):
        assert d.pixels is None and (d.index, d.pts) == (h.index, h.pts)
        want = [p.numpy() for p in rgb_to_yuv420(torch.from_numpy(h.pixels))]
        for got, ref in zip(d.yuv, want, strict=True):
            assert got.shape == ref.shape and np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert dev[0].size == (60, 40)


def test_on_device_route_reuses_the_uploaded_frame_and_leaves_it_as_it_was():
    """A frame the invert stage already uploaded (to cut the crops there) is not uploaded again: the
    paste works on a copy of it, and neither it nor the source frame changes."""
    rec = record(2, True)
    located = rec.inverted.located
    uploaded = torch.full((40, 60, 3), 20, dtype=torch.uint8)          # a distinct tensor: the "device" copy
    located.on_device = uploaded
    located.frame.pixels[:] = 99                                        # so a re-upload would show
    (out,) = paste([rec], PasteConfig(feather=0.25), device=torch.device("cpu"))
    expected = np.full((40, 60, 3), 20, np.uint8)
    paste_face(expected, np.full((64, 96, 3), 200, np.uint8), CROP, 0.25)
    want = [p.numpy() for p in rgb_to_yuv420(torch.from_numpy(expected))]
    for got, ref in zip(out.yuv, want, strict=True):
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert torch.all(uploaded == 20) and np.all(located.frame.pixels == 99)
    assert located.on_device is None                                    # released after its last use


def test_on_device_route_can_leave_nv12_for_the_encoder():
    """nv12=True (an NVENC encoder): the same planes, left in one NV12 buffer instead of downloaded;
    a frame of odd size cannot be NV12 and comes down as planes."""
    recs = [record(0, True), record(1, False)]
    planes = list(paste(recs, PasteConfig(feather=0.25), device=torch.device("cpu")))
    nv12 = list(paste([record(0, True), record(1, False)], PasteConfig(feather=0.25), device=torch.device("cpu"),
                      nv12=True))
    for p, n in zip(planes, nv12, strict=True):
        assert n.yuv is None and n.pixels is None and (n.index, n.pts) == (p.index, p.pts) and n.size == (60, 40)
        for got, want in zip(n.nv12.host_planes(), p.yuv, strict=True):
            assert np.array_equal(got, want)
    odd = Generated(Inverted(Located(Frame(2, 6, 0.2, np.full((41, 60, 3), 9, np.uint8)), []), []), [])
    (out,) = paste([odd], PasteConfig(), device=torch.device("cpu"), nv12=True)
    assert out.nv12 is None and out.yuv[0].shape == (41, 60)
