"""A VapourSynth filter: ``stylize(clip, model=..., **options)`` -> a clip of the same length, frame
rate, size and format family, with the faces stylized exactly as ``facestyle convert --batch-size 1``
(full output mode) would stylize them with the same options (convert's automatic CPU batches differ
by at most a code value now and then)::

    import vapoursynth as vs
    from pipeline.plugins.vapoursynth import stylize
    clip = vs.core.bs.VideoSource("take3.mov")
    clip = stylize(clip, model="pixar", style_code="smoothed", strength=0.8)
    clip.set_output()

Random access gives the same frames as a linear run. The clip's temporal state (the face track and
the smoothed style codes) depends on the frames before a frame and, for the centred smoothing
window, on a few after it. So the filter keeps a *plan*: the crop window and style codes of every
frame, built in order (detector, tracker and the x2 encoder: the first half of
:func:`pipeline.convert.stages`) the first time a frame at or beyond it is asked for, reading the
neighbouring source frames it needs through VapourSynth. A frame is then rendered from its own
source frame and its plan entry (the second half), so seeking back costs one frame and seeking
forward costs planning the frames in between once. The plan holds about 40 KB per face per frame
(an hour of 25 fps video: about 3.5 GB), no pictures.

Options are those of ``facestyle convert`` by their Python names (see ``facestyle convert --help``);
the encoding options (codec, crf, preset, pix_fmt, no_audio, overwrite) do not apply and the ones
that would change the clip's length or size (start, end, drop_lost, output_mode crop) are refused:
trim and crop in VapourSynth. YUV and high-bit-depth clips are converted to 8-bit RGB for the model
and back, with the matrix of their frame properties (BT.709 when they have none).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from pipeline.convert import ConvertConfig, locate_faces, plan, render
from pipeline.errors import UsageError
from pipeline.face.align import CropParams, apply_crop
from pipeline.face.detect import Detector
from pipeline.frontend import FrontEnd, check_model
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.model import StyleGANEX
from pipeline.options import ConvertOptions
from pipeline.stages.detect_crop import FaceCrop, Located
from pipeline.stages.invert import Coded
from pipeline.stages.video_in import Frame

__all__ = ["stylize"]

_REFUSED = {"start": "trim the clip in VapourSynth instead", "end": "trim the clip in VapourSynth instead",
            "drop_lost": "a filter keeps every frame", "threads": "set torch's threads in the script"}
_MATRIX_BT709 = 1
_UNSPECIFIED = 2


@dataclass(frozen=True)
class _PlannedFace:
    track_id: int
    crop: CropParams
    landmarks: np.ndarray
    code: torch.Tensor          # [1, 18, D]


def _vs() -> Any:
    try:
        import vapoursynth
    except ImportError:
        raise UsageError("the VapourSynth filter needs the vapoursynth package (pip install vapoursynth; "
                         "Python 3.12 or newer)") from None
    return vapoursynth


class _Stylizer:
    """Plans in order, renders on demand; one inference at a time (VapourSynth calls from many threads)."""

    def __init__(self, rgb: Any, model: StyleGANEX, detector: Detector, cfg: ConvertConfig) -> None:
        self.rgb, self.model, self.detector, self.cfg = rgb, model, detector, cfg
        self.fps = Fraction(rgb.fps.numerator, rgb.fps.denominator) if rgb.fps.numerator else None
        self.lock = threading.Lock()
        self.plans: list[list[_PlannedFace]] = []
        self.times: list[float] = []
        located = locate_faces(self._frames(), (rgb.width, rgb.height), self.fps, detector, cfg)
        self._planner: Iterator[Coded] = plan(located, self.fps, model, cfg)

    def _time(self, n: int, props: Any) -> float:
        if "_AbsoluteTime" in props:
            return float(props["_AbsoluteTime"])
        if self.fps:
            return float(n / self.fps)
        if n == 0:
            return 0.0
        prev = self.rgb.get_frame(n - 1).props
        if "_DurationNum" in prev and prev["_DurationDen"]:
            return self.times[n - 1] + prev["_DurationNum"] / prev["_DurationDen"]
        return n / FALLBACK_FPS

    def _frames(self) -> Iterator[Frame]:
        for n in range(self.rgb.num_frames):
            f = self.rgb.get_frame(n)
            t = self._time(n, f.props)
            if len(self.times) == n:
                self.times.append(t)
            yield Frame(n, n, t, _to_pixels(f))

    def _plan_through(self, n: int) -> None:
        while len(self.plans) <= n:
            rec = next(self._planner)
            self.plans.append([_PlannedFace(face.track_id, face.crop, face.landmarks, code)
                               for face, code in zip(rec.located.faces, rec.codes, strict=True)])

    def frame(self, n: int, f: Any) -> Any:
        out = f.copy()
        with self.lock, torch.inference_mode(), self.cfg.precision.context(self.model.latent_avg.device):
            self._plan_through(n)
            faces = self.plans[n]
            if not faces:
                return out
            frame = Frame(n, n, self.times[n], _to_pixels(f))
            crops = [FaceCrop(p.track_id, p.crop, p.landmarks, apply_crop(frame.pixels, p.crop)) for p in faces]
            coded = Coded(Located(frame, crops), [p.code for p in faces])
            result = next(render([coded], self.model, self.cfg))
        for plane in range(3):
            np.copyto(np.asarray(out[plane]), result.pixels[:, :, plane])
        return out


def _to_pixels(f: Any) -> np.ndarray:
    """An RGB24 VapourSynth frame -> uint8 ``[H, W, 3]``."""
    return np.stack([np.asarray(f[p]) for p in range(3)], axis=-1)


def _parse(model: str | StyleGANEX, options: dict[str, Any]) -> ConvertOptions:
    """The options, checked as every route checks them, after refusing those that do not apply."""
    for name, why in _REFUSED.items():
        if options.get(name):
            raise UsageError(f"option {name!r} does not apply to a filter: {why}")
    opts = ConvertOptions.from_mapping({"model": model if isinstance(model, str) else "model", **options})
    if opts.output_mode != "full":
        raise UsageError("a filter keeps the frame size: only output_mode 'full'")
    return opts


def stylize(clip: Any, model: str | StyleGANEX, **options: Any) -> Any:
    """Stylize the faces of a VapourSynth clip (see the module docstring).

    Args:
        clip: a ``vapoursynth.VideoNode`` of constant format and size (RGB or YUV, any bit depth).
        model: an official model name, a checkpoint path, or a loaded :class:`StyleGANEX`.
        **options: ``facestyle convert`` options by their Python names, e.g. ``style_code="smoothed"``,
            ``smooth_strength="1,0.5,0"``, ``strength=0.8``, ``device="cuda"``, ``precision="bf16"``.

    Returns:
        A clip of the same length, frame rate, size and format.

    Raises:
        UsageError: a clip of variable format or size, grey clips, or options that do not apply.
    """
    vs = _vs()
    if clip.format is None or not clip.width or not clip.height:
        raise UsageError("stylize needs a clip of constant format and size")
    if clip.format.color_family not in (vs.RGB, vs.YUV):
        raise UsageError(f"stylize needs an RGB or YUV clip, not {clip.format.name}")
    opts = _parse(model, options)
    if isinstance(model, StyleGANEX):
        front = FrontEnd.open(opts, device=model.latent_avg.device)
        net = check_model(model, "this model")
    else:
        front = FrontEnd.open(opts)
        net = front.load_model()
    cfg = front.config
    cfg = replace(cfg, invert=replace(cfg.invert, batch_size=1),   # VapourSynth wants RGB back, frame by frame
                  generate=replace(cfg.generate, batch_size=1), paste_on="host")
    detector = front.make_detector()

    core = vs.core
    rgb, matrix = clip, None
    if clip.format.id != vs.RGB24:
        if clip.format.color_family == vs.YUV:
            props = clip.get_frame(0).props
            matrix = int(props.get("_Matrix", _UNSPECIFIED))
            matrix = _MATRIX_BT709 if matrix in (_UNSPECIFIED, 0) else matrix
        rgb = core.resize.Bicubic(clip, format=vs.RGB24, **({"matrix_in": matrix} if matrix is not None else {}))
    worker = _Stylizer(rgb, net, detector, cfg)
    styled = core.std.ModifyFrame(rgb, rgb, lambda n, f: worker.frame(n, f))
    if rgb is clip:
        return styled
    back = {"matrix": matrix} if matrix is not None else {}
    return core.resize.Bicubic(styled, format=clip.format.id, **back)
