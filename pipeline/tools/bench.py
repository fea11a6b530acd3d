"""facestyle bench: run the real pipeline on a short clip and say where the time goes.

:func:`run_bench` composes the same stage functions as :func:`pipeline.convert.convert_file`, in the
same order and with the same arguments, with a :class:`~pipeline.tools.timing.TimedIter` between every two
stages, and writes a real output file into ``workdir``. Around that one timed run it measures, untimed:

* the FLOPs of one face through invert (the ``x2`` codes pass, when the style-code mode runs it on
  that frame, plus the ``x1`` pass) and generate, with ``FlopCounterMode`` on the real model and a
  real crop (this is also the warm-up);
* the device's peak: a large matmul and a 512-channel 3x3 conv, in the pipeline's precision setting;
* decoding alone (``video_in.read`` over the same frames), face finding alone (detect, track and
  crop over those frames held in memory) and encoding alone (a ``video_out.VideoWriter`` writing
  as many frames of the output size, synthetic pixels, same options and audio).

Definitions (also in :class:`BenchReport`):

* ``wall``: main-thread time of the pipelined run, from the first frame asked of the chain to the
  output file in place (the ``video_out.write`` call that drives every stage).
* a stage's ``seconds``: for invert .. paste, its main-thread exclusive time (its proxy's inclusive
  time less the proxy below). Detect (face finding: detect, track, crop) and encode run in their
  own threads: their seconds are the time the main thread waited on them (for the next located
  frame; inside ``video_out.write`` but outside the stages: handing frames over, opening, flushing
  and closing the file). These six add up to ``wall``. Decode runs in its own thread too and is
  waited on by the face-finding thread: its seconds are that thread's wait.
* ``share`` = seconds / wall (the shares of detect .. encode sum to 1).
* ``fps``: invert .. paste: frames / own seconds; decode, detect and encode: throughput *alone*,
  i.e. frames / seconds of the separate decode-only, face-finding-only or encode-only run.
* ``overlap efficiency`` = max(decode alone, detect alone, encode alone, main-thread compute) /
  wall, where main-thread compute is the invert .. paste seconds of the pipelined run: 1.0 when
  the other threads hide completely behind the slowest part, lower when the main thread waits on
  them. (Compute is measured inside the pipelined run, so a slowdown from sharing cores with the
  other threads lowers throughput but not this ratio.) Run-to-run noise can put it slightly above 1.
* GFLOP/s = FLOPs of all faces processed / the stage's own seconds; FLOPs are those
  ``FlopCounterMode`` counts (convolutions and matmuls, 2 per multiply-add).

With no input a synthetic clip is made (a moving texture with an AAC track) and, as it has no real
face, a :class:`FixedFaceDetector` reports one synthetic face on every frame so that invert,
generate and paste do their real work; the report says detection was synthetic.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from pipeline.convert import ConvertConfig, locate_faces, stages
from pipeline.errors import InputError, NoFaceError, UsageError
from pipeline.face.detect import Detector, Face
from pipeline.media.codecs import CODECS
from pipeline.model import Latents, StyleGANEX
from pipeline.runtime.batch import to_images
from pipeline.runtime.device import PRECISIONS
from pipeline.stages import detect_crop, video_in, video_out
from pipeline.tools.timing import PeakResult, TimedIter, count_flops, device_sync, measure_peak, own_times

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "invert", "smooth", "generate", "paste", "encode")
THREADED = ("decode", "detect", "encode")



# -- synthetic input -------------------------------------------------------------------------

def synthetic_face(cx: float, cy: float, eye_distance: float) -> Face:
    """68 landmarks with the eye centres ``eye_distance`` apart around (cx, cy) and a mouth below."""
    d = eye_distance
    lm = np.zeros((68, 2), np.float32)
    lm[:] = (cx, cy + d)
    lm[36:42] = (cx - d / 2, cy)
    lm[42:48] = (cx + d / 2, cy)
    lm[48] = (cx - d / 3, cy + d)
    lm[54] = (cx + d / 3, cy + d)
    return Face(box=(cx - d, cy - d, cx + d, cy + 2 * d), landmarks=lm, score=1.0)


class FixedFaceDetector:
    """A :class:`~pipeline.face.detect.Detector` that finds the same face on every frame (for clips with none)."""

    def __init__(self, face: Face) -> None:
        self.face = face

    def detect(self, pixels: np.ndarray) -> list[Face]:
        return [self.face]


class MovingTexture:
    """Smooth blobs with mid-scale detail, panning slowly: frame ``i`` is a view into one large picture."""

    def __init__(self, size: tuple[int, int], seed: int = 0, margin: int = 64) -> None:
        w, h = size
        self.size, self.margin = size, margin
        rng = np.random.default_rng(seed)
        big = (w + margin, h + margin)
        coarse = rng.integers(0, 256, (big[1] // 48 + 2, big[0] // 48 + 2, 3)).astype(np.uint8)
        detail = rng.integers(-24, 25, (big[1] // 4 + 1, big[0] // 4 + 1, 1)).astype(np.float32)
        base = cv2.resize(coarse, big, interpolation=cv2.INTER_CUBIC).astype(np.float32)
        base += cv2.resize(detail, big, interpolation=cv2.INTER_LINEAR)[:, :, None]
        self.base = np.clip(base, 0, 255).astype(np.uint8)  # [h + margin, w + margin, 3]

    def frame(self, i: int) -> np.ndarray:
        """``[h, w, 3]`` uint8 RGB (a view)."""
        w, h = self.size
        dx, dy = _triangle(3 * i, self.margin), _triangle(i, self.margin)
        return self.base[dy:dy + h, dx:dx + w]


def _triangle(t: int, period: int) -> int:
    t %= 2 * period
    return t if t < period else 2 * period - t - 1


def make_synthetic_clip(path: Path, frames: int, size: tuple[int, int], fps: int = 30) -> Path:
    """An H.264 clip of ``frames`` frames of :class:`MovingTexture` at ``size`` (w, h, even), with a
    stereo AAC tone as long as the video."""
    w, h = size
    if w % 2 or h % 2 or w < 16 or h < 16:
        raise UsageError(f"synthetic clip size must be even and at least 16x16, got {w}x{h}")
    texture = MovingTexture(size)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture.frame(i)), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        n = round(48000 * frames / fps)
        t = np.arange(n) / 48000
        wave = (0.2 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)])).astype(np.float32)
        for s in range(0, n, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="fltp",
                                               layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, s, Fraction(1, 48000)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    return path


# -- the report ------------------------------------------------------------------------------

@dataclass
class StageRow:
    """One stage: frames handed on, main-thread seconds, share of wall, frames/s (see the module doc)."""

    name: str
    frames: int
    seconds: float
    share: float
    fps: float | None
    threaded: bool = False

    def as_dict(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.seconds, 5), "share": round(self.share, 5),
                "fps": _round(self.fps, 3), "fps_basis": "alone" if self.threaded else "own time",
                "main_thread": "waiting" if self.threaded else "working"}


@dataclass
class AloneRun:
    """A decode-only or encode-only run over the same number of frames."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict:
        return {"frames": self.frames, "seconds": round(self.seconds, 5), "fps": _round(self.fps, 3)}


@dataclass
class BenchReport:
    """What :func:`run_bench` measured. Sizes are ``(w, h)``; seconds are main-thread wall seconds.

    ``invert_flops`` / ``generate_flops`` are totals over the run (``faces`` faces); the GFLOP/s
    figures divide them by the stage's own seconds. ``overlap_efficiency`` and ``slowest`` compare
    ``wall_s`` with the slowest of decode alone, detect alone, encode alone and ``compute_s``.
    """

    input: str
    output: str
    synthetic_detection: bool
    device: str
    precision: str
    batch_size: int
    generate_batch_size: int
    style_code: str
    frame_size: tuple[int, int]
    output_size: tuple[int, int]
    crop_size: tuple[int, int]
    frames_in: int
    frames_written: int
    frames_with_face: int
    faces: int
    wall_s: float
    stages: list[StageRow]
    encode_flush_s: float
    decode_alone: AloneRun
    detect_alone: AloneRun
    encode_alone: AloneRun
    invert_flops: int
    generate_flops: int
    peak_matmul: PeakResult
    peak_conv: PeakResult
    compute_s: float
    slowest: str
    overlap_efficiency: float
    crop_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> faces, when crops differ

    def stage(self, name: str) -> StageRow:
        return next(s for s in self.stages if s.name == name)

    def gflops(self, name: str) -> float | None:
        """Achieved GFLOP/s of ``invert`` or ``generate``."""
        flops = self.invert_flops if name == "invert" else self.generate_flops
        s = self.stage(name).seconds
        return flops / s / 1e9 if s > 0 else None

    def fraction_of_conv_peak(self, name: str) -> float | None:
        g = self.gflops(name)
        return None if g is None else g / self.peak_conv.gflops

    def as_dict(self) -> dict:
        """JSON-ready."""
        per_face = {k: (round(v / self.faces) if self.faces else None)
                    for k, v in (("invert", self.invert_flops), ("generate", self.generate_flops))}
        return {
            "input": self.input, "output": self.output, "synthetic_detection": self.synthetic_detection,
            "device": self.device, "precision": self.precision,
            "batch_size": {"invert": self.batch_size, "generate": self.generate_batch_size},
            "style_code": self.style_code, "frame_size": list(self.frame_size),
            "output_size": list(self.output_size), "crop_size": list(self.crop_size),
            "generated_size": [4 * self.crop_size[0], 4 * self.crop_size[1]], "crop_sizes": dict(self.crop_sizes),
            "frames": {"in": self.frames_in, "written": self.frames_written, "with_face": self.frames_with_face,
                       "faces": self.faces},
            "wall_s": round(self.wall_s, 5),
            "stages": {s.name: s.as_dict() for s in self.stages},
            "encode_flush_s": round(self.encode_flush_s, 5),
            "decode_alone": self.decode_alone.as_dict(), "detect_alone": self.detect_alone.as_dict(),
            "encode_alone": self.encode_alone.as_dict(),
            "flops": {name: {"per_face": per_face[name], "total": total,
                             "gflops_s": _round(self.gflops(name), 3),
                             "fraction_of_conv_peak": _round(self.fraction_of_conv_peak(name), 4)}
                      for name, total in (("invert", self.invert_flops), ("generate", self.generate_flops))},
            "peak": {key: {"what": p.name, "flops": p.flops, "seconds": round(p.seconds, 6),
                           "gflops_s": round(p.gflops, 3)}
                     for key, p in (("matmul", self.peak_matmul), ("conv", self.peak_conv))},
            "overlap": {"wall_s": round(self.wall_s, 5), "compute_s": round(self.compute_s, 5),
                        "decode_alone_s": round(self.decode_alone.seconds, 5),
                        "detect_alone_s": round(self.detect_alone.seconds, 5),
                        "encode_alone_s": round(self.encode_alone.seconds, 5),
                        "slowest": self.slowest, "efficiency": round(self.overlap_efficiency, 4)},
        }

    def as_table(self) -> str:
        """Aligned text: the stage table, GFLOP/s against the peak, overlap efficiency."""
        w, h = self.crop_size
        lines = [
            f"input   {self.input} ({self.frame_size[0]}x{self.frame_size[1]}, {self.frames_in} frames"
            f"{', synthetic face detection' if self.synthetic_detection else ''}) -> {self.output}",
            f"model   crop {w}x{h} -> {4 * w}x{4 * h}, batch {self.batch_size}/{self.generate_batch_size} "
            f"(invert/generate), style codes {self.style_code}",
            f"device  {self.device}, {self.precision}",
            "",
            f"{'stage':<9}{'frames':>7}{'main s':>10}{'share':>8}{'frames/s':>11}",
        ]
        for s in self.stages:
            note = ""
            if s.name == "decode":
                note = "  alone; own thread, face finding waited"
            elif s.name == "detect":
                note = "  alone; own thread (detect, track, crop), main thread waited"
            elif s.name == "encode":
                note = f"  alone; own thread, main thread waited (flush at the end {self.encode_flush_s:.3f} s)"
            elif s.frames == 0 and s.seconds == 0:
                note = "  (off)"
            lines.append(f"{s.name:<9}{s.frames:>7}{s.seconds:>10.3f}{100 * s.share:>7.1f}%{_fmt(s.fps, 11)}{note}")
        total_fps = self.frames_written / self.wall_s if self.wall_s > 0 else None
        lines += [f"{'total':<9}{self.frames_written:>7}{self.wall_s:>10.3f}{100.0:>7.1f}%{_fmt(total_fps, 11)}", ""]
        for name in ("invert", "generate"):
            flops = self.invert_flops if name == "invert" else self.generate_flops
            per_face = flops / self.faces / 1e9 if self.faces else 0.0
            frac = self.fraction_of_conv_peak(name)
            lines.append(f"{name:<9}{_fmt(self.gflops(name), 10, 2)} GFLOP/s  ({per_face:.3f} GFLOP/face)"
                         f"  = {'-' if frac is None else f'{100 * frac:.1f}%'} of conv peak")
        for p in (self.peak_matmul, self.peak_conv):
            lines.append(f"{'peak':<9}{p.gflops:>10.2f} GFLOP/s  ({p.name}, best of the probe)")
        slowest_s = max(self.decode_alone.seconds, self.detect_alone.seconds, self.encode_alone.seconds, self.compute_s)
        lines += ["", f"overlap  wall {self.wall_s:.3f} s; slowest alone: {self.slowest} {slowest_s:.3f} s "
                      f"(decode {self.decode_alone.seconds:.3f}, detect {self.detect_alone.seconds:.3f}, "
                      f"encode {self.encode_alone.seconds:.3f}, "
                      f"compute {self.compute_s:.3f}) -> efficiency {self.overlap_efficiency:.2f}"]
        return "\n".join(lines)


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _fmt(v: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"


# -- the run ---------------------------------------------------------------------------------

def run_bench(input_path: Path | None, model: StyleGANEX, detector: Detector | None, cfg: ConvertConfig, *,
              frames: int = 30, synthetic_size: tuple[int, int] = (1920, 1080), workdir: Path,
              eye_distance: float = 90.0) -> BenchReport:
    """Benchmark the pipeline on the first ``frames`` frames of ``input_path`` (or a synthetic clip).

    Args:
        input_path: a video; None makes a synthetic clip of ``synthetic_size`` (w, h) with
            ``frames`` frames in ``workdir`` and detects a fixed synthetic face (eye centres
            ``eye_distance`` px apart around the frame centre) instead of using ``detector``.
        model, cfg: as for :func:`pipeline.convert.convert_file` (``cfg.precision`` applies to the
            probes too). ``cfg.video_out.overwrite`` is ignored: files in ``workdir`` are replaced.
        detector: the face detector (required with an input).
        workdir: where the synthetic clip, the output and the encode-only file go (created).

    Raises:
        UsageError: no detector for an input, frames < 1, a bad synthetic size.
        InputError: unreadable input, a photo, crop output with several faces.
        NoFaceError: no face in the first ``frames`` frames.
    """
    if frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
    if cfg.paste.mode == "crop" and cfg.face.faces == "all":
        raise InputError("--output-mode crop needs a single face; use --face largest")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    synthetic = input_path is None
    if input_path is None:
        src = make_synthetic_clip(workdir / "bench_in.mp4", frames, synthetic_size)
        detector = FixedFaceDetector(synthetic_face(synthetic_size[0] / 2, 0.45 * synthetic_size[1], eye_distance))
    else:
        src = Path(input_path)
        if detector is None:
            raise UsageError("run_bench needs a face detector for a real input")
    device, dtype = model.latent_avg.device, model.latent_avg.dtype
    vcfg = replace(cfg.video_out, overwrite=True)
    suffix = CODECS[vcfg.codec].suffix

    first = _first_face(src, detector, cfg, frames)
    log.info("bench: probing the device's peak")
    matmul, conv = measure_peak(device, dtype, cfg.precision.context(device))
    flops = _FlopTable(model, cfg, first)
    flops.warm_up(first)
    log.info("bench: timed run of %d frames", frames)
    run = _timed_run(src, workdir / f"bench_out{suffix}", model, detector, cfg, vcfg, frames)
    if not run.shapes:
        raise NoFaceError(f"{src}: no face reached the model in the timed run")
    for crop in run.samples.values():
        flops.add(crop)
    decode_alone = _decode_alone(src, cfg.video_in, frames)
    detect_alone = _detect_alone(src, detector, cfg, frames)
    encode_alone = _encode_alone(workdir / f"bench_encode_alone{suffix}", vcfg, run, src, cfg.video_in)

    own: dict[str, float] = {}
    for name, seconds in run.own:                     # the codes pass is the encoder too: part of invert
        key = "invert" if name == "codes" else name
        own[key] = own.get(key, 0.0) + seconds
    rows = []
    for name in STAGES:
        seconds = own.get(name, 0.0)
        n = run.items.get(name, 0)
        share = seconds / run.wall if run.wall > 0 and name != "decode" else 0.0
        alone = {"decode": decode_alone, "detect": detect_alone, "encode": encode_alone}.get(name)
        fps = alone.fps if alone is not None else (n / seconds if seconds > 0 else None)
        rows.append(StageRow(name, n, seconds, share, fps, name in THREADED))
    compute = sum(r.seconds for r in rows if not r.threaded)
    slowest_s, slowest = max((decode_alone.seconds, "decode"), (detect_alone.seconds, "detect"),
                             (encode_alone.seconds, "encode"), (compute, "compute"))
    shapes = Counter({f"{w}x{h}": n for (h, w, _), n in run.shapes.items()})
    (ch, cw, _), _ = max(run.shapes.items(), key=lambda kv: kv[1])
    return BenchReport(
        input="synthetic" if synthetic else str(src), output=str(run.dst), synthetic_detection=synthetic,
        device=_device_name(device), precision=_precision_name(cfg, dtype),
        batch_size=cfg.invert.batch_size, generate_batch_size=cfg.generate.batch_size,
        style_code=cfg.invert.style_code, frame_size=run.frame_size, output_size=run.out_size, crop_size=(cw, ch),
        frames_in=run.items["decode"], frames_written=run.items["encode"], frames_with_face=run.frames_with_face,
        faces=sum(run.shapes.values()), wall_s=run.wall, stages=rows, encode_flush_s=run.flush,
        decode_alone=decode_alone, detect_alone=detect_alone, encode_alone=encode_alone,
        invert_flops=run.codes_calls * flops.codes + sum(n * flops.x1[s] for s, n in run.shapes.items()),
        generate_flops=sum(n * flops.gen[s] for s, n in run.shapes.items()),
        peak_matmul=matmul, peak_conv=conv, compute_s=compute, slowest=slowest,
        overlap_efficiency=slowest_s / run.wall if run.wall > 0 else 0.0,
        crop_sizes=dict(shapes) if len(shapes) > 1 else {},
    )


def _first_face(src: Path, detector: Detector, cfg: ConvertConfig, frames: int) -> detect_crop.FaceCrop:
    """The first face in the first ``frames`` frames (for FLOP counting and warm-up)."""
    with video_in.read(src, cfg.video_in) as reader:
        info = reader.info
        if info.is_image:
            raise InputError(f"{src}: bench needs a video, not a photo")
        n = 0
        for rec in detect_crop.locate(islice(reader, frames), detector, cfg.face, (info.width, info.height),
                                 float(info.fps or 25)):
            n += 1
            if rec.faces:
                return rec.faces[0]
    raise NoFaceError(f"{src}: no face in the first {n} frame(s); the bench needs one "
                      f"(run it without an input for a synthetic clip)")


class _FlopTable:
    """FLOPs of one face through the model: the ``x2`` codes pass, and per crop shape the ``x1`` pass
    and generate. Counting runs the real model, so the first count is also its warm-up."""

    def __init__(self, model: StyleGANEX, cfg: ConvertConfig, face: detect_crop.FaceCrop) -> None:
        self.model, self.cfg = model, cfg
        self.device, self.dtype = model.latent_avg.device, model.latent_avg.dtype
        self.x1: dict[tuple[int, ...], int] = {}
        self.gen: dict[tuple[int, ...], int] = {}
        with torch.inference_mode(), cfg.precision.context(self.device):
            x2 = to_images([face.aligned], self.device, self.dtype)          # [1, 3, 256, 256]
            self.w, self.codes = count_flops(lambda: model.codes(x2))         # [1, 18, D]
        self.add(face)

    def add(self, face: detect_crop.FaceCrop) -> None:
        shape = face.pixels.shape
        if shape in self.x1:
            return
        with torch.inference_mode(), self.cfg.precision.context(self.device):
            x1 = to_images([face.pixels], self.device, self.dtype)           # [1, 3, h, w]
            lat, self.x1[shape] = count_flops(lambda: self.model.invert(x1, w_plus=self.w))
            _, self.gen[shape] = count_flops(
                lambda: self.model.generate(lat, editing_scale=self.cfg.generate.strength))

    def warm_up(self, face: detect_crop.FaceCrop) -> None:
        """One untimed pass at the configured batch sizes (batch 1 is warm already)."""
        bi, bg = self.cfg.invert.batch_size, self.cfg.generate.batch_size
        if max(bi, bg) == 1:
            return
        with torch.inference_mode(), self.cfg.precision.context(self.device):
            x1 = to_images([face.pixels] * bi, self.device, self.dtype)
            w = self.model.codes(to_images([face.aligned] * bi, self.device, self.dtype))
            lat = self.model.invert(x1, w_plus=w)
            self.model.generate(Latents.cat([lat[i % bi] for i in range(bg)]), editing_scale=self.cfg.generate.strength)
        sync = device_sync(self.device)
        if sync is not None:
            sync()


@dataclass
class _Run:
    dst: Path
    info: video_in.VideoInfo
    wall: float = 0.0
    flush: float = 0.0
    own: list[tuple[str, float]] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)
    frames_with_face: int = 0
    codes_calls: int = 0                                                   # faces with an x2 codes pass
    shapes: Counter = field(default_factory=Counter)                       # crop shape -> faces
    samples: dict[tuple[int, ...], detect_crop.FaceCrop] = field(default_factory=dict)
    pts: list[int] = field(default_factory=list)
    out_size: tuple[int, int] = (0, 0)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.info.width, self.info.height

    def tally(self, items: Iterable[detect_crop.Located]) -> Iterator[detect_crop.Located]:
        """Count faces, crop shapes and codes passes as located frames stream past (as the runner's counter)."""
        for rec in items:
            self.frames_with_face += bool(rec.faces)
            for face in rec.faces:
                self.shapes[face.pixels.shape] += 1
                self.samples.setdefault(face.pixels.shape, face)
                self.codes_calls += face.aligned is not None
            yield rec

    def record(self, frames: Iterable[video_in.Frame]) -> Iterator[video_in.Frame]:
        for frame in frames:
            self.pts.append(frame.pts)
            self.out_size = frame.size
            yield frame


def _timed_run(src: Path, dst: Path, model: StyleGANEX, detector: Detector, cfg: ConvertConfig,
               vcfg: video_out.VideoOutConfig, frames: int) -> _Run:
    """The runner's composition (see ``convert_file``) with a timing proxy after every stage."""
    device = model.latent_avg.device
    sync = device_sync(device)
    reader = video_in.read(src, cfg.video_in)
    info = reader.info
    run = _Run(dst, info)
    chain: list[TimedIter] = []

    def tap(name: str, items: Iterator) -> Iterator:
        """Time every stage of the runner's own chain (``convert.stages``), counting as it does."""
        if name == "detect":
            items = run.tally(items)
        elif name == "paste":
            items = run.record(items)
        chain.append(TimedIter(items, name, sync=None if name == "paste" else sync))
        return chain[-1]

    with reader, cfg.precision.context(device):
        chain.append(TimedIter(islice(reader, frames), "decode"))
        out = stages(chain[0], info, model, detector, cfg, tap=tap)
        t0 = time.perf_counter()
        video_out.write(out, dst, vcfg, info, audio_from=src, start=cfg.video_in.start, end=cfg.video_in.end)
        t1 = time.perf_counter()
    run.wall = t1 - t0
    # chain[0] (decode) is pulled by the face-finding thread; the main thread's chain starts at detect
    main = chain[1:]
    run.own = [("decode", chain[0].seconds), *zip([p.name for p in main], own_times(main), strict=True),
               ("encode", run.wall - chain[-1].seconds)]
    run.items = {p.name: p.items for p in chain} | {"encode": chain[-1].items}
    run.flush = t1 - (chain[-1].ended_at or t1)
    return run


def _decode_alone(src: Path, cfg: video_in.VideoInConfig, frames: int) -> AloneRun:
    with video_in.read(src, cfg) as reader:
        n = 0
        t0 = time.perf_counter()
        for _ in islice(reader, frames):
            n += 1
        return AloneRun(n, time.perf_counter() - t0)


def _detect_alone(src: Path, detector: Detector, cfg: ConvertConfig, frames: int) -> AloneRun:
    """Face finding (detect, track, crop) over the first ``frames`` frames, decoded beforehand."""
    with video_in.read(src, cfg.video_in) as reader:
        info = reader.info
        decoded = list(islice(reader, frames))
    t0 = time.perf_counter()
    n = sum(1 for _ in locate_faces(iter(decoded), (info.width, info.height), info.fps, detector, cfg))
    return AloneRun(n, time.perf_counter() - t0)


def _encode_alone(dst: Path, vcfg: video_out.VideoOutConfig, run: _Run, src: Path,
                  vin: video_in.VideoInConfig) -> AloneRun:
    """As many frames of the output size as the timed run wrote, with its timestamps and audio."""
    texture = MovingTexture(run.out_size, seed=1)
    t0 = time.perf_counter()
    with video_out.VideoWriter(dst, vcfg, run.info, audio_from=src, size=run.out_size, start=vin.start,
                               end=vin.end) as writer:
        for i, pts in enumerate(run.pts):
            writer.write(texture.frame(i), pts)
    return AloneRun(writer.frames_written, time.perf_counter() - t0)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def _precision_name(cfg: ConvertConfig, weights: torch.dtype) -> str:
    names = {v: k for k, v in PRECISIONS.items()}
    w = names.get(weights, str(weights))
    ac = cfg.precision.autocast
    return f"{names.get(ac, str(ac))} autocast over {w} weights" if ac is not None else f"{w} weights"
