"""detect/crop stage: find the face(s) in each frame, track them, and cut the model's inputs.

``locate(frames, detector, cfg, frame_size, fps)`` turns :class:`~pipeline.stages.video_in.Frame` records
into :class:`Located` records. Each face seen on a frame becomes a :class:`FaceCrop` with the
``x1`` crop (spec 9.1 geometry, following the face at a constant size) and, when the style-code
mode needs one on this frame, the FFHQ-aligned ``x2`` face (spec 9.2). Frames where the face is
lost carry no crops and flow through untouched.

With ``cut=False`` (the device route, :meth:`pipeline.convert.ConvertConfig.crop_device`) nothing is
cut here: each face is an :class:`~pipeline.records.UncutFace` (crop box and landmarks, and
``align_later`` where the aligned face is needed) and the invert stage cuts both on the model's
device (:func:`pipeline.runtime.batch.face_images`), so this thread only detects and tracks.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipeline.face.align import align_face, apply_crop
from pipeline.face.detect import Detector
from pipeline.face.track import FaceTracker, TrackerConfig
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.records import FaceCrop, Frame, Located, UncutFace

log = logging.getLogger(__name__)
FACE_MODES = ("largest", "all")


@dataclass(frozen=True)
class FaceConfig:
    """Face finding options.

    Attributes:
        faces: ``"largest"`` (one face, the largest) or ``"all"`` (every face, one track each).
        detect_every: run the detector on every N-th frame and track in between.
        padding: half the crop side around the eyes, in pixels after scaling eyes to 64 px apart.
    """

    faces: str = "largest"
    detect_every: int = 1
    padding: int = 256

    def __post_init__(self) -> None:
        if self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}, got {self.faces!r}")
        if self.detect_every < 1:
            raise ValueError("detect_every must be >= 1")


def locate(frames: Iterable[Frame], detector: Detector, cfg: FaceConfig, frame_size: tuple[int, int],
           fps: float, aligned_every: int = 1, *, cut: bool = True) -> Iterator[Located]:
    """Detect, track and crop.

    Args:
        frames: decoded frames in order.
        detector: any :class:`~pipeline.face.detect.Detector`.
        cfg: options.
        frame_size: ``(width, height)`` of the frames.
        fps: nominal frame rate (the tracker uses frame times when available).
        aligned_every: cut the aligned ``x2`` face on a track's first frame and on every frame whose
            index is a multiple of this (1: every frame, for per-frame style codes); 0: on a track's
            first frame only (the official first-frame behaviour).
        cut: cut the crops and aligned faces here, on the host (OpenCV, Pillow); False: leave them to
            the invert stage (see the module docstring).
    """
    width, height = frame_size
    tracker = FaceTracker(height, width, TrackerConfig(mode=cfg.faces, padding=cfg.padding, fps=fps or FALLBACK_FPS))
    seen: set[int] = set()
    for frame in frames:
        faces = detector.detect(frame.pixels) if frame.index % cfg.detect_every == 0 else None
        crops = []
        for track in tracker.update(faces, frame.time):
            if track.lost:
                continue
            wanted = track.track_id not in seen or bool(aligned_every and frame.index % aligned_every == 0)
            seen.add(track.track_id)
            if not cut:
                crops.append(UncutFace(track.track_id, track.crop, track.landmarks, frame.pixels, wanted))
                continue
            pixels = apply_crop(frame.pixels, track.crop)
            aligned = align_face(frame.pixels, track.landmarks) if wanted else None
            crops.append(FaceCrop(track.track_id, track.crop, track.landmarks, pixels, aligned))
        yield Located(frame, crops)
