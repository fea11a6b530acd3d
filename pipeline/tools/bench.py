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

The figures and their definitions are those of :mod:`pipeline.tools.bench_report`.

With no input a synthetic clip is made (a moving texture with an AAC track) and, as it has no real
face, a :class:`~pipeline.tools.synthetic.FixedFaceDetector` reports one synthetic face on every frame so that invert,
generate and paste do their real work; the report says detection was synthetic.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import torch

from pipeline.convert import ConvertConfig, locate_faces, stages
from pipeline.errors import InputError, NoFaceError, UsageError
from pipeline.face.detect import Detector
from pipeline.media.codecs import CODECS
from pipeline.media.media_info import FALLBACK_FPS
from pipeline.model import Latents, StyleGANEX
from pipeline.runtime.batch import to_images
from pipeline.runtime.device import PRECISIONS
from pipeline.stages import detect_crop, video_in, video_out
from pipeline.tools.bench_report import AloneRun, BenchReport, StageRow
from pipeline.tools.synthetic import FixedFaceDetector, MovingTexture, make_synthetic_clip, synthetic_face
from pipeline.tools.timing import TimedIter, count_flops, device_sync, measure_peak, own_times

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "invert", "smooth", "generate", "paste", "encode")
THREADED = ("decode", "detect", "encode")
FRAMES = 30                      # frames a run times
SYNTHETIC_SIZE = (1920, 1080)    # the synthetic clip's size when no input is given


# -- the run ---------------------------------------------------------------------------------

def run_bench(input_path: Path | None, model: StyleGANEX, detector: Detector | None, cfg: ConvertConfig, *,
              frames: int = FRAMES, synthetic_size: tuple[int, int] = SYNTHETIC_SIZE, workdir: Path,
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
        InputError: unreadable input, a photo.
        NoFaceError: no face in the first ``frames`` frames.
    """
    if frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
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
                                 float(info.fps or FALLBACK_FPS)):
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
            for face in rec.faces:              # read the geometry only: the device route's faces stay uncut
                shape = (*face.crop_shape, 3)
                self.shapes[shape] += 1
                self.samples.setdefault(shape, face)
                self.codes_calls += face.wants_aligned
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
