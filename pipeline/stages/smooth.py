"""smooth stage: temporal filtering of per-frame W+ codes, so the face follows the footage without
flicker.

Per-frame style codes (from each frame's aligned face) follow head turns and expressions but
jitter from frame to frame; the official first-frame codes never flicker but freeze the face. This
stage filters each track's codes over time, per layer group (coarse rows 0-6: pose and shape;
middle 7-11: features and expression; fine 12-17: colour and texture), with one of:

* ``gaussian`` (default): centred window of ``+-window`` frames, sigma ``strength * window / 2``.
  Zero phase lag; latency ``window`` frames (the stage holds that many records); a step in the
  input is followed completely ``window`` frames later and half-way at the step itself.
* ``ema``: causal exponential average with time constant ``strength * window / 2`` frames (no
  latency; lags a step by about that many frames).
* ``one-euro``: causal and adaptive: damps jitter when the codes are steady, follows fast changes.

Windows never reach across a shot change (a cut resets every filter) or into another track, and
are renormalised where they are cut short, so there are no edge effects at the start and end of a
clip. Memory is bounded by the window: nothing is buffered beyond it.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from pipeline.face.filters import OneEuroFilter
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.model.arch import N_STYLES
from pipeline.records import Located
from pipeline.stages.invert import Coded

log = logging.getLogger(__name__)

FILTERS = ("gaussian", "ema", "one-euro")
GROUPS = {"coarse": range(0, 7), "middle": range(7, 12), "fine": range(12, N_STYLES)}


@dataclass(frozen=True)
class SmoothConfig:
    """Options of the smooth stage.

    Attributes:
        filter: ``gaussian``, ``ema`` or ``one-euro``.
        strength: per layer group (coarse, middle, fine); 0 leaves the group unfiltered, 1 is the
            default amount, larger values smooth more (for ``gaussian`` capped by the window).
        window: frames of look-ahead for ``gaussian`` (its latency) and the time-constant scale of
            all filters.
        fps: nominal frame rate that converts the time constants (frames) into the One-Euro filter's
            cutoff (Hz); the filter itself runs on the frames' own timestamps.
        one_euro_beta: how quickly the One-Euro filter opens up with speed (per unit of code change/s).
        shot_threshold: Bhattacharyya distance of consecutive frames' histograms above which a cut
            is assumed (1 disables shot detection).
    """

    filter: str = "gaussian"
    strength: tuple[float, float, float] = (1.0, 1.0, 1.0)
    window: int = 6
    fps: float = FALLBACK_FPS
    one_euro_beta: float = 0.05
    shot_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise ValueError(f"smoothing filter must be one of {FILTERS}, got {self.filter!r}")
        if len(self.strength) != 3 or min(self.strength) < 0:
            raise ValueError("smoothing strength needs 3 values >= 0 (coarse, middle, fine)")
        if self.window < 1:
            raise ValueError("smoothing window must be >= 1 frame")

    def row_sigma(self) -> np.ndarray:
        """``[18]`` time constant (frames) for each W+ row."""
        sigma = np.zeros(N_STYLES)
        for s, rows in zip(self.strength, GROUPS.values(), strict=True):
            sigma[list(rows)] = s * self.window / 2.0
        return sigma


def shot_histogram(pixels: np.ndarray) -> np.ndarray:
    """The normalised ``[256]`` float32 HSV histogram of a 64x64 thumbnail that cuts are found with."""
    small = cv2.resize(pixels, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 8], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


class ShotDetector:
    """Flags a cut when consecutive frames' colour histograms differ strongly."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None

    def is_cut(self, pixels: np.ndarray) -> bool:
        return self.is_cut_histogram(shot_histogram(pixels))

    def is_cut_histogram(self, hist: np.ndarray) -> bool:
        """As :meth:`is_cut`, given the frame's :func:`shot_histogram` (computed elsewhere)."""
        last, self._last = self._last, hist
        if last is None or self.threshold >= 1:
            return False
        return cv2.compareHist(last, hist, cv2.HISTCMP_BHATTACHARYYA) > self.threshold


@dataclass(eq=False)
class _Entry:
    record: Coded
    shot: int
    codes: dict[int, np.ndarray] = field(default_factory=dict)     # track -> [18, D] float64


def _with_codes(rec: Coded, codes: dict[int, np.ndarray]) -> Coded:
    return Coded(rec.located, [torch.from_numpy(codes[face.track_id]).to(device=w.device, dtype=w.dtype)[None]
                               for face, w in zip(rec.located.faces, rec.codes, strict=True)])


def smooth(items: Iterable[Coded], cfg: SmoothConfig,
           histogram: Callable[[Coded], np.ndarray] | None = None) -> Iterator[Coded]:
    """Filter each track's W+ codes over time (see the module docstring).

    ``histogram(rec)``: the record's :func:`shot_histogram`, when it was computed elsewhere (the Ray
    runner finds faces in parallel and smooths without the pixels); default: from the frame's pixels.
    """
    shots = ShotDetector(cfg.shot_threshold)
    sigma = cfg.row_sigma()
    shot = 0

    def entries() -> Iterator[_Entry]:
        nonlocal shot
        for rec in items:
            hist = shot_histogram(rec.located.frame.pixels) if histogram is None else histogram(rec)
            if shots.is_cut_histogram(hist):
                shot += 1
                log.info("shot change at frame %d: smoothing restarts", rec.located.frame.index)
            codes = {f.track_id: w[0].double().cpu().numpy()
                     for f, w in zip(rec.located.faces, rec.codes, strict=True)}
            yield _Entry(rec, shot, codes)

    if cfg.filter == "gaussian":
        yield from _gaussian(entries(), sigma, cfg.window)
    else:
        yield from _causal(entries(), sigma, cfg)


def _gaussian(entries: Iterable[_Entry], sigma: np.ndarray, window: int) -> Iterator[Coded]:
    """Centred window: record ``i`` leaves once ``i + window`` has arrived (or the clip ended)."""
    buf: deque[_Entry] = deque()
    offsets = np.arange(-window, window + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.exp(-0.5 * (offsets[:, None] / sigma[None, :]) ** 2)      # [2W+1, 18]
    weights[:, sigma == 0] = (offsets == 0)[:, None].astype(np.float64)
    centre = 0                                                                  # buf index of the next to emit

    def emit(i: int) -> Coded:
        e = buf[i]
        out = {}
        for track, code in e.codes.items():
            acc, norm = np.zeros_like(code), np.zeros((N_STYLES, 1))
            for j in range(max(0, i - window), min(len(buf), i + window + 1)):
                other = buf[j]
                if other.shot != e.shot or track not in other.codes:
                    continue
                wt = weights[j - i + window][:, None]                          # [18, 1]
                acc += wt * other.codes[track]
                norm += wt
            out[track] = acc / norm
        return _with_codes(e.record, out)

    for entry in entries:
        buf.append(entry)
        if len(buf) - 1 - centre >= window:
            yield emit(centre)
            centre += 1
            if centre > window:                                                 # keep `window` past records
                buf.popleft()
                centre -= 1
    while centre < len(buf):
        yield emit(centre)
        centre += 1


def _causal(entries: Iterable[_Entry], sigma: np.ndarray, cfg: SmoothConfig) -> Iterator[Coded]:
    """EMA or One-Euro per track and row group; a new shot or track starts a fresh filter."""
    state: dict[int, tuple[int, object]] = {}          # track -> (shot, filter state)
    groups = [(list(rows), float(sigma[rows[0]])) for rows in GROUPS.values()]
    for e in entries:
        t = e.record.located.frame.time
        out = {}
        for track, code in e.codes.items():
            shot, filt = state.get(track, (None, None))
            if shot != e.shot or filt is None:
                filt = _new_filter(cfg, groups, code)
                state[track] = (e.shot, filt)
            out[track] = _apply(cfg, filt, groups, code, t)
        yield _with_codes(e.record, out)


def _new_filter(cfg: SmoothConfig, groups: list, code: np.ndarray) -> list:
    if cfg.filter == "ema":
        return [code.copy()]
    filters = []
    for _, tau in groups:
        cutoff = cfg.fps / (2 * math.pi * tau) if tau > 0 else math.inf
        filters.append(OneEuroFilter(min_cutoff=cutoff, beta=cfg.one_euro_beta, d_cutoff=1.0,
                                     point_dim=code.shape[1]))
    return filters


def _apply(cfg: SmoothConfig, filt: list, groups: list, code: np.ndarray, t: float) -> np.ndarray:
    out = code.copy()
    if cfg.filter == "ema":
        state = filt[0]
        for rows, tau in groups:
            k = 1.0 - math.exp(-1.0 / tau) if tau > 0 else 1.0
            state[rows] = state[rows] + k * (code[rows] - state[rows])
        return state.copy()
    for (rows, tau), f in zip(groups, filt, strict=True):
        out[rows] = code[rows] if tau == 0 else f(code[rows], t)
    return out


def shot_cuts(threshold: float) -> Callable[[Located], bool]:
    """``cut(rec)``: True where a located frame starts a new shot, found as :func:`smooth` finds them
    (for the key codes of :func:`pipeline.stages.invert.codes`; call it on every frame, in order)."""
    shots = ShotDetector(threshold)
    return lambda rec: shots.is_cut(rec.frame.pixels)
