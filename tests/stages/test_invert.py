"""invert: the codes pass (first-frame reuse, per-frame, held between key frames) and the features pass,
against calling the tiny model directly, per crop size and batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.face.align import CropParams, align_face, apply_crop, crop_params, ffhq_quad
from pipeline.face.warp import needs_host_align
from pipeline.records import FaceCrop, Frame, Located, UncutFace
from pipeline.runtime.batch import face_images, to_images
from pipeline.stages.invert import InvertConfig, codes, features, invert
from pipeline.tools.synthetic import face_landmarks

CPU = torch.device("cpu")


def face(track: int, seed: int, side: int = 64, aligned: bool = True) -> FaceCrop:
    rng = np.random.default_rng(seed)
    crop = CropParams(frame_h=side, frame_w=side, scale=1.0, h=side, w=side, top=0, bottom=side, left=0, right=side)
    return FaceCrop(track, crop, np.zeros((68, 2)), rng.integers(0, 256, (side, side, 3), dtype=np.uint8),
                    rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) if aligned else None)


def located(*faces: FaceCrop, i: int = 0) -> Located:
    return Located(Frame(i, i, i / 10, np.zeros((8, 8, 3), np.uint8)), list(faces))


def direct_codes(model, f: FaceCrop) -> torch.Tensor:
    with torch.inference_mode():
        return model.codes(to_images([f.aligned], CPU, torch.float32))


def test_per_frame_codes_are_the_models_codes(tiny_model):
    recs = [located(face(0, 1), i=0), located(i=1), located(face(0, 2), face(1, 3), i=2)]
    out = list(codes(recs, tiny_model, InvertConfig(style_code="per-frame", batch_size=2)))
    assert [o.located for o in out] == recs and [len(o.codes) for o in out] == [1, 0, 2]
    style_dim = tiny_model.arch.widths.style_dim
    for o in out:
        for f, w in zip(o.located.faces, o.codes, strict=True):
            assert w.shape == (1, 18, style_dim)
            torch.testing.assert_close(w, direct_codes(tiny_model, f), atol=1e-5, rtol=1e-5)


def test_first_frame_codes_are_reused_per_track(tiny_model):
    recs = [located(face(0, 1), i=0), located(face(0, 2), face(1, 3), i=1), located(face(1, 4), i=2)]
    out = list(codes(recs, tiny_model, InvertConfig(style_code="first-frame")))
    track0, track1 = direct_codes(tiny_model, recs[0].faces[0]), direct_codes(tiny_model, recs[1].faces[1])
    torch.testing.assert_close(out[1].codes[0], track0)            # frame 1's own face of track 0 is ignored
    torch.testing.assert_close(out[2].codes[0], track1)
    assert out[0].codes[0] is out[1].codes[0]


def test_codes_are_held_where_no_aligned_face_was_cut(tiny_model):
    recs = [located(face(0, 1), i=0), located(face(0, 2, aligned=False), i=1), located(face(0, 3), i=2)]
    out = list(codes(recs, tiny_model, InvertConfig(style_code="per-frame")))
    assert out[1].codes[0] is out[0].codes[0]
    torch.testing.assert_close(out[2].codes[0], direct_codes(tiny_model, recs[2].faces[0]))


@pytest.mark.parametrize("batch", [1, 3])
def test_features_equal_the_models_invert(tiny_model, batch):
    recs = [located(face(0, 1), i=0), located(face(1, 2, side=48), i=1), located(), located(face(0, 3), i=3)]
    out = list(invert(recs, tiny_model, InvertConfig(style_code="per-frame", batch_size=batch)))
    assert [len(o.latents) for o in out] == [1, 1, 0, 1]
    for o in out:
        for f, lat in zip(o.located.faces, o.latents, strict=True):
            side = f.pixels.shape[0]
            with torch.inference_mode():
                want = tiny_model.invert(to_images([f.pixels], CPU, torch.float32),
                                         w_plus=direct_codes(tiny_model, f))
            assert len(lat) == 1 and lat.feature.shape[-2:] == (side // 8, side // 8)
            torch.testing.assert_close(lat.w_plus, want.w_plus, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(lat.feature, want.feature, atol=1e-4, rtol=1e-4)


def test_features_take_the_codes_they_are_given(tiny_model):
    rec = located(face(0, 1))
    (coded,) = codes([rec], tiny_model, InvertConfig(style_code="per-frame"))
    other = direct_codes(tiny_model, face(0, 9))
    coded.codes[0] = other                                          # e.g. smoothed codes
    (inv,) = features([coded], tiny_model, InvertConfig())
    torch.testing.assert_close(inv.latents[0].w_plus, other)


def test_config_checks():
    for bad in ({"style_code": "sometimes"}, {"batch_size": 0}, {"batch_pixels": -1}, {"code_every": 0}):
        with pytest.raises(ValueError):
            InvertConfig(**bad)


# ---- the device route: faces that carry geometry only, cut here from the frame (runtime.batch.face_images)

def _deferred(frame_index: int = 0):
    """A noisy 240x320 frame with three faces as the device route hands them on (no pixels): one
    upright, one turned, one at the top edge (its aligned face needs the host route's padding)."""
    rng = np.random.default_rng(frame_index)
    pixels = rng.integers(0, 256, (240, 320, 3), np.uint8)
    faces = []
    for t, (centre, eyes, angle) in enumerate((((160, 110), 40, 0), ((100, 120), 30, 25), ((250, 20), 36, 0))):
        lm = face_landmarks(centre, eyes, angle_deg=angle)
        faces.append(UncutFace(t, crop_params(lm, 240, 320, padding=48), lm, pixels, True))
    return Located(Frame(frame_index, frame_index, frame_index / 10, pixels), faces)


def _levels(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] model inputs back to 0-255 levels, [N, h, w, 3]."""
    return np.rint(((x.float() * 0.5 + 0.5) * 255).numpy()).astype(int).transpose(0, 2, 3, 1)


def test_aligned_faces_cut_on_the_device_match_the_official_alignment():
    rec = _deferred()
    host_only = [needs_host_align(ffhq_quad(f.landmarks), 240, 320) for f in rec.faces]
    assert host_only == [False, False, True]
    got = _levels(face_images([(rec, f) for f in rec.faces], "aligned", CPU, torch.float32))
    for g, f, on_host in zip(got, rec.faces, host_only, strict=True):
        want = align_face(rec.frame.pixels, f.landmarks).astype(int)
        diff = np.abs(g - want)
        assert diff.max() <= 1 and (diff.max() == 0) == on_host   # warped within a level; the edge face exact
    assert rec.on_device is not None and rec.on_device.data_ptr() == torch.from_numpy(rec.frame.pixels).data_ptr()


def test_crops_cut_on_the_device_match_opencv_and_keep_host_faces_in_place():
    a, b = _deferred(1), _deferred(2)
    fa, fb = a.faces[0], b.faces[0]
    assert fa.crop_shape == fb.crop_shape
    host_b = FaceCrop(fb.track_id, fb.crop, fb.landmarks, apply_crop(b.frame.pixels, fb.crop))
    assert fb.cut("crop") is None
    mixed = [(a, fa), (b, host_b), (b, fb)]                          # a host crop between two to cut
    got = face_images(mixed, "crop", CPU, torch.float32)
    want = [apply_crop(a.frame.pixels, fa.crop), host_b.pixels, host_b.pixels]
    assert torch.equal(got[1:2], to_images([host_b.pixels], CPU, torch.float32))      # carried pixels: as before
    for g, w in zip(_levels(got), want, strict=True):
        assert np.abs(g - w.astype(int)).max() <= 1


def test_device_route_codes_and_features_match_the_host_route(tiny_model):
    """codes() and features() on faces without pixels: the same latents as on the host route's cut
    faces, within what one level of input gives; one upload per frame, shared by both passes."""
    recs = [_deferred(i) for i in range(2)]
    hosts = [Located(r.frame, [FaceCrop(f.track_id, f.crop, f.landmarks, apply_crop(r.frame.pixels, f.crop),
                                        align_face(r.frame.pixels, f.landmarks)) for f in r.faces]) for r in recs]
    cfg = InvertConfig(style_code="per-frame", batch_size=3)
    uploads = []
    real_from_numpy = torch.from_numpy
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "from_numpy", lambda a: uploads.append(a.shape) or real_from_numpy(a))
        dev = list(invert(recs, tiny_model, cfg))
    assert uploads.count((240, 320, 3)) == 2                          # each frame once, for both passes
    host = list(invert(hosts, tiny_model, cfg))
    for d, h in zip(dev, host, strict=True):
        assert d.located is not None and len(d.latents) == 3
        for ld, lh in zip(d.latents, h.latents, strict=True):
            for x, y in ((ld.w_plus, lh.w_plus), (ld.feature, lh.feature)):
                assert x.shape == y.shape and (x - y).abs().max() < 0.05 * y.abs().max()
