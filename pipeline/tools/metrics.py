"""metrics: numbers for temporal consistency (flicker) of a stylized clip against its source.

``flicker(input_path, output_path)`` streams both clips in lockstep and, for every pair of
consecutive frames (t-1, t), measures inside the face region:

1. **Warping error** (Lai et al. 2018, "Learning Blind Video Temporal Consistency", with mean
   absolute difference instead of squared error). Optical flow is computed on the INPUT only
   (DIS, medium preset, grayscale, at a working size whose long side is at most ``flow_size``),
   so it describes the true motion of the scene whatever the stylization did:

   * ``f_bw`` = flow t -> t-1 and ``f_fw`` = flow t-1 -> t, on the input.
   * ``W(O_{t-1})(x) = O_{t-1}(x + f_bw(x))`` (bilinear ``cv2.remap``): frame t-1 moved onto t.
   * valid(x): ``x + f_bw(x)`` lies inside the frame and the flows agree both ways
     (forward-backward check, Sundaram et al. 2010 / Ruder et al. 2016; the ``(x + f)`` term is
     the flow of the other direction sampled where ``f_bw`` points):
     ``|f_bw(x) + f_fw(x + f_bw(x))|^2 < 0.01 (|f_bw(x)|^2 + |f_fw(x + f_bw(x))|^2) + 0.5``,
     in working-size pixels.
   * ``E_t = mean over valid region pixels and the 3 RGB channels of |O_t - W(O_{t-1})|``, in
     uint8 levels (0-255). The report gives the mean of ``E_t`` over pairs and its 95th
     percentile over pairs. The same number for the input itself (``I`` in place of ``O``) is
     the floor: what is left when the flow is imperfect (noise, blur, occlusion edges, coding).

2. **Responsiveness**: does the output move with the input? Flow is also computed on the
   output (t -> t-1, same working size) and
   ``R = sum <f_out(x), f_in(x)> / sum |f_in(x)|^2`` over all pairs and the valid region pixels
   where the input moves (``|f_in| > motion_threshold`` working pixels). 1: the output follows
   the input's motion; 0: it is frozen; between: it lags or damps the motion.

The output may have another size than the input: each output frame is resized to the input size
before anything is measured, so ``full`` outputs (same field of view) compare pixel for pixel.
A ``crop`` output shows another window of the scene; its numbers mean something only against an
input cropped the same way (the report carries a note when the aspect ratios differ).

Face region: by default a detector (dlib) runs on the input every ``detect_every`` frames and
its largest box, enlarged by ``box_margin``, holds until the next detection; a pair is measured
when frame t has a box. ``face_boxes`` bypasses detection with a fixed box or a callable
``index -> box or None`` (used as given, not enlarged). When no frame has a face, the whole frame
is used and the report says so (whole-frame statistics are kept alongside while streaming).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from pipeline.errors import InputError, UsageError
from pipeline.face.detect import Box, Detector, check_pixels, make_detector, pick_face
from pipeline.stages import video_in
from pipeline.tools.flow import consistent_mask, resize_flow, warp_backward, work_size

__all__ = ["FlickerMeter", "FlickerReport", "consistent_mask", "flicker", "warp_backward"]

log = logging.getLogger(__name__)

BoxSource = Box | Sequence[float] | Callable[[int], "Box | Sequence[float] | None"]

FLOW_SIZE = 640  # long side of the working size for optical flow
DETECT_EVERY = 5
BOX_MARGIN = 0.2  # detector boxes grow by this fraction of their width and height
MOTION_THRESHOLD = 0.5  # working-size pixels per frame: "the input moves here"


# --------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class FlickerReport:
    """Temporal consistency of ``output`` against ``input``; see the module docstring.

    Warping errors are mean absolute differences in uint8 levels (0-255) per RGB channel; None
    when no pair could be measured. ``responsiveness`` is None when the input never moves.
    ``input_motion`` is the mean input flow magnitude in the region, input pixels per frame.
    Sizes are (width, height); ``flow_size`` is the working size the flow was computed at.
    """

    input_path: str
    output_path: str
    frames: int  # frames read from each clip
    pairs: int  # consecutive pairs measured
    skipped_pairs: int  # pairs with no face box or no valid pixel in it
    region: str  # "face" or "frame" (whole frame: no face anywhere)
    region_detail: str  # how the region was chosen
    warp_error_output: float | None
    warp_error_output_p95: float | None
    warp_error_input: float | None
    warp_error_input_p95: float | None
    responsiveness: float | None
    input_motion: float | None
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    flow_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def excess_warp_error(self) -> float | None:
        """Output warping error minus the input's: the flicker the stylization adds."""
        if self.warp_error_output is None or self.warp_error_input is None:
            return None
        return self.warp_error_output - self.warp_error_input

    def as_dict(self) -> dict:
        """JSON-ready: plain numbers, strings, lists and None."""
        d = asdict(self)
        for key in ("input_size", "output_size", "flow_size", "notes"):
            d[key] = list(d[key])
        d["excess_warp_error"] = self.excess_warp_error
        d["units"] = {"warp_error": "mean absolute difference per RGB channel, 0-255",
                      "responsiveness": "sum <f_out, f_in> / sum |f_in|^2 (1 follows, 0 frozen)",
                      "input_motion": "input pixels per frame"}
        return d

    def as_table(self) -> str:
        """A small aligned text table: output next to input."""
        def num(v: float | None, fmt: str = ".2f") -> str:
            return "-" if v is None else format(v, fmt)

        rows = [("", "output", "input"),
                ("warping error, mean", num(self.warp_error_output), num(self.warp_error_input)),
                ("warping error, p95", num(self.warp_error_output_p95), num(self.warp_error_input_p95)),
                ("responsiveness", num(self.responsiveness, ".3f"), "1 (ref)"),
                ("input motion, px/frame", "", num(self.input_motion))]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{w0}}  {b:>{w1}}  {c:>7}".rstrip() for a, b, c in rows]
        region = "face" if self.region == "face" else "whole frame"
        lines.append(f"pairs: {self.pairs} measured, {self.skipped_pairs} skipped, of {self.frames} frames")
        lines.append(f"region: {region} ({self.region_detail})")
        lines.append("warping error: mean |difference| per RGB channel, 0-255 levels; lower is steadier")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _box_mask(box: Box | None, w: int, h: int, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray | None:
    """[h, w] bool of the box (input pixels, scaled by ``scale``), or None when it is empty."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    sx, sy = scale
    c0, c1 = max(0, math.floor(x0 * sx)), min(w, math.ceil(x1 * sx))
    r0, r1 = max(0, math.floor(y0 * sy)), min(h, math.ceil(y1 * sy))
    if c1 <= c0 or r1 <= r0:
        return None
    mask = np.zeros((h, w), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _enlarge(box: Box, margin: float) -> Box:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin / 2, (y1 - y0) * margin / 2
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def _as_box(value: object) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UsageError(f"a face box is (x0, y0, x1, y1), got {value!r}") from None
    if not (x1 > x0 and y1 > y0):
        raise UsageError(f"a face box needs x1 > x0 and y1 > y0, got {value!r}")
    return (x0, y0, x1, y1)


# --------------------------------------------------------------------------------------------
# Accumulating over pairs


@dataclass
class _Tally:
    """Sums over pairs for one region definition (the face boxes, or the whole frame)."""

    err_out: list[float] = field(default_factory=list)  # E_t per measured pair
    err_in: list[float] = field(default_factory=list)
    dot: float = 0.0  # sum <f_out, f_in> over moving pixels
    sq: float = 0.0  # sum |f_in|^2 over moving pixels
    motion: float = 0.0  # sum |f_in| (input pixels) over valid pixels
    motion_n: int = 0

    def add(self, err_out: np.ndarray, err_in: np.ndarray, valid: np.ndarray, f_in: np.ndarray,
            f_out: np.ndarray, valid_w: np.ndarray, speed_in: float, threshold: float) -> bool:
        """Add one pair; masks already restricted to the region. False: no valid pixel."""
        if not valid.any():
            return False
        self.err_out.append(float(err_out[valid].mean()))
        self.err_in.append(float(err_in[valid].mean()))
        mag2 = (f_in ** 2).sum(-1)  # [h, w]
        moving = valid_w & (mag2 > threshold ** 2)
        self.dot += float((f_in[moving] * f_out[moving]).sum())
        self.sq += float(mag2[moving].sum())
        self.motion += float(np.sqrt(mag2[valid_w]).sum()) * speed_in
        self.motion_n += int(valid_w.sum())
        return True

    def summary(self) -> dict:
        def p95(v: list[float]) -> float | None:
            return float(np.percentile(v, 95)) if v else None

        return {"pairs": len(self.err_out),
                "warp_error_output": float(np.mean(self.err_out)) if self.err_out else None,
                "warp_error_output_p95": p95(self.err_out),
                "warp_error_input": float(np.mean(self.err_in)) if self.err_in else None,
                "warp_error_input_p95": p95(self.err_in),
                "responsiveness": self.dot / self.sq if self.sq > 0 else None,
                "input_motion": self.motion / self.motion_n if self.motion_n else None}


class FlickerMeter:
    """Feed frame pairs one by one with :meth:`add`, then read :meth:`report`.

    Holds only the previous input and output frame. ``add(input_pixels, output_pixels, box)``
    takes uint8 [H, W, 3] RGB frames (the output of any size; it is resized to the input's) and
    the face box of this frame in input pixels, or None (no face).
    """

    def __init__(self, *, flow_size: int = FLOW_SIZE, motion_threshold: float = MOTION_THRESHOLD) -> None:
        if flow_size < 32:
            raise UsageError(f"flow_size must be >= 32 pixels, got {flow_size}")
        self.flow_size = flow_size
        self.motion_threshold = motion_threshold
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._face, self._frame = _Tally(), _Tally()
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.frames = 0
        self.input_size: tuple[int, int] | None = None
        self.output_size: tuple[int, int] | None = None
        self.work_size: tuple[int, int] | None = None

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """[h, w, 2] float32 flow with ``a(x) ~ b(x + flow(x))``."""
        return self._dis.calc(a, b, None)

    def add(self, input_pixels: np.ndarray, output_pixels: np.ndarray, box: Box | None) -> None:
        """Add the next frame of both clips (measures the pair it ends, from the 2nd frame on).

        Raises:
            InputError: frames that are not uint8 HxWx3, or an input frame of a new size.
        """
        input_pixels, output_pixels = check_pixels(input_pixels), check_pixels(output_pixels)
        h, w = input_pixels.shape[:2]
        if self.input_size is None:
            self.input_size, self.output_size = (w, h), (output_pixels.shape[1], output_pixels.shape[0])
            self.work_size = work_size(w, h, self.flow_size)
        elif self.input_size != (w, h):
            raise InputError(f"input frame {self.frames} is {w}x{h}, earlier frames are "
                             f"{self.input_size[0]}x{self.input_size[1]}")
        out = output_pixels
        if out.shape[:2] != (h, w):
            shrink = out.shape[0] * out.shape[1] > h * w
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        ww, wh = self.work_size
        g_in = cv2.resize(cv2.cvtColor(input_pixels, cv2.COLOR_RGB2GRAY), (ww, wh), interpolation=cv2.INTER_AREA)
        g_out = cv2.resize(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), (ww, wh), interpolation=cv2.INTER_AREA)
        prev, self._prev = self._prev, (input_pixels, out, g_in, g_out)
        self.frames += 1
        if prev is not None:
            self._pair(prev, (input_pixels, out, g_in, g_out), box)

    def _pair(self, prev: tuple, cur: tuple, box: Box | None) -> None:
        (in0, out0, gi0, go0), (in1, out1, gi1, go1) = prev, cur
        h, w = in1.shape[:2]
        ww, wh = self.work_size
        f_bw = self._flow(gi1, gi0)  # [h, w, 2] t -> t-1, working pixels
        f_fw = self._flow(gi0, gi1)  # t-1 -> t
        f_out = self._flow(go1, go0)  # output t -> t-1
        valid_w = consistent_mask(f_bw, f_fw)  # [h, w]
        flow = resize_flow(f_bw, (w, h))  # [H, W, 2] input pixels
        valid = valid_w if (ww, wh) == (w, h) else \
            cv2.resize(valid_w.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        err_in = np.abs(in1.astype(np.float32) - warp_backward(in0, flow)).mean(-1)  # [H, W]
        err_out = np.abs(out1.astype(np.float32) - warp_backward(out0, flow)).mean(-1)
        speed_in = w / ww  # working pixels -> input pixels
        thr = self.motion_threshold
        self._frame.add(err_out, err_in, valid, f_bw, f_out, valid_w, speed_in, thr)
        face = _box_mask(box, w, h)
        face_w = _box_mask(box, ww, wh, (ww / w, wh / h))
        if face is not None and face_w is not None:
            self._face.add(err_out, err_in, valid & face, f_bw, f_out, valid_w & face_w, speed_in, thr)

    def report(self, input_name: str = "input", output_name: str = "output",
               region_detail: str = "boxes given to add()") -> FlickerReport:
        """The report so far: face statistics, or whole-frame ones when no pair had a face.

        Raises:
            InputError: fewer than 2 frames were added.
        """
        if self.frames < 2:
            raise InputError(f"{input_name}: {self.frames} frame(s); flicker needs at least 2")
        region, tally = ("face", self._face) if self._face.err_out else ("frame", self._frame)
        stats = tally.summary()
        notes = []
        (iw, ih), (ow, oh) = self.input_size, self.output_size
        if (iw, ih) != (ow, oh):
            notes.append(f"output {ow}x{oh} resized to the input's {iw}x{ih} before comparing")
            if abs(ow / oh - iw / ih) > 0.02 * iw / ih:
                notes.append("aspect ratios differ: the output may show another window (crop mode); "
                             "compare it with an input cropped the same way")
        if region == "frame":
            region_detail = f"no face found ({region_detail})"
            notes.append("no face in any frame: measured over the whole frame")
        return FlickerReport(
            input_path=input_name, output_path=output_name, frames=self.frames,
            skipped_pairs=self.frames - 1 - stats["pairs"], region=region, region_detail=region_detail,
            input_size=(iw, ih), output_size=(ow, oh), flow_size=self.work_size, notes=tuple(notes), **stats)


# --------------------------------------------------------------------------------------------
# Face boxes


class _Boxes:
    """Box per input frame: fixed, from a callable, or from a detector every N frames."""

    def __init__(self, face_boxes: BoxSource | None, detector: Detector | None, every: int, margin: float) -> None:
        self.fixed: Box | None = None
        self.call: Callable | None = None
        self.detector = detector
        self.every, self.margin = every, margin
        self._held: Box | None = None
        if callable(face_boxes):
            self.call, self.detail = face_boxes, "boxes given per frame"
        elif face_boxes is not None:
            self.fixed = _as_box(face_boxes)
            self.detail = "fixed box ({:g}, {:g}, {:g}, {:g})".format(*self.fixed)
        else:
            if self.detector is None:
                self.detector = make_detector("dlib", max_side=640)
            name = type(self.detector).__name__
            self.detail = f"{name} every {every} frames, boxes +{margin:.0%}"

    def box(self, index: int, pixels: np.ndarray) -> Box | None:
        if self.fixed is not None:
            return self.fixed
        if self.call is not None:
            found = self.call(index)
            return None if found is None else _as_box(found)
        if index % self.every == 0:
            face = pick_face(self.detector.detect(pixels), "largest")
            self._held = None if face is None else _enlarge(face.box, self.margin)
        return self._held


# --------------------------------------------------------------------------------------------
# Entry point


def _lockstep(a: Iterator[video_in.Frame], b: Iterator[video_in.Frame], limit: int | None,
              names: tuple[str, str]) -> Iterator[tuple[video_in.Frame, video_in.Frame]]:
    """Pairs of frames from both streams; InputError when one ends before the other."""
    n = 0
    while limit is None or n < limit:
        fa, fb = next(a, None), next(b, None)
        if fa is None and fb is None:
            return
        if fa is None or fb is None:
            longer = b if fa is None else a
            total = n + 1
            while (limit is None or total < limit) and next(longer, None) is not None:
                total += 1
            more = "" if limit is None or total < limit else " or more"
            counts = (f"{n}", f"{total}{more}") if fa is None else (f"{total}{more}", f"{n}")
            raise InputError(f"frame counts differ: {names[0]} has {counts[0]} frames, "
                             f"{names[1]} has {counts[1]}")
        yield fa, fb
        n += 1


def flicker(input_path: str | os.PathLike, output_path: str | os.PathLike, *,
            face_boxes: BoxSource | None = None, detector: Detector | None = None,
            max_frames: int | None = None, flow_size: int = FLOW_SIZE, detect_every: int = DETECT_EVERY,
            box_margin: float = BOX_MARGIN, motion_threshold: float = MOTION_THRESHOLD) -> FlickerReport:
    """Measure how much ``output_path`` flickers compared with ``input_path``.

    Args:
        input_path: the source clip (the motion reference).
        output_path: the stylized clip, same number of frames; any size (resized to the input's).
        face_boxes: None (detect), a fixed ``(x0, y0, x1, y1)`` box in input pixels, or a callable
            ``frame index -> box or None``. Given boxes are used as they are.
        detector: the detector used when ``face_boxes`` is None (default: dlib, ``max_side=640``).
        max_frames: read at most this many frames of each clip (None: all).
        flow_size: long side of the working size for optical flow (default 640).
        detect_every: run the detector on every N-th frame and hold its box in between.
        box_margin: detector boxes grow by this fraction of their width and height (0.2).
        motion_threshold: working-size pixels per frame above which the input counts as moving.

    Returns:
        A :class:`FlickerReport` (``as_table()`` for people, ``as_dict()`` for JSON).

    Raises:
        InputError: a file cannot be read, the frame counts differ, fewer than 2 frames, or the
            input changes size mid-stream.
        UsageError: a bad option (box, flow_size, detect_every, box_margin, max_frames).
        ModelNotAvailableError: detection is needed and dlib is not installed.
    """
    if detect_every < 1:
        raise UsageError(f"detect_every must be >= 1, got {detect_every}")
    if box_margin < 0:
        raise UsageError(f"box_margin must be >= 0, got {box_margin}")
    if max_frames is not None and max_frames < 2:
        raise UsageError(f"max_frames must be >= 2 to compare frame pairs, got {max_frames}")
    meter = FlickerMeter(flow_size=flow_size, motion_threshold=motion_threshold)
    boxes = _Boxes(face_boxes, detector, detect_every, box_margin)
    names = (os.fspath(input_path), os.fspath(output_path))
    with video_in.read(input_path) as src, video_in.read(output_path) as dst:
        for fi, fo in _lockstep(src, dst, max_frames, names):
            meter.add(fi.pixels, fo.pixels, boxes.box(fi.index, fi.pixels))
    report = meter.report(*names, region_detail=boxes.detail)
    log.info("flicker: %s vs %s: warping error %s vs %s over %d pairs", names[1], names[0],
             report.warp_error_output, report.warp_error_input, report.pairs)
    return report
