"""Temporal smoothing of W+ codes: constant stays constant, steps are followed within the stated
latency, cuts reset, order and pass-through frames are kept; first-frame mode = official behaviour."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import build_model, make_random_checkpoint
from pipeline.face.align import CropParams
from pipeline.stages.detect_crop import FaceCrop, Located
from pipeline.stages.generate import GenerateConfig, generate, parse_keyframes
from pipeline.stages.invert import Coded, InvertConfig, invert
from pipeline.stages.smooth import SmoothConfig, smooth
from pipeline.stages.video_in import Frame

CROP = CropParams(frame_h=8, frame_w=8, scale=1.0, h=8, w=8, top=0, bottom=8, left=0, right=8)


def records(codes, scenes=None, faceless=()):
    """Coded records with the given [18, D] codes (one face, track 0); ``scenes`` colours frames."""
    out = []
    for i, code in enumerate(codes):
        level = 0 if scenes is None else scenes[i]
        pixels = np.full((8, 8, 3), level, np.uint8)
        frame = Frame(i, i, i / 25, pixels)
        if i in faceless:
            out.append(Coded(Located(frame, []), []))
            continue
        face = FaceCrop(0, CROP, np.zeros((68, 2), np.float32), pixels)
        out.append(Coded(Located(frame, [face]), [torch.as_tensor(code, dtype=torch.float32)[None]]))
    return out


def codes_of(items):
    return [None if not r.codes else r.codes[0][0].numpy() for r in items]


ALL = [SmoothConfig(filter=f) for f in ("gaussian", "ema", "one-euro")]


@pytest.mark.parametrize("cfg", ALL, ids=lambda c: c.filter)
def test_constant_stays_constant(cfg):
    code = np.random.default_rng(0).normal(size=(18, 8))
    out = codes_of(smooth(records([code] * 20), cfg))
    assert len(out) == 20
    for c in out:
        np.testing.assert_allclose(c, code, rtol=0, atol=1e-5)


def test_gaussian_step_is_followed_within_the_window():
    a, b = np.zeros((18, 8)), np.ones((18, 8))
    cfg = SmoothConfig(filter="gaussian", window=4)
    out = codes_of(smooth(records([a] * 10 + [b] * 10), cfg))
    assert all(np.allclose(out[t], a) for t in range(0, 6))          # before step - window: untouched
    assert all(np.allclose(out[t], b) for t in range(14, 20))         # from step + window: fully there
    assert 0.4 < out[10].mean() < 0.7                                  # about half-way at the step
    assert np.all(np.diff([o.mean() for o in out]) >= -1e-9)           # monotone, no overshoot


@pytest.mark.parametrize("name", ["ema", "one-euro"])
def test_causal_step_is_followed(name):
    a, b = np.zeros((18, 8)), np.ones((18, 8))
    cfg = SmoothConfig(filter=name, window=4)                  # time constant 2 frames
    out = [o.mean() for o in codes_of(smooth(records([a] * 10 + [b] * 20), cfg))]
    assert out[9] == pytest.approx(0.0, abs=1e-9) and 0 < out[10] < 1
    assert out[10 + 12] > 0.95                                  # within 6 time constants


def test_strength_zero_group_is_untouched_and_groups_independent():
    rng = np.random.default_rng(1)
    codes = [rng.normal(size=(18, 8)) for _ in range(12)]
    out = codes_of(smooth(records(codes), SmoothConfig(strength=(0.0, 1.0, 1.0))))
    for c, o in zip(codes, out, strict=True):
        np.testing.assert_allclose(o[:7], c[:7], atol=1e-5)            # coarse rows: strength 0
    assert not np.allclose(out[5][7:], codes[5][7:], atol=1e-3)       # others: smoothed


def test_shot_change_resets_the_window():
    a, b = np.zeros((18, 8)), np.ones((18, 8))
    scenes = [20] * 10 + [230] * 10
    out = codes_of(smooth(records([a] * 10 + [b] * 10, scenes), SmoothConfig(window=4)))
    np.testing.assert_allclose(out[9], a, atol=1e-6)
    np.testing.assert_allclose(out[10], b, atol=1e-6)


def test_order_count_and_faceless_frames_kept():
    rng = np.random.default_rng(2)
    items = records([rng.normal(size=(18, 8)) for _ in range(9)], faceless={3, 4})
    out = list(smooth(items, SmoothConfig(window=3)))
    assert [r.located.frame.index for r in out] == list(range(9))
    assert [len(r.codes) for r in out] == [1, 1, 1, 0, 0, 1, 1, 1, 1]


def test_first_frame_mode_equals_official_behaviour():
    """Official video path: codes from frame 0's aligned face for every frame, x1 = each frame's crop."""
    model = build_model(make_random_checkpoint("tiny", 4))
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    aligned = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    located = []
    for i, c in enumerate(crops):
        face = FaceCrop(0, CROP, np.zeros((68, 2), np.float32), c, aligned if i == 0 else None)
        located.append(Located(Frame(i, i, i / 25, np.zeros((8, 8, 3), np.uint8)), [face]))
    cfg = InvertConfig(batch_size=3, style_code="first-frame")
    got = [r.images[0] for r in generate(invert(located, model, cfg), model, GenerateConfig(batch_size=3))]

    def img(p):
        return (torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255.0 - 0.5) / 0.5

    with torch.no_grad():
        for c, out in zip(crops, got, strict=True):
            y = model.stylize(img(c), img(aligned))
            want = ((y.clamp(-1, 1) + 1) * 127.5).floor().to(torch.uint8)[0].permute(1, 2, 0).numpy()
            assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_strength_keyframes_ramp():
    kf = parse_keyframes("1:0,3:2")
    cfg = GenerateConfig(keyframes=kf)
    assert [cfg.strength_at(t) for t in (0, 1, 2, 3, 9)] == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError):
        parse_keyframes("2:1,1:0")
    with pytest.raises(ValueError):
        parse_keyframes("a:b")


def test_smoothed_flickers_less_than_per_frame_on_a_real_clip(tmp_path, media_dir):
    """529_2.mp4 (a real face), first 12 frames, tiny random checkpoint: smoothing lowers the
    warping error while the output still follows the motion."""
    from pipeline.convert import ConvertConfig, convert_file
    from pipeline.face.detect import make_detector
    from pipeline.stages.video_in import VideoInConfig
    from pipeline.tools.metrics import flicker

    model = build_model(make_random_checkpoint("tiny", 5))
    detector = make_detector("dlib", max_side=720)
    reports = {}
    for mode in ("per-frame", "smoothed"):
        dst = tmp_path / f"{mode}.mp4"
        cfg = ConvertConfig(video_in=VideoInConfig(end=0.8), invert=InvertConfig(batch_size=2, style_code=mode))
        result = convert_file(media_dir / "529_2.mp4", dst, model, detector, cfg)
        assert result.frames_out == result.frames_with_face == 12
        reports[mode] = flicker(media_dir / "529_2.mp4", dst, max_frames=12, detector=detector)
    assert reports["smoothed"].warp_error_output < 0.9 * reports["per-frame"].warp_error_output
    # it does not freeze the face: it follows the input's motion about as much as per-frame codes do
    assert reports["smoothed"].responsiveness > 0.8 * reports["per-frame"].responsiveness
