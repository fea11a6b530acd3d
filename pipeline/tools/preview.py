"""``facestyle preview``: a contact sheet to choose a model and a strength before converting.

Rows are frames at the given times (default: three spread over the clip); columns are the source
frame, then each model at each strength. Every cell is made by the same stages as ``convert``, with
the same options: face finding and the temporal half (:func:`pipeline.convert.plan`: codes, key
codes, smoothing) run from the clip's start up to the last frame shown (plus the smoothing's
look-ahead), so tracking and smoothing are those of a full run, and the per-frame half
(:func:`pipeline.convert.render`: features, generator, paste-back) runs only on the batches that
hold the frames shown (as convert forms them: a batch's size changes the arithmetic a little). A
cell is therefore the frame ``convert`` writes at that time (before encoding), scaled to the sheet's
cell height when the frame is taller.

The cost is face finding and the codes pass up to the last time shown, per model, plus the render
of one batch per row and column (``--batch-size 1``: one frame; then the cells are the frames of
``convert --batch-size 1``); the decoder stops there.
"""
from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.convert import ConvertConfig, locate_faces, plan, render
from pipeline.errors import InputError, NoFaceError, UsageError
from pipeline.face.detect import Detector
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.model import StyleGANEX
from pipeline.records import Frame
from pipeline.runtime.batch import batches, crop_pixels
from pipeline.stages import video_in

log = logging.getLogger(__name__)

CELL_HEIGHT = 360           # cells taller than this are scaled down (INTER_AREA)
DEFAULT_TIMES = 3           # rows when no --at is given: at 1/6, 1/2 and 5/6 of the clip
LABEL_H, GAP = 28, 4
BACKGROUND = (24, 24, 24)


@dataclass
class Sheet:
    """A contact sheet.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        times: the rows' frame times (s); indices: their frame indices.
        columns: the column labels (``source``, then ``<model> @ <strength>``).
        cells: ``(row, column) -> (top, left, height, width)`` in ``image``.
    """

    image: np.ndarray
    times: list[float]
    indices: list[int]
    columns: list[str]
    cells: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)

    def cell(self, row: int, column: int) -> np.ndarray:
        top, left, h, w = self.cells[(row, column)]
        return self.image[top:top + h, left:left + w]

    def png(self) -> bytes:
        """The sheet as PNG bytes, the labels also as text chunks (``Columns``, ``Times``)."""
        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "facestyle preview")
        info.add_text("Columns", " | ".join(self.columns))
        info.add_text("Times", ", ".join(f"{t:.3f}" for t in self.times))
        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="PNG", pnginfo=info, compress_level=1)
        return buf.getvalue()


def parse_list(text: str | None, kind: type, what: str) -> list:
    """``"a,b,c"`` -> ``[kind(a), ...]``; None -> ``[]``. Raises UsageError."""
    if text is None or str(text).strip() == "":
        return []
    try:
        return [kind(p.strip()) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"{what} {text!r}: give comma-separated values") from None


def default_times(duration: float | None, frames: int | None, fps: float) -> list[float]:
    """Three times spread over the clip (1/6, 1/2, 5/6 of it)."""
    length = duration or ((frames or 1) / fps)
    return [length * (2 * k + 1) / (2 * DEFAULT_TIMES) for k in range(DEFAULT_TIMES)]


def fit(pixels: np.ndarray, height: int) -> np.ndarray:
    """``pixels`` scaled down to ``height`` rows (INTER_AREA) when taller, else as they are."""
    h, w = pixels.shape[:2]
    if h <= height:
        return pixels
    return cv2.resize(pixels, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def _targets(src: Path, cfg: ConvertConfig, times: Sequence[float]) -> tuple[list[int], list[float], int]:
    """Frame indices (and their times) of the first frame at or after each time, and how many frames
    must be read (the last shown plus the look-ahead of the smoothing and the key codes)."""
    if any(t < 0 for t in times):
        raise UsageError(f"--at {','.join(f'{t:g}' for t in times)}: times are seconds from the start")
    reach = cfg.smooth.window + cfg.invert.code_every + 1
    last = max(times)
    stamps: list[float] = []
    with video_in.read(src, cfg.video_in) as reader:
        for f in reader:                          # up to the last time shown and the look-ahead after it
            stamps.append(f.time)
            if f.time >= last - 1e-6 and len(stamps) > reach + next(
                    k for k, s in enumerate(stamps) if s >= last - 1e-6):
                break
    if not stamps:
        raise InputError(f"{src}: no frames")
    indices = [next((k for k, s in enumerate(stamps) if s >= t - 1e-6), len(stamps) - 1) for t in times]
    return indices, [stamps[i] for i in indices], min(len(stamps), max(indices) + 1 + reach)


def _frames(src: Path, cfg: ConvertConfig, count: int) -> Iterator[Frame]:
    with video_in.read(src, cfg.video_in) as reader:
        for frame in reader:
            if frame.index >= count:
                break
            yield frame


def stylized_frames(src: Path, model: StyleGANEX, detector: Detector, cfg: ConvertConfig, indices: Sequence[int],
                    count: int, strengths: Sequence[float]) -> dict[float, dict[int, np.ndarray]]:
    """``strength -> frame index -> RGB frame`` as ``convert`` makes them (see the module docstring)."""
    wanted = set(indices)
    with video_in.read(src, cfg.video_in) as reader:
        info = reader.info
    fps = info.fps or FALLBACK_FPS
    located = locate_faces(_frames(src, cfg, count), (info.width, info.height), fps, detector, cfg)
    # the per-frame half batches faces, and a batch's size changes the arithmetic a little (oneDNN picks
    # other kernels), so the frames shown are rendered in the very batches convert forms around them
    chosen = [rec for batch in batches(plan(located, fps, model, cfg), cfg.invert.batch_size,
                                       lambda r: len(r.located.faces), budget=cfg.invert.batch_pixels,
                                       weight=lambda r: crop_pixels(r.located.faces))
              if any(rec.located.frame.index in wanted for rec in batch) for rec in batch]
    host = replace(cfg, paste_on="host")
    out: dict[float, dict[int, np.ndarray]] = {}
    for s in strengths:
        run = replace(host, generate=replace(cfg.generate, strength=s, keyframes=()))
        out[s] = {f.index: f.pixels for f in render(iter(chosen), model, run, is_image=info.is_image)
                  if f.index in wanted}
    return out


def make_sheet(src: str | Path, models: Sequence[tuple[str, StyleGANEX]], detector: Detector, cfg: ConvertConfig,
               strengths: Sequence[float] = (), times: Sequence[float] = (),
               cell_height: int = CELL_HEIGHT) -> Sheet:
    """The contact sheet of ``src`` (see the module docstring).

    Args:
        models: ``(label, model)`` per group of columns.
        strengths: the strengths to show (default: ``cfg.generate.strength``).
        times: seconds (default: three spread over the clip).

    Raises:
        InputError: unreadable input. UsageError: no model, a negative time. NoFaceError: no face on any
        frame shown.
    """
    src = Path(src)
    if not models:
        raise UsageError("preview needs at least one model")
    if not src.is_file():
        raise InputError(f"{src}: file not found")
    strengths = list(strengths) or [cfg.generate.strength]
    with video_in.read(src, cfg.video_in) as reader:
        info = reader.info
    if not times:
        times = default_times(info.duration, info.frame_count, info.fps or FALLBACK_FPS)
    indices, stamps, count = _targets(src, cfg, times)
    columns = ["source"]
    grids: list[dict[int, np.ndarray]] = []
    for label, model in models:
        done = stylized_frames(src, model, detector, cfg, indices, count, strengths)
        for s in strengths:
            columns.append(f"{label} @ {s:g}")
            grids.append(done[s])
    sources = {f.index: f.pixels for f in _frames(src, cfg, count) if f.index in set(indices)}
    if all(np.array_equal(grid[i], sources[i]) for grid in grids for i in indices):
        raise NoFaceError(f"{src}: no face found on the frames shown (times {', '.join(f'{t:g}' for t in stamps)})")
    rows = [[fit(sources[i], cell_height)] + [fit(g[i], cell_height) for g in grids] for i in indices]
    return _compose(rows, columns, stamps, indices)


def _compose(rows: list[list[np.ndarray]], columns: list[str], times: list[float], indices: list[int]) -> Sheet:
    from PIL import Image, ImageDraw

    ch, cw = rows[0][0].shape[:2]
    left_w = 72
    width = left_w + len(columns) * (cw + GAP)
    height = LABEL_H + len(rows) * (ch + GAP)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    sheet = Sheet(image, list(times), list(indices), list(columns))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            top, left = LABEL_H + r * (ch + GAP), left_w + c * (cw + GAP)
            image[top:top + ch, left:left + cw] = cell
            sheet.cells[(r, c)] = (top, left, ch, cw)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(columns):
        draw.text((left_w + c * (cw + GAP) + 4, 8), text, fill=(235, 235, 235))
    for r, t in enumerate(times):
        draw.text((6, LABEL_H + r * (ch + GAP) + ch // 2 - 6), f"{t:.2f} s", fill=(235, 235, 235))
    sheet.image = np.asarray(canvas).copy()
    return sheet


# -- the command -------------------------------------------------------------------------------

def _cmd_preview(args: argparse.Namespace) -> int:
    from pipeline.frontend import FrontEnd, model_tag
    from pipeline.media.atomic import atomic_output
    from pipeline.options import ConvertOptions

    options = ConvertOptions.from_args(args)
    names = parse_list(options.require_model(), str, "--model")
    strengths = parse_list(args.strength, float, "--strength")
    times = parse_list(args.at, float, "--at")
    base = replace(options, model=names[0], strength=str(strengths[0] if strengths else ConvertOptions.strength))
    front = FrontEnd.open(base)
    detector = front.make_detector()
    models = [(model_tag(n), FrontEnd.open(replace(base, model=n)).load_model(progress=True)) for n in names]
    src = Path(args.input)
    with front.precision.context(front.device):
        sheet = make_sheet(src, models, detector, front.config, strengths, times, args.cell_height)
    dst = Path(args.output) if args.output else src.with_name(f"{src.stem}_preview.png")
    with atomic_output(dst, True, option="--overwrite") as tmp:
        Path(tmp).write_bytes(sheet.png())
    print(f"wrote {dst} ({len(sheet.times)} frames x {len(sheet.columns)} columns: {', '.join(sheet.columns)})")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``preview`` to the ``facestyle`` parser."""
    from pipeline.frontend import add_command as add
    from pipeline.options import add_convert_options

    p = add(sub, "preview", _cmd_preview, "a contact sheet of models x strengths on a few frames of a clip",
            "Stylize a few frames of INPUT with each model at each strength, through the same stages and options as "
            "convert (a cell is the frame convert writes at that time), and write them as one labelled PNG: rows are "
            "the times, columns the source and then each model x strength.")
    p.add_argument("input", help="a video")
    p.add_argument("-o", "--output", help="the PNG to write (default: <input>_preview.png beside it)")
    p.add_argument("--at", help="comma-separated times in seconds (default: three spread over the clip)")
    p.add_argument("--cell-height", type=int, default=CELL_HEIGHT, help="scale taller frames down to this height")
    add_convert_options(p)
    for action in p._actions:                     # the same flags as convert, read as lists here
        if action.dest == "model":
            action.help = "one model or several, comma-separated (names or checkpoint paths)"
        elif action.dest == "strength":
            action.help, action.default = "comma-separated strengths (editing models; default: 1)", None
