"""The sequential passes the driver runs between the parallel ones, cheap and in frame order:

* :func:`track_clip`: the face tracker over the whole clip's detections, as
  :func:`pipeline.stages.detect_crop.locate` runs it, so a track never restarts at a seam. The result
  is a :class:`FramePlan` per frame: which faces, where to crop, and where the aligned face (the
  codes pass) is needed;
* :func:`final_codes`: each face's codes held between fresh ones (as :func:`pipeline.stages.invert.codes`
  holds them) and, in the smoothed mode, filtered over the whole clip by
  :func:`pipeline.stages.smooth.smooth` (shot cuts from histograms computed by the workers).

Frame indices are those of a plain run: 0 at the first frame read (after ``--start``), counted over
the whole job, never per chunk.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.face.align import CropParams
from pipeline.face.detect import Face
from pipeline.face.track import FaceTracker, TrackerConfig
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.stages import smooth
from pipeline.stages.detect_crop import FaceCrop, Located
from pipeline.stages.invert import Coded
from pipeline.stages.video_in import Frame

if TYPE_CHECKING:
    from pipeline.convert import ConvertConfig

NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


@dataclass(eq=False)
class FoundSpan:
    """What face finding returns for one span: per frame its pts, time, detections (None where the
    detector did not run) and shot histogram (``[n, 256]`` float32)."""

    first_index: int
    pts: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    faces: list[list[Face] | None] = field(default_factory=list)
    hists: np.ndarray | None = None
    damage: str | None = None

    def __len__(self) -> int:
        return len(self.pts)


@dataclass(frozen=True, eq=False)
class PlannedFace:
    """A face to render on a frame: its track, crop window, smoothed landmarks, and whether its
    aligned face feeds the codes pass on this frame."""

    track_id: int
    crop: CropParams
    landmarks: np.ndarray
    aligned: bool


@dataclass(frozen=True, eq=False)
class FramePlan:
    """One frame of the job: ``kept`` is False for a frame ``--drop-lost`` leaves out."""

    index: int
    pts: int
    time: float
    kept: bool
    faces: tuple[PlannedFace, ...] = ()


def track_clip(found: Sequence[FoundSpan], frame_size: tuple[int, int], fps: float | None,
               cfg: ConvertConfig) -> list[FramePlan]:
    """Run the tracker over every frame's detections, in order (see the module docstring)."""
    width, height = frame_size
    tracker = FaceTracker(height, width, TrackerConfig(mode=cfg.face.faces, padding=cfg.face.padding,
                                                       fps=float(fps or FALLBACK_FPS)))
    aligned_every = 0 if cfg.invert.style_code == "first-frame" else cfg.invert.code_every
    seen: set[int] = set()
    plans: list[FramePlan] = []
    index = 0
    for span in found:
        for pts, t, faces in zip(span.pts, span.times, span.faces, strict=True):
            planned = []
            for track in tracker.update(faces, t):
                if track.lost:
                    continue
                aligned = track.track_id not in seen or bool(aligned_every and index % aligned_every == 0)
                seen.add(track.track_id)
                planned.append(PlannedFace(track.track_id, track.crop, track.landmarks, aligned))
            plans.append(FramePlan(index, pts, t, not cfg.drop_lost or bool(planned), tuple(planned)))
            index += 1
    return plans


def final_codes(plans: Sequence[FramePlan], fresh: Callable[[int, int], torch.Tensor], hists: np.ndarray,
                fps: float | None, cfg: ConvertConfig) -> Iterator[tuple[FramePlan, list[torch.Tensor]]]:
    """Each kept frame with its faces' final codes (``[1, 18, D]`` each), in frame order.

    ``fresh(index, track)``: the codes the codes pass found for that face (asked for every face
    whose plan says ``aligned``, in first-frame mode only a track's first). ``hists[index]``: the
    frame's shot histogram.
    """
    first_frame = cfg.invert.style_code == "first-frame"
    latest: dict[int, torch.Tensor] = {}

    def held() -> Iterator[Coded]:
        for plan in plans:
            if not plan.kept:
                continue
            codes = []
            for face in plan.faces:
                if face.aligned and not (first_frame and face.track_id in latest):
                    latest[face.track_id] = fresh(plan.index, face.track_id)
                codes.append(latest[face.track_id])
            frame = Frame(plan.index, plan.pts, plan.time, None)
            faces = [FaceCrop(f.track_id, f.crop, f.landmarks, NO_PIXELS) for f in plan.faces]
            yield Coded(Located(frame, faces), codes)

    items: Iterator[Coded] = held()
    if cfg.invert.style_code == "smoothed":
        items = smooth.smooth(items, replace(cfg.smooth, fps=float(fps or cfg.smooth.fps)),
                              histogram=lambda rec: hists[rec.located.frame.index])
    by_index = {p.index: p for p in plans}
    for rec in items:
        yield by_index[rec.located.frame.index], rec.codes
