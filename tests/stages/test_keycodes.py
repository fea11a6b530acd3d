"""Key codes (``--code-every N`` > 1): which faces the codes pass runs on, the codes there equal to the
model's, the faces between linearly interpolated, segment ends and shot changes as keys, batching
without effect, and N = 1 left to the per-frame path unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.face.align import CropParams, align_face
from pipeline.records import FaceCrop, Frame, Located
from pipeline.runtime.batch import to_images
from pipeline.stages.invert import InvertConfig, codes
from pipeline.stages.keycodes import interpolate, key_codes
from pipeline.tools.synthetic import synthetic_face

CPU = torch.device("cpu")
SIDE = 96


def frame(i: int) -> Frame:
    rng = np.random.default_rng(100 + i)
    return Frame(i, i, i / 10, rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))


def face_on(fr: Frame, track: int = 0, aligned: bool = False) -> FaceCrop:
    lm = synthetic_face(48 + fr.index, 40, 24).landmarks
    crop = CropParams(frame_h=SIDE, frame_w=SIDE, scale=1.0, h=64, w=64, top=0, bottom=64, left=0, right=64)
    return FaceCrop(track, crop, lm, fr.pixels[:64, :64].copy(), align_face(fr.pixels, lm) if aligned else None)


def clip(n: int, every: int, present=lambda i: True) -> list[Located]:
    """One track, the aligned face cut where face finding cuts it (a track's first frame, every N-th)."""
    out, seen = [], False
    for i in range(n):
        fr = frame(i)
        faces = []
        if present(i):
            faces = [face_on(fr, aligned=not seen or i % every == 0)]
            seen = True
        out.append(Located(fr, faces))
    return out


def own_codes(model, rec: Located) -> torch.Tensor:
    f = rec.faces[0]
    with torch.inference_mode():
        return model.codes(to_images([align_face(rec.frame.pixels, f.landmarks)], CPU, torch.float32))


def counted(model):
    seen = []
    real = model.codes

    def spy(x2):
        seen.append(x2.shape[0])
        return real(x2)
    return seen, spy


def run(model, recs, every, batch=1, cut=None):
    seen, spy = counted(model)
    model.codes = spy
    try:
        out = list(key_codes(iter(recs), model, every, batch, cut=cut))
    finally:
        del model.codes
    return out, sum(seen)


def check(model, recs, out, keys):
    """Codes at ``keys`` are the model's own; every other face lies on the line between its keys."""
    assert [o.located for o in out] == recs
    for i in keys:
        torch.testing.assert_close(out[i].codes[0], own_codes(model, recs[i]), atol=1e-5, rtol=1e-5)
    for a, b in zip(keys, keys[1:], strict=False):
        for m in range(a + 1, b):
            want = interpolate(out[a].codes[0], out[b].codes[0], (m - a) / (b - a))
            assert torch.equal(out[m].codes[0], want), m


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_keys_every_n_and_the_last_frame_with_the_rest_interpolated(tiny_model, batch):
    recs = clip(8, 3)
    out, encoded = run(tiny_model, recs, 3, batch)
    assert encoded == 4                                             # frames 0, 3, 6 and the last, 7
    check(tiny_model, recs, out, [0, 3, 6, 7])
    assert not torch.equal(out[1].codes[0], out[0].codes[0])       # no staircase


def test_batching_changes_nothing(tiny_model):
    recs = clip(11, 4)
    one, _ = run(tiny_model, recs, 4, 1)
    many, _ = run(tiny_model, recs, 4, 3)
    for a, b in zip(one, many, strict=True):
        torch.testing.assert_close(a.codes[0], b.codes[0], atol=1e-5, rtol=1e-5)


def test_a_track_lost_for_a_while_ends_and_restarts_a_segment(tiny_model):
    recs = clip(10, 3, present=lambda i: i not in (5, 6))
    out, encoded = run(tiny_model, recs, 3, 2)
    assert [len(o.codes) for o in out] == [0 if i in (5, 6) else 1 for i in range(10)]
    # segment 0-4: keys 0, 3 and its end 4; segment 7-9: its start 7, 9 (every 3rd and the end)
    assert encoded == 5
    check(tiny_model, recs[:5], out[:5], [0, 3, 4])
    check(tiny_model, recs[7:], out[7:], [0, 2])


def test_a_shot_change_is_a_key_on_both_sides(tiny_model):
    recs = clip(9, 4)
    out, encoded = run(tiny_model, recs, 4, 1, cut=lambda rec: rec.frame.index == 6)
    assert encoded == 5                                             # 0, 4, 5 (before the cut), 6 (after), 8
    check(tiny_model, recs[:6], out[:6], [0, 4, 5])
    check(tiny_model, recs[6:], out[6:], [0, 2])


def test_two_tracks_each_get_their_own_keys(tiny_model):
    recs = clip(7, 3)
    for i, rec in enumerate(recs):
        if i >= 2:                                                  # a second face from frame 2 on
            rec.faces.append(face_on(rec.frame, track=1, aligned=i == 2 or i % 3 == 0))
    out, encoded = run(tiny_model, recs, 3, 2)
    assert encoded == 3 + 3                                         # track 0: 0, 3, 6; track 1: 2, 3, 6
    second = [Located(r.frame, r.faces[1:]) for r in recs[2:]]
    mine = [type(o)(s, o.codes[1:]) for s, o in zip(second, out[2:], strict=True)]
    check(tiny_model, second, mine, [0, 1, 4])


def test_code_every_one_is_the_per_frame_path(tiny_model):
    recs = clip(5, 1)
    for rec in recs:
        rec.faces[0].aligned = align_face(rec.frame.pixels, rec.faces[0].landmarks)
    out = list(codes(iter(recs), tiny_model, InvertConfig(style_code="per-frame", code_every=1)))
    check(tiny_model, recs, out, list(range(5)))


def test_the_whole_clip_helpers_choose_and_fill_as_the_stream_does(tiny_model):
    from pipeline.stages.keycodes import fill_between, key_faces

    recs = clip(12, 4, present=lambda i: i not in (6,))
    for i in range(3, 12):                                          # a second face from frame 3 on
        recs[i].faces.append(face_on(recs[i].frame, track=1, aligned=True))
    cut_at = 9
    streamed, _ = run(tiny_model, recs, 4, 2, cut=lambda rec: rec.frame.index == cut_at)
    tracks = [[f.track_id for f in r.faces] for r in recs]
    keys = key_faces(tracks, list(range(12)), 4, [i == cut_at for i in range(12)])
    assert keys[0] == {0} and keys[3] == {1} and keys[5] == {0} and keys[7] == {0}
    assert keys[8] == {0, 1} and keys[9] == {0, 1}
    own = [{f.track_id: (own_codes(tiny_model, Located(r.frame, [f])) if f.track_id in keys[i] else None)
            for f in r.faces} for i, r in enumerate(recs)]
    filled = fill_between(own, list(range(12)))
    for rec, out in zip(streamed, filled, strict=True):
        for f, w in zip(rec.located.faces, rec.codes, strict=True):
            torch.testing.assert_close(out[f.track_id], w, atol=1e-5, rtol=1e-5)
