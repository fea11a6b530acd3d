"""invert: the codes pass (first-frame reuse, per-frame, held between key frames) and the features pass,
against calling the tiny model directly, per crop size and batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.face.align import CropParams
from pipeline.records import FaceCrop, Frame, Located
from pipeline.runtime.batch import to_images
from pipeline.stages.invert import InvertConfig, codes, features, invert

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
