"""Face tracking: a crop of constant size that follows a moving face smoothly.

The official StyleGANEX code fixes the crop on frame 0, so a face that moves walks out of it. Here
:class:`FaceTracker` takes each frame's detections (``list[Face]``, or ``None`` on frames where no
detection ran), keeps the same face over time (IoU / centre distance), smooths its landmarks with a
One-Euro filter (still when the face is still, quick when it moves) and slides a crop window of
fixed size over the rescaled frame.

Per track the rescale factor (``64 / eye distance``, spec 9.1), and so the crop size, is fixed
when the track starts (or for the whole clip in ``"largest"`` mode, or given in the config, e.g.
from :func:`robust_scale` over the first frames). The window's top/left sit on a grid of
``step`` px (8, as the official cropper) and only move when the smoothed eye midpoint leaves a dead
band, so sub-pixel landmark jitter never moves the crop.

Streaming: ``update`` is called once per frame in order and keeps no frames; it never needs a
detector (it takes ``Face`` lists).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.errors import InputError, NoFaceError
from pipeline.face.align import CROP_STEP, EYE_DISTANCE, CropParams, crop_scale, eye_centres, scaled_size
from pipeline.face.detect import Face
from pipeline.face.filters import OneEuroFilter
from pipeline.media.media_info import FALLBACK_FPS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking options.

    Attributes:
        mode: ``"largest"`` follows one face (the largest when a track starts) with one crop size
            for the clip; ``"all"`` keeps one track per face with stable IDs.
        padding: half the crop side in rescaled pixels (as :func:`pipeline.face.align.crop_params`).
        step: grid of the window's top/left in rescaled pixels (8 as the official cropper; 1 for
            the smoothest motion).
        hysteresis: extra dead band, as a fraction of ``step``, before the window moves.
        scale: fix the rescale factor (``64 / eye distance``); ``None``: from the track's first
            detection.
        fps: frame rate used for timing when ``update`` gets no timestamp.
        min_cutoff: One-Euro cutoff (Hz) at rest; lower is steadier.
        beta: One-Euro speed coefficient (per eye distance per second); higher follows faster.
        d_cutoff: cutoff (Hz) of the speed estimate.
        max_lost_s: a track unseen this long (seconds) is dropped.
        min_iou: box IoU that associates a detection with a track ...
        max_centre_dist: ... or box-centre distance, in track box widths (with box widths within
            a factor of 2).
    """

    mode: Literal["largest", "all"] = "largest"
    padding: int = 256
    step: int = 8
    hysteresis: float = 0.25
    scale: float | None = None
    fps: float = FALLBACK_FPS
    min_cutoff: float = 1.0
    beta: float = 2.0
    d_cutoff: float = 1.0
    max_lost_s: float = 1.0
    min_iou: float = 0.3
    max_centre_dist: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("largest", "all"):
            raise InputError(f"tracker mode must be 'largest' or 'all', got {self.mode!r}")
        if self.step < 1 or self.padding < CROP_STEP // 2 or self.fps <= 0:
            raise InputError("tracker step must be >= 1, padding >= 4 and fps > 0")
        if self.scale is not None and not self.scale > 0:
            raise InputError(f"tracker scale must be > 0, got {self.scale}")


@dataclass(frozen=True, eq=False)
class TrackedFace:
    """One track's state after a frame.

    Attributes:
        track_id: stable per face (counts up from 0 per tracker).
        landmarks: smoothed ``[68, 2]`` float32 frame coordinates (held while lost).
        crop: crop parameters; ``crop_h``/``crop_w``/``h``/``w``/``scale`` constant per track,
            ``top``/``left`` move (held while lost).
        lost: no detection matched this track on the last frame where detection ran.
        frames_lost: frames since the track was last matched (0 when matched this frame).
        face: the raw detection matched on this frame, or ``None``.
    """

    track_id: int
    landmarks: np.ndarray
    crop: CropParams
    lost: bool
    frames_lost: int
    face: Face | None = None


def robust_scale(landmarks: Iterable[np.ndarray]) -> float:
    """Median ``64 / eye distance`` over several detections of one face (degenerate ones skipped).

    Raises:
        NoFaceError: no usable landmarks.
    """
    scales = []
    for lm in landmarks:
        try:
            scales.append(crop_scale(lm))
        except NoFaceError:
            continue
    if not scales:
        raise NoFaceError("no usable face landmarks to fix the crop scale")
    return float(np.median(scales))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(eq=False)
class _Track:
    track_id: int
    scale: float
    crop_h: int
    crop_w: int
    box: tuple[float, float, float, float]
    filt: OneEuroFilter
    last_raw: np.ndarray  # [68, 2] float64, normalised
    landmarks: np.ndarray  # [68, 2] float64, smoothed, frame pixels
    last_seen: float
    top: int | None = None
    left: int | None = None
    lost: bool = False
    frames_lost: int = 0
    face: Face | None = field(default=None)


class FaceTracker:
    """Streaming face tracker; call :meth:`update` once per frame, in order.

    Args:
        frame_h, frame_w: frame size of the clip.
        config: :class:`TrackerConfig`.

    Example::

        tracker = FaceTracker(h, w)
        for i, pixels in enumerate(frames):
            faces = detector.detect(pixels) if i % 3 == 0 else None
            for tf in tracker.update(faces):
                crop = apply_crop(pixels, tf.crop)
    """

    def __init__(self, frame_h: int, frame_w: int, config: TrackerConfig | None = None) -> None:
        if frame_h <= 0 or frame_w <= 0:
            raise InputError(f"bad frame size {frame_w}x{frame_h}")
        self.frame_h, self.frame_w = int(frame_h), int(frame_w)
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget all tracks, the clip scale, the clock and the ID counter."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._frame = 0
        self._clip_scale: float | None = self.config.scale

    @property
    def scale(self) -> float | None:
        """The clip's rescale factor in ``"largest"`` mode (``None`` before the first face)."""
        return self._clip_scale

    # -- public step -------------------------------------------------------------------------

    def update(self, faces: Sequence[Face] | None, t: float | None = None) -> list[TrackedFace]:
        """Advance one frame.

        Args:
            faces: this frame's detections; ``[]`` when detection ran and found nothing, ``None``
                when detection did not run on this frame (tracks are held, not marked lost).
            t: frame time in seconds (e.g. pts * time_base, for variable frame rate); default
                ``frame_index / fps``.

        Returns:
            The live tracks by ID (``[]`` before the first face); lost tracks are included, with
            ``lost=True``, until ``max_lost_s`` has passed.
        """
        cfg = self.config
        now = self._frame / cfg.fps if t is None else float(t)
        self._frame += 1
        for tr in self._tracks:
            tr.face = None
            tr.frames_lost += 1
        if faces is not None:
            self._associate(list(faces), now)
        else:
            for tr in self._tracks:
                if not tr.lost:  # detection skipped: keep filtering the last measurement
                    self._smooth(tr, tr.last_raw, now)
        self._tracks = [tr for tr in self._tracks if not (tr.lost and now - tr.last_seen > cfg.max_lost_s)]
        return [self._report(tr) for tr in sorted(self._tracks, key=lambda tr: tr.track_id)]

    # -- association -------------------------------------------------------------------------

    def _associate(self, faces: list[Face], now: float) -> None:
        cfg = self.config
        pairs = []
        for ti, tr in enumerate(self._tracks):
            tw = tr.box[2] - tr.box[0]
            tc = ((tr.box[0] + tr.box[2]) / 2, (tr.box[1] + tr.box[3]) / 2)
            for fi, face in enumerate(faces):
                fw = face.box[2] - face.box[0]
                iou = _iou(tr.box, face.box)
                fc = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
                dist = math.hypot(fc[0] - tc[0], fc[1] - tc[1]) / max(tw, 1.0)
                similar = 0.5 <= fw / max(tw, 1e-6) <= 2.0
                if iou >= cfg.min_iou or (similar and dist <= cfg.max_centre_dist):
                    pairs.append(((1.0 - iou) + dist, ti, fi))
        used_t: set[int] = set()
        used_f: set[int] = set()
        for _, ti, fi in sorted(pairs):
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            self._measure(self._tracks[ti], faces[fi], now)
        for ti, tr in enumerate(self._tracks):
            if ti not in used_t:
                tr.lost = True
        rest = [f for fi, f in enumerate(faces) if fi not in used_f]
        if cfg.mode == "largest":
            if not self._tracks and rest:
                self._start(max(rest, key=lambda f: f.area), now)
        else:
            for face in rest:
                self._start(face, now)

    def _start(self, face: Face, now: float) -> None:
        cfg = self.config
        if cfg.scale is not None:
            scale = cfg.scale
        elif cfg.mode == "largest" and self._clip_scale is not None:
            scale = self._clip_scale  # one crop size per clip, also for a re-acquired face
        else:
            try:
                scale = crop_scale(face.landmarks)
            except NoFaceError:
                log.debug("skipping a degenerate face at %s", face.box)
                return
        if cfg.mode == "largest":
            self._clip_scale = scale
        h, w = scaled_size(self.frame_h, self.frame_w, scale)
        side = (2 * cfg.padding) // CROP_STEP * CROP_STEP
        crop_h, crop_w = min(side, h // CROP_STEP * CROP_STEP), min(side, w // CROP_STEP * CROP_STEP)
        if crop_h <= 0 or crop_w <= 0:
            raise InputError(
                f"a {self.frame_w}x{self.frame_h} frame rescaled by {scale:.3f} is too small to crop")
        filt = OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
        lm = face.landmarks.astype(np.float64)
        tr = _Track(self._next_id, scale, crop_h, crop_w, face.box, filt, lm, lm, now)
        self._next_id += 1
        self._tracks.append(tr)
        log.debug("track %d starts at %s, scale %.3f, crop %dx%d", tr.track_id, face.box, scale,
                  crop_w, crop_h)
        self._measure(tr, face, now)

    def _measure(self, tr: _Track, face: Face, now: float) -> None:
        tr.face = face
        tr.box = face.box
        tr.lost = False
        tr.frames_lost = 0
        tr.last_seen = now
        tr.last_raw = face.landmarks.astype(np.float64) * (tr.scale / EYE_DISTANCE)  # eye distances
        self._smooth(tr, tr.last_raw, now)

    def _smooth(self, tr: _Track, normalised: np.ndarray, now: float) -> None:
        tr.landmarks = tr.filt(normalised, now) * (EYE_DISTANCE / tr.scale)
        self._place(tr)

    # -- crop window -------------------------------------------------------------------------

    def _place(self, tr: _Track) -> None:
        """Move the window (in rescaled pixels) to follow the smoothed eye midpoint."""
        h, w = scaled_size(self.frame_h, self.frame_w, tr.scale)
        left_eye, right_eye = eye_centres(tr.landmarks)
        cx, cy = (left_eye + right_eye) / 2.0 * tr.scale
        tr.top = self._snap(cy - tr.crop_h / 2, tr.top, h - tr.crop_h)
        tr.left = self._snap(cx - tr.crop_w / 2, tr.left, w - tr.crop_w)

    def _snap(self, ideal: float, current: int | None, limit: int) -> int:
        """Grid position for ``ideal``, kept at ``current`` inside a dead band, within [0, limit]."""
        step = self.config.step
        ideal = min(max(ideal, 0.0), float(limit))
        margin = self.config.hysteresis * step
        if current is not None and current - margin <= ideal < current + step + margin:
            return current
        pos = round(ideal) // step * step
        return min(max(pos, 0), limit // step * step)

    def _report(self, tr: _Track) -> TrackedFace:
        h, w = scaled_size(self.frame_h, self.frame_w, tr.scale)
        top, left = tr.top or 0, tr.left or 0  # always placed by _start
        crop = CropParams(self.frame_h, self.frame_w, tr.scale, h, w, top, top + tr.crop_h,
                          left, left + tr.crop_w)
        lm = tr.landmarks.astype(np.float32)
        lm.setflags(write=False)
        return TrackedFace(tr.track_id, lm, crop, tr.lost, tr.frames_lost, tr.face)
