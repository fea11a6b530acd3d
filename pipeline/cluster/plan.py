"""The sequential passes the driver runs between the parallel ones, cheap and in frame order:

* :func:`track_clip`: the face tracker over the whole clip's detections, as
  :func:`pipeline.stages.detect_crop.locate` runs it, so a track never restarts at a seam. The result
  is a :class:`FramePlan` per frame: which faces, where to crop, and where the aligned face (the
  codes pass) is needed;
* :func:`code_requests` and :func:`final_codes`: :func:`pipeline.stages.invert.codes` itself over the
  whole clip, with a stand-in model: a dry run names the faces whose codes the workers must compute,
  the real run gets those codes back, so holding, key faces and their interpolation are those of a
  plain run; then, in the smoothed mode, :func:`pipeline.stages.smooth.smooth` over the whole clip
  (shot cuts from histograms computed by the workers).

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
from pipeline.stages import invert, smooth
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


def _keyed(cfg: ConvertConfig) -> bool:
    """Whether :func:`pipeline.stages.invert.codes` takes the key-codes path (it may then align any face)."""
    return cfg.invert.code_every > 1 and cfg.invert.style_code != "first-frame"


def _token(index: int, track: int) -> np.ndarray:
    """A stand-in for an aligned face: ``(index, track)`` written into a ``[1, 2, 3]`` uint8 picture."""
    return np.array([[list(index.to_bytes(3, "big")), list(track.to_bytes(3, "big"))]], np.uint8)


class _Replay:
    """Stands in for the model in :func:`pipeline.stages.invert.codes` on the driver: the aligned faces
    it is given are :func:`_token` pictures, and :meth:`codes` answers each with ``lookup(index, track)``
    (the codes a worker computed for that face, or a placeholder in the dry run)."""

    def __init__(self, lookup: Callable[[int, int], torch.Tensor]) -> None:
        self.lookup = lookup
        self.latent_avg = torch.zeros(1)

    def codes(self, x2: torch.Tensor) -> torch.Tensor:
        values = torch.round((x2.float() * 0.5 + 0.5) * 255).to(torch.int64)      # back to the token bytes
        out = []
        for picture in values:                                                     # [3, 1, 2]
            b = picture[:, 0, :].T.reshape(-1).tolist()                            # 6 bytes
            out.append(self.lookup(int.from_bytes(bytes(b[:3]), "big"), int.from_bytes(bytes(b[3:]), "big")))
        return torch.cat(out)


def _codes_pass(plans: Sequence[FramePlan], hists: np.ndarray, cfg: ConvertConfig,
                lookup: Callable[[int, int], torch.Tensor]) -> Iterator[Coded]:
    """:func:`pipeline.stages.invert.codes` over the whole clip with :class:`_Replay` as the model, so
    holding, key faces and their interpolation are exactly those of a plain run."""
    keyed = _keyed(cfg)

    def records() -> Iterator[Located]:
        for plan in plans:
            if plan.kept:
                faces = [FaceCrop(f.track_id, f.crop, f.landmarks, NO_PIXELS,
                                  _token(plan.index, f.track_id) if keyed or f.aligned else None)
                         for f in plan.faces]
                yield Located(Frame(plan.index, plan.pts, plan.time, None), faces)

    cut = None
    if cfg.invert.code_every > 1:
        shots = smooth.ShotDetector(cfg.smooth.shot_threshold)
        cut = lambda rec: shots.is_cut_histogram(hists[rec.frame.index])   # noqa: E731 - as convert.plan's
    return invert.codes(records(), _Replay(lookup), cfg.invert, cut=cut)


def code_requests(plans: Sequence[FramePlan], hists: np.ndarray, cfg: ConvertConfig) -> list[tuple[int, int]]:
    """The faces ``(index, track)`` whose codes the codes pass computes, in order (a dry run)."""
    asked: list[tuple[int, int]] = []

    def record(index: int, track: int) -> torch.Tensor:
        asked.append((index, track))
        return torch.zeros(1, 1, 1)

    for _ in _codes_pass(plans, hists, cfg, record):
        pass
    return asked


def final_codes(plans: Sequence[FramePlan], fresh: Callable[[int, int], torch.Tensor], hists: np.ndarray,
                fps: float | None, cfg: ConvertConfig) -> Iterator[tuple[FramePlan, list[torch.Tensor]]]:
    """Each kept frame with its faces' final codes (``[1, 18, D]`` each), in frame order.

    ``fresh(index, track)``: the codes a worker computed for a face :func:`code_requests` named.
    ``hists[index]``: the frame's shot histogram.
    """
    items: Iterator[Coded] = _codes_pass(plans, hists, cfg, fresh)
    if cfg.invert.style_code == "smoothed":
        items = smooth.smooth(items, replace(cfg.smooth, fps=float(fps or cfg.smooth.fps)),
                              histogram=lambda rec: hists[rec.located.frame.index])
    by_index = {p.index: p for p in plans}
    for rec in items:
        yield by_index[rec.located.frame.index], rec.codes
